#!/usr/bin/env python3
"""ovpot quantize vs NNCF 3.4 nncf.quantize on the fixtures, both judged in the real OpenVINO runtime.

    .peers/venv/bin/python bench/quantize.py [--runs 3] [--ovpot target/release/ovpot] [FIXTURE...]

For each fixture (default: all seven under ../shared/fixtures or $OVPOT_FIXTURES):
  * ovpot: `ovpot --quiet quantize -m model.xml --data calib -o DIR` with the default settings
    (`--model-type transformer` where meta.json says NNCF used it); the wall time of the whole
    process (read IR, statistics, write IR), median of --runs runs.
  * NNCF: `nncf.quantize(model, Dataset(calib samples, batch 1), subset_size=<all calib samples>)`,
    the options of meta.json (model_type=transformer for minilm_l6), in a fresh Python process per
    fixture; the time of the nncf.quantize() call alone (what meta.json reports), median of --runs
    calls. Reading the model and saving the IR are timed separately (metric io_s, "nncf+io").
  * Both resulting IRs are judged in OpenVINO as ../shared/tools/ovcheck.py does (CPU plugin,
    INFERENCE_PRECISION_HINT=f32, 1 thread, every eval sample; latency: median of --latency runs).
Peak RSS is each tool's whole process (ovpot: the CLI; NNCF: the Python worker with OpenVINO and
NNCF loaded), from GNU time when installed, else wait4().
A model is flagged when ours is below NNCF (issue #4's bar): accuracy by more than 0.001, agreement
(top-1 or mean cosine) by more than 0.005, SQNR by more than 0.5 dB, fewer int8 layers, OpenVINO
latency more than 5% above NNCF's, more quantize time, or more peak RSS.
Results: bench/results/quantize.jsonl (tools ovpot, nncf, fp32).
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

import common
import table

TOL = {"accuracy": 0.001, "agreement": 0.005, "sqnr_db": 0.5}
LATENCY_TOL = 0.05  # our IR's OpenVINO latency may exceed NNCF's by this fraction


def shortfalls(ours, theirs):
    """The measures on which our IR is below NNCF's by more than the tolerance."""
    low = [k for k, tol in TOL.items() if k in ours and k in theirs and ours[k] < theirs[k] - tol]
    if ours["int8_layers"] < theirs["int8_layers"]:
        low.append("int8_layers")
    if ours["latency_ms"] > theirs["latency_ms"] * (1 + LATENCY_TOL):
        low.append("latency")
    return low


def bench_fixture(args, name, fixture, work, res):
    meta = common.meta(fixture)
    cmd = common.ovpot_quantize_cmd(args.ovpot, fixture / "model.xml", fixture / "calib", work / "ovpot", meta)
    t_ovpot, rss_ovpot, _ = common.timed_runs(cmd, args.runs)
    our_xml = common.optimized_xml(work / "ovpot")
    nncf_xml = work / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    nn = common.nncf_run({"op": "quantize", "model": str(fixture / "model.xml"), "out": str(nncf_xml),
                          "calib": str(fixture / "calib"), "runs": args.runs,
                          "options": meta.get("nncf", {}).get("options", {})})
    judged = common.judge(fixture, {"ovpot": our_xml, "nncf": nncf_xml}, latency=args.latency)
    t_nncf = statistics.median(nn["seconds"])
    timing = {"runs": args.runs}
    shown = " ".join(str(c).replace(str(fixture), "FIXTURE").replace(str(work / "ovpot"), "OUT") for c in cmd[1:])
    res.add("ovpot", name, "time_s", t_ovpot, "s", dict(timing, cmd=shown))
    res.add("ovpot", name, "rss_mib", rss_ovpot, "MiB")
    res.add("nncf", name, "time_s", t_nncf, "s", dict(timing, options=nn["options"]))
    res.add("nncf", name, "io_s", nn["read_s"] + nn["save_s"], "s")
    res.add("nncf", name, "rss_mib", nn["rss_mib"], "MiB")
    for tool in ("fp32", "ovpot", "nncf"):
        res.add_judged(tool, name, judged[tool], {"latency_runs": args.latency})
    low = shortfalls(judged["ovpot"], judged["nncf"])
    if t_ovpot > t_nncf:
        low.append("time")
    if rss_ovpot > nn["rss_mib"]:
        low.append("RSS")
    return {"fixture": name, "ovpot_s": t_ovpot, "nncf_s": t_nncf, "nncf_io_s": nn["read_s"] + nn["save_s"],
            "ovpot_rss_mib": rss_ovpot, "nncf_rss_mib": nn["rss_mib"], "nncf_options": nn["options"],
            "fp32": judged["fp32"], "ovpot": judged["ovpot"], "nncf": judged["nncf"], "below_nncf": low}


def main():
    ap = common.parser(__doc__, runs=3, name="quantize")
    ap.add_argument("--latency", type=int, default=20, help="single-sample OpenVINO runs per IR (median)")
    ap.add_argument("--json", help="also write all measurements of this run to this file")
    args = ap.parse_args()
    args.ovpot = common.ovpot_binary(args)
    common.header(args, f"median of {args.runs} runs")
    res = common.Results("quantize", args)
    base = common.work_dir(args, "quantize")
    load0 = os.getloadavg()[0]
    rows = []
    for name, fixture in common.fixture_dirs(args):
        t0 = time.perf_counter()
        try:
            rows.append(bench_fixture(args, name, fixture, base / name, res))
        except RuntimeError as e:
            print(f"{name}: {e}", file=sys.stderr)
            continue
        print(f"  {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    table.print_records(res.records)
    for r in rows:
        print(f"{r['fixture']}: " + ("BELOW NNCF: " + ", ".join(r["below_nncf"]) if r["below_nncf"] else "ok vs NNCF"))
    print(f"load average (1 min): {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    res.done()
    if args.json:
        Path(args.json).write_text(json.dumps({"revision": res.base["commit"], "runs": args.runs, "results": rows},
                                              indent=1))


if __name__ == "__main__":
    main()
