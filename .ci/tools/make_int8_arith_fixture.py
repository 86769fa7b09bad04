#!/usr/bin/env python3
"""Builds tests/data/int8_arith: a small int8 IR whose convolutions and MatMul saturate 16-bit pair
sums on a CPU without VNNI, with OpenVINO's outputs on both kinds of CPU.

    ONEDNN_MAX_CPU_ISA is set per child process; run on a VNNI machine with the peers venv:
    .peers/venv/bin/python .ci/tools/make_int8_arith_fixture.py [OUT_DIR]

The model (inputs x [1,16,9,9] and z [1,64]):
  y0 = Conv3x3(FQ_signed(x), w0, pad 1)           signed activations (+128 shift on no-VNNI CPUs)
  y1 = Conv3x3(FQ_unsigned(x), w1, stride 2, pad 1)
  y2 = GroupConv(2 groups of 8)(FQ_unsigned(x), w2)
  y3 = MatMul(FQ_unsigned(z), w3ᵀ)
with i8 weights (Const i8 → Convert → Multiply(scale)) drawn large and of one sign per output
channel, so many pairs saturate. Writes model.xml/.bin, x.npy and z.npy (4 samples each) and
out{k}_avx2.npy / out{k}_vnni.npy: OpenVINO 2026.4's CPU plugin with INFERENCE_PRECISION_HINT=f32,
under ONEDNN_MAX_CPU_ISA=AVX2 and without it (the machine must have VNNI for the second).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def build(out):
    import openvino as ov
    import openvino.opset13 as o

    rng = np.random.default_rng(14)

    def fq(t, lo, hi):
        c = [np.float32(lo), np.float32(hi)]
        return o.fake_quantize(t, c[0], c[1], c[0], c[1], 256)

    def weights(shape, oc_axis_shape):
        w = np.abs(rng.integers(-127, 128, shape)) * np.where(rng.random(oc_axis_shape) < 0.5, 1, -1)
        scale = rng.uniform(0.002, 0.01, oc_axis_shape).astype(np.float32)
        return o.multiply(o.convert(o.constant(w.astype(np.int8)), np.float32), o.constant(scale))

    x = o.parameter([1, 16, 9, 9], np.float32, name="x")
    z = o.parameter([1, 64], np.float32, name="z")
    xs = fq(x, -1.27 * 256 / 254, 1.27)
    xu = fq(x, 0.0, 2.0)
    y0 = o.convolution(xs, weights([8, 16, 3, 3], [8, 1, 1, 1]), [1, 1], [1, 1], [1, 1], [1, 1])
    y1 = o.convolution(xu, weights([8, 16, 3, 3], [8, 1, 1, 1]), [2, 2], [1, 1], [1, 1], [1, 1])
    y2 = o.group_convolution(xu, weights([2, 4, 8, 3, 3], [2, 4, 1, 1, 1]), [1, 1], [0, 0], [0, 0], [1, 1])
    y3 = o.matmul(fq(z, 0.0, 3.0), weights([16, 64], [16, 1]), False, True)
    model = ov.Model([y0, y1, y2, y3], [x, z], "int8_arith")
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
    (out / "in").mkdir(exist_ok=True)
    np.save(out / "in" / "x.npy", rng.uniform(-1.3, 2.1, (4, 16, 9, 9)).astype(np.float32))
    np.save(out / "in" / "z.npy", rng.uniform(0.0, 3.2, (4, 64)).astype(np.float32))


def record(out, tag):
    import openvino as ov

    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    c = core.compile_model(str(out / "model.xml"), "CPU")
    x, z = np.load(out / "in" / "x.npy"), np.load(out / "in" / "z.npy")
    res = [c({"x": x[i : i + 1], "z": z[i : i + 1]}) for i in range(len(x))]
    for k in range(len(c.outputs)):
        np.save(out / f"out{k}_{tag}.npy", np.concatenate([r[k] for r in res]))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--record":
        record(Path(sys.argv[2]), sys.argv[3])
        return
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "int8_arith"
    build(out)
    for tag, isa in (("avx2", "AVX2"), ("vnni", None)):
        env = dict(os.environ)
        env.pop("ONEDNN_MAX_CPU_ISA", None)
        if isa:
            env["ONEDNN_MAX_CPU_ISA"] = isa
        subprocess.run([sys.executable, __file__, "--record", str(out), tag], check=True, env=env)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
