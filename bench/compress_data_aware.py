#!/usr/bin/env python3
"""Data-aware INT4 weight compression, ovpot against NNCF 3.4 `compress_weights(dataset=...)`.

    .peers/venv/bin/python bench/compress_data_aware.py MODEL_DIR [MODEL_DIR ...]
        [--methods awq_se,gptq_se,mixed] [--tools nncf,ovpot] [--ovpot target/release/ovpot]
        [--subset-size 32] [--group-size 128] [--eval 8] [--keep DIR] [--json OUT.json]
        [--make-data] [--timeout 3600]

MODEL_DIR: an LLM as optimum-intel exports it (stateful KV cache; ../shared/tools/make_hf_llm.py),
openvino_model.xml (or model.xml) with calib/ and eval/ beside it in ovpot's data layout: one .npy
per model input, samples on axis 0 (input_ids, attention_mask, position_ids int64 [n, T];
beam_idx int32 [n]). --make-data writes missing calib/ (32 windows of 128 tokens, seed 0) and
eval/ (8 windows, seed 1) with Zipf-distributed token ids (vocab_size from config.json).

Methods (all int4_asym, group --group-size, backup int8_asym, subset --subset-size):
    awq_se   awq + scale_estimation, ratio 1        gptq_se  gptq + scale_estimation, ratio 1
    mixed    ratio 0.8, data-aware mixed precision (NNCF's default metric with a dataset:
             max_activation_variance)
    awq, se, gptq   each alone, ratio 1             none     data-free int4, ratio 1 (a baseline)
When the group size divides no hidden/intermediate size of the model (e.g. 1376), both tools get
group_size_fallback_mode ADJUST (`--group-size-fallback adjust`); --group-fallback overrides.

Per model and method:
  * NNCF: a fresh process of this Python (`--worker nncf SPEC`) reads the model, builds
    nncf.Dataset from the calib windows (one dict per window, batch 1), runs
    nncf.compress_weights(...) and ov.save_model(compress_to_fp16=False); whole-process wall time
    and peak RSS (GNU time), and the seconds NNCF spends in its stages (statistics collection,
    mixed precision, AWQ, scale estimation, GPTQ, the transformation), timed by wrapping them;
  * ovpot: `ovpot --quiet compress-weights -m XML --mode int4_asym --group-size G --ratio R
    --dataset CALIB --subset-size N [--awq] [--scale-estimation] [--gptq] --output-dir OUT`;
    a non-zero exit is a 'failed' row (the last line of its stderr printed), not the end;
  * judged in OpenVINO (CPU, INFERENCE_PRECISION_HINT=f32, a fresh infer request and the state
    reset for every eval window): logits SQNR against the FP32 model over all logits of the eval
    windows; the element type of the constant behind every MatMul/Gather weight (u4/u8/f32...),
    NNCF's and ovpot's compared layer by layer.
Prints a markdown table (and NNCF's stage times); --json writes the rows. Writes no results file.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

METHODS = {
    "awq_se": dict(ratio=1.0, awq=True, scale_estimation=True),
    "gptq_se": dict(ratio=1.0, gptq=True, scale_estimation=True),
    "mixed": dict(ratio=0.8),
    "awq": dict(ratio=1.0, awq=True),
    "se": dict(ratio=1.0, scale_estimation=True),
    "gptq": dict(ratio=1.0, gptq=True),
    "none": dict(ratio=1.0, data_free=True),
}
DEFAULT_METHODS = "awq_se,gptq_se,mixed"
INPUTS = ["input_ids", "attention_mask", "position_ids", "beam_idx"]
CALIB_WINDOWS, EVAL_WINDOWS, WINDOW = 32, 8, 128


# ---------------------------------------------------------------- data


def make_tokens(out, vocab, n, T, seed):
    """n windows of T Zipf-distributed token ids (a fixed random permutation of the vocabulary
    maps ranks to ids, so the frequent tokens are not 0, 1, 2...), in ovpot's data layout."""
    rng = np.random.default_rng(seed)
    perm = np.random.default_rng(1234).permutation(vocab)
    ranks = np.minimum(rng.zipf(1.2, (n, T)), vocab) - 1
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "input_ids.npy", perm[ranks].astype(np.int64))
    np.save(out / "attention_mask.npy", np.ones((n, T), np.int64))
    np.save(out / "position_ids.npy", np.tile(np.arange(T, dtype=np.int64), (n, 1)))
    np.save(out / "beam_idx.npy", np.zeros((n,), np.int32))


def make_data(d):
    vocab = json.loads((d / "config.json").read_text())["vocab_size"]
    for sub, n, seed in (("calib", CALIB_WINDOWS, 0), ("eval", EVAL_WINDOWS, 1)):
        if not (d / sub / "beam_idx.npy").exists():
            make_tokens(d / sub, vocab, n, WINDOW, seed)
            print(f"wrote {d / sub}: {n} windows of {WINDOW} tokens (seed {seed})", flush=True)


def model_xml(d):
    return d / "openvino_model.xml" if (d / "openvino_model.xml").exists() else d / "model.xml"


def fallback_for(d, group):
    """'adjust' when the group size divides not every hidden/intermediate size, else None."""
    cfg_path = d / "config.json"
    if group <= 0 or not cfg_path.exists():
        return None
    cfg = json.loads(cfg_path.read_text())
    dims = [cfg.get(k) for k in ("hidden_size", "n_embd", "intermediate_size", "ffn_dim", "n_inner")]
    return None if all(x % group == 0 for x in dims if x) else "adjust"


# ---------------------------------------------------------------- workers (fresh processes)


def nncf_worker(spec):
    """nncf.compress_weights as a user calls it; prints one JSON line with the stage times."""
    t_start = time.perf_counter()
    import nncf
    import openvino as ov
    from nncf.quantization.algorithms.weight_compression import algorithm as wc

    stages = {}

    def timed(owner, name, label):
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                stages[label] = stages.get(label, 0.0) + time.perf_counter() - t0

        setattr(owner, name, wrapper)

    timed(wc.WeightCompression, "_collect_statistics", "statistics")
    timed(wc.WeightCompression, "apply_mixed_precision", "mixed_precision")
    for mod, cls, label in (("awq", "AWQ", "awq"), ("scale_estimation", "ScaleEstimation", "scale_estimation"),
                            ("gptq", "GPTQ", "gptq")):
        m = __import__(f"nncf.quantization.algorithms.weight_compression.{mod}", fromlist=[cls])
        timed(getattr(m, cls), "apply", label)
    from nncf.openvino.quantization.quantize_model import compress_weights_impl  # noqa: F401 - warm import
    from nncf.quantization.algorithms.weight_compression import openvino_backend as ovb

    timed(ovb.OVWeightCompressionAlgoBackend, "transform_model", "transform")

    nncf.set_log_level(40)  # errors only
    import_s = time.perf_counter() - t_start
    t0 = time.perf_counter()
    model = ov.Core().read_model(spec["model"])
    read_s = time.perf_counter() - t0
    kw = dict(mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=spec["group_size"], ratio=spec["ratio"])
    if not spec.get("data_free"):
        calib = common.load_samples(spec["calib"], model)
        kw.update(dataset=nncf.Dataset(calib), subset_size=spec["subset_size"])
        for k in ("awq", "scale_estimation", "gptq"):
            if spec.get(k):
                kw[k] = True
    if spec.get("fallback"):
        from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

        kw["advanced_parameters"] = AdvancedCompressionParameters(
            group_size_fallback_mode=getattr(GroupSizeFallbackMode, spec["fallback"].upper()))
    t0 = time.perf_counter()
    q = nncf.compress_weights(model, **kw)
    compress_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ov.save_model(q, spec["out"], compress_to_fp16=False)
    save_s = time.perf_counter() - t0
    print(json.dumps({"import_s": import_s, "read_s": read_s, "compress_s": compress_s, "save_s": save_s,
                      "stages": stages, "options": {k: str(v) for k, v in kw.items() if k != "dataset"}}))


def judge_worker(spec):
    """Logits SQNR against the FP32 model over the eval windows, for each candidate IR."""
    import openvino as ov

    core = ov.Core()
    ref_model = core.read_model(spec["ref"])
    samples = common.load_samples(spec["eval"], ref_model, spec.get("limit"))
    del ref_model

    def logits(xml):
        cm = core.compile_model(str(xml), "CPU", common.F32)
        outs = []
        for s in samples:
            req = cm.create_infer_request()  # fresh request, and the state reset besides
            req.reset_state()
            outs.append(np.array(req.infer(s)[cm.outputs[0]], dtype=np.float32))
        del cm
        return outs

    ref = logits(spec["ref"])
    res = {}
    for xml in spec["cands"]:
        try:
            res[xml] = {"sqnr_db": common.sqnr_db(ref, logits(xml))}
        except Exception as e:  # noqa: BLE001 - one candidate's failure is a result
            res[xml] = {"error": " ".join(str(e).split())[-300:]}
    print(json.dumps(res))


# ---------------------------------------------------------------- running


def last_line(text):
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def error_line(text):
    """The last line of a failed child's stderr that says what went wrong (clap's `error: ...`
    rather than its closing `For more information, try '--help'.`)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.lower().startswith(("error", "thread '")) or "Error" in ln]
    return (said or lines or [""])[-1][:300]


def worker(kind, spec, timeout=None):
    return common.run_measured([sys.executable, __file__, "--worker", kind, json.dumps(spec)], timeout=timeout)


def ovpot_cmd(args, xml, calib, out_dir, m, fallback):
    cmd = [args.ovpot, "--quiet", "compress-weights", "-m", xml, "--mode", "int4_asym",
           "--group-size", args.group_size, "--ratio", m["ratio"]]
    if fallback:
        cmd += ["--group-size-fallback", fallback]
    if not m.get("data_free"):
        cmd += ["--dataset", calib, "--subset-size", args.subset_size]
        cmd += [f for k, f in (("awq", "--awq"), ("scale_estimation", "--scale-estimation"), ("gptq", "--gptq"))
                if m.get(k)]
        if args.ovpot_backend != "builtin":
            cmd += ["--backend", args.ovpot_backend]
    return cmd + ["--output-dir", out_dir]


def bench_model(d, args, work):
    from llm import layer_precisions  # the same per-layer precision reading as bench/llm.py

    name = d.name
    xml = model_xml(d)
    calib = d / "calib"
    evals = d / "eval" if (d / "eval").is_dir() else calib
    fallback = args.group_fallback if args.group_fallback != "auto" else fallback_for(d, args.group_size)
    if fallback == "error":
        fallback = None
    rows, cands = [], []
    for meth in args.methods:
        m = METHODS[meth]
        out = work / name / meth
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        row = {"model": name, "method": meth, "ratio": m["ratio"], "group_size": args.group_size,
               "group_fallback": fallback, "subset_size": args.subset_size}
        if "nncf" in args.tools:
            nncf_xml = out / "nncf" / xml.name
            nncf_xml.parent.mkdir()
            spec = dict(m, model=str(xml), out=str(nncf_xml), calib=str(calib), group_size=args.group_size,
                        subset_size=args.subset_size, fallback=fallback)
            code, so, se, secs, peak = worker("nncf", spec, args.timeout)
            if code == 0:
                info = json.loads(last_line(so))
                row.update(nncf_s=secs, nncf_rss_mib=peak, nncf_xml=str(nncf_xml), nncf_compress_s=info["compress_s"],
                           nncf_stages=info["stages"])
                cands.append(str(nncf_xml))
            else:
                row.update(nncf_status="timeout" if code == "timeout" else "failed", nncf_s=secs,
                           nncf_error=error_line(se))
                print(f"  {name} {meth}: NNCF {row['nncf_status']} after {secs:.0f} s: {error_line(se)}", flush=True)
        if "ovpot" in args.tools:
            ours_dir = out / "ovpot"
            code, so, se, secs, peak = common.run_measured(ovpot_cmd(args, xml, calib, ours_dir, m, fallback), timeout=args.timeout)
            if code == 0:
                ours_xml = common.optimized_xml(ours_dir, xml.stem)
                row.update(ovpot_s=secs, ovpot_rss_mib=peak, ovpot_xml=str(ours_xml))
                cands.append(str(ours_xml))
            else:
                row.update(ovpot_status="timeout" if code == "timeout" else "failed", ovpot_s=secs,
                           ovpot_error=error_line(se))
                print(f"  {name} {meth}: ovpot {row['ovpot_status']} ({code}): {error_line(se)}", flush=True)
        msg = [f"{t} {row[t + '_s']:.1f} s / {row[t + '_rss_mib']:.0f} MiB" for t in ("nncf", "ovpot")
               if f"{t}_xml" in row]
        if msg:
            print(f"  {name} {meth}: " + ", ".join(msg), flush=True)
        rows.append(row)
    if cands:
        code, so, se, _, _ = worker("judge", {"ref": str(xml), "eval": str(evals), "limit": args.eval, "cands": cands})
        if code != 0:
            raise RuntimeError(f"judging {name} failed: {se.strip()[-2000:]}")
        judged = json.loads(last_line(so))
        for row in rows:
            for t in ("nncf", "ovpot"):
                if f"{t}_xml" in row:
                    j = judged[row[f"{t}_xml"]]
                    row[f"{t}_sqnr_db"] = j.get("sqnr_db")
                    if "error" in j:
                        row[f"{t}_judge_error"] = j["error"]
                    row[f"{t}_bits"] = layer_precisions(row[f"{t}_xml"])
            if "nncf_bits" in row:
                row["nncf_bit_histogram"] = histogram(row["nncf_bits"])
            if "nncf_bits" in row and "ovpot_bits" in row:
                a, b = row["nncf_bits"], row["ovpot_bits"]
                keys = sorted(set(a) | set(b))
                diff = [k for k in keys if a.get(k) != b.get(k)]
                row["bits_match"] = f"{len(keys) - len(diff)}/{len(keys)}"
                row["bits_differ"] = {k: f"{a.get(k)} vs {b.get(k)}" for k in diff}
            if "nncf_sqnr_db" in row and "ovpot_sqnr_db" in row and None not in (row["nncf_sqnr_db"],
                                                                                  row["ovpot_sqnr_db"]):
                row["sqnr_diff_db"] = row["ovpot_sqnr_db"] - row["nncf_sqnr_db"]
            if "nncf_xml" in row and "ovpot_xml" in row:
                row["time_ratio"] = row["ovpot_s"] / row["nncf_s"]
                row["rss_ratio"] = row["ovpot_rss_mib"] / row["nncf_rss_mib"]
    for row in rows:
        for k in [k for k in row if k.endswith("_bits")]:
            row[k] = dict(sorted(row[k].items()))
    return rows


def histogram(bits):
    h = {}
    for t in bits.values():
        h[t] = h.get(t, 0) + 1
    return dict(sorted(h.items()))


# ---------------------------------------------------------------- output


def fmt(v, spec="{:.2f}", default="-"):
    return default if v is None else spec.format(v)


def print_tables(rows):
    print()
    print("| model | method | NNCF SQNR dB | ovpot SQNR dB | diff | NNCF s | ovpot s | ratio | NNCF RSS MiB | "
          "ovpot RSS MiB | ratio | bit widths same |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        nn = fmt(r.get("nncf_sqnr_db")) if "nncf_status" not in r else r["nncf_status"]
        ours = fmt(r.get("ovpot_sqnr_db")) if "ovpot_status" not in r else r["ovpot_status"]
        print(f"| {r['model']} | {r['method']} | {nn} | {ours} | {fmt(r.get('sqnr_diff_db'), '{:+.2f}')} "
              f"| {fmt(r.get('nncf_s'), '{:.1f}')} | {fmt(r.get('ovpot_s') if 'ovpot_xml' in r else None, '{:.1f}')} "
              f"| {fmt(r.get('time_ratio'))} | {fmt(r.get('nncf_rss_mib'), '{:.0f}')} "
              f"| {fmt(r.get('ovpot_rss_mib'), '{:.0f}')} | {fmt(r.get('rss_ratio'))} | {r.get('bits_match', '-')} |")
    staged = [r for r in rows if r.get("nncf_stages") is not None]
    if staged:
        names = ["statistics", "mixed_precision", "awq", "scale_estimation", "gptq", "transform"]
        print("\nNNCF, seconds inside compress_weights (the whole process above adds Python start, imports, "
              "read and save):\n")
        print("| model | method | compress_weights | " + " | ".join(names) + " | bit widths (NNCF) |")
        print("|---|---|---|" + "---|" * len(names) + "---|")
        for r in staged:
            st = r["nncf_stages"]
            hist = ", ".join(f"{k} x{v}" for k, v in r.get("nncf_bit_histogram", {}).items())
            print(f"| {r['model']} | {r['method']} | {r['nncf_compress_s']:.1f} | "
                  + " | ".join(fmt(st.get(n), "{:.1f}") for n in names) + f" | {hist} |")
    differ = [r for r in rows if r.get("bits_differ")]
    for r in differ:
        items = list(r["bits_differ"].items())
        print(f"\n{r['model']} {r['method']}: {len(items)} layers in other precisions (NNCF vs ovpot): "
              + "; ".join(f"{k}: {v}" for k, v in items[:8]) + (" ..." if len(items) > 8 else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path, metavar="MODEL_DIR")
    ap.add_argument("--ovpot", default=str(common.ROOT / "target" / "release" / "ovpot"))
    ap.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated of {', '.join(METHODS)} "
                                                               f"(default {DEFAULT_METHODS})")
    ap.add_argument("--tools", default="nncf,ovpot", help="nncf,ovpot (default both)")
    ap.add_argument("--subset-size", type=int, default=32)
    ap.add_argument("--ovpot-backend", default="builtin", choices=["builtin", "openvino"],
                    help="where ovpot runs the model for statistics (openvino: this venv's OpenVINO)")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--group-fallback", default="auto", choices=["auto", "error", "ignore", "adjust"],
                    help="group_size_fallback_mode for both tools (auto: adjust where the group size does not "
                         "divide the model's hidden/intermediate sizes, else NNCF's default, error)")
    ap.add_argument("--eval", type=int, default=None, help="eval windows judged (default all)")
    ap.add_argument("--keep", type=Path, help="keep the compressed IRs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--make-data", action="store_true", help="write missing calib/ and eval/ (Zipf tokens)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per compression process (default 3600)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ovpot_backend == "openvino":
        import openvino
        os.environ.setdefault("OVPOT_OPENVINO_LIB", os.path.join(os.path.dirname(openvino.__file__), "libs"))
    if args.worker:
        return {"nncf": nncf_worker, "judge": judge_worker}[args.worker[0]](json.loads(args.worker[1]))
    if not args.models:
        ap.error("give at least one MODEL_DIR")
    args.methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        ap.error(f"unknown methods {bad}; known: {', '.join(METHODS)}")
    args.tools = set(t for t in args.tools.split(",") if t)
    args.commit = None
    if "ovpot" in args.tools and not Path(args.ovpot).exists():
        print(f"{args.ovpot} missing: the ovpot rows will fail", file=sys.stderr)
    common.header(args, f"int4_asym g{args.group_size}, subset {args.subset_size}; whole processes, "
                        "peak RSS from GNU time")
    work = args.keep or Path(tempfile.mkdtemp(prefix="ovpot-da-"))
    rows = []
    try:
        for d in args.models:
            if args.make_data:
                make_data(d)
            if not (d / "calib").is_dir():
                print(f"{d}: no calib/ (--make-data writes it)", file=sys.stderr)
                continue
            rows += bench_model(d.resolve(), args, work)
            if args.json:  # after every model, so a long run leaves what it has
                args.json.write_text(json.dumps(rows, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_tables(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
