/* omni/weights.h - the weights store: .safetensors and PyTorch .pth files,
 * opened by mmap, never executing anything.
 *
 * A .pth (torch.save zip) is read through a restricted unpickler that accepts
 * exactly what a state dict of tensors needs (OrderedDict, _rebuild_tensor_v2,
 * _rebuild_parameter, the <Type>Storage classes, persistent ids, nested
 * dicts) and refuses every other global or opcode with OMNI_EREFUSED.
 * Nested dicts are flattened with "." ("model.conv.weight" for LlamaGen's
 * {"model": {...}}); non-tensor leaves (ints, strings) are skipped.
 */
#ifndef OMNI_WEIGHTS_H
#define OMNI_WEIGHTS_H

#include <stdint.h>

#include "omni/status.h"
#include "omni/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct omni_weights; /* opaque; one open file */

enum omni_weights_format {
    OMNI_WEIGHTS_SAFETENSORS = 1,
    OMNI_WEIGHTS_PTH = 2,
};

/* Open path (format detected from content). (transfer full: omni_weights_close) */
OMNI_API int omni_weights_open(struct omni_weights **out, const char *path,
                               struct omni_error *err);
OMNI_API void omni_weights_close(struct omni_weights *w);
OMNI_API int omni_weights_format(const struct omni_weights *w);
OMNI_API const char *omni_weights_path(const struct omni_weights *w);

/* Number of tensors and the i-th key (file order; insertion order for .pth). */
OMNI_API size_t omni_weights_count(const struct omni_weights *w);
OMNI_API const char *omni_weights_key(const struct omni_weights *w, size_t i);
/* The i-th tensor's dtype as stored, in omni's spelling ("f16", "bf16", ...),
 * including dtypes omni cannot load ("i16", "i8", "bool", "u16", "u32", "u64",
 * "f8_e4m3", "f8_e5m2", "c64", "c128"); NULL when i is out of range. Such
 * tensors are listed, but omni_weights_get/load return OMNI_EUNSUPPORTED and
 * omni_weights_info fills info (dtype OMNI_DTYPE_INVALID) and returns
 * OMNI_EUNSUPPORTED. */
OMNI_API const char *omni_weights_dtype_str(const struct omni_weights *w, size_t i);

/* Metadata of one tensor without touching its data: dtype (enum omni_dtype),
 * ndim, shape. Keys are looked up as prefix + key (prefix may be NULL or "").
 * Returns OMNI_ENOTFOUND (message names the full key and the file). */
struct omni_weight_info {
    int32_t dtype;
    int32_t ndim;
    int64_t shape[OMNI_MAX_DIMS];
    int64_t strides[OMNI_MAX_DIMS]; /* elements; .pth views may be non-contiguous */
    int64_t offset;                 /* bytes into the mapped file */
};
OMNI_API int omni_weights_info(const struct omni_weights *w, const char *prefix, const char *key,
                               struct omni_weight_info *info, struct omni_error *err);
OMNI_API int omni_weights_has(const struct omni_weights *w, const char *prefix, const char *key);

/* A host tensor viewing the mapped file (read-only OMNI_BUFFER_MMAP buffer,
 * zero copy; strides as stored). (transfer full: omni_tensor_release) */
OMNI_API int omni_weights_get(const struct omni_weights *w, const char *prefix, const char *key,
                              struct omni_tensor *out, struct omni_error *err);

/* A new contiguous host tensor of `dtype` holding the values (converted from
 * the stored dtype: f16/bf16/f32/f64 between each other). When ndim > 0 the
 * shape must equal `shape`, else OMNI_ESHAPE with a message naming the key and
 * both shapes. A .pth broadcast view (stride 0) describing more elements
 * than its storage holds is only copied when ndim > 0 (else OMNI_EUNSUPPORTED),
 * so a hostile file cannot make this allocate. (transfer full) */
OMNI_API int omni_weights_load(const struct omni_weights *w, const char *prefix, const char *key,
                               int dtype, int ndim, const int64_t *shape, struct omni_tensor *out,
                               struct omni_error *err);

/* Write tensors to a .safetensors file (host tensors, any strides; used by
 * --dump, tests and fixture tools). metadata may be NULL. */
OMNI_API int omni_safetensors_write(const char *path, size_t n, const char *const *names,
                                    const struct omni_tensor *tensors, struct omni_error *err);

#ifdef __cplusplus
}
#endif
#endif
