#!/usr/bin/env python3
"""Accuracy-aware quantization, ovpot vs NNCF 3.4 quantize_with_accuracy_control, judged in OpenVINO.

Run with the peers venv (openvino + nncf; `../shared/tools/setup_peers.sh .peers` makes one), after
`cargo build --release --bin ovpot`:
    .peers/venv/bin/python scripts/bench_accuracy_aware.py [--json OUT.json] [CASE...]

A CASE is FIXTURE:MAX_DROP; default: ppocr_cls:0.005 mnist_cnn:0.001. For each case, one run of:
  * ovpot: `ovpot --quiet quantize -q accuracy_aware -m model.xml --data calib --eval-data eval
    --labels eval_labels.npy --metric-output K --max-drop D -o DIR` (K = meta.json's metric_output;
    wall time of the whole process);
  * NNCF: `nncf.quantize_with_accuracy_control(model, calib, eval, validation_fn, max_drop=D,
    subset_size=<all calib samples>)` in a fresh Python process, where validation_fn is top-1
    accuracy of output K on eval with the compiled model NNCF hands it (NNCF compiles with
    INFERENCE_PRECISION_HINT=f32); the time of that call.
Each tool's own view (FP32 metric, default INT8 metric, final metric, evaluations) is printed
beside the final IR's accuracy in the real runtime by ../shared/tools/ovcheck.py (CPU,
INFERENCE_PRECISION_HINT=f32, 1 thread) and the share of heavy layers the runtime runs in int8.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quantize import ROOT, fixtures_root, load_calib, ovcheck, print_rows, revision  # noqa: E402

DEFAULT = ["ppocr_cls:0.005", "mnist_cnn:0.001"]


def nncf_worker(fixture, out_xml, max_drop):
    """Child process: one quantize_with_accuracy_control run; prints its figures as JSON."""
    import nncf
    import numpy as np
    import openvino as ov

    nncf.set_log_level(40)
    meta = json.loads((fixture / "meta.json").read_text())
    k = meta.get("metric_output", 0)
    model = ov.Core().read_model(str(fixture / "model.xml"))
    calib = load_calib(model, fixture / "calib")
    eval_inputs = load_calib(model, fixture / "eval")
    labels = np.load(fixture / "eval_labels.npy")
    calls = []

    def validate(compiled, items):
        items = list(items)
        hits = [int(np.argmax(compiled(x)[compiled.outputs[k]]) == y) for x, y in items]
        acc = float(np.mean(hits))
        calls.append((len(items), acc))
        return acc, None

    validation = nncf.Dataset(list(zip(eval_inputs, labels.tolist())), lambda item: item[0])
    t0 = time.perf_counter()
    q = nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(calib), validation, validate, max_drop=max_drop, subset_size=len(calib)
    )
    seconds = time.perf_counter() - t0
    ov.save_model(q, out_xml)
    full = [acc for n, acc in calls if n == len(eval_inputs)]
    print(json.dumps({"seconds": seconds, "full_evaluations": len(full), "eval_inferences": sum(n for n, _ in calls),
                      "first_metrics": full[:2], "last_metric": full[-1] if full else None}))


def run_ovpot(binary, fixture, max_drop, out_dir):
    meta = json.loads((fixture / "meta.json").read_text())
    cmd = [str(binary), "--quiet", "quantize", "-q", "accuracy_aware", "-m", str(fixture / "model.xml"),
           "--data", str(fixture / "calib"), "--eval-data", str(fixture / "eval"),
           "--labels", str(fixture / "eval_labels.npy"), "--metric-output", str(meta.get("metric_output", 0)),
           "--max-drop", str(max_drop), "-o", str(out_dir)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    report = json.loads((out_dir / "report.json").read_text())
    xml = sorted((out_dir / "optimized").glob("*.xml"))[0]
    return seconds, xml, report, cmd


def bench_case(args, fixture, max_drop, work):
    out = {"fixture": fixture.name, "max_drop": max_drop}
    seconds, xml, report, cmd = run_ovpot(args.ovpot, fixture, max_drop, work / "ovpot")
    acc = report.get("accuracy") or {}
    judged = ovcheck(fixture, xml, work / "ovcheck_ovpot.json", 1)
    out["fp32_runtime"] = judged["fp32"].get("accuracy")
    out["ovpot"] = {
        "seconds": seconds, "cmd": " ".join(cmd), "own_fp32": acc.get("baseline"),
        "own_default": acc.get("default_quantized"), "own_final": acc.get("final_metric"),
        # FP32 baseline, default INT8, then one evaluation per revert iteration.
        "full_evaluations": 2 + acc.get("iterations", 0), "inferences": report["inferences"],
        "reverted": len(acc.get("reverted", [])),
        "reached": acc.get("reached"), "runtime": judged["candidate"],
    }
    nncf_xml = work / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, __file__, "--nncf-worker", str(fixture), str(nncf_xml), str(max_drop)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"NNCF accuracy control on {fixture.name} failed: {r.stderr.strip()[-2000:]}")
    nn = json.loads(r.stdout.strip().splitlines()[-1])
    first = nn["first_metrics"] + [None, None]
    out["nncf"] = {
        "seconds": nn["seconds"], "own_fp32": first[0], "own_default": first[1], "own_final": nn["last_metric"],
        "full_evaluations": nn["full_evaluations"], "validation_items": nn["eval_inferences"], "reverted": None,
        "runtime": ovcheck(fixture, nncf_xml, work / "ovcheck_nncf.json", 1)["candidate"],
    }
    return out


def cell(v, f="{:.4f}"):
    return "-" if v is None else f.format(v)


def print_table(results):
    head = ["fixture", "max_drop", "tool", "FP32", "default INT8", "final (own)", "final (OpenVINO)",
            "drop", "int8 layers", "FQ", "full evals", "wall s"]
    rows = [head]
    for r in results:
        for tool in ("ovpot", "nncf"):
            t = r[tool]
            rt = t["runtime"]
            fp32 = r["fp32_runtime"]
            rows.append([
                r["fixture"], f"{r['max_drop']:g}", tool, cell(fp32), cell(t["own_default"]), cell(t["own_final"]),
                cell(rt.get("accuracy")), cell(None if fp32 is None else fp32 - rt.get("accuracy", 0.0)),
                f"{rt['int8_layers']}/{rt['heavy_layers']} ({100.0 * rt['int8_layers'] / max(rt['heavy_layers'], 1):.0f}%)",
                str(rt["fake_quantize"]), str(t["full_evaluations"]), f"{t['seconds']:.1f}",
            ])
    print_rows(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help=f"FIXTURE:MAX_DROP (default: {' '.join(DEFAULT)})")
    ap.add_argument("--ovpot", default=str(ROOT / "target" / "release" / "ovpot"), help="the ovpot binary")
    ap.add_argument("--work", help="keep the IRs and ovcheck JSON here (default: a temporary folder)")
    ap.add_argument("--json", help="write all measurements to this file")
    ap.add_argument("--nncf-worker", nargs=3, metavar=("FIXTURE", "OUT_XML", "MAX_DROP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nncf_worker:
        nncf_worker(Path(args.nncf_worker[0]), args.nncf_worker[1], float(args.nncf_worker[2]))
        return
    os.environ["INFERENCE_PRECISION_HINT"] = "f32"
    if not Path(args.ovpot).exists():
        raise SystemExit(f"{args.ovpot} missing: cargo build --release --bin ovpot")
    import openvino as ov
    import nncf

    rev = revision()
    print(f"ovpot {rev}; openvino {ov.__version__}; nncf {nncf.__version__}; one run each", flush=True)
    load0 = os.getloadavg()[0]
    base = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_aa_"))
    results = []
    for case in args.cases or DEFAULT:
        name, _, drop = case.partition(":")
        fixture = fixtures_root() / name
        if not (fixture / "eval_labels.npy").exists():
            print(f"{name}: no fixture with eval_labels.npy under {fixtures_root()}, skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            results.append(bench_case(args, fixture, float(drop or 0.005), base / name))
        except RuntimeError as e:
            print(f"{name}: {e}", file=sys.stderr)
            continue
        print(f"  {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print_table(results)
    print(f"load average (1 min): {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    if args.json:
        Path(args.json).write_text(json.dumps({"revision": rev, "results": results}, indent=1))


if __name__ == "__main__":
    main()
