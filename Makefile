# omni - one non-recursive build.
#   make                 libomni (.so + .a), every plugin, the CLI
#   make test            build and run every CPU Check suite (SAN=1: ASan+UBSan)
#   make test-cuda       run the GPU suites (needs a CUDA device)
#   make fuzz            build the libFuzzer targets (clang)
#   make deps            install missing system packages (apt-get)
#   make install PREFIX=/usr/local
#   make weights         download the released checkpoints (see README)
# Knobs: CUDA=0|1 (default: 1 when nvcc is found), SAN=1, OPT=-O2, V=1.

.SUFFIXES:
.DEFAULT_GOAL := all
SHELL := /bin/bash

NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
PREFIX ?= /usr/local
OPT ?= -O2
CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

ifeq ($(SAN),1)
BUILD ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

Q := $(if $(V),,@)

PKGS := yaml-0.1 libzmq libprotobuf-c check libpng libjpeg libcjson libutf8proc libpcre2-8
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
pkglibs = $(shell pkg-config --libs $(1) 2>/dev/null)

CPPFLAGS_ALL := -Icore/include -Icore -Ikernels -Itests/common -I$(BUILD)/gen -D_GNU_SOURCE \
  -DOMNI_PLUGIN_DIR='"$(PREFIX)/lib/omni/plugins"' $(PKG_CFLAGS)
ifeq ($(CUDA),1)
CPPFLAGS_ALL += -DOMNI_HAVE_CUDA -I$(CUDA_HOME)/include
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart
endif
WARN := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
CFLAGS_ALL := -std=c11 $(OPT) -g -fPIC -fvisibility=hidden -pthread $(WARN) $(SANFLAGS) $(CFLAGS)
# a literal comma for use inside $(if ...)
, := ,
NVFLAGS := -std=c++17 $(OPT) -g -lineinfo $(CUDA_ARCH) --Werror all-warnings \
  -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Wno-unused-parameter $(if $(SANFLAGS),-Xcompiler -fsanitize=address$(,)-fsanitize=undefined)
LDFLAGS_ALL := -pthread $(SANFLAGS) $(LDFLAGS)

# ---- libomni ----------------------------------------------------------------
PROTO_SRC := $(wildcard proto/*.proto)
PROTO_GEN := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTO_SRC))
CORE_SRCS := $(wildcard core/*.c core/ops/*.c core/ipc/*.c) $(wildcard kernels/cpu/*.c)
CORE_CU := $(if $(filter 1,$(CUDA)),$(wildcard core/*.cu kernels/cuda/*.cu))
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/obj/%.o) $(CORE_CU:%.cu=$(BUILD)/obj/%.cu.o) \
  $(PROTO_GEN:$(BUILD)/gen/%.c=$(BUILD)/obj/gen/%.o)
CORE_LIBS := $(call pkglibs,yaml-0.1 libzmq libprotobuf-c libcjson libpng libjpeg) -ldl -lm -lrt $(CUDA_LIBS)
LIB_SO := $(BUILD)/lib/libomni.so
LIB_A := $(BUILD)/lib/libomni.a

# ---- plugins ------------------------------------------------------------------
PLUGIN_DIRS := $(patsubst %/,%,$(sort $(dir $(wildcard plugins/*/*.c))))
PLUGIN_NAMES := $(notdir $(PLUGIN_DIRS))
PLUGIN_SOS := $(PLUGIN_NAMES:%=$(BUILD)/plugins/omni_%.so)
# A plugin folder may hold plugin.mk setting omni_<name>_LIBS (extra link flags).
-include $(wildcard plugins/*/plugin.mk)

# ---- CLI ----------------------------------------------------------------------
CLI_SRCS := $(wildcard core/cli/*.c)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
CLI := $(BUILD)/bin/omni
CLI_LIBS := $(call pkglibs,libpng libjpeg libcjson libutf8proc libpcre2-8) -lm

# ---- tests --------------------------------------------------------------------
TEST_COMMON_SRCS := $(wildcard tests/common/*.c)
TEST_COMMON_OBJS := $(TEST_COMMON_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_SRCS := $(wildcard tests/core/check_*.c tests/kernels/check_*.c tests/plugins/check_*.c tests/ipc/check_*.c tests/pipelines/check_*.c examples/*/check_*.c)
TEST_BINS := $(patsubst %.c,$(BUILD)/tests/%,$(notdir $(TEST_SRCS)))
CUDA_TEST_SRCS := $(wildcard tests/cuda/check_*.c)
CUDA_TEST_BINS := $(patsubst %.c,$(BUILD)/tests/%,$(notdir $(CUDA_TEST_SRCS)))
TEST_LIBS := $(call pkglibs,check) $(call pkglibs,libpng libjpeg libcjson libutf8proc libpcre2-8) -lm -ldl
# tests/<dir>/tests.mk may add check_<name>_EXTRA (more sources) or _LIBS.
-include $(wildcard tests/*/tests.mk)
# Test plugins (tests/testplugins/<name>.c -> $(BUILD)/testplugins/omni_<name>.so), including
# deliberately broken ones for the loader tests; example plugins likewise.
TESTPLUGIN_SRCS := $(wildcard tests/testplugins/*.c) $(wildcard examples/*/omni_*.c)
TESTPLUGIN_SOS := $(foreach f,$(TESTPLUGIN_SRCS),$(BUILD)/testplugins/$(if $(filter examples/%,$(f)),$(notdir $(f:.c=.so)),omni_$(notdir $(f:.c=.so))))

RPATH_LIB = -Wl,-rpath,'$$ORIGIN/../lib'

.PHONY: all lib plugins cli tests test test-cuda fuzz deps deps-check install clean run weights bench examples tiny
all: deps-check lib plugins cli

lib: $(LIB_SO) $(LIB_A)
plugins: $(PLUGIN_SOS)
cli: $(CLI)
tests: $(TEST_BINS) $(TESTPLUGIN_SOS) $(if $(filter 1,$(CUDA)),$(CUDA_TEST_BINS))

$(BUILD)/testplugins/omni_%.so: tests/testplugins/%.c $(LIB_SO)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  PLUGIN  $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -shared -o $@ $< $(LDFLAGS_ALL) -L$(BUILD)/lib -lomni $(RPATH_LIB)

$(BUILD)/testplugins/omni_%.so: examples/*/omni_%.c $(LIB_SO)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  PLUGIN  $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -shared -o $@ $< $(LDFLAGS_ALL) -L$(BUILD)/lib -lomni $(RPATH_LIB)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $<")
	$(Q)$(NVCC) $(filter-out -pthread,$(CPPFLAGS_ALL)) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  PROTOC  $<")
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS_ALL) $(filter-out -Werror,$(CFLAGS_ALL)) -c $< -o $@

# generated headers must exist before anything that may include them compiles
$(CORE_SRCS:%.c=$(BUILD)/obj/%.o) $(CLI_OBJS): | $(PROTO_GEN)

$(LIB_SO): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -o $@ $^ $(LDFLAGS_ALL) -Wl,-soname,libomni.so $(CORE_LIBS)

$(LIB_A): $(CORE_OBJS)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

define PLUGIN_RULE
$(1)_SRCS := $$(wildcard plugins/$(1)/*.c) $$(if $$(filter 1,$$(CUDA)),$$(wildcard plugins/$(1)/*.cu))
$(1)_OBJS := $$(patsubst %.c,$$(BUILD)/obj/%.o,$$(patsubst %.cu,%.cu,$$(filter %.c,$$($(1)_SRCS)))) \
             $$(patsubst %.cu,$$(BUILD)/obj/%.cu.o,$$(filter %.cu,$$($(1)_SRCS)))
$$(BUILD)/plugins/omni_$(1).so: $$($(1)_OBJS) $$(LIB_SO)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  PLUGIN  $$@")
	$$(Q)$$(CC) -shared -o $$@ $$($(1)_OBJS) $$(LDFLAGS_ALL) -L$$(BUILD)/lib -lomni \
	  -Wl,-rpath,'$$$$ORIGIN/../lib' $$(omni_$(1)_LIBS) $$(CUDA_LIBS) -lm
endef
$(foreach p,$(PLUGIN_NAMES),$(eval $(call PLUGIN_RULE,$(p))))

$(CLI): $(CLI_OBJS) $(LIB_SO)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -o $@ $(CLI_OBJS) $(LDFLAGS_ALL) -L$(BUILD)/lib -lomni $(RPATH_LIB) $(CLI_LIBS) $(CUDA_LIBS)

define TEST_RULE
$$(BUILD)/tests/$(1): $$(BUILD)/obj/$(2).o $$(TEST_COMMON_OBJS) $$(patsubst %.c,$$(BUILD)/obj/%.o,$$($(1)_EXTRA)) $$(LIB_SO)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  TEST    $$@")
	$$(Q)$$(CC) -o $$@ $$(BUILD)/obj/$(2).o $$(TEST_COMMON_OBJS) $$(patsubst %.c,$$(BUILD)/obj/%.o,$$($(1)_EXTRA)) \
	  $$(LDFLAGS_ALL) -L$$(BUILD)/lib -lomni $$(RPATH_LIB) $$($(1)_LIBS) $$(TEST_LIBS) $$(CUDA_LIBS)
endef
$(foreach t,$(TEST_SRCS) $(CUDA_TEST_SRCS),$(eval $(call TEST_RULE,$(notdir $(t:.c=)),$(t:.c=))))

# ---- running tests ------------------------------------------------------------
test: deps-check all tests tiny
	$(Q)OMNI_PLUGIN_PATH=$(BUILD)/plugins:$(BUILD)/testplugins OMNI_BUILD=$(BUILD) OMNI_SANFLAGS='$(SANFLAGS)' tests/run-suites $(TEST_BINS)
	@if [ "$(CUDA)" = 1 ]; then echo "GPU suites: $(words $(CUDA_TEST_BINS)) built and linked; they run with 'make test-cuda' on a machine with a CUDA device"; fi

test-cuda: deps-check all tests
	$(Q)OMNI_PLUGIN_PATH=$(BUILD)/plugins:$(BUILD)/testplugins OMNI_BUILD=$(BUILD) OMNI_REQUIRE_CUDA=1 tests/run-suites $(CUDA_TEST_BINS)

# ---- fuzzing (libFuzzer; clang) --------------------------------------------------
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_CORE := $(wildcard core/*.c core/ipc/*.c)
fuzz: $(FUZZ_BINS)
build/fuzz/%: tests/fuzz/%.c $(FUZZ_CORE) $(PROTO_GEN)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Icore/include -Icore -Ikernels -I$(BUILD)/gen -D_GNU_SOURCE \
	  -DOMNI_PLUGIN_DIR='"$(PREFIX)/lib/omni/plugins"' $(PKG_CFLAGS) -o $@ $(filter %.c,$^) \
	  $(call pkglibs,yaml-0.1 libcjson libpng libjpeg libzmq libprotobuf-c) -ldl -lm -lrt -pthread

# ---- dependencies -------------------------------------------------------------------
APT_PKGS := libyaml-dev libzmq3-dev libprotobuf-c-dev protobuf-c-compiler check libsubunit-dev \
  libpng-dev libjpeg-dev libcjson-dev libutf8proc-dev libpcre2-dev pkg-config
deps:
	$(Q)SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PKGS)

deps-check:
	$(Q)if ! pkg-config --exists $(PKGS) 2>/dev/null || ! command -v protoc-c >/dev/null; then \
	  echo "omni: missing system packages ($(PKGS), protoc-c); running 'make deps'"; \
	  $(MAKE) --no-print-directory deps; fi

# ---- the main job: text-to-image with the released model ---------------------------------
WEIGHTS ?= weights
PROMPT ?= A bed in a bedroom between two lamps.
OUT ?= out.png
# on a machine with an NVIDIA GPU the main job runs there, in bf16
RUN_DEVICE ?= $(if $(shell nvidia-smi -L 2>/dev/null | grep -m1 GPU),--device cuda --dtype bf16)
weights:
	pipelines/fetch-weights.sh $(WEIGHTS) $(or $(WHAT),all)

# the tiny OmniMamba fixture, unpacked (tests and `omni run pipelines/*-tiny.yaml`)
TINY_SRC := tests/fixtures/data/omnimamba_tiny
tiny: $(BUILD)/tiny/omnimamba.pth
$(BUILD)/tiny/omnimamba.pth: $(TINY_SRC)/omnimamba.pth.xz $(TINY_SRC)/vq.pth.xz
	@mkdir -p $(dir $@)
	xz -dc $(TINY_SRC)/vq.pth.xz > $(BUILD)/tiny/vq.pth
	cp $(TINY_SRC)/dino.safetensors $(TINY_SRC)/siglip.pth $(BUILD)/tiny/
	xz -dc $(TINY_SRC)/omnimamba.pth.xz > $@

run: all
	@test -f $(WEIGHTS)/OmniMamba-1.3b.pth -a -f $(WEIGHTS)/vq_ds16_t2i.pt || $(MAKE) --no-print-directory weights WHAT=t2i
	OMNI_WEIGHTS=$(WEIGHTS) $(BUILD)/bin/omni run pipelines/t2i.yaml --prompt "$(PROMPT)" -o $(OUT) $(RUN_DEVICE) $(RUNFLAGS)

# ---- install ---------------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/include/omni/ops $(DESTDIR)$(PREFIX)/lib/omni/plugins \
	  $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/omni/pipelines
	install -m 644 core/include/omni/*.h $(DESTDIR)$(PREFIX)/include/omni/
	install -m 644 core/include/omni/ops/*.h $(DESTDIR)$(PREFIX)/include/omni/ops/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(PLUGIN_SOS) $(DESTDIR)$(PREFIX)/lib/omni/plugins/
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 pipelines/*.yaml $(DESTDIR)$(PREFIX)/share/omni/pipelines/ 2>/dev/null || true
	sed -e 's|@PREFIX@|$(PREFIX)|g' core/omni.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/omni.pc

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
