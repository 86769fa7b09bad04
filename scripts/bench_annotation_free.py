#!/usr/bin/env python3
"""Annotation-free accuracy control judged by OpenVINO (issue 19): `ovpot quantize --annotation-free
--max-drop D` on a fixture's evaluation set (no labels used), then, in the OpenVINO CPU plugin
(INFERENCE_PRECISION_HINT=f32): top-1 agreement of the INT8 IR with FP32 on the samples the FP32
model is confident about (POT's rule: softmax unless the scores are already in [0, 1], top score
above the threshold) and on all samples, beside ovpot's default INT8 and NNCF's INT8.

    cargo build --release --bin ovpot
    .peers/venv/bin/python scripts/bench_annotation_free.py [--fixture mobilenet_v2] [--max-drop 0.01]
"""
import argparse
import glob
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov

ROOT = Path(__file__).resolve().parent.parent


def outputs(core, xml, samples):
    c = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    req = c.create_infer_request()
    return [np.asarray(req.infer(s)[c.outputs[0]]).ravel() for s in samples]


def confident(scores, threshold):
    keep, labels = [], []
    for i, v in enumerate(scores):
        v = v.astype(np.float64)
        top = 1.0 / np.exp(v - v.max()).sum() if (v.max() > 1 or v.min() < 0) else v.max()
        if top > threshold:
            keep.append(i)
            labels.append(int(np.argmax(v)))
    return keep, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.environ.get("OVPOT_FIXTURES", str(ROOT.parent / "shared/fixtures")))
    ap.add_argument("--fixture", default="mobilenet_v2")
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--ovpot", default=str(ROOT / "target/release/ovpot"))
    a = ap.parse_args()
    fx = Path(a.fixtures) / a.fixture
    tmp = Path(tempfile.mkdtemp(prefix="annotation_free_"))
    env = dict(os.environ, INFERENCE_PRECISION_HINT="f32")
    base = [a.ovpot, "quantize", "-m", str(fx / "model.xml"), "--data", str(fx / "calib"), "-q"]
    subprocess.run(base[:-1] + ["-o", str(tmp / "default")], check=True, env=env, capture_output=True)
    subprocess.run(
        base[:-1] + ["--eval-data", str(fx / "eval"), "--annotation-free", "--max-drop", str(a.max_drop),
                     "--annotation-conf-threshold", str(a.threshold), "-o", str(tmp / "af")],
        check=True, env=env, capture_output=True,
    )
    core = ov.Core()
    model = core.read_model(str(fx / "model.xml"))
    files = {Path(f).stem: np.load(f) for f in glob.glob(str(fx / "eval" / "*.npy"))}
    n = len(next(iter(files.values())))
    names = [p.get_any_name() for p in model.inputs]
    samples = [{k: files[k][i:i + 1] for k in names} for i in range(n)]
    fp = outputs(core, fx / "model.xml", samples)
    keep, labels = confident(fp, a.threshold)
    fp_top = [int(np.argmax(v)) for v in fp]
    isa = "vnni" if any(f in open("/proc/cpuinfo").read() for f in ("avx512_vnni", "avx_vnni", "amx_int8")) else "no-vnni"
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("AVX2", "AVX", "SSE41", "AVX512_CORE"):
        isa = "no-vnni (ONEDNN_MAX_CPU_ISA)"
    print(f"openvino {ov.get_version()}  cpu int8 {isa}  fixture {a.fixture}  eval {n}  confident (> {a.threshold}) {len(keep)}")
    print(f"| model | agreement on the {len(keep)} confident samples | drop | agreement on all {n} |")
    print("|---|---|---|---|")
    for label, xml in [("ovpot --annotation-free --max-drop %g" % a.max_drop, tmp / "af/optimized/model.xml"),
                       ("ovpot default INT8", tmp / "default/optimized/model.xml"),
                       ("NNCF 3.4 INT8", fx / "nncf_int8.xml")]:
        out = outputs(core, xml, samples)
        top = [int(np.argmax(v)) for v in out]
        on_conf = np.mean([top[i] == l for i, l in zip(keep, labels)])
        on_all = np.mean([t == f for t, f in zip(top, fp_top)])
        print(f"| {label} | {on_conf:.4f} | {1 - on_conf:.4f} | {on_all:.4f} |")


if __name__ == "__main__":
    main()
