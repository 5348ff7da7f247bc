/* core/cli/bench_model.h - full-size OmniMamba-1.3B weights made up by omni
 * itself (deterministic from a seed, the real key names and shapes), and the
 * stage chains of the shipped t2i and mmu pipelines driven through the
 * harness. Used by `omni bench` and the GPU end-to-end tests. */
#ifndef OMNI_CLI_BENCH_MODEL_H
#define OMNI_CLI_BENCH_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "omni/omni.h"

/* Which files to make. */
enum {
    OMB_LM = 1,     /* backbone, LoRA, heads, embeddings, caption MLP, projector (OmniMamba-1.3b) */
    OMB_VQ = 2,     /* LlamaGen VQ-16 (decoder and codebook) */
    OMB_VISION = 4, /* DINOv2-L/14 reg4 and SigLIP so400m/14 at 384 (blocks up to the feature block) */
};

struct omb_paths {
    char lm[1024], vq[1024], dino[1024], siglip[1024];
    /* extra params of the backbone stage ("key: value" lines, e.g. "state_dtype: bf16");
     * omb_weights sets "", a caller may fill it before opening a chain */
    char bb_params[256];
};

/* Write the missing files of `which` into dir (created), named by seed, bf16
 * tensors; existing files are reused. Progress goes to OMNI_LOG (info). */
int omb_weights(const char *dir, uint64_t seed, int which, struct omb_paths *paths,
                struct omni_error *err);

/* The t2i chain: caption prefix -> backbone (+ t2i LoRA) -> image head ->
 * sampler, decode steps fed by the image-token embedding; VQ decoder. */
struct omb_t2i {
    struct omni_harness *prefix, *bb, *lora, *head, *smp, *embed, *vq;
};
/* device "cpu" / "cuda:0"; dtype "f32" / "f16" / "bf16" (the VQ decoder and
 * everything else take the same dtype). with_vq = 0 leaves vq NULL. */
int omb_t2i_open(struct omb_t2i *m, const struct omb_paths *p, const char *device,
                 const char *dtype, int with_vq, struct omni_error *err);
void omb_t2i_close(struct omb_t2i *m);

/* The VQ-16 decoder alone (the vq stage of the t2i chain). */
int omb_vq_open(struct omni_harness **vq, const struct omb_paths *p, const char *device,
                const char *dtype, struct omni_error *err);

/* The mmu chain: DINOv2 + SigLIP -> projector -> assemble -> backbone
 * (+ mmu LoRA) -> text head -> sampler; decode steps fed by the text
 * embedding + mmu_pos_embed. with_vision = 0 leaves the towers and the
 * projector NULL. */
struct omb_mmu {
    struct omni_harness *dino, *siglip, *proj, *assemble, *bb, *lora, *head, *smp, *embed;
};
int omb_mmu_open(struct omb_mmu *m, const struct omb_paths *p, const char *device,
                 const char *dtype, int with_vision, struct omni_error *err);
void omb_mmu_close(struct omb_mmu *m);

#define OMB_T2I_PREFIX 72  /* prompt positions of a t2i request */
#define OMB_T2I_CODES 256  /* image tokens */
#define OMB_IMAGE 384      /* mmu image side */
#define OMB_VOCAB 50288

#endif
