#!/usr/bin/env python3
"""ovpot's two backends against NNCF 3.4, whole processes, measured in one run (issue #15).

    .peers/venv/bin/python bench/backend.py [--runs 3] [--extra DIR ...] [FIXTURE...]

Per fixture (default: all seven under ../shared/fixtures or $OVPOT_FIXTURES), median of --runs:
  * `ovpot quantize` with `--backend builtin` (tool ovpot-builtin) and with `--backend openvino`
    (tool ovpot-openvino; OpenVINO's C library from this venv's wheel): wall time of the whole
    process (read, statistics, bias correction, saturation checks, latency measurement, write);
  * NNCF's whole process: Python start, `import nncf, openvino`, read, `nncf.quantize`, save;
  * the ratio ovpot-openvino / NNCF (the issue's bar: <= 0.5), and the limit: the calibration
    samples times OpenVINO's FP32 latency at the thread count used (report.json; metric limit_s);
  * quality: both of ovpot's IRs judged in OpenVINO as ovcheck.py does (SQNR against FP32; the
    bar: openvino within 0.3 dB of builtin).

Larger models (issue #15 asks for "the largest models you can build or find"): `--extra DIR`
(repeatable) takes a model folder made by bench/extra_models.py (model.xml, calib/, eval/), e.g.
the PP-PicoDet layout detector at 800x608; its SQNR is measured on up to 30 eval samples in
OpenVINO (common.sqnr_per_output, as bench/placement.py), NNCF's SQNR too.
Results: bench/results/backend.jsonl.
"""
import json
import statistics
import sys
from pathlib import Path

import common
import table


def ovpot_cmd(args, model_dir, meta, out_dir, backend):
    extra = ["--backend", backend]
    if backend == "openvino":
        extra += ["--openvino-lib", str(common.openvino_c_lib().parent)]
    return common.ovpot_quantize_cmd(args.ovpot, model_dir / "model.xml", model_dir / "calib", out_dir, meta, extra)


def bench(args, name, model_dir, work, res, extra=False):
    import openvino as ov

    meta = {} if extra else common.meta(model_dir)
    core = ov.Core()
    evals = common.load_samples(model_dir / "eval", core.read_model(str(model_dir / "model.xml")), 30) if extra else None
    row = {"fixture": name}
    transformer = common.transformer(meta)
    for backend in ("builtin", "openvino"):
        tool = f"ovpot-{backend}"
        out = work / backend
        secs, _, _ = common.timed_runs(ovpot_cmd(args, model_dir, meta, out, backend), args.runs)
        xml = common.optimized_xml(out, "model")
        if extra:
            sqnr = common.sqnr_per_output(core, model_dir / "model.xml", xml, evals)
        else:
            judged = common.judge(model_dir, {tool: xml})
            sqnr = judged[tool]["sqnr_db"]
        res.add(tool, name, "time_s", secs, "s", {"runs": args.runs})
        res.add(tool, name, "sqnr_db", sqnr, "dB", {"eval_samples": 30} if extra else None)
        row[f"{backend}_s"], row[f"{backend}_sqnr"] = secs, sqnr
        if backend == "openvino":
            rep = json.loads((out / "report.json").read_text())
            lat = rep.get("latency") or {}
            row.update(samples=rep["samples_used"], fp32_ms=lat.get("fp32_ms"), int8_ms=lat.get("int8_ms"))
            transformer = transformer or rep.get("model_type") == "transformer"
            res.add(tool, name, "report_fp32_ms", lat.get("fp32_ms"), "ms")
            res.add(tool, name, "report_int8_ms", lat.get("int8_ms"), "ms")
            if lat.get("fp32_ms"):
                row["limit_s"] = rep["samples_used"] * lat["fp32_ms"] / 1e3
                res.add(tool, name, "limit_s", row["limit_s"], "s", {"samples": rep["samples_used"]})
    nncf_xml = work / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    spec = {"op": "quantize", "model": str(model_dir / "model.xml"), "out": str(nncf_xml),
            "calib": str(model_dir / "calib"), "options": {"model_type": "transformer"} if transformer else {}}
    row["nncf_s"] = statistics.median(common.nncf_run(spec)["wall_s"] for _ in range(max(args.runs, 1)))
    res.add("nncf", name, "time_s", row["nncf_s"], "s", {"runs": args.runs, "whole_process": True})
    if extra:
        row["nncf_sqnr"] = common.sqnr_per_output(core, model_dir / "model.xml", nncf_xml, evals)
        res.add("nncf", name, "sqnr_db", row["nncf_sqnr"], "dB", {"eval_samples": 30})
    return row


def main():
    ap = common.parser(__doc__, runs=3, name="backend")
    ap.add_argument("--json", help="also write the rows of this run to this file")
    ap.add_argument("--extra", action="append", default=[], help="a bench/extra_models.py model folder (repeatable)")
    args = ap.parse_args()
    args.ovpot = common.ovpot_binary(args)
    common.header(args, f"medians of {args.runs}")
    res = common.Results("backend", args)
    work = common.work_dir(args, "backend")
    jobs = [] if args.extra and not args.names else common.fixture_dirs(args)
    rows = [bench(args, n, d, work / n, res) for n, d in jobs]
    rows += [bench(args, Path(d).name, Path(d), work / Path(d).name, res, extra=True) for d in args.extra]
    table.print_records(res.records)
    for r in rows:
        diff = r["openvino_sqnr"] - r["builtin_sqnr"]
        ratio = r["openvino_s"] / r["nncf_s"]
        print(f"{r['fixture']}: openvino / NNCF {ratio:.2f} ({'ok' if ratio <= 0.5 else 'above'} the 0.5 bar), "
              f"SQNR openvino - builtin {diff:+.2f} dB ({'ok' if diff >= -0.3 else 'BELOW'} the -0.3 dB bar)"
              + (f", openvino / limit {r['openvino_s'] / r['limit_s']:.1f}x" if r.get("limit_s") else ""))
    res.done()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
