# tests/ipc: the suites build their own copy of the generated protobuf code (to
# craft raw, malformed and wrong-version messages) and talk ZeroMQ directly.
check_ipc_EXTRA := $(BUILD)/gen/omni.pb-c.c
check_ipc_LIBS := $(call pkglibs,libzmq libprotobuf-c)
check_ipc_wire_EXTRA := $(BUILD)/gen/omni.pb-c.c
check_ipc_wire_LIBS := $(call pkglibs,libzmq libprotobuf-c)
# they include omni.pb-c.h: generate it first
$(BUILD)/obj/tests/ipc/check_ipc.o $(BUILD)/obj/tests/ipc/check_ipc_wire.o $(BUILD)/obj/tests/ipc/check_ipc_pipelines.o: | $(PROTO_GEN)
