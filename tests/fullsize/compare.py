#!/usr/bin/env python3
"""Compare omni's outputs with the float64 PyTorch reference (tests/fullsize).

    python3 tests/fullsize/compare.py OUTDIR

Reads OUTDIR/ref.safetensors + ref_meta.json (make_reference.py), OUTDIR/omni_dump.safetensors
(`omni run pipeline.yaml --dump`), OUTDIR/omni_stage_{dino,siglip,projector,vq}.safetensors
(stage_run.c) and OUTDIR/omni_log.txt; prints a Markdown table and writes
OUTDIR/fullsize-parity.md. Exit status 1 when any checked row misses its tolerance.

Metrics (float64): max-abs = max|omni - ref|; max|ref|; rel = max-abs / max|ref|;
rel-RMS = ||omni - ref||_2 / ||ref||_2. "exact" rows need max-abs = 0; "rel" rows need
rel <= tol; "info" rows (PyTorch's own fp32 run, omniref vs timm) are context, not checked.
"""
import datetime
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from omniref import st  # noqa: E402

# Tolerances on max-abs / max|ref| for fp32 stages, set from a full-size measurement
# (tests/fullsize/results/): omni 3.7e-7 (projector) .. 2.3e-6 (VQ), PyTorch's own fp32
# 1.4e-6 .. 2.8e-6 against the same float64 reference. 2e-5 is ~10x omni's worst and ~7x
# PyTorch's, yet catches e.g. a LayerNorm eps of 1e-5 instead of 1e-6 (1e-5 .. 2.4e-5 at --small).
TOL = {
    "dino": 2e-5,
    "siglip": 2e-5,
    "projector": 2e-5,
    "vq": 2e-5,
}


def load(path):
    if not os.path.exists(path):
        return None
    return st.load(path)[0]


def metrics(o, r):
    o = np.asarray(o, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    d = o - r
    mx = float(np.abs(d).max()) if d.size else 0.0
    mr = float(np.abs(r).max()) if r.size else 0.0
    rms_r = float(np.sqrt((r * r).mean())) if r.size else 0.0
    return dict(maxabs=mx, maxref=mr, rel=mx / mr if mr else float("inf") if mx else 0.0,
                relrms=float(np.sqrt((d * d).mean())) / rms_r if rms_r else 0.0)


def to_u8(img):
    """OmniMamba's image conversion in fp32: floor(255 * (clamp(v, -1, 1) + 1) / 2), CHW -> HWC."""
    v = np.clip(np.asarray(img, dtype=np.float32), np.float32(-1), np.float32(1))
    v = (v + np.float32(1)) / np.float32(2)
    return np.floor(v * np.float32(255)).astype(np.uint8)


def fmt(x):
    if x == 0:
        return "0"
    return "%.3g" % x


def main():
    if len(sys.argv) != 2:
        print("usage: compare.py OUTDIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    ref = load(os.path.join(out, "ref.safetensors"))
    if ref is None:
        print("compare: no %s/ref.safetensors (run make_reference.py first)" % out, file=sys.stderr)
        return 2
    with open(os.path.join(out, "ref_meta.json")) as f:
        meta = json.load(f)
    dump = load(os.path.join(out, "omni_dump.safetensors"))
    stage = {k: load(os.path.join(out, "omni_stage_%s.safetensors" % k))
             for k in ("dino", "siglip", "projector", "vq")}
    dev32 = meta.get("torch32_device", "?")

    rows = []          # (stage, path, shape, metrics or None, rule, tol, status, note)
    failed = []

    def row(name, path, o, r, rule, tol=None, note=""):
        if o is None:
            rows.append((name, path, "-", None, rule, tol, "MISSING", note))
            if rule != "info":
                failed.append(name + " / " + path)
            return
        o = np.asarray(o)
        r = np.asarray(r)
        if o.size != r.size:
            rows.append((name, path, "%s vs %s" % (list(o.shape), list(r.shape)), None, rule, tol,
                         "SHAPE", note))
            failed.append(name + " / " + path)
            return
        m = metrics(o.reshape(r.shape), r)
        if rule == "exact":
            ok = m["maxabs"] == 0.0
        elif rule == "rel":
            ok = m["rel"] <= tol
        elif rule == "pm1":       # u8 pixels: off by at most one level
            ok = m["maxabs"] <= 1.0
        else:
            ok = None
        status = "info" if ok is None else ("pass" if ok else "FAIL")
        if ok is False:
            failed.append(name + " / " + path)
        rows.append((name, path, "x".join(str(s) for s in r.shape), m, rule, tol, status, note))

    def get(d, k):
        return None if d is None or k not in d else d[k]

    # pipeline input side
    row("image decode (u8)", "pipeline", get(dump, "loader.image"), ref["image_u8"], "exact",
        note="omni image_load vs PIL decode")
    row("DINO preprocess", "pipeline", get(dump, "dino_pre.pixels"), ref["dino_pixels"], "exact",
        note="bicubic squash + ToTensor + Normalize(imagenet)")
    row("SigLIP preprocess", "pipeline", get(dump, "siglip_pre.pixels"), ref["siglip_pixels"], "exact",
        note="inception mean/std")
    # each stage alone on the reference's input
    row("DINOv2 features", "stage", get(stage["dino"], "dino.features"), ref["dino_features"], "rel",
        TOL["dino"], "block %d, prefix dropped; pos_embed resampled at load" % meta["sizes"]["dino"]["feature_block"])
    row("SigLIP features", "stage", get(stage["siglip"], "siglip.features"), ref["siglip_features"], "rel",
        TOL["siglip"], "block %d; OpenCLIP .pth" % meta["sizes"]["siglip"]["feature_block"])
    row("projector", "stage", get(stage["projector"], "projector.embeds"), ref["projector_out_f32in"], "rel",
        TOL["projector"], "on the fp32-rounded reference features")
    vq = get(stage["vq"], "vq.image")
    row("VQ decoder", "stage", vq, ref["vq_image"], "rel", TOL["vq"], "%d codes, raw output" % ref["codes"].size)
    row("VQ pixels (u8)", "stage", None if vq is None else to_u8(vq), to_u8(ref["vq_image"]), "pm1",
        note="clamp/scale/floor of both; +-1 allowed")
    # whole pipeline (omni's own preprocessing; error accumulates)
    row("DINOv2 features", "pipeline", get(dump, "dino.features"), ref["dino_features"], "rel", TOL["dino"])
    row("SigLIP features", "pipeline", get(dump, "siglip.features"), ref["siglip_features"], "rel",
        TOL["siglip"])
    row("projector (image -> embeds)", "pipeline", get(dump, "projector.embeds"), ref["projector_out"], "rel",
        TOL["projector"], "end to end")
    # context: PyTorch's own fp32 and the two references against each other
    row("DINOv2 features", "torch f32", ref["torch32.dino_features"], ref["dino_features"], "info",
        note=dev32 + ", TF32 off")
    row("SigLIP features", "torch f32", ref["torch32.siglip_features"], ref["siglip_features"], "info",
        note=dev32 + ", TF32 off")
    row("projector", "torch f32", ref["torch32.projector_out_f32in"], ref["projector_out_f32in"], "info",
        note=dev32 + ", TF32 off")
    row("VQ decoder", "torch f32", ref["torch32.vq_image"], ref["vq_image"], "info", note=dev32 + ", TF32 off")
    if "omniref.dino_features" in ref:
        row("DINOv2 features", "omniref f64", ref["omniref.dino_features"], ref["dino_features"], "info",
            note="independent reference vs timm")
        row("SigLIP features", "omniref f64", ref["omniref.siglip_features"], ref["siglip_features"], "info",
            note="independent reference vs timm")

    lines = []
    lines.append("| stage | path | shape | max-abs | max\\|ref\\| | max-abs / max\\|ref\\| | rel-RMS | tolerance | result |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, path, shape, m, rule, tol, status, note in rows:
        t = {"exact": "bit-exact", "pm1": "max-abs <= 1", "info": "-"}.get(rule, "rel <= %g" % (tol or 0))
        if m is None:
            cells = ["-"] * 4
        else:
            cells = [fmt(m["maxabs"]), fmt(m["maxref"]), fmt(m["rel"]), fmt(m["relrms"])]
        lines.append("| %s | %s | %s | %s | %s | %s |" % (name + (" (%s)" % note if note else ""), path, shape,
                                                           " | ".join(cells), t, status))
    table = "\n".join(lines)
    print(table)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    S = meta["sizes"]
    md = []
    md.append("# Full-size parity: vision towers, projector, VQ decoder (%s)\n" % ("SMALL sizes" if meta["small"]
                                                                                  else "real sizes"))
    md.append("Generated by `tests/fullsize/run.sh` on %s.\n" % now)
    md.append("- Host CPU: %s (%s); omni ran on the CPU, f32, OMNI_THREADS=%s" % (
        meta.get("cpu"), platform.machine(), os.environ.get("OMNI_THREADS", "?")))
    md.append("- PyTorch fp32 baseline device: %s (TF32 off: `allow_tf32 = False` for matmul and cuDNN)" % dev32)
    md.append("- Reference: %s; towers: %s; projector and VQ: omniref (float64, CPU)" % (
        meta["reference"], meta["towers_reference"]))
    md.append("- torch %s, timm %s, numpy %s, pillow %s" % (meta["torch"], meta["timm"], meta["numpy"],
                                                          meta.get("pil")))
    md.append("- omni commit: %s" % os.environ.get("OMNI_COMMIT", git_head()))
    md.append("- Sizes: DINO dim %d depth %d (features of block %d, pos_embed stored for %d px, used at %d px); "
              "SigLIP dim %d depth %d (block %d); projector %s; VQ ch %d ch_mult %s z %d, %d res blocks per "
              "decoder level, codebook %dx%d, %dx%d codes" % (
                  S["dino"]["dim"], S["dino"]["depth"], S["dino"]["feature_block"], S["dino_stored_img"],
                  S["dino"]["img"], S["siglip"]["dim"], S["siglip"]["depth"], S["siglip"]["feature_block"],
                  "->".join(str(x) for x in S["projector"]), S["vq"]["ch"], S["vq"]["ch_mult"],
                  S["vq"]["z_channels"], S["vq"]["decoder_res_blocks"], S["vq"]["codebook_size"],
                  S["vq"]["codebook_embed_dim"], S["vq_grid"], S["vq_grid"]))
    md.append("- Input: tests/fullsize/dog_bicycle.jpg; weights random (make_reference.py, fixed seeds); "
              "reference activations: DINO std %.3g max %.3g, SigLIP std %.3g max %.3g, projector std %.3g, "
              "VQ image std %.3g (%.1f %% outside [-1, 1])\n" % (
                  meta["dino_features_stats"]["std"], meta["dino_features_stats"]["max_abs"],
                  meta["siglip_features_stats"]["std"], meta["siglip_features_stats"]["max_abs"],
                  meta["projector_out_stats"]["std"], meta["vq_image_stats"]["std"],
                  100 * meta["vq_image_frac_outside_pm1"]))
    md.append("Paths: *stage* = the omni stage alone (tests/fullsize/stage_run.c) on the reference's own input; "
              "*pipeline* = `omni run` from the JPEG (omni's decode and preprocessing); *torch f32* = PyTorch "
              "itself in fp32 against the float64 reference (context, not checked).\n")
    md.append(table + "\n")
    md.append("Result: %s\n" % ("PASS" if not failed else "FAIL: " + ", ".join(failed)))
    md.append("Reference timings (s): %s\n" % ", ".join("%s %s" % kv for kv in meta["timing_s"].items()))
    logp = os.path.join(out, "omni_log.txt")
    if os.path.exists(logp):
        with open(logp) as f:
            tl = [ln.rstrip() for ln in f if ln.startswith("stage_run ") or ln.startswith("pipeline wall")]
        if tl:
            md.append("omni timings:\n\n```\n" + "\n".join(tl) + "\n```\n")
    with open(os.path.join(out, "fullsize-parity.md"), "w") as f:
        f.write("\n".join(md))
    print("\ncompare: %s; wrote %s" % ("PASS" if not failed else "FAIL (" + ", ".join(failed) + ")",
                                       os.path.join(out, "fullsize-parity.md")))
    return 1 if failed else 0


def git_head():
    try:
        import subprocess
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except Exception:  # noqa: BLE001
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
