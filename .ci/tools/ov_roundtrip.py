#!/usr/bin/env python3
"""IR round trip through ovpot, judged by the real OpenVINO runtime.

For every fixture and both of its IRs (model.xml: FP32, nncf_int8.xml: NNCF's INT8), rewrite the IR
with `ovpot convert`, load the original and the rewrite in OpenVINO (CPU,
INFERENCE_PRECISION_HINT=f32), run both on ref/in and require bit-identical outputs. Prints a
table; exits non-zero when any pair differs or fails to load.

usage: ov_roundtrip.py [--ovpot target/debug/ovpot] [--fixtures ../shared/fixtures] [--only NAME...]
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov

ROOT = Path(__file__).resolve().parents[2]


def inputs_of(fixture: Path):
    d = fixture / "ref" / "in"
    return {p.stem: np.load(p) for p in sorted(d.glob("*.npy"))}


def run(compiled, inputs, n):
    """Runs sample by sample (batch 1, as the fixtures are meant); outputs stacked on axis 0."""
    req = compiled.create_infer_request()
    outs = [[] for _ in compiled.outputs]
    for i in range(n):
        feed = {}
        for port in compiled.inputs:
            names = port.get_names()
            key = next((k for k in inputs if k in names), None)
            if key is None:
                raise RuntimeError(f"no ref/in data for input {sorted(names)}")
            feed[port] = inputs[key][i : i + 1]
        res = req.infer(feed)
        for k, port in enumerate(compiled.outputs):
            outs[k].append(np.array(res[port]))
    return [np.concatenate(o, axis=0) for o in outs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ovpot", default=str(ROOT / "target/debug/ovpot"))
    ap.add_argument("--fixtures", default=str(ROOT.parent / "shared/fixtures"))
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()

    fixtures = sorted(p for p in Path(args.fixtures).iterdir() if (p / "model.xml").exists())
    if args.only:
        fixtures = [p for p in fixtures if p.name in args.only]
    if not fixtures:
        sys.exit(f"no fixtures under {args.fixtures}")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    rows, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for fx in fixtures:
            inputs = inputs_of(fx)
            n = min(len(v) for v in inputs.values())
            for ir in ["model.xml", "nncf_int8.xml"]:
                src = fx / ir
                if not src.exists():
                    continue
                dst = Path(tmp) / fx.name / ir
                status, detail, ops = "ok", "", ""
                try:
                    subprocess.run(
                        [args.ovpot, "--quiet", "convert", "-m", str(src), "-o", str(dst)],
                        check=True, capture_output=True, text=True,
                    )
                    m_a, m_b = core.read_model(src), core.read_model(dst)
                    ops = f"{len(m_a.get_ops())}/{len(m_b.get_ops())}"
                    a = run(core.compile_model(m_a, "CPU", config), inputs, n)
                    b = run(core.compile_model(m_b, "CPU", config), inputs, n)
                    if len(a) != len(b):
                        status, detail = "DIFF", f"{len(a)} vs {len(b)} outputs"
                    else:
                        diffs = []
                        for k, (x, y) in enumerate(zip(a, b)):
                            if x.dtype != y.dtype or x.shape != y.shape:
                                diffs.append(f"out{k}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
                            elif x.tobytes() != y.tobytes():
                                d = np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))
                                diffs.append(f"out{k}: max|diff| {d:.3g}")
                        if diffs:
                            status, detail = "DIFF", "; ".join(diffs)
                        else:
                            detail = ", ".join(f"{x.dtype}{list(x.shape)}" for x in a)
                except subprocess.CalledProcessError as e:
                    status, detail = "FAIL", (e.stderr or e.stdout).strip().splitlines()[-1][:120]
                except Exception as e:  # noqa: BLE001 - one line per failing case is the point
                    status, detail = "FAIL", str(e).strip().splitlines()[0][:120]
                failed += status != "ok"
                rows.append((fx.name, ir, ops, status, detail))

    print(f"openvino {ov.__version__}, CPU, INFERENCE_PRECISION_HINT=f32; ref/in samples run one by one")
    widths = [max(len(str(r[i])) for r in rows + [("fixture", "ir", "ops a/b", "bits", "")]) for i in range(4)]
    head = ("fixture", "ir", "ops a/b", "bits", "outputs / difference")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths + [0])).rstrip())
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths + [0])).rstrip())
    print(f"{len(rows) - failed}/{len(rows)} bit-identical")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
