#!/usr/bin/env python3
"""ovpot's Python package against NNCF 3.4, the same calls in the same process (issue #18).

    .peers/venv/bin/pip install ./python          # once: ovpot into the peers venv (nncf, openvino)
    .peers/venv/bin/python scripts/bench_python.py [--runs 3] [--backend auto|builtin|openvino] [FIXTURE ...]

Per fixture (default ppocr_cls, mobilenet_v2, minilm_l6 from ../shared/fixtures or $OVPOT_FIXTURES):
`nncf.quantize(model, nncf.Dataset(samples), subset_size=N, **meta options)` and
`ovpot.quantize(...)` with exactly the same arguments (an openvino.Model in, an openvino.Model
out), timed in this process (median of --runs, interleaved); both results judged by
../shared/tools/ovcheck.py in the runtime (SQNR against FP32). Bars: time <= 0.5x NNCF,
SQNR >= NNCF - 0.3 dB.
Then accuracy control on ppocr_cls: `ovpot.quantize_with_accuracy_control(..., validation_fn,
max_drop=0.005)` with an NNCF-style validation_fn (top-1 accuracy over the eval set, compiled
model in, float out); the runtime accuracy of the result (ovcheck) must be >= 0.940.
The CPU's int8 arithmetic (ovcheck's first line) is printed with the table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quantize as bq  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def ovcheck(fixture, xml, out_json):
    cmd = [sys.executable, str(SHARED / "tools" / "ovcheck.py"), str(fixture), str(xml), "--json", str(out_json),
           "--latency", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"ovcheck failed on {xml}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return json.loads(Path(out_json).read_text()), p.stdout.splitlines()[0]


def candidate_row(report):
    """ovcheck's JSON: the candidate's and NNCF's figures."""
    rows = report.get("rows", report)
    if isinstance(rows, dict):
        return rows.get("candidate", {}), rows.get("nncf", {})
    cand = next(r for r in rows if r.get("name") not in ("fp32", "nncf"))
    nncf = next(r for r in rows if r.get("name") == "nncf")
    return cand, nncf


def bench_quantize(fixture, runs, backend, work):
    import nncf
    import openvino as ov
    import ovpot

    nncf.set_log_level(40)
    meta = json.loads((fixture / "meta.json").read_text())
    model = ov.Core().read_model(str(fixture / "model.xml"))
    samples = bq.load_calib(model, fixture / "calib")
    dataset = nncf.Dataset(samples)
    opts = bq.nncf_options(meta)
    t_nncf, t_ours = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        q_nncf = nncf.quantize(model, dataset, subset_size=len(samples), **opts)
        t_nncf.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q_ours = ovpot.quantize(model, dataset, subset_size=len(samples), backend=backend, progress=lambda *a: None,
                                **opts)
        t_ours.append(time.perf_counter() - t0)
    ours_xml = work / f"{fixture.name}_ovpot.xml"
    nncf_xml = work / f"{fixture.name}_nncf.xml"
    ov.save_model(q_ours, str(ours_xml), compress_to_fp16=False)
    ov.save_model(q_nncf, str(nncf_xml), compress_to_fp16=False)
    ours, isa = ovcheck(fixture, ours_xml, work / "ours.json")
    theirs, _ = ovcheck(fixture, nncf_xml, work / "theirs.json")
    return {
        "fixture": fixture.name,
        "nncf_s": statistics.median(t_nncf),
        "ovpot_s": statistics.median(t_ours),
        "ovpot_sqnr": candidate_row(ours)[0].get("sqnr_db"),
        "nncf_sqnr": candidate_row(theirs)[0].get("sqnr_db"),
        "isa": isa,
    }


def bench_accuracy_control(fixture, backend, work):
    import openvino as ov
    import ovpot

    meta = json.loads((fixture / "meta.json").read_text())
    out_k = int(meta.get("metric_output", 0))
    model = ov.Core().read_model(str(fixture / "model.xml"))
    samples = bq.load_calib(model, fixture / "calib")
    evals = bq.load_calib(model, fixture / "eval")
    labels = np.load(fixture / "eval_labels.npy").reshape(-1)
    validation = ovpot.Dataset(list(zip(evals, labels)), lambda item: item[0])

    def validation_fn(compiled_model, validation_data):
        hits = [int(np.argmax(compiled_model(x)[out_k]) == int(y)) for x, y in validation_data]
        return float(np.mean(hits))

    t0 = time.perf_counter()
    q = ovpot.quantize_with_accuracy_control(model, ovpot.Dataset(samples), validation, validation_fn,
                                             max_drop=0.005, subset_size=len(samples), backend=backend,
                                             progress=lambda *a: None)
    secs = time.perf_counter() - t0
    xml = work / f"{fixture.name}_aa.xml"
    ov.save_model(q, str(xml), compress_to_fp16=False)
    report, isa = ovcheck(fixture, xml, work / "aa.json")
    cand, nncf_row = candidate_row(report)
    return {"fixture": fixture.name, "seconds": secs, "accuracy": cand.get("accuracy"),
            "nncf_accuracy": nncf_row.get("accuracy"), "isa": isa}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fixtures", nargs="*", default=["ppocr_cls", "mobilenet_v2", "minilm_l6"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backend", default="auto", help="ovpot.quantize's backend (default: its own default, auto)")
    ap.add_argument("--no-accuracy-control", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    root = Path(os.environ.get("OVPOT_FIXTURES", SHARED / "fixtures"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovpot-py-") as tmp:
        work = Path(tmp)
        for name in args.fixtures:
            rows.append(bench_quantize(root / name, args.runs, args.backend, work))
            r = rows[-1]
            print(f"  {name}: ovpot {r['ovpot_s']:.2f} s vs NNCF {r['nncf_s']:.2f} s", flush=True)
        aa = None if args.no_accuracy_control else bench_accuracy_control(root / "ppocr_cls", args.backend, work)
    print(f"\n{rows[0]['isa']}\n")
    print("| fixture | NNCF quantize | ovpot.quantize | ratio | NNCF SQNR | ovpot SQNR | bars |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["ovpot_s"] / r["nncf_s"]
        ok = ratio <= 0.5 and r["ovpot_sqnr"] >= r["nncf_sqnr"] - 0.3
        print(f"| {r['fixture']} | {r['nncf_s']:.2f} s | {r['ovpot_s']:.2f} s | {ratio:.2f} | {r['nncf_sqnr']:.2f} dB "
              f"| {r['ovpot_sqnr']:.2f} dB | {'met' if ok else 'MISSED'} |")
    print(f"\n(backend {args.backend}; median of {args.runs} in-process runs; SQNR from ovcheck in the runtime)")
    if aa:
        ok = aa["accuracy"] is not None and aa["accuracy"] >= 0.940
        print(f"\naccuracy control on ppocr_cls (max_drop 0.005): runtime accuracy {aa['accuracy']:.3f} "
              f"(NNCF default INT8 {aa['nncf_accuracy']:.3f}) in {aa['seconds']:.1f} s: {'met' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"quantize": rows, "accuracy_control": aa}, indent=2) + "\n")


if __name__ == "__main__":
    main()
