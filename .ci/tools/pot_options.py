#!/usr/bin/env python3
"""POT's quantization options side by side in the real runtime (issue 19): each POT config variant
below quantized by `ovpot quantize -c`, judged by ../shared/tools/ovcheck.py (OpenVINO CPU plugin,
INFERENCE_PRECISION_HINT=f32) beside FP32 and NNCF's default INT8.

Run with the peers venv after `cargo build --release --bin ovpot`:
    .peers/venv/bin/python .ci/tools/pot_options.py [--fixtures DIR] [FIXTURE...]   # default: ppocr_cls mobilenet_v2

Printed per fixture and variant: accuracy (where labels exist), agreement with FP32, SQNR of the
output, the layers OpenVINO runs in int8 of the heavy ones, and what ovpot logged as warnings.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

VARIANTS = [
    ("default (performance)", {}),
    ("preset accuracy", {"preset": "accuracy"}),
    ("preset mixed", {"preset": "mixed"}),
    ("weights asymmetric", {"weights": {"mode": "asymmetric"}}),
    ("weights pertensor", {"weights": {"granularity": "pertensor"}}),
    ("weights abs_quantile 1e-4", {"weights": {"range_estimator": {"max": {"type": "abs_quantile", "outlier_prob": 1e-4}}}}),
    ("weights bits 7", {"weights": {"bits": 7}}),
    ("weights bits 4", {"weights": {"bits": 4}}),
    ("weights levels -128..127", {"weights": {"level_low": -128, "level_high": 127}}),
    ("activations quantile preset", {"activations": {"range_estimator": {"preset": "quantile"}}}),
    ("activations clipping_value 4", {"activations": {"range_estimator": {"max": {"clipping_value": 4.0}}}}),
]


def pot_config(fixture, params):
    return {
        "model": {"model_name": "model", "model": str(fixture / "model.xml"), "weights": str(fixture / "model.bin")},
        "engine": {"type": "simplified", "data_source": str(fixture / "calib")},
        "compression": {"target_device": "CPU", "algorithms": [{"name": "DefaultQuantization", "params": params}]},
    }


def ovcheck(fixture, xml, env):
    r = subprocess.run(
        [sys.executable, str(ROOT.parent / "shared/tools/ovcheck.py"), str(fixture), str(xml)],
        capture_output=True, text=True, env=env,
    )
    head, rows = "", {}
    for line in r.stdout.splitlines():
        if line.startswith("openvino "):
            head = line
        parts = line.split()
        if parts and parts[0] in ("fp32", "candidate", "nncf"):
            rows[parts[0]] = parts[1:]
    return head, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures_list", nargs="*", default=["ppocr_cls", "mobilenet_v2"])
    ap.add_argument("--fixtures", default=os.environ.get("OVPOT_FIXTURES", str(ROOT.parent / "shared/fixtures")))
    ap.add_argument("--ovpot", default=str(ROOT / "target/release/ovpot"))
    a = ap.parse_args()
    env = dict(os.environ, INFERENCE_PRECISION_HINT="f32")
    tmp = Path(tempfile.mkdtemp(prefix="pot_options_"))
    for name in a.fixtures_list:
        fx = Path(a.fixtures) / name
        print(f"\n### {name}\n")
        print("| variant | accuracy | agreement | SQNR dB | int8 / heavy layers | ovpot's warnings |")
        print("|---|---|---|---|---|---|")
        shown_nncf, head = False, ""
        for label, params in VARIANTS:
            cfg = tmp / f"{name}_{re.sub('[^a-z0-9]+', '_', label)}.json"
            cfg.write_text(json.dumps(pot_config(fx, params)))
            out = cfg.with_suffix("")
            r = subprocess.run(
                [a.ovpot, "quantize", "-c", str(cfg), "--data", str(fx / "calib"), "-o", str(out)], capture_output=True, text=True, env=env,
            )
            if r.returncode != 0:
                print(f"| {label} | refused: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode} | | | | |")
                continue
            warnings = [l[len("[warning] "):] for l in r.stderr.splitlines() if l.startswith("[warning] ")]
            head, rows = ovcheck(fx, out / "optimized" / "model.xml", env)
            if not shown_nncf and "nncf" in rows:
                n = rows["nncf"]
                print(f"| NNCF 3.4 default | {n[0]} | {n[1]} | {n[2]} | {n[3]} / {n[4]} | |")
                f = rows["fp32"]
                print(f"| FP32 | {f[0]} | | | | |")
                shown_nncf = True
            c = rows.get("candidate")
            if not c:
                print(f"| {label} | ovcheck failed | | | | |")
                continue
            print(f"| {label} | {c[0]} | {c[1]} | {c[2]} | {c[3]} / {c[4]} | {'; '.join(warnings)[:160]} |")
        print(f"\n{head}")


if __name__ == "__main__":
    main()
