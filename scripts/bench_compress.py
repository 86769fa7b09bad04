#!/usr/bin/env python3
"""Weight-only compression, ovpot against NNCF 3.4 `compress_weights`, side by side in one run (issue #17).

Run with the peers venv after `cargo build --release --bin ovpot`:
    .peers/venv/bin/python scripts/bench_compress.py [--llm DIR] [--runs 1] [--modes int8_asym int4_asym]
        [--json OUT.json]

Models: the Llama-shaped 1.26 B-parameter FP16 IR of ../shared/tools/make_llm.py (built into
--llm when missing, about 40 s) and minilm_l6 from ../shared/fixtures (real weights).
Per model and mode (int8_asym per channel; int4_asym group 128 with NNCF's defaults, i.e.
embeddings and the last MatMul in int8_asym):
  * whole-process wall time and peak RSS (GNU time): `ovpot compress-weights` against a Python
    process that imports openvino and nncf, reads the model, runs `nncf.compress_weights` and saves;
  * the weights file size;
  * codes: the share of compressed constants bit-identical to NNCF's (same name, same bytes);
  * quality in the real runtime (OpenVINO CPU, INFERENCE_PRECISION_HINT=f32): SQNR of the outputs
    against the FP32 model, for both; and that the CPU plugin runs the compressed kernels
    (FullyConnected/Gather reading u4/u8 weights in the compiled model).
Bars (the issue): time <= 0.5x NNCF, peak RSS <= 1 GiB, file <= NNCF's, SQNR >= NNCF - 0.1 dB.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quantize as bq  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

NNCF_WORKER = r"""
import sys, openvino as ov, nncf
src, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
model = ov.Core().read_model(src)
model = nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode, mode.upper()))
ov.save_model(model, out, compress_to_fp16=False)
"""

# Judging runs in its own process: the FP32 LLM alone takes several GB once compiled.
JUDGE_WORKER = r"""
import json, sys, collections, numpy as np, openvino as ov
ref_xml, inputs_json, cands = sys.argv[1], sys.argv[2], sys.argv[3:]
inputs = [{k: np.load(v) for k, v in sample.items()} for sample in json.loads(inputs_json)]
core = ov.Core()
cfg = {"INFERENCE_PRECISION_HINT": "f32"}

def run(xml):
    cm = core.compile_model(xml, "CPU", cfg)
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
    num = sum(float((r ** 2).sum()) for s in ref for r in s)
    den = sum(float(((r - o) ** 2).sum()) for s, t in zip(ref, outs) for r, o in zip(s, t))
    res[xml] = {"sqnr_db": 10 * np.log10(num / max(den, 1e-30)), "kernels": kernels}
print(json.dumps(res))
"""

CODES_WORKER = r"""
import json, sys, numpy as np, openvino as ov
a, b = (ov.Core().read_model(x) for x in sys.argv[1:3])
ints = ("u8", "i8", "u4", "i4")
A = {o.get_friendly_name(): o for o in a.get_ops() if o.get_type_name() == "Constant"}
B = {o.get_friendly_name(): o for o in b.get_ops() if o.get_type_name() == "Constant"}
same = total = 0
for name, op in A.items():
    if op.get_element_type().get_type_name() not in ints and not name.endswith("/scale"):
        continue
    total += 1
    o = B.get(name)
    if o is not None and o.get_element_type() == op.get_element_type() and list(o.get_output_shape(0)) == list(op.get_output_shape(0)):
        same += np.array(o.get_tensor_view().data).tobytes() == np.array(op.get_tensor_view().data).tobytes()
print(json.dumps({"identical": int(same), "total": total}))
"""


def ensure_llm(path):
    if (path / "model.xml").exists():
        return
    print(f"building the 1.26B-parameter LLM IR in {path} ...", flush=True)
    subprocess.run([sys.executable, str(SHARED / "tools" / "make_llm.py"), str(path)], check=True)


def model_inputs(name, xml, work):
    """Inputs for judging: the LLM's input_ids.npy (8 sequences), minilm's eval samples."""
    if name == "llm":
        ids = np.load(xml.parent / "input_ids.npy")
        files = []
        for k in range(ids.shape[0]):
            f = work / f"ids{k}.npy"
            np.save(f, ids[k : k + 1])
            files.append({"input_ids": str(f)})
        return files
    fixture = xml.parent
    arrays = {p.stem: np.load(p) for p in sorted((fixture / "eval").glob("*.npy")) if p.stem != "eval_labels"}
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


def worker(code, args):
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bin_size(xml):
    return Path(xml).with_suffix(".bin").stat().st_size


def bench(name, xml, mode, binary, runs, work):
    out = work / f"{name}_{mode}"
    nncf_xml = out / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    ours_dir = out / "ovpot"
    ours_xml = ours_dir / "optimized" / f"{xml.stem}.xml"
    t_nncf, m_nncf, t_ours, m_ours = [], [], [], []
    for _ in range(runs):
        # Interleaved, so drift on a noisy machine hits both alike.
        rc, _, err, secs, peak = bq.run_measured([sys.executable, "-c", NNCF_WORKER, str(xml), str(nncf_xml), mode])
        if rc != 0:
            raise SystemExit(f"NNCF failed on {name} {mode}:\n{err[-3000:]}")
        t_nncf.append(secs)
        m_nncf.append(peak)
        cmd = [str(binary), "--quiet", "compress-weights", "-m", str(xml), "--mode", mode, "--output-dir", str(ours_dir)]
        rc, _, err, secs, peak = bq.run_measured(cmd)
        if rc != 0:
            raise SystemExit(f"ovpot failed on {name} {mode}:\n{err[-3000:]}")
        t_ours.append(secs)
        m_ours.append(peak)
    codes = worker(CODES_WORKER, [str(nncf_xml), str(ours_xml)])
    judged = worker(JUDGE_WORKER, [str(xml), json.dumps(model_inputs(name, xml, work)), str(nncf_xml), str(ours_xml)])
    row = {
        "model": name,
        "mode": mode,
        "nncf_s": statistics.median(t_nncf),
        "ovpot_s": statistics.median(t_ours),
        "nncf_rss_mib": max(m_nncf),
        "ovpot_rss_mib": max(m_ours),
        "nncf_bytes": bin_size(nncf_xml),
        "ovpot_bytes": bin_size(ours_xml),
        "nncf_sqnr_db": judged[str(nncf_xml)]["sqnr_db"],
        "ovpot_sqnr_db": judged[str(ours_xml)]["sqnr_db"],
        "nncf_kernels": judged[str(nncf_xml)]["kernels"],
        "ovpot_kernels": judged[str(ours_xml)]["kernels"],
        "identical_codes": f"{codes['identical']}/{codes['total']}",
        "runs": runs,
    }
    row["time_ratio"] = row["ovpot_s"] / row["nncf_s"]
    row["bars_met"] = (
        row["time_ratio"] <= 0.5
        and (name != "llm" or row["ovpot_rss_mib"] <= 1024)
        and row["ovpot_bytes"] <= row["nncf_bytes"]
        and row["ovpot_sqnr_db"] >= row["nncf_sqnr_db"] - 0.1
    )
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", type=Path, default=ROOT / ".peers" / "llm", help="the make_llm.py IR folder (built when missing)")
    ap.add_argument("--minilm", type=Path, default=Path(os.environ.get("OVPOT_FIXTURES", SHARED / "fixtures")) / "minilm_l6")
    ap.add_argument("--models", nargs="+", default=["llm", "minilm"])
    ap.add_argument("--modes", nargs="+", default=["int8_asym", "int4_asym"])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "ovpot")
    ap.add_argument("--work", type=Path, default=None, help="keep outputs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ovpot-compress-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for name in args.models:
            if name == "llm":
                ensure_llm(args.llm)
                xml = args.llm / "model.xml"
            else:
                xml = args.minilm / "model.xml"
            for mode in args.modes:
                rows.append(bench(name, xml, mode, args.binary, args.runs, work))
                r = rows[-1]
                print(f"  {name} {mode}: ovpot {r['ovpot_s']:.2f} s vs NNCF {r['nncf_s']:.2f} s", flush=True)
    print()
    print("| model | mode | NNCF time | ovpot time | ratio | NNCF peak RSS | ovpot peak RSS | NNCF .bin | ovpot .bin "
          "| NNCF SQNR | ovpot SQNR | identical codes | compressed kernels (ovpot) | bars |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kernels = ", ".join(f"{k} x{v}" for k, v in sorted(r["ovpot_kernels"].items()))
        print(
            f"| {r['model']} | {r['mode']} | {r['nncf_s']:.2f} s | {r['ovpot_s']:.2f} s | {r['time_ratio']:.2f} "
            f"| {r['nncf_rss_mib']:.0f} MiB | {r['ovpot_rss_mib']:.0f} MiB | {r['nncf_bytes'] / 1e6:.1f} MB "
            f"| {r['ovpot_bytes'] / 1e6:.1f} MB | {r['nncf_sqnr_db']:.2f} dB | {r['ovpot_sqnr_db']:.2f} dB "
            f"| {r['identical_codes']} | {kernels} | {'met' if r['bars_met'] else 'MISSED'} |"
        )
    print(f"\n(median of {args.runs} run(s) per cell; whole processes; peak RSS from GNU time)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
