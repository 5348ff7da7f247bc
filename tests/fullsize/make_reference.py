#!/usr/bin/env python3
"""Full-size parity reference: random weights at the real sizes + PyTorch reference outputs.

    python3 tests/fullsize/make_reference.py OUTDIR [--small]

Writes into OUTDIR:
  weights/dino.safetensors     DINOv2-L/14-reg4, timm key names, pos_embed stored on the 518-px
                               37x37 grid (omni resamples it to 27x27 at load, like timm)
  weights/siglip.pth           SigLIP SO400M/14-384, OpenCLIP layout (`visual.trunk.` + timm names,
                               plus the unused attn_pool / norm and a few non-visual decoys), torch.save
  weights/projector.safetensors  keys projector.projector.{0,2,4}.{weight,bias}, 2176->8704->2048->2048
  weights/vq.pt                VQ-16, torch.save({"model": state_dict}) like vq_ds16_t2i.pt
  ref.safetensors              inputs and float64 reference outputs (keys listed in compare.py)
  ref_meta.json                sizes, reference implementation, devices, timings, activation stats
  pipeline.yaml                omni: image -> image_load -> image_preprocess x2 -> vit x2 -> projector
  stage_runs.sh                omni stage_run commands: each stage alone on the reference's own inputs

Reference: float64 on the CPU (the exact answer for the stored fp32 weights). The towers use timm
itself when it imports (timm.create_model + its checkpoint_filter_fn, i.e. resample_abs_pos_embed,
then blocks 0..feature_block, no final norm, prefix tokens dropped), else the project's independent
tests/fixtures/omniref/vit.py with the same resample (F.interpolate bicubic, antialias, in fp32 as
timm does). With timm present omniref is also run, as a cross-check. The projector and the VQ decoder
use omniref (projector.py, vq.py). A second, float32 PyTorch run (CUDA when present, TF32 off;
else CPU) is stored as `torch32.*` so the report can show what PyTorch's own fp32 gets.
--small: the same code path at tiny sizes (seconds on a laptop CPU).
No network access is needed or attempted.
"""
import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from omniref import projector as rp  # noqa: E402
from omniref import st  # noqa: E402
from omniref import vit as rv  # noqa: E402
from omniref import vq as rq  # noqa: E402
from omniref.pil_resize import resize_bicubic  # noqa: E402

IMAGE = os.path.join(HERE, "dog_bicycle.jpg")
DINO_MEAN, DINO_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIG_MEAN, SIG_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def sizes(small):
    if small:
        return dict(
            dino=rv.ViTConfig(dim=64, depth=3, heads=4, mlp_hidden=256, patch=14, img=56, n_reg=4,
                              cls_token=True, layerscale=True),
            dino_stored_img=70,                       # 5x5 table, resampled to 4x4
            siglip=rv.ViTConfig(dim=72, depth=3, heads=4, mlp_hidden=288, patch=14, img=56,
                                attn_pool=True),
            proj=(136, 544, 128, 128),
            vq=rq.VQConfig(codebook_size=512, embed_dim=8, ch=32, ch_mult=(1, 1, 2), z_channels=32,
                           num_res_blocks=1, codebook_used=1024),
            vq_grid=8,
            timm_dino="vit_large_patch14_reg4_dinov2", timm_siglip="vit_so400m_patch14_siglip_384",
            dino_params="{variant: custom, heads: 4, image_size: 56}",
            siglip_params="{variant: custom, heads: 4, image_size: 56}",
        )
    return dict(
        dino=rv.ViTConfig(dim=1024, depth=24, heads=16, mlp_hidden=4096, patch=14, img=384, n_reg=4,
                          cls_token=True, layerscale=True),
        dino_stored_img=518,                          # 37x37 table (timm's DINOv2 weights), -> 27x27
        siglip=rv.ViTConfig(dim=1152, depth=27, heads=16, mlp_hidden=4304, patch=14, img=384,
                            attn_pool=True),
        proj=(2176, 8704, 2048, 2048),
        vq=rq.VQConfig(),                             # 16384x8, ch 128, (1,1,2,2,4), z 256, 2 (+1) res
        vq_grid=16,
        timm_dino="vit_large_patch14_reg4_dinov2", timm_siglip="vit_so400m_patch14_siglip_384",
        dino_params="{variant: dinov2_reg4_l14}",
        siglip_params="{variant: siglip_so400m_14_384}",
    )


def log(msg):
    print("make_reference: " + msg, flush=True)


def stats(t):
    t = t.double()
    return dict(std=float(t.std()), max_abs=float(t.abs().max()), mean=float(t.mean()))


# ------------------------------------------------------------------------------------- image

def load_image():
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is None:
        raise SystemExit("make_reference: PIL (pillow) is needed to decode %s" % IMAGE)
    im = Image.open(IMAGE).convert("RGB")
    return im, np.asarray(im)


def resize(im, u8, S):
    from PIL import Image
    out = np.asarray(im.resize((S, S), Image.BICUBIC))
    if u8.shape[0] * u8.shape[1] <= 1 << 20:
        mine = resize_bicubic(u8, S, S)
        if not np.array_equal(out, mine):
            log("WARNING: PIL bicubic and omniref's numpy bicubic differ (max %d); using PIL"
                % int(np.abs(out.astype(int) - mine.astype(int)).max()))
    return out


def to_tensor_normalize(u8, mean, std):
    """torchvision ToTensor + Normalize in fp32: (u8/255 - mean) / std, HWC -> [1,3,H,W]."""
    x = torch.from_numpy(u8.copy()).permute(2, 0, 1).to(torch.float32).div(255.0)
    m = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return ((x - m) / s)[None].contiguous()


# ------------------------------------------------------------------------------------- weights

def resample_pos(pos, new_grid):
    """timm resample_abs_pos_embed (no prefix rows): fp32 F.interpolate bicubic, antialias."""
    n, D = pos.shape[1], pos.shape[2]
    old = int(round(math.sqrt(n)))
    assert old * old == n
    x = pos.float().reshape(1, old, old, D).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(new_grid, new_grid), mode="bicubic", antialias=True, align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, D).to(pos.dtype)


def make_projector(dims, gen):
    sd = OrderedDict()
    for i in range(3):
        cin, cout = dims[i], dims[i + 1]
        w = torch.randn(cout, cin, generator=gen, dtype=torch.float64) / math.sqrt(cin)
        b = torch.randn(cout, generator=gen, dtype=torch.float64) * 0.05
        sd["projector.projector.%d.weight" % (2 * i)] = w.float()
        sd["projector.projector.%d.bias" % (2 * i)] = b.float()
    return sd


# ------------------------------------------------------------------------------------- towers

def timm_model(timm, name, cfg, small):
    kw = dict(pretrained=False, num_classes=0, img_size=cfg.img)
    if small:
        kw.update(embed_dim=cfg.dim, depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_hidden / cfg.dim)
    return timm.create_model(name, **kw).eval()


def timm_load(timm, model, sd_stored):
    from timm.models.vision_transformer import checkpoint_filter_fn
    sd = checkpoint_filter_fn(OrderedDict((k, v.clone()) for k, v in sd_stored.items()), model)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("head")]
    if missing or unexpected:
        raise SystemExit("make_reference: timm %s does not take our keys: missing %s, unexpected %s"
                         % (type(model).__name__, missing[:8], list(unexpected)[:8]))
    return sd


def timm_features(model, x, fb):
    """blocks 0..fb on [prefix, patches+pos], no final norm, prefix dropped (Prismatic's
    get_intermediate_layers(n={fb}))."""
    h = model.patch_embed(x)
    h = model._pos_embed(h)
    h = model.patch_drop(h)
    h = model.norm_pre(h)
    for blk in model.blocks[:fb + 1]:
        h = blk(h)
    feats = h[:, model.num_prefix_tokens:]
    try:   # the call upstream makes; checked against the loop above when this timm has it
        alt = model.get_intermediate_layers(x, n={fb})[0]
        d = float((alt - feats).abs().max())
        if d != 0.0:
            log("WARNING: timm get_intermediate_layers differs from the block loop by %.3g" % d)
    except Exception as e:  # noqa: BLE001 - older/newer timm signatures
        log("note: get_intermediate_layers(n={%d}) not usable in this timm (%s); block loop used" % (fb, e))
    return feats


def tower(name, cfg, sd_run, sd_stored, pixels, timm, timm_name, small, dev32, meta):
    """Returns (f64 reference, omniref f64 or None, torch f32 baseline)."""
    fb = cfg.feature_block
    t0 = time.time()
    ref_oref = rv.ViT(sd_run, cfg, dtype=torch.float64).forward(pixels.double())
    meta["timing_s"][name + "_omniref_f64"] = round(time.time() - t0, 2)
    if timm is not None:
        m = timm_model(timm, timm_name, cfg, small)
        sd_t = timm_load(timm, m, sd_stored)
        for k in ("pos_embed",):
            d = float((sd_t[k].double() - sd_run[k].double()).abs().max())
            meta[name + "_timm_vs_own_resample_pos_embed_maxabs"] = d
        t0 = time.time()
        with torch.no_grad():
            ref = timm_features(m.double(), pixels.double(), fb)
            meta["timing_s"][name + "_timm_f64"] = round(time.time() - t0, 2)
            m32 = m.float().to(dev32)
            t0 = time.time()
            b32 = timm_features(m32, pixels.to(dev32), fb).cpu()
            if dev32.type == "cuda":
                torch.cuda.synchronize()
            meta["timing_s"][name + "_timm_f32_" + dev32.type] = round(time.time() - t0, 2)
        del m, m32
        return ref, ref_oref, b32
    sd32 = {k: v.to(dev32) for k, v in sd_run.items()}
    t0 = time.time()
    b32 = rv.ViT(sd32, cfg, dtype=torch.float32).forward(pixels.to(dev32)).cpu()
    meta["timing_s"][name + "_omniref_f32_" + dev32.type] = round(time.time() - t0, 2)
    return ref_oref, None, b32


# ------------------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--small", action="store_true", help="tiny sizes (tests the scripts)")
    args = ap.parse_args()
    Z = sizes(args.small)
    out = os.path.abspath(args.outdir)
    wdir = os.path.join(out, "weights")
    os.makedirs(wdir, exist_ok=True)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    try:
        import timm
        timm_version = timm.__version__
    except Exception as e:  # noqa: BLE001 - timm absent or broken (no torchvision)
        log("timm not importable (%s): the towers' reference is omniref/vit.py" % e)
        timm, timm_version = None, None
    cuda = torch.cuda.is_available()
    dev32 = torch.device("cuda" if cuda else "cpu")
    devname = torch.cuda.get_device_name(0) if cuda else cpu_name()
    meta = OrderedDict(small=args.small, torch=torch.__version__, timm=timm_version,
                       numpy=np.__version__, reference="float64 on the CPU",
                       towers_reference=("timm %s (float64, CPU)" % timm_version) if timm else
                       "omniref/vit.py (float64, CPU)",
                       torch32_device=devname, torch32_tf32=False, cpu=cpu_name(),
                       torch_threads=torch.get_num_threads(), timing_s=OrderedDict())
    try:
        import PIL
        meta["pil"] = PIL.__version__
    except ImportError:
        pass
    ref = OrderedDict()

    # ---- image and preprocessing (upstream: PIL RGB, resize (S,S) BICUBIC, ToTensor, Normalize)
    im, u8 = load_image()
    S = Z["dino"].img
    r8 = resize(im, u8, S)
    ref["image_u8"] = torch.from_numpy(u8.copy())
    ref["resized_u8"] = torch.from_numpy(r8.copy())
    dpix = to_tensor_normalize(r8, DINO_MEAN, DINO_STD)
    spix = to_tensor_normalize(r8, SIG_MEAN, SIG_STD)
    ref["dino_pixels"], ref["siglip_pixels"] = dpix, spix

    # ---- DINOv2
    t0 = time.time()
    dcfg = Z["dino"]
    stored_cfg = rv.ViTConfig(dcfg.dim, dcfg.depth, dcfg.heads, dcfg.mlp_hidden, dcfg.patch,
                              Z["dino_stored_img"], dcfg.n_reg, dcfg.cls_token, dcfg.layerscale)
    dsd = rv.make_weights(stored_cfg, torch.Generator().manual_seed(1))
    st.save(dsd, os.path.join(wdir, "dino.safetensors"),
            metadata={"note": "random weights, timm names, pos_embed on the %d-px grid" % stored_cfg.img})
    drun = OrderedDict(dsd)
    drun["pos_embed"] = resample_pos(dsd["pos_embed"], dcfg.grid)
    meta["timing_s"]["dino_weights"] = round(time.time() - t0, 2)
    log("dino weights written (%.1f s); reference ..." % (time.time() - t0))
    dref, doref, d32 = tower("dino", dcfg, drun, dsd, dpix, timm, Z["timm_dino"], args.small, dev32, meta)
    ref["dino_features"] = dref
    if doref is not None:
        ref["omniref.dino_features"] = doref
    ref["torch32.dino_features"] = d32
    meta["dino_features_stats"] = stats(dref)
    del dsd, drun
    log("dino done: features %s, std %.3g, max %.3g" % (tuple(dref.shape), dref.std(), dref.abs().max()))

    # ---- SigLIP (OpenCLIP layout)
    t0 = time.time()
    scfg = Z["siglip"]
    ssd = rv.make_weights(scfg, torch.Generator().manual_seed(2))
    clip = OrderedDict(("visual.trunk." + k, v) for k, v in ssd.items())
    clip["text.positional_embedding"] = torch.zeros(4, scfg.dim)
    clip["logit_scale"] = torch.tensor(2.3)
    clip["logit_bias"] = torch.tensor(-10.0)
    torch.save(clip, os.path.join(wdir, "siglip.pth"))
    del clip
    meta["timing_s"]["siglip_weights"] = round(time.time() - t0, 2)
    log("siglip weights written (%.1f s); reference ..." % (time.time() - t0))
    sref, soref, s32 = tower("siglip", scfg, ssd, ssd, spix, timm, Z["timm_siglip"], args.small, dev32, meta)
    ref["siglip_features"] = sref
    if soref is not None:
        ref["omniref.siglip_features"] = soref
    ref["torch32.siglip_features"] = s32
    meta["siglip_features_stats"] = stats(sref)
    del ssd
    log("siglip done: features %s, std %.3g, max %.3g" % (tuple(sref.shape), sref.std(), sref.abs().max()))

    # ---- projector: from the f64 features (end to end) and from their f32 roundings (stage alone)
    t0 = time.time()
    dims = Z["proj"]
    assert dims[0] == dcfg.dim + scfg.dim
    psd = make_projector(dims, torch.Generator().manual_seed(3))
    st.save(psd, os.path.join(wdir, "projector.safetensors"))
    ref["dino_features_f32"] = dref.float()
    ref["siglip_features_f32"] = sref.float()
    pre = "projector.projector."
    ref["projector_out"] = rp.mlp3(torch.cat([dref, sref], -1), psd, pre)
    fused32 = torch.cat([dref.float(), sref.float()], -1)
    ref["projector_out_f32in"] = rp.mlp3(fused32.double(), psd, pre)
    psd32 = {k: v.to(dev32) for k, v in psd.items()}
    ref["torch32.projector_out_f32in"] = rp.mlp3(fused32.to(dev32), psd32, pre, dtype=torch.float32).cpu()
    meta["projector_out_stats"] = stats(ref["projector_out"])
    meta["timing_s"]["projector"] = round(time.time() - t0, 2)
    del psd, psd32

    # ---- VQ decoder on random codes
    t0 = time.time()
    vcfg, g = Z["vq"], Z["vq_grid"]
    vsd = rq.make_weights(vcfg, torch.Generator().manual_seed(4))
    codes = torch.randint(0, vcfg.codebook_size, (1, g * g), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        img = rq.VQModel(vsd, vcfg).decode_code(codes, g, g)
        s = float(img.std())
        if not 0.3 <= s <= 2.0:     # keep the picture O(1): rescale conv_out, decode again
            f = 0.7 / s
            vsd["decoder.conv_out.weight"] = (vsd["decoder.conv_out.weight"].double() * f).float()
            vsd["decoder.conv_out.bias"] = (vsd["decoder.conv_out.bias"].double() * f).float()
            meta["vq_conv_out_rescaled_by"] = f
            img = rq.VQModel(vsd, vcfg).decode_code(codes, g, g)
        meta["timing_s"]["vq_f64"] = round(time.time() - t0, 2)
        t1 = time.time()
        vsd32 = {k: v.to(dev32) for k, v in vsd.items()}
        img32 = rq.VQModel(vsd32, vcfg, dtype=torch.float32).decode_code(codes.to(dev32), g, g).cpu()
        meta["timing_s"]["vq_f32_" + dev32.type] = round(time.time() - t1, 2)
        del vsd32
    torch.save({"model": vsd}, os.path.join(wdir, "vq.pt"))
    del vsd
    ref["codes"] = codes
    ref["vq_image"] = img
    ref["torch32.vq_image"] = img32
    meta["vq_image_stats"] = stats(img)
    meta["vq_image_frac_outside_pm1"] = float((img.abs() > 1).double().mean())
    log("vq done: image %s, std %.3g, max %.3g (%.1f s)" % (tuple(img.shape), img.std(), img.abs().max(),
                                                            time.time() - t0))

    # ---- write everything
    st.save(OrderedDict((k, v.contiguous()) for k, v in ref.items()), os.path.join(out, "ref.safetensors"))
    meta["sizes"] = OrderedDict(dino=dcfg.to_dict(), dino_stored_img=Z["dino_stored_img"],
                                siglip=scfg.to_dict(), projector=list(dims), vq=vcfg.to_dict(), vq_grid=g)
    with open(os.path.join(out, "ref_meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    write_pipeline(out, wdir, Z)
    write_stage_runs(out, wdir, Z)
    log("wrote %s (ref.safetensors, ref_meta.json, pipeline.yaml, stage_runs.sh, weights/)" % out)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_pipeline(out, wdir, Z):
    S = Z["dino"].img
    y = """# Generated by tests/fullsize/make_reference.py: image -> both towers -> projector, CPU f32.
omni: 1
name: fullsize-vision
device: cpu
dtype: f32

stages:
  loader:
    type: image_load
  dino_pre:
    type: image_preprocess
    params: {size: %(S)d, preset: imagenet}
  siglip_pre:
    type: image_preprocess
    params: {size: %(S)d, preset: inception}
  dino:
    type: vit
    weights: %(w)s/dino.safetensors
    params: %(dp)s
  siglip:
    type: vit
    weights: %(w)s/siglip.pth
    prefix: visual.trunk.
    params: %(sp)s
  projector:
    type: projector
    weights: %(w)s/projector.safetensors
    prefix: projector.

inputs:
  image: loader.path

edges:
  - loader.image -> dino_pre.image
  - loader.image -> siglip_pre.image
  - dino_pre.pixels -> dino.pixels
  - siglip_pre.pixels -> siglip.pixels
  - dino.features -> projector.x0
  - siglip.features -> projector.x1

outputs:
  embeds: projector.embeds
""" % dict(S=S, w=wdir, dp=Z["dino_params"], sp=Z["siglip_params"])
    with open(os.path.join(out, "pipeline.yaml"), "w") as f:
        f.write(y)


def write_stage_runs(out, wdir, Z):
    q = shlex.quote
    ref = os.path.join(out, "ref.safetensors")
    jobs = [
        ("vit", Z["dino_params"], "dino.safetensors", "", "omni_stage_dino.safetensors",
         ["pixels=dino_pixels"], ["features=dino.features"]),
        ("vit", Z["siglip_params"], "siglip.pth", "visual.trunk.", "omni_stage_siglip.safetensors",
         ["pixels=siglip_pixels"], ["features=siglip.features"]),
        ("projector", "", "projector.safetensors", "projector.", "omni_stage_projector.safetensors",
         ["x0=dino_features_f32", "x1=siglip_features_f32"], ["embeds=projector.embeds"]),
        ("vq", "{grid: %d}" % Z["vq_grid"], "vq.pt", "model.", "omni_stage_vq.safetensors",
         ["codes=codes"], ["image=vq.image"]),
    ]
    lines = ["# Generated by tests/fullsize/make_reference.py; sourced by tests/fullsize/run.sh",
             "# (STAGE_RUN: the tests/fullsize/stage_run.c binary). Each stage alone on the",
             "# reference's own inputs."]
    for typ, params, wf, prefix, of, ins, outs in jobs:
        lines.append('"$STAGE_RUN" %s %s %s %s %s %s %s -- %s' % (
            typ, q(params), q(os.path.join(wdir, wf)), q(prefix), q(ref), q(os.path.join(out, of)),
            " ".join(q(x) for x in ins), " ".join(q(x) for x in outs)))
    with open(os.path.join(out, "stage_runs.sh"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
