#!/usr/bin/env python3
"""OpenVINO runtime latency on the same inputs as benches/engine.rs, and the combined table.

Run with the peers venv (openvino installed; scripts/bench_engine.sh picks it), e.g.
    .peers/venv/bin/python scripts/bench_engine.py [--runs 30] [--engine ENGINE.jsonl ...]

For each fixture (mobilenet_v2, ppocr_cls, minilm_l6 under ../shared/fixtures or
$OVPOT_FIXTURES; missing ones are skipped) it compiles model.xml on CPU with
INFERENCE_PRECISION_HINT=f32 (this CPU would otherwise run "FP32" in bf16), once with
INFERENCE_NUM_THREADS=1 and once with 2, runs sample 0 of ref/in (batch 1) and prints the median
of --runs synchronous inferences. With --engine files (JSON lines written by
`cargo bench --bench engine -- --json`, labelled by --engine-label), it prints one table with
ovpot's medians next to OpenVINO's and the ratio ovpot / OpenVINO.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

DEFAULT = ["mobilenet_v2", "ppocr_cls", "minilm_l6"]


def fixtures_root():
    env = os.environ.get("OVPOT_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"


def first_sample(d):
    import numpy as np

    inputs = {}
    for p in sorted((d / "ref" / "in").glob("*.npy")):
        inputs[p.stem] = np.ascontiguousarray(np.load(p)[0:1])
    return inputs


def bench_openvino(d, threads, runs):
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    model = core.read_model(str(d / "model.xml"))
    compiled = core.compile_model(model, "CPU", config)
    req = compiled.create_infer_request()
    inputs = first_sample(d)
    feed = {}
    for port in compiled.inputs:
        names = port.get_names()
        match = next((n for n in inputs if n in names), None)
        if match is None:
            raise SystemExit(f"{d.name}: no ref/in file for input {sorted(names)}")
        feed[port] = inputs[match]
    for _ in range(3):
        req.infer(feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        req.infer(feed)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def read_engine(paths, labels):
    """{label: {fixture: median_ms}} from JSON-lines files of the Rust bench."""
    out = {}
    for i, p in enumerate(paths):
        label = labels[i] if i < len(labels) else f"ovpot#{i}"
        rows = {}
        for line in Path(p).read_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[r["fixture"]] = r["median_ms"]
        out[label] = rows
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixtures", nargs="*", default=DEFAULT)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--engine", action="append", default=[], help="JSON lines of cargo bench --bench engine -- --json")
    ap.add_argument("--engine-label", action="append", default=[])
    args = ap.parse_args()

    root = fixtures_root()
    engine = read_engine(args.engine, args.engine_label)
    ov_cols = [("OV 1 thr", 1), ("OV 2 thr", 2)]
    rows = []
    for name in args.fixtures:
        d = root / name
        if not (d / "model.xml").exists():
            print(f"{name}: not found under {root}; skipped", file=sys.stderr)
            continue
        ov_ms = {label: bench_openvino(d, thr, args.runs) for label, thr in ov_cols}
        rows.append((name, ov_ms))

    heads = [label for label, _ in ov_cols] + list(engine)
    # Like against like (1 thread vs 1 thread, 2 vs 2) when both ovpot runs are given.
    if len(engine) == len(ov_cols):
        pairs = [(e, o) for e, (o, _) in zip(engine, ov_cols)]
    else:
        pairs = [(e, o) for e in engine for o, _ in ov_cols]
    ratio_heads = [f"{e} / {o}" for e, o in pairs]
    print(f"median ms of {args.runs} single-sample runs (batch 1, sample 0 of ref/in, OpenVINO f32)")
    widths = [max(len(h) + 2, 12) for h in heads + ratio_heads]
    print(f"{'fixture':<14}" + "".join(f"{h:>{w}}" for h, w in zip(heads + ratio_heads, widths)))
    for name, ov_ms in rows:
        cells = [ov_ms[label] for label, _ in ov_cols] + [engine[e].get(name, float("nan")) for e in engine]
        ratios = [engine[e].get(name, float("nan")) / ov_ms[o] for e, o in pairs]
        texts = [f"{c:.3f}" for c in cells] + [f"{r:.2f}x" for r in ratios]
        print(f"{name:<14}" + "".join(f"{t:>{w}}" for t, w in zip(texts, widths)))


if __name__ == "__main__":
    main()
