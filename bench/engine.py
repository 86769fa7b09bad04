#!/usr/bin/env python3
"""ovpot's engine vs the OpenVINO runtime, single-sample latency on the big fixtures (issue 3).

    .peers/venv/bin/python bench/engine.py [--runs 30] [FIXTURE...]       # default: mobilenet_v2 ppocr_cls minilm_l6
    .peers/venv/bin/python bench/engine.py --engine ONE.jsonl --engine TWO.jsonl   # skip cargo bench

ovpot: `cargo bench --bench engine -- --json [--runs N] [FIXTURE...]` (benches/engine.rs, sample 0
of ref/in, batch 1, warm-up, median of --runs) with 1 and with 2 threads (RAYON_NUM_THREADS and
MATMUL_NUM_THREADS); or the JSON lines of earlier such runs given by --engine (first: 1 thread,
second: 2 threads). OpenVINO: model.xml compiled on CPU with INFERENCE_PRECISION_HINT=f32 and
PERFORMANCE_HINT=LATENCY, INFERENCE_NUM_THREADS 1 and 2, the same sample, median of --runs
synchronous inferences. --ovpot is not used (cargo builds the bench). Results:
bench/results/engine.jsonl, metric latency_ms, tools ovpot and openvino, options.variant = threads.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common
import table

DEFAULT = ["mobilenet_v2", "ppocr_cls", "minilm_l6"]
THREADS = [1, 2]


def first_sample(d):
    import numpy as np

    return {p.stem: np.ascontiguousarray(np.load(p)[0:1]) for p in sorted((d / "ref" / "in").glob("*.npy"))}


def bench_openvino(d, threads, runs):
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(str(d / "model.xml"), "CPU", config)
    req = compiled.create_infer_request()
    inputs = first_sample(d)
    feed = {}
    for port in compiled.inputs:
        match = next((n for n in inputs if n in port.get_names()), None)
        if match is None:
            raise SystemExit(f"{d.name}: no ref/in file for input {sorted(port.get_names())}")
        feed[port] = inputs[match]
    for _ in range(3):
        req.infer(feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        req.infer(feed)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def cargo_engine(threads, runs, names, fixtures):
    """{fixture: median ms} of benches/engine.rs with `threads` threads."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), MATMUL_NUM_THREADS=str(threads), OVPOT_FIXTURES=fixtures)
    if subprocess.run(["cargo", "bench", "--bench", "engine", "--no-run"], cwd=common.ROOT, env=env,
                      capture_output=True).returncode != 0:
        subprocess.run(["cargo", "bench", "--bench", "engine", "--no-run"], cwd=common.ROOT, env=env, check=True)
    r = subprocess.run(["cargo", "bench", "-q", "--bench", "engine", "--", "--json", "--runs", str(runs), *names],
                       cwd=common.ROOT, env=env, capture_output=True, text=True, check=True)
    return parse_engine(r.stdout)


def parse_engine(text):
    rows = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows[r["fixture"]] = r["median_ms"]
    return rows


def main():
    ap = common.parser(__doc__, runs=30, name="engine")
    ap.add_argument("--engine", action="append", default=[],
                    help="JSON lines of `cargo bench --bench engine -- --json` (1 thread, then 2 threads)")
    args = ap.parse_args()
    common.header(args, f"median ms of {args.runs} single-sample runs (batch 1, sample 0 of ref/in, OpenVINO f32)")
    res = common.Results("engine", args)
    fixtures = common.fixture_dirs(args, DEFAULT)
    names = [n for n, _ in fixtures]
    if args.engine:
        engine = [parse_engine(Path(p).read_text()) for p in args.engine]
    else:
        engine = [cargo_engine(t, args.runs, names, args.fixtures) for t in THREADS]
    for name, d in fixtures:
        for threads, ours in zip(THREADS, engine + [{}] * len(THREADS)):
            opt = {"variant": f"{threads} thread{'s' if threads > 1 else ''}", "runs": args.runs}
            res.add("openvino", name, "latency_ms", bench_openvino(d, threads, args.runs), "ms", opt)
            res.add("ovpot", name, "latency_ms", ours.get(name), "ms", opt)
    table.print_records(res.records)
    res.done()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
