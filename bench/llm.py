#!/usr/bin/env python3
"""LLMs as optimum-intel exports them (stateful KV cache, SDPA, RoPE, dynamic shapes): ovpot against
NNCF 3.4, side by side in one run (issue #34).

    .peers/venv/bin/python bench/llm.py --corpus DIR [--make-corpus --hf-python V/bin/python]
        [--families llama,qwen2,...] [--only roundtrip,compress,quantize,optimum] [--runs 1]
        [--ovpot target/release/ovpot] [--backend builtin|openvino] [--json OUT.json]
        [--fail-on-violation] [--results bench/results/llm.jsonl]

The corpus: one folder per family under DIR, exported by ../shared/tools/make_hf_llm.py (small
configs: hidden 256, 2 layers; `--make-corpus` makes the missing ones with the torch +
optimum-intel venv given by --hf-python, see that script's docstring), with `calib/` (16 windows of
32 random token ids) and `eval/` (8 windows) in ovpot's data layout: one `.npy` per model input,
samples on axis 0. Nothing of it goes into git.

Per family, judged in OpenVINO (CPU, INFERENCE_PRECISION_HINT=f32, the state reset before every
window as a generate loop does on a new prompt):
  * roundtrip: `ovpot convert` keeps every Assign/ReadValue and the logits bit for bit;
  * compress int8_asym and int4_asym (group 128 where it divides every compressed layer, else 64):
    whole-process time of `ovpot compress-weights` against a Python process that reads the model,
    runs `nncf.compress_weights` and saves it; the precision each weighted layer ends in (same
    layers and bits as NNCF); logits SQNR against FP32 for both; a 48-token greedy generate through
    the KV cache, tokens compared with NNCF's model's;
  * quantize (W8A8): `ovpot quantize --data calib` against `nncf.quantize(model_type=TRANSFORMER,
    subset_size=16)`: time, FakeQuantize count, logits SQNR;
  * optimum: `ovpot compress-weights --mode int4_asym --export-dir OUT` on the export, then
    `OVModelForCausalLM.from_pretrained(OUT).generate(...)` (needs --hf-python): 48 tokens, compared
    with the greedy loop's on ovpot's model.
Bars (the issue): SQNR >= NNCF - 0.1 dB (compress) / - 0.3 dB (quantize), time <= 0.5x NNCF.
Results: bench/results/llm.jsonl, model = family, options.variant = the job (roundtrip, int8_asym,
int4_asym gG, w8a8 BACKEND); tools ovpot and nncf.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

import common
import table

SHARED = common.SHARED
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "phi3", "falcon", "stablelm", "gpt2", "opt"]
SIZES = ["--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--inter", "512", "--vocab", "4000"]
WINDOW, CALIB, EVAL, GENERATE = 32, 16, 8, 48
INPUTS = ["input_ids", "attention_mask", "position_ids", "beam_idx"]

OPTIMUM_GENERATE = r"""
import sys, numpy as np, torch
from optimum.intel import OVModelForCausalLM
m = OVModelForCausalLM.from_pretrained(sys.argv[1], ov_config={"INFERENCE_PRECISION_HINT": "f32"})
ids = torch.tensor(np.load(sys.argv[2])[:1, :16])
out = m.generate(ids, max_new_tokens=int(sys.argv[3]), do_sample=False, min_new_tokens=int(sys.argv[3]))
print(" ".join(str(int(t)) for t in out[0, 16:]))
"""


def sh(cmd, **kw):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r, dt


def make_tokens(out, vocab, n, seed):
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "input_ids.npy", rng.integers(0, vocab, (n, WINDOW)).astype(np.int64))
    np.save(out / "attention_mask.npy", np.ones((n, WINDOW), np.int64))
    np.save(out / "position_ids.npy", np.tile(np.arange(WINDOW, dtype=np.int64), (n, 1)))
    np.save(out / "beam_idx.npy", np.zeros((n,), np.int32))


def make_corpus(corpus, families, hf_python):
    for fam in families:
        d = corpus / fam
        if not (d / "openvino_model.xml").exists():
            if not hf_python:
                raise SystemExit(f"{d} is missing: give --make-corpus --hf-python V/bin/python")
            print(f"exporting {fam} ...", flush=True)
            sh([hf_python, str(SHARED / "tools" / "make_hf_llm.py"), str(d), "--arch", fam, *SIZES])
        cfg = json.loads((d / "config.json").read_text())
        vocab = cfg["vocab_size"]
        if not (d / "calib" / "beam_idx.npy").exists():
            make_tokens(d / "calib", vocab, CALIB, 0)
            make_tokens(d / "eval", vocab, EVAL, 1)


def load_tokens(d):
    arrs = {n: np.load(d / f"{n}.npy") for n in INPUTS}
    return [{n: arrs[n][i:i + 1] for n in INPUTS} for i in range(arrs["input_ids"].shape[0])]


class Judge:
    def __init__(self, ov):
        self.ov = ov
        self.core = ov.Core()

    def logits(self, xml, samples):
        cm = self.core.compile_model(str(xml), "CPU", common.F32)
        req = cm.create_infer_request()
        outs = []
        for s in samples:
            req.reset_state()
            outs.append(np.array(req.infer(s)[cm.outputs[0]], dtype=np.float64))
        return outs

    def generate(self, xml, prompt, steps):
        cm = self.core.compile_model(str(xml), "CPU", common.F32)
        req = cm.create_infer_request()
        req.reset_state()
        ids = prompt["input_ids"][:, :16]
        n = ids.shape[1]
        feed = {"input_ids": ids, "attention_mask": np.ones((1, n), np.int64),
                "position_ids": np.arange(n, dtype=np.int64)[None], "beam_idx": np.zeros(1, np.int32)}
        tokens = []
        for _ in range(steps):
            logits = req.infer(feed)[cm.outputs[0]]
            t = int(np.argmax(logits[0, -1]))
            tokens.append(t)
            n += 1
            feed = {"input_ids": np.array([[t]], np.int64), "attention_mask": np.ones((1, n), np.int64),
                    "position_ids": np.array([[n - 1]], np.int64), "beam_idx": np.zeros(1, np.int32)}
        return tokens


def sqnr(ref, cand):
    return common.sqnr_db(ref, cand)


def layer_precisions(xml):
    """{weighted layer name: element type of the Const behind its weight input} for every MatMul
    and Gather reading a constant (through Convert/Subtract/Multiply/Reshape decompression)."""
    root = ET.parse(xml).getroot()
    layers = {l.get("id"): l for l in root.find("layers")}
    into = {}
    for e in root.find("edges"):
        into[(e.get("to-layer"), e.get("to-port"))] = e.get("from-layer")
    ins = {}
    for (lid, port), src in into.items():
        ins.setdefault(lid, []).append((int(port), src))

    def const_type(lid, depth=0):
        l = layers[lid]
        t = l.get("type")
        if t == "Const":
            return l.find("data").get("element_type")
        if depth > 6 or t not in ("Convert", "Subtract", "Multiply", "Reshape", "FakeQuantize"):
            return None
        kinds = [const_type(s, depth + 1) for _, s in sorted(ins.get(lid, []))]
        kinds = [k for k in kinds if k]
        # Decompression: the codes are the first input's Const (u8/i8/u4/i4), scales come later.
        return kinds[0] if kinds else None

    out = {}
    for lid, l in layers.items():
        if l.get("type") not in ("MatMul", "Gather"):
            continue
        for _, src in sorted(ins.get(lid, [])):
            k = const_type(src)
            if k and k not in ("i32", "i64"):
                out[l.get("name")] = k
                break
    return out


AGNOSTIC = {"Unsqueeze", "Squeeze", "Reshape", "Broadcast", "Transpose", "Convert"}


def fq_sites(xml):
    """Each activation FakeQuantize as (the op it quantizes the output of, the ops that read it),
    looking through data-movement ops on both sides: NNCF puts a quantizer on a branch's edge
    (Concat -> [FQ] -> Unsqueeze), ovpot on the tensor below it (Concat -> Unsqueeze -> [FQ]);
    the two compute the same."""
    root = ET.parse(xml).getroot()
    layers = {l.get("id"): l for l in root.find("layers")}
    ins, outs = {}, {}
    for e in root.find("edges"):
        ins.setdefault(e.get("to-layer"), []).append((int(e.get("to-port")), e.get("from-layer")))
        outs.setdefault(e.get("from-layer"), []).append(e.get("to-layer"))
    typ = lambda i: layers[i].get("type")  # noqa: E731

    def up(i):
        while typ(i) in AGNOSTIC | {"FakeQuantize"}:
            i = sorted(ins[i])[0][1]
        return layers[i].get("name")

    def down(i, seen=()):
        found = set()
        for c in outs.get(i, []):
            if typ(c) in AGNOSTIC | {"FakeQuantize"} and c not in seen:
                found |= down(c, seen + (c,))
            elif typ(c) not in ("ShapeOf",):
                found.add(layers[c].get("name"))
        return found

    sites = set()
    for i, l in layers.items():
        if typ(i) != "FakeQuantize":
            continue
        src = sorted(ins[i])[0][1]
        if typ(src) == "Const" or (typ(src) == "Convert" and typ(sorted(ins[src])[0][1]) == "Const"):
            continue  # a weight's quantizer
        sites.add((up(src), tuple(sorted(down(i)))))
    return sites


def count_type(xml, op):
    return len(re.findall(rf'type="{op}"', Path(xml).read_text()))


def group_for(corpus_dir):
    cfg = json.loads((corpus_dir / "config.json").read_text())
    dims = [cfg.get(k) for k in ("hidden_size", "n_embd", "intermediate_size", "ffn_dim", "n_inner")]
    dims = [d for d in dims if d]
    return next((g for g in (128, 64, 32) if all(d % g == 0 for d in dims)), 16)


def median_time(runs, fn):
    times, last = [], None
    for _ in range(runs):
        last, dt = fn()
        times.append(dt)
    return last, statistics.median(times)


def nncf_timed(spec):
    """The NNCF worker's whole process (start, imports, read, the call, save): (result, seconds)."""
    r = common.nncf_run(spec)
    return r, r["wall_s"]


def model_xml(d):
    """optimum-intel's file name, or the repo's test-data one (tests/data/tiny_llama_stateful)."""
    return d / "openvino_model.xml" if (d / "openvino_model.xml").exists() else d / "model.xml"


def bench_family(fam, d, args, judge, work):
    rows = []
    xml = model_xml(d)
    calib = d / "calib"
    evals = load_tokens(d / "eval" if (d / "eval").is_dir() else calib)
    ref = judge.logits(xml, evals)
    prompt = evals[0]
    ref_tokens = judge.generate(xml, prompt, GENERATE)
    ovpot = args.ovpot
    if "roundtrip" in args.only:
        out = work / f"{fam}_rt.xml"
        sh([ovpot, "--quiet", "convert", "-m", xml, "-o", out])
        got = judge.logits(out, evals)
        same = all(np.array_equal(a, b) for a, b in zip(ref, got))
        rows.append(dict(family=fam, job="roundtrip", assign=f"{count_type(out, 'Assign')}/{count_type(xml, 'Assign')}",
                         identical=same))
    if "compress" in args.only:
        for mode in ["int8_asym", "int4_asym"]:
            g = group_for(d)
            ours = work / f"{fam}_{mode}"
            theirs = work / f"{fam}_{mode}_nncf.xml"
            cmd = [ovpot, "--quiet", "compress-weights", "-m", xml, "--mode", mode, "--output-dir", ours]
            if mode.startswith("int4"):
                cmd += ["--group-size", str(g)]
            _, t_ours = median_time(args.runs, lambda: sh(cmd))
            spec = {"op": "compress", "model": str(xml), "out": str(theirs), "mode": mode, "fp16": False,
                    "group_size": None if mode.startswith("int8") else g}
            _, t_nncf = median_time(args.runs, lambda: nncf_timed(spec))
            ours_xml = ours / "optimized" / xml.name
            p_ours, p_nncf = layer_precisions(ours_xml), layer_precisions(theirs)
            diff = sorted(k for k in set(p_ours) | set(p_nncf) if p_ours.get(k) != p_nncf.get(k))
            s_ours, s_nncf = sqnr(ref, judge.logits(ours_xml, evals)), sqnr(ref, judge.logits(theirs, evals))
            tok_ours, tok_nncf = judge.generate(ours_xml, prompt, GENERATE), judge.generate(theirs, prompt, GENERATE)
            match_nncf = sum(a == b for a, b in zip(tok_nncf, ref_tokens))
            rows.append(dict(family=fam, job=f"{mode}" + (f" g{g}" if mode.startswith("int4") else ""),
                             assign=f"{count_type(ours_xml, 'Assign')}/{count_type(xml, 'Assign')}",
                             layers_differ=len(diff), differ=diff[:4], sqnr_nncf=s_nncf, sqnr_ovpot=s_ours,
                             t_nncf=t_nncf, t_ovpot=t_ours, ratio=t_ours / t_nncf,
                             tokens_same=tok_ours == tok_nncf,
                             tokens_match_fp32=f"{sum(a == b for a, b in zip(tok_ours, ref_tokens))}/{GENERATE}",
                             tokens_match_fp32_nncf=f"{match_nncf}/{GENERATE}"))
            if mode == "int4_asym" and "optimum" in args.only and args.hf_python:
                # As a user replaces `optimum-cli export openvino --weight-format int4`: the export
                # folder compressed into a new one with the same files.
                folder = work / f"{fam}_optimum"
                shutil.rmtree(folder, ignore_errors=True)
                sh([ovpot, "--quiet", "compress-weights", "-m", xml, "--mode", mode, "--group-size", str(g),
                    "--export-dir", folder])
                r, _ = sh([args.hf_python, "-c", OPTIMUM_GENERATE, folder, d / "eval" / "input_ids.npy", str(GENERATE)])
                toks = [int(t) for t in r.stdout.split()]
                rows[-1]["optimum_generates"] = f"{len(toks)} tokens, {'=' if toks == tok_ours else '!='} ovpot's loop"
    if "quantize" in args.only:
        ours = work / f"{fam}_w8a8"
        theirs = work / f"{fam}_w8a8_nncf.xml"
        cmd = [ovpot, "--quiet", "quantize", "-m", xml, "--data", calib, "--output-dir", ours, "--backend", args.backend]
        _, t_ours = median_time(args.runs, lambda: sh(cmd))
        spec = {"op": "quantize", "model": str(xml), "out": str(theirs), "calib": str(calib), "fp16": False,
                "options": {"model_type": "transformer"}}
        _, t_nncf = median_time(args.runs, lambda: nncf_timed(spec))
        ours_xml = ours / "optimized" / xml.name
        s_ours, s_nncf = sqnr(ref, judge.logits(ours_xml, evals)), sqnr(ref, judge.logits(theirs, evals))
        f_ours, f_nncf = fq_sites(ours_xml), fq_sites(theirs)
        rows.append(dict(family=fam, job=f"w8a8 {args.backend}",
                         assign=f"{count_type(ours_xml, 'Assign')}/{count_type(xml, 'Assign')}",
                         fq=f"{count_type(theirs, 'FakeQuantize')}/{count_type(ours_xml, 'FakeQuantize')}",
                         fq_sites_differ=len(f_ours ^ f_nncf), differ=sorted(f_ours ^ f_nncf)[:4],
                         sqnr_nncf=s_nncf, sqnr_ovpot=s_ours, t_nncf=t_nncf, t_ovpot=t_ours, ratio=t_ours / t_nncf,
                         tokens_match_fp32=f"{sum(a == b for a, b in zip(judge.generate(ours_xml, prompt, GENERATE), ref_tokens))}/{GENERATE}"))
    return rows


def record(res, rows, runs):
    """The rows of one family as results lines: model = family, options.variant = the job."""
    start = len(res.records)
    for r in rows:
        fam, opt = r["family"], {"variant": r["job"]}
        add = lambda tool, metric, value, unit=None, o=opt: res.add(tool, fam, metric, value, unit, o)  # noqa: E731
        if "error" in r:
            add("ovpot", "error", r["error"])
            continue
        if "t_ovpot" in r:
            timing = dict(opt, runs=runs)
            add("ovpot", "time_s", r["t_ovpot"], "s", timing)
            add("nncf", "time_s", r["t_nncf"], "s", timing)
        if "sqnr_ovpot" in r:
            add("ovpot", "sqnr_db", r["sqnr_ovpot"], "dB")
            add("nncf", "sqnr_db", r["sqnr_nncf"], "dB")
        add("ovpot", "assign", r.get("assign"))
        if "fq" in r:
            n_nncf, n_ovpot = (int(x) for x in r["fq"].split("/"))
            add("ovpot", "fake_quantize", n_ovpot)
            add("nncf", "fake_quantize", n_nncf)
        for k in ("identical", "layers_differ", "fq_sites_differ", "tokens_same", "optimum_generates"):
            add("ovpot", k, r.get(k))
        if "tokens_match_fp32" in r:
            add("ovpot", "tokens_match_fp32", int(r["tokens_match_fp32"].split("/")[0]), f"of {GENERATE}")
        if "tokens_match_fp32_nncf" in r:
            add("nncf", "tokens_match_fp32", int(r["tokens_match_fp32_nncf"].split("/")[0]), f"of {GENERATE}")
    return res.records[start:]


def main():
    ap = common.parser(__doc__, fixtures=False, runs=1, name="llm")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--make-corpus", action="store_true")
    ap.add_argument("--hf-python")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--only", default="roundtrip,compress,quantize,optimum")
    ap.add_argument("--backend", default="builtin")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--fail-on-violation", action="store_true",
                    help="exit 1 on a violation: a model that loses its Assign layers, fails, changes on a round "
                         "trip, compresses other layers or bits than NNCF, generates other tokens than NNCF's "
                         "compressed model, or misses the SQNR bars (times are reported, not judged: noisy)")
    args = ap.parse_args()
    args.only = set(args.only.split(","))
    args.ovpot = common.ovpot_binary(args)
    families = [f for f in args.families.split(",") if f]
    if args.make_corpus:
        make_corpus(args.corpus, families, args.hf_python)
    import openvino as ov
    # --backend openvino: ovpot loads OpenVINO's C library from this venv's wheel.
    os.environ.setdefault("OVPOT_OPENVINO_LIB", str(common.openvino_c_lib()))
    judge = Judge(ov)
    common.header(args, f"median of {args.runs} run(s)")
    res = common.Results("llm", args)
    rows, bad = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for fam in families:
            try:
                fam_rows = bench_family(fam, args.corpus / fam, args, judge, Path(tmp))
            except Exception as e:  # noqa: BLE001 - one family's failure is a result, not the end
                fam_rows = [dict(family=fam, job="error", error=" ".join(str(e).split())[-300:])]
                bad.append(f"{fam}: {e}")
            for r in fam_rows:
                a = r.get("assign", "")
                if "/" in a and a.split("/")[0] != a.split("/")[1]:
                    bad.append(f"{fam} {r['job']}: Assign layers {a}")
                if r.get("identical") is False:
                    bad.append(f"{fam} roundtrip: logits changed")
                if r.get("layers_differ"):
                    bad.append(f"{fam} {r['job']}: layers in other precisions than NNCF's: {r['differ']}")
                if r.get("fq_sites_differ"):
                    bad.append(f"{fam} {r['job']}: activation quantizers NNCF places elsewhere: {r['differ']}")
                if r.get("tokens_same") is False:
                    bad.append(f"{fam} {r['job']}: generated tokens differ from NNCF's model's")
                if "sqnr_ovpot" in r:
                    bar = 0.3 if r["job"].startswith("w8a8") else 0.1
                    if r["sqnr_ovpot"] < r["sqnr_nncf"] - bar:
                        bad.append(f"{fam} {r['job']}: SQNR {r['sqnr_ovpot']:.2f} < NNCF {r['sqnr_nncf']:.2f} - {bar}")
            rows += fam_rows
            table.print_records(record(res, fam_rows, args.runs))
            sys.stdout.flush()
    if len(families) > 1:
        print("\nall families:")
        table.print_records(res.records)
    res.done()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if bad:
        print("\nviolations:\n  " + "\n  ".join(bad))
        if args.fail_on_violation:
            sys.exit(1)


if __name__ == "__main__":
    main()
