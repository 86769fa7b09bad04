#!/usr/bin/env python3
"""ovpot's Python package against NNCF 3.4, the same calls in the same process (issue #18).

    .peers/venv/bin/pip install ./python          # once: ovpot into the peers venv (nncf, openvino)
    .peers/venv/bin/python bench/python_api.py [--runs 3] [--backend auto|builtin|openvino] [FIXTURE ...]

Per fixture (default ppocr_cls, mobilenet_v2, minilm_l6 from ../shared/fixtures or $OVPOT_FIXTURES):
`nncf.quantize(model, nncf.Dataset(samples), subset_size=N, **meta options)` and
`ovpot.quantize(...)` with exactly the same arguments (an openvino.Model in, an openvino.Model
out), timed in this process (median of --runs, interleaved); both results judged in the runtime
as ovcheck.py does (SQNR against FP32). Bars: time <= 0.5x NNCF, SQNR >= NNCF - 0.3 dB.
Then accuracy control on ppocr_cls: `ovpot.quantize_with_accuracy_control(..., validation_fn,
max_drop=0.005)` with an NNCF-style validation_fn (top-1 accuracy over the eval set, compiled
model in, float out); the runtime accuracy of the result must be >= 0.940.
--ovpot is not used: the package brings its own library. Results: bench/results/python_api.jsonl.
"""
import json
import statistics
import time
from pathlib import Path

import numpy as np

import common
import table

DEFAULT = ["ppocr_cls", "mobilenet_v2", "minilm_l6"]


def nncf_options(meta):
    import nncf

    opts = dict(meta.get("nncf", {}).get("options", {}))
    if opts.get("model_type") == "transformer":
        opts["model_type"] = nncf.ModelType.TRANSFORMER
    return opts


def bench_quantize(name, fixture, args, work, res):
    import nncf
    import openvino as ov
    import ovpot

    nncf.set_log_level(40)
    model = ov.Core().read_model(str(fixture / "model.xml"))
    samples = common.load_samples(fixture / "calib", model)
    dataset = nncf.Dataset(samples)
    opts = nncf_options(common.meta(fixture))
    t_nncf, t_ours = [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        q_nncf = nncf.quantize(model, dataset, subset_size=len(samples), **opts)
        t_nncf.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q_ours = ovpot.quantize(model, dataset, subset_size=len(samples), backend=args.backend,
                                progress=lambda *a: None, **opts)
        t_ours.append(time.perf_counter() - t0)
    ours_xml, nncf_xml = work / f"{name}_ovpot.xml", work / f"{name}_nncf.xml"
    ov.save_model(q_ours, str(ours_xml), compress_to_fp16=False)
    ov.save_model(q_nncf, str(nncf_xml), compress_to_fp16=False)
    judged = common.judge(fixture, {"ovpot": ours_xml, "nncf": nncf_xml})
    opt = {"variant": f"quantize, backend {args.backend}"}
    row = {"fixture": name, "ovpot_s": statistics.median(t_ours), "nncf_s": statistics.median(t_nncf),
           "ovpot_sqnr": judged["ovpot"]["sqnr_db"], "nncf_sqnr": judged["nncf"]["sqnr_db"]}
    for tool in ("ovpot", "nncf"):
        res.add(tool, name, "time_s", row[f"{tool}_s"], "s", dict(opt, runs=args.runs, in_process=True))
        res.add(tool, name, "sqnr_db", row[f"{tool}_sqnr"], "dB", opt)
    return row


def bench_accuracy_control(name, fixture, args, work, res):
    import openvino as ov
    import ovpot

    out_k = int(common.meta(fixture).get("metric_output", 0))
    model = ov.Core().read_model(str(fixture / "model.xml"))
    samples = common.load_samples(fixture / "calib", model)
    evals = common.load_samples(fixture / "eval", model)
    labels = np.load(fixture / "eval_labels.npy").reshape(-1)
    validation = ovpot.Dataset(list(zip(evals, labels)), lambda item: item[0])

    def validation_fn(compiled_model, validation_data):
        hits = [int(np.argmax(compiled_model(x)[out_k]) == int(y)) for x, y in validation_data]
        return float(np.mean(hits))

    t0 = time.perf_counter()
    q = ovpot.quantize_with_accuracy_control(model, ovpot.Dataset(samples), validation, validation_fn,
                                             max_drop=0.005, subset_size=len(samples), backend=args.backend,
                                             progress=lambda *a: None)
    secs = time.perf_counter() - t0
    xml = work / f"{name}_aa.xml"
    ov.save_model(q, str(xml), compress_to_fp16=False)
    judged = common.judge(fixture, {"ovpot": xml, "nncf": fixture / "nncf_int8.xml"})
    opt = {"variant": f"accuracy control max_drop 0.005, backend {args.backend}"}
    res.add("ovpot", name, "time_s", secs, "s", dict(opt, in_process=True))
    res.add("ovpot", name, "accuracy", judged["ovpot"].get("accuracy"), None, opt)
    res.add("nncf", name, "accuracy", judged["nncf"].get("accuracy"), None, dict(opt, nncf="default INT8"))
    return {"fixture": name, "seconds": secs, "accuracy": judged["ovpot"].get("accuracy"),
            "nncf_accuracy": judged["nncf"].get("accuracy")}


def main():
    ap = common.parser(__doc__, runs=3, name="python_api")
    ap.add_argument("--backend", default="auto", help="ovpot.quantize's backend (default: its own default, auto)")
    ap.add_argument("--no-accuracy-control", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    common.header(args, f"median of {args.runs} in-process runs")
    res = common.Results("python_api", args)
    work = common.work_dir(args, "python_api")
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, fixture in common.fixture_dirs(args, DEFAULT):
        rows.append(bench_quantize(name, fixture, args, work, res))
        r = rows[-1]
        print(f"  {name}: ovpot {r['ovpot_s']:.2f} s vs NNCF {r['nncf_s']:.2f} s", flush=True)
    aa = None
    if not args.no_accuracy_control:
        aa = bench_accuracy_control("ppocr_cls", Path(args.fixtures) / "ppocr_cls", args, work, res)
    table.print_records(res.records)
    for r in rows:
        ratio = r["ovpot_s"] / r["nncf_s"]
        ok = ratio <= 0.5 and r["ovpot_sqnr"] >= r["nncf_sqnr"] - 0.3
        print(f"{r['fixture']}: time ratio {ratio:.2f}, SQNR {r['ovpot_sqnr'] - r['nncf_sqnr']:+.2f} dB vs NNCF: "
              f"bars {'met' if ok else 'MISSED'}")
    if aa:
        ok = aa["accuracy"] is not None and aa["accuracy"] >= 0.940
        print(f"accuracy control on ppocr_cls (max_drop 0.005): runtime accuracy {aa['accuracy']:.3f} "
              f"(NNCF default INT8 {aa['nncf_accuracy']:.3f}) in {aa['seconds']:.1f} s: {'met' if ok else 'MISSED'}")
    res.done()
    if args.json:
        args.json.write_text(json.dumps({"quantize": rows, "accuracy_control": aa}, indent=2) + "\n")


if __name__ == "__main__":
    main()
