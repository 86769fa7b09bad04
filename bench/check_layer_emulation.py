#!/usr/bin/env python3
"""Layer by layer: does ovpot's engine compute each int8 layer of a quantized IR as OpenVINO does?

Run with the peers venv after `cargo build --release --bin ovpot`:
    .peers/venv/bin/python bench/check_layer_emulation.py INT8.xml REPORT.json DATA_DIR \\
        [--samples 20] [--isa avx2|vnni] [--layers NAME,...]

INT8.xml and REPORT.json come from `ovpot quantize`; DATA_DIR holds `<input>.npy` per model input,
samples on axis 0 (the fixtures' calib/ folders). The layers checked: those the report's
`int8_arithmetic` lists (`measured`, i.e. every layer whose 8-bit weights can saturate), or
`--layers`. For each, the activations that reach its FakeQuantize are captured in OpenVINO from
the whole model, and the layer alone (FakeQuantize, int8 weights, convolution or MatMul) is run by
OpenVINO and by `ovpot infer --as-openvino-cpu` with the target's arithmetic (`sat` for avx2) and
with exact sums (`exact`) on those same activations. Printed per layer: the largest difference
relative to the output's range and the share of outputs off by more than 1e-4 of it.

With `--isa avx2` OpenVINO runs under ONEDNN_MAX_CPU_ISA=AVX2 (a CPU without VNNI). Isolating the
layers matters: in the whole model one-code ties (float order) snowball from layer to layer, so
whole-model outputs cannot tell an emulation error from a tie.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ir")
    ap.add_argument("report")
    ap.add_argument("data")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--isa", choices=["avx2", "vnni"], default="avx2")
    ap.add_argument("--layers", default="", help="comma-separated layer names (default: the report's)")
    ap.add_argument("--ovpot", default=str(ROOT / "target/release/ovpot"))
    args = ap.parse_args()
    if args.isa == "avx2" and os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        os.execv(sys.executable, [sys.executable] + sys.argv)

    import numpy as np
    import openvino as ov

    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}
    if args.layers:
        layers = args.layers.split(",")
    else:
        arith = json.load(open(args.report)).get("int8_arithmetic") or {}
        layers = [m["layer"] for m in arith.get("measured", [])]
    if not layers:
        sys.exit("no layers to check: the report measured none (a VNNI target?); pass --layers")

    feeds = {Path(p).stem: np.load(p) for p in sorted(glob.glob(os.path.join(args.data, "*.npy")))}
    n = min(args.samples, min(len(v) for v in feeds.values()))

    def sample(i):
        return {k: v[i : i + 1] for k, v in feeds.items()}

    def by_name(model):
        return {o.get_friendly_name(): o for o in model.get_ops()}

    # The activations that reach each layer's FakeQuantize, from the whole INT8 model.
    model = core.read_model(args.ir)
    ops = by_name(model)
    checked = []
    for name in layers:
        op = ops.get(name)
        fq = op.input_value(0).get_node() if op is not None else None
        if fq is None or fq.get_type_name() != "FakeQuantize":
            print(f"{name}: skipped (no FakeQuantize on its activation input)")
            continue
        checked.append((name, fq.input_value(0)))
    model.add_outputs([src for _, src in checked])
    compiled = core.compile_model(model, "CPU", cfg)
    request = compiled.create_infer_request()
    captured = {name: [] for name, _ in checked}
    for i in range(n):
        res = request.infer(sample(i))
        for k, (name, _) in enumerate(checked):
            captured[name].append(res[compiled.outputs[len(compiled.outputs) - len(checked) + k]].copy())

    arith = {"sat": ["--target-isa", "avx2"], "exact": ["--target-isa", "vnni"]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, _ in checked:
            model = core.read_model(args.ir)
            op = by_name(model)[name]
            fq = op.input_value(0).get_node()
            act = ov.opset13.parameter(fq.input_value(0).get_partial_shape(), ov.Type.f32, name="act")
            fq.input(0).replace_source_output(act.output(0))
            alone = ov.Model([op.output(0)], [act], "layer")
            d = Path(tmp) / f"layer{len(os.listdir(tmp))}"
            (d / "in").mkdir(parents=True)
            ov.save_model(alone, str(d / "m.xml"), compress_to_fp16=False)
            acts = np.concatenate(captured[name])
            np.save(d / "in" / "act.npy", acts)
            c = core.compile_model(str(d / "m.xml"), "CPU", cfg)
            r = c.create_infer_request()
            theirs = np.concatenate([r.infer({0: acts[i : i + 1]})[c.outputs[0]].copy() for i in range(len(acts))])
            scale = max(float(np.abs(theirs).max()), 1e-30)
            line = [f"{name:24s} weights {list(op.input_value(1).get_partial_shape().to_shape())}"]
            for mode, isa in arith.items():
                subprocess.run(
                    [args.ovpot, "--quiet", "infer", "-m", str(d / "m.xml"), "--data", str(d / "in"),
                     "-o", str(d / mode), "--as-openvino-cpu"] + isa,
                    check=True,
                )
                ours = np.load(d / mode / "out0.npy").reshape(theirs.shape)
                err = np.abs(ours - theirs)
                line.append(f"{mode}: max {err.max() / scale:.1e}, off {np.mean(err > 1e-4 * scale):.4f}")
            print("  ".join(line), flush=True)
    print(f"OpenVINO {ov.get_version()}, ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')}, {n} samples")


if __name__ == "__main__":
    main()
