#!/usr/bin/env python3
"""Accuracy-aware quantization, ovpot vs NNCF 3.4 quantize_with_accuracy_control, judged in OpenVINO.

    .peers/venv/bin/python bench/accuracy_aware.py [CASE...]

A CASE is FIXTURE:MAX_DROP; default: ppocr_cls:0.005 mnist_cnn:0.001. For each case, one run of:
  * ovpot: `ovpot --quiet quantize -q accuracy_aware -m model.xml --data calib --eval-data eval
    --labels eval_labels.npy --metric-output K --max-drop D -o DIR` (K = meta.json's metric_output;
    wall time of the whole process);
  * NNCF: `nncf.quantize_with_accuracy_control(model, calib, eval, validation_fn, max_drop=D,
    subset_size=<all calib samples>)` in a fresh Python process, where validation_fn is top-1
    accuracy of output K on eval with the compiled model NNCF hands it (NNCF compiles with
    INFERENCE_PRECISION_HINT=f32); the time of that call.
Each tool's own view (FP32 metric, default INT8 metric, final metric, evaluations: metrics own_*,
full_evaluations) is recorded beside the final IR's accuracy in the real runtime (judged as
ovcheck.py does: CPU, INFERENCE_PRECISION_HINT=f32, 1 thread) and the heavy layers the runtime runs
in int8. Results: bench/results/accuracy_aware.jsonl, options.variant = "max_drop D".
"""
import json
from pathlib import Path
import sys
import time

import common
import table

DEFAULT = ["ppocr_cls:0.005", "mnist_cnn:0.001"]


def bench_case(args, name, fixture, max_drop, work, res):
    meta = common.meta(fixture)
    out_dir = work / "ovpot"
    cmd = [args.ovpot, "--quiet", "quantize", "-q", "accuracy_aware", "-m", fixture / "model.xml",
           "--data", fixture / "calib", "--eval-data", fixture / "eval", "--labels", fixture / "eval_labels.npy",
           "--metric-output", meta.get("metric_output", 0), "--max-drop", max_drop, "-o", out_dir]
    _, seconds, _ = common.run_checked(cmd)
    report = json.loads((out_dir / "report.json").read_text())
    acc = report.get("accuracy") or {}
    nncf_xml = work / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    nn = common.nncf_run({"op": "accuracy_control", "model": str(fixture / "model.xml"), "out": str(nncf_xml),
                          "calib": str(fixture / "calib"), "eval": str(fixture / "eval"),
                          "labels": str(fixture / "eval_labels.npy"), "metric_output": meta.get("metric_output", 0),
                          "max_drop": max_drop})
    judged = common.judge(fixture, {"ovpot": common.optimized_xml(out_dir), "nncf": nncf_xml})
    opt = {"variant": f"max_drop {max_drop:g}"}
    first = nn["first_metrics"] + [None, None]
    views = {
        # FP32 baseline, default INT8, then one evaluation per revert iteration.
        "ovpot": dict(time_s=seconds, own_fp32=acc.get("baseline"), own_default=acc.get("default_quantized"),
                      own_final=acc.get("final_metric"), full_evaluations=2 + acc.get("iterations", 0),
                      inferences=report.get("inferences"), reverted=len(acc.get("reverted", [])),
                      reached=acc.get("reached")),
        "nncf": dict(time_s=nn["seconds"][0], own_fp32=first[0], own_default=first[1], own_final=nn["last_metric"],
                     full_evaluations=nn["full_evaluations"], inferences=nn["eval_inferences"]),
    }
    for tool, v in views.items():
        for metric, value in v.items():
            res.add(tool, name, metric, value, "s" if metric == "time_s" else None, opt)
    for tool in ("fp32", "ovpot", "nncf"):
        res.add_judged(tool, name, judged[tool], opt)
    fp32 = judged["fp32"].get("accuracy")
    for tool in ("ovpot", "nncf"):
        if fp32 is not None:
            res.add(tool, name, "drop", fp32 - judged[tool].get("accuracy", 0.0), None, opt)


def main():
    ap = common.parser(__doc__, fixtures=False, name="accuracy_aware")
    ap.add_argument("cases", nargs="*", help=f"FIXTURE:MAX_DROP (default: {' '.join(DEFAULT)})")
    ap.add_argument("--json", help="also write this run's results lines to this file")
    args = ap.parse_args()
    args.ovpot = common.ovpot_binary(args)
    common.header(args, "one run each")
    res = common.Results("accuracy_aware", args)
    base = common.work_dir(args, "accuracy_aware")
    for case in args.cases or DEFAULT:
        name, _, drop = case.partition(":")
        fixture = Path(args.fixtures) / name
        if not (fixture / "eval_labels.npy").exists():
            print(f"{name}: no fixture with eval_labels.npy under {args.fixtures}, skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            bench_case(args, name, fixture, float(drop or 0.005), base / name, res)
        except RuntimeError as e:
            print(f"{name}: {e}", file=sys.stderr)
            continue
        print(f"  {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    table.print_records(res.records, metrics=["accuracy", "own_fp32", "own_default", "own_final", "drop",
                                              "int8_layers", "heavy_layers", "fake_quantize", "full_evaluations",
                                              "time_s"])
    res.done()
    if args.json:
        Path(args.json).write_text(json.dumps(res.records, indent=1))


if __name__ == "__main__":
    main()
