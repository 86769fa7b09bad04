#!/usr/bin/env python3
"""Weight-only compression, ovpot against NNCF 3.4 `compress_weights`, side by side in one run (issue #17).

    .peers/venv/bin/python bench/compress.py [--llm DIR] [--runs 1] [--modes int8_asym int4_asym]
        [--models llm minilm] [--json OUT.json]

Models: the Llama-shaped 1.26 B-parameter FP16 IR of ../shared/tools/make_llm.py (built into
--llm when missing, about 40 s) and minilm_l6 from ../shared/fixtures (real weights).
Per model and mode (int8_asym per channel; int4_asym group 128 with NNCF's defaults, i.e.
embeddings and the last MatMul in int8_asym):
  * whole-process wall time and peak RSS (GNU time): `ovpot compress-weights` against a Python
    process that imports openvino and nncf, reads the model, runs `nncf.compress_weights` and saves
    (the NNCF worker of common.py), interleaved run by run;
  * the weights file size;
  * codes: the share of compressed constants bit-identical to NNCF's (same name, same bytes);
  * quality in the real runtime (OpenVINO CPU, INFERENCE_PRECISION_HINT=f32): SQNR of the outputs
    against the FP32 model, for both; and that the CPU plugin runs the compressed kernels
    (FullyConnected/Gather reading u4/u8 weights in the compiled model).
Bars (the issue): time <= 0.5x NNCF, peak RSS <= 1 GiB, file <= NNCF's, SQNR >= NNCF - 0.1 dB.
Results: bench/results/compress.jsonl, options.variant = the mode.
"""
import argparse
import collections
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

import common
import table


def judge_worker(ref_xml, inputs_json, *cands):
    """Own process (the FP32 LLM alone takes several GB compiled): SQNR over all outputs and the
    compressed kernels of each candidate."""
    import openvino as ov

    inputs = [{k: np.load(v) for k, v in sample.items()} for sample in json.loads(inputs_json)]
    core = ov.Core()

    def run(xml):
        cm = core.compile_model(xml, "CPU", common.F32)
        req = cm.create_infer_request()
        outs = []
        for feed in inputs:
            r = req.infer(feed)
            outs.append([np.array(r[o], dtype=np.float64) for o in cm.outputs])
        kernels = collections.Counter()
        for op in cm.get_runtime_model().get_ops():
            rt = op.get_rt_info()
            kind = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
            if kind in ("FullyConnected", "Gather", "MatMul", "Convolution") and op.get_input_size() > 1:
                w = op.input(1 if kind != "Gather" else 0).get_element_type().get_type_name()
                kernels[f"{kind}:{w}"] += 1
        del cm
        return outs, dict(kernels)

    ref, _ = run(ref_xml)
    res = {}
    for xml in cands:
        outs, kernels = run(xml)
        flat_ref = [r for s in ref for r in s]
        flat_out = [o for s in outs for o in s]
        res[xml] = {"sqnr_db": common.sqnr_db(flat_ref, flat_out), "kernels": kernels}
    print(json.dumps(res))


def codes_worker(a_xml, b_xml):
    """The compressed constants of b identical to a's (same name, type, shape, bytes)."""
    import openvino as ov

    a, b = (ov.Core().read_model(x) for x in (a_xml, b_xml))
    ints = ("u8", "i8", "u4", "i4")
    A = {o.get_friendly_name(): o for o in a.get_ops() if o.get_type_name() == "Constant"}
    B = {o.get_friendly_name(): o for o in b.get_ops() if o.get_type_name() == "Constant"}
    same = total = 0
    for name, op in A.items():
        if op.get_element_type().get_type_name() not in ints and not name.endswith("/scale"):
            continue
        total += 1
        o = B.get(name)
        if (o is not None and o.get_element_type() == op.get_element_type()
                and list(o.get_output_shape(0)) == list(op.get_output_shape(0))):
            same += np.array(o.get_tensor_view().data).tobytes() == np.array(op.get_tensor_view().data).tobytes()
    print(json.dumps({"identical": int(same), "total": total}))


def worker(kind, args):
    out, _, _ = common.run_checked([sys.executable, __file__, "--worker", kind, *map(str, args)])
    return json.loads(out.strip().splitlines()[-1])


def ensure_llm(path):
    if (path / "model.xml").exists():
        return
    print(f"building the 1.26B-parameter LLM IR in {path} ...", flush=True)
    subprocess.run([sys.executable, str(common.SHARED / "tools" / "make_llm.py"), str(path)], check=True)


def model_inputs(name, xml, work):
    """Inputs for judging: the LLM's input_ids.npy (8 sequences), minilm's eval samples (32)."""
    if name == "llm":
        ids = np.load(xml.parent / "input_ids.npy")
        files = []
        for k in range(ids.shape[0]):
            f = work / f"ids{k}.npy"
            np.save(f, ids[k : k + 1])
            files.append({"input_ids": str(f)})
        return files
    arrays = {p.stem: np.load(p) for p in sorted((xml.parent / "eval").glob("*.npy")) if p.stem != "eval_labels"}
    n = min(32, min(a.shape[0] for a in arrays.values()))
    files = []
    for k in range(n):
        sample = {}
        for inp, a in arrays.items():
            f = work / f"{inp}{k}.npy"
            np.save(f, a[k : k + 1])
            sample[inp] = str(f)
        files.append(sample)
    return files


def bin_size(xml):
    return Path(xml).with_suffix(".bin").stat().st_size


def bench(name, xml, mode, args, work, res):
    out = work / f"{name}_{mode}"
    nncf_xml = out / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    ours_dir = out / "ovpot"
    ours_xml = ours_dir / "optimized" / f"{xml.stem}.xml"
    t_nncf, m_nncf, t_ours, m_ours = [], [], [], []
    cmd = [args.ovpot, "--quiet", "compress-weights", "-m", xml, "--mode", mode, "--output-dir", ours_dir]
    for _ in range(args.runs):
        # Interleaved, so drift on a noisy machine hits both alike.
        nn = common.nncf_run({"op": "compress", "model": str(xml), "out": str(nncf_xml), "mode": mode, "fp16": False})
        t_nncf.append(nn["wall_s"])
        m_nncf.append(nn["rss_mib"])
        _, secs, peak = common.run_checked(cmd)
        t_ours.append(secs)
        m_ours.append(peak)
    codes = worker("codes", [nncf_xml, ours_xml])
    judged = worker("judge", [xml, json.dumps(model_inputs(name, xml, work)), nncf_xml, ours_xml])
    row = {"model": name, "mode": mode, "nncf_s": statistics.median(t_nncf), "ovpot_s": statistics.median(t_ours),
           "nncf_rss_mib": max(m_nncf), "ovpot_rss_mib": max(m_ours), "nncf_bytes": bin_size(nncf_xml),
           "ovpot_bytes": bin_size(ours_xml), "nncf_sqnr_db": judged[str(nncf_xml)]["sqnr_db"],
           "ovpot_sqnr_db": judged[str(ours_xml)]["sqnr_db"], "nncf_kernels": judged[str(nncf_xml)]["kernels"],
           "ovpot_kernels": judged[str(ours_xml)]["kernels"],
           "identical_codes": f"{codes['identical']}/{codes['total']}", "runs": args.runs}
    row["time_ratio"] = row["ovpot_s"] / row["nncf_s"]
    row["bars_met"] = (row["time_ratio"] <= 0.5 and (name != "llm" or row["ovpot_rss_mib"] <= 1024)
                       and row["ovpot_bytes"] <= row["nncf_bytes"] and row["ovpot_sqnr_db"] >= row["nncf_sqnr_db"] - 0.1)
    opt = {"variant": mode}
    for tool in ("ovpot", "nncf"):
        res.add(tool, name, "time_s", row[f"{tool}_s"], "s", dict(opt, runs=args.runs, whole_process=True))
        res.add(tool, name, "rss_mib", row[f"{tool}_rss_mib"], "MiB", opt)
        res.add(tool, name, "bin_bytes", row[f"{tool}_bytes"], "B", opt)
        res.add(tool, name, "sqnr_db", row[f"{tool}_sqnr_db"], "dB", opt)
        res.add(tool, name, "kernels", ", ".join(f"{k} x{v}" for k, v in sorted(row[f"{tool}_kernels"].items())),
                None, opt)
    res.add("ovpot", name, "identical_codes", codes["identical"], None, opt)
    res.add("ovpot", name, "compressed_constants", codes["total"], None, opt)
    res.add("ovpot", name, "bars_met", row["bars_met"], None, opt)
    return row


def main():
    ap = common.parser(__doc__, fixtures=False, name="compress")
    ap.add_argument("--llm", type=Path, default=common.ROOT / ".peers" / "llm",
                    help="the make_llm.py IR folder (built when missing)")
    ap.add_argument("--minilm", type=Path, help="default: FIXTURES/minilm_l6")
    ap.add_argument("--models", nargs="+", default=["llm", "minilm"])
    ap.add_argument("--modes", nargs="+", default=["int8_asym", "int4_asym"])
    ap.add_argument("--binary", dest="ovpot", default=argparse.SUPPRESS, help="the same as --ovpot (the old name)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return {"judge": judge_worker, "codes": codes_worker}[args.worker[0]](*args.worker[1:])
    args.ovpot = common.ovpot_binary(args)
    common.header(args, f"median of {args.runs} run(s) per cell; whole processes; peak RSS from GNU time")
    res = common.Results("compress", args)
    work = common.work_dir(args, "compress")
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        if name == "llm":
            ensure_llm(args.llm)
            xml = args.llm / "model.xml"
        else:
            xml = (args.minilm or Path(args.fixtures) / "minilm_l6") / "model.xml"
        for mode in args.modes:
            rows.append(bench(name, xml, mode, args, work, res))
            r = rows[-1]
            print(f"  {name} {mode}: ovpot {r['ovpot_s']:.2f} s vs NNCF {r['nncf_s']:.2f} s", flush=True)
    table.print_records(res.records)
    for r in rows:
        print(f"{r['model']} {r['mode']}: bars {'met' if r['bars_met'] else 'MISSED'}")
    res.done()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
