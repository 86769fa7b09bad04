#!/usr/bin/env python3
"""Where ovpot and NNCF put FakeQuantize, model by model, and what each placement is worth in the
OpenVINO runtime.

    .peers/venv/bin/python scripts/extra_models.py /tmp/extra          # the models (once)
    cargo build --release --bin ovpot
    .peers/venv/bin/python scripts/compare_placement.py /tmp/extra [--work DIR] [--only a,b]

For each model folder (model.xml, calib/*.npy, eval/*.npy, as scripts/extra_models.py makes them,
or the fixtures' layout with one .npy per input):
  * `ovpot quantize` with no options (it detects transformers by itself: report.json says so);
  * NNCF 3.4 `nncf.quantize` on the same calibration samples (all of them), given
    `model_type=transformer` where ovpot detected one (NNCF cannot tell by itself);
  * activation FakeQuantize ops matched by what they quantize: the original layer whose output
    they read and the original layers reading them (nodes either tool adds, as SmoothQuant's
    scales, are looked through); weights counted by the layers that get int8 weights;
  * SQNR of each INT8 model against FP32 on the eval samples, in OpenVINO
    (INFERENCE_PRECISION_HINT=f32), the mean over the model's outputs of each output's pooled SQNR.
Prints one table row per model, then every placement difference with the op types around it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def int8_isa():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if vnni and cap in ("SSE41", "AVX", "AVX2", "AVX512_CORE"):
        return f"no-vnni (ONEDNN_MAX_CPU_ISA={cap})"
    return "vnni" if vnni else "no-vnni"


class Ir:
    """An IR's layers and edges, enough to say what each FakeQuantize quantizes."""

    def __init__(self, xml):
        root = ET.parse(xml).getroot()
        self.layers = {}  # id -> (name, type)
        self.out_ports = {}  # id -> [port ids of outputs]
        for layer in root.iter("layer"):
            lid = layer.get("id")
            self.layers[lid] = (layer.get("name"), layer.get("type"))
            out = layer.find("output")
            self.out_ports[lid] = [p.get("id") for p in out.findall("port")] if out is not None else []
        self.inputs = {}  # (to_layer, to_port) -> (from_layer, from_port)
        self.consumers = {}  # from_layer -> [(to_layer, to_port, from_port)]
        for e in root.iter("edge"):
            f, fp, t, tp = e.get("from-layer"), e.get("from-port"), e.get("to-layer"), e.get("to-port")
            self.inputs[(t, tp)] = (f, fp)
            self.consumers.setdefault(f, []).append((t, tp, fp))
        self.in_ports = {}
        for (t, tp), src in self.inputs.items():
            self.in_ports.setdefault(t, []).append((int(tp), src))
        for t in self.in_ports:
            self.in_ports[t].sort()
        self._const = {}

    def name(self, lid):
        return self.layers[lid][0]

    def type(self, lid):
        return self.layers[lid][1]

    def is_const(self, lid):
        """A Const, or computed from constants only (weights' Convert/Multiply chains)."""
        if lid in self._const:
            return self._const[lid]
        t = self.type(lid)
        if t == "Const":
            r = True
        elif t in ("Parameter", "ReadValue"):
            r = False
        else:
            ins = self.in_ports.get(lid, [])
            r = bool(ins) and all(self.is_const(src[0]) for _, src in ins)
        self._const[lid] = r
        return r

    def data_input(self, lid):
        ins = self.in_ports.get(lid, [])
        return ins[0][1] if ins else None

    def out_index(self, lid, port):
        ports = self.out_ports.get(lid, [])
        return ports.index(port) if port in ports else 0


def original_producer(ir, lid, port, originals):
    """The nearest layer of the FP32 model at or above (lid, port), looking through added nodes."""
    for _ in range(16):
        if ir.name(lid) in originals:
            return f"{ir.name(lid)}:{ir.out_index(lid, port)}", ir.type(lid)
        src = ir.data_input(lid)
        if src is None:
            break
        lid, port = src
    return f"{ir.name(lid)}:{ir.out_index(lid, port)}", ir.type(lid)


def original_consumers(ir, lid, originals, depth=0):
    """The layers of the FP32 model reading (lid), looking through added nodes (FQs excepted)."""
    out = []
    for t, tp, _ in ir.consumers.get(lid, []):
        if ir.name(t) in originals or depth > 8 or ir.type(t) == "FakeQuantize":
            out.append(f"{ir.name(t)}[{ir.type(t)}]")
        else:
            out += original_consumers(ir, t, originals, depth + 1)
    return sorted(set(out))


WEIGHTED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData", "GroupConvolutionBackpropData")


def placement(xml, originals):
    """Activation quantizers {(producer, consumers): producer type} and layers with int8 weights."""
    ir = Ir(xml)
    acts = {}
    for lid, (name, typ) in ir.layers.items():
        if typ != "FakeQuantize":
            continue
        src = ir.data_input(lid)
        if src is None or ir.is_const(src[0]):
            continue
        prod, ptype = original_producer(ir, src[0], src[1], originals)
        acts[(prod, tuple(original_consumers(ir, lid, originals)))] = ptype
    int8_weights = set()
    for lid, (name, typ) in ir.layers.items():
        if typ not in WEIGHTED:
            continue
        ins = ir.in_ports.get(lid, [])
        if len(ins) < 2:
            continue
        w = ins[1][1][0]
        # int8 weights: a FakeQuantize on a constant, or an integer Const through Convert.
        seen, stack = 0, [w]
        while stack and seen < 8:
            x = stack.pop()
            seen += 1
            if ir.type(x) == "FakeQuantize" and ir.is_const(x):
                int8_weights.add(name)
                break
            if ir.type(x) == "Convert" and ir.data_input(x) and ir.type(ir.data_input(x)[0]) == "Const":
                int8_weights.add(name)
                break
            if ir.is_const(x):
                stack += [src[0] for _, src in ir.in_ports.get(x, [])]
    return acts, int8_weights


def load_samples(folder, model):
    files = sorted(folder.glob("*.npy"))
    names = [p.get_any_name() for p in model.inputs]
    if len(names) == 1 and files and not any(f.stem in names for f in files):
        return [{names[0]: np.load(f)} for f in files]
    arrays = {f.stem: np.load(f) for f in files}
    n = min(len(arrays[k]) for k in names)
    return [{k: arrays[k][i : i + 1] for k in names} for i in range(n)]


def nncf_worker(model_dir, out_xml, transformer):
    import nncf
    import openvino as ov

    nncf.set_log_level(40)
    model = ov.Core().read_model(str(model_dir / "model.xml"))
    samples = load_samples(model_dir / "calib", model)
    opts = {"model_type": nncf.ModelType.TRANSFORMER} if transformer == "1" else {}
    t0 = time.perf_counter()
    q = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples), **opts)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
    ov.save_model(q, out_xml)


def sqnr(core, fp32_xml, int8_xml, samples):
    cfg = {"INFERENCE_PRECISION_HINT": "f32"}
    ref = core.compile_model(str(fp32_xml), "CPU", cfg)
    q = core.compile_model(str(int8_xml), "CPU", cfg)
    num = np.zeros(len(ref.outputs))
    den = np.zeros(len(ref.outputs))
    for s in samples:
        a, b = ref(s), q(s)
        for k in range(len(ref.outputs)):
            r = np.asarray(a[k], dtype=np.float64)
            num[k] += (r**2).sum()
            den[k] += ((r - np.asarray(b[k], dtype=np.float64)) ** 2).sum()
    return float(np.mean(10 * np.log10(np.maximum(num, 1e-30) / np.maximum(den, 1e-30))))


def run(cmd, env=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {r.stderr.strip()[-2000:]}")
    return r


def compare(args, model_dir, work):
    import openvino as ov

    env = dict(os.environ, INFERENCE_PRECISION_HINT="f32")
    ours = work / "ovpot"
    run([args.ovpot, "--quiet", "quantize", "-m", model_dir / "model.xml", "--data", model_dir / "calib", "-o", ours], env)
    report = json.loads((ours / "report.json").read_text())
    transformer = report.get("model_type") == "transformer"
    theirs = work / "nncf" / "model.xml"
    theirs.parent.mkdir(parents=True, exist_ok=True)
    run([sys.executable, __file__, "--nncf-worker", model_dir, theirs, "1" if transformer else "0"], env)
    originals = {layer.get("name") for layer in ET.parse(model_dir / "model.xml").getroot().iter("layer")}
    ours_xml = ours / "optimized" / "model.xml"
    a_n, w_n = placement(theirs, originals)
    a_o, w_o = placement(ours_xml, originals)
    core = ov.Core()
    evals = load_samples(model_dir / "eval", core.read_model(str(model_dir / "model.xml")))[: args.eval_limit]
    row = {
        "model": model_dir.name,
        "transformer": transformer,
        "fq_nncf": len(a_n),
        "fq_ovpot": len(a_o),
        "same": len(set(a_n) & set(a_o)),
        "only_nncf": sorted(set(a_n) - set(a_o)),
        "only_ovpot": sorted(set(a_o) - set(a_n)),
        "types": {**{str(k): v for k, v in a_n.items()}, **{str(k): v for k, v in a_o.items()}},
        "w_nncf": len(w_n),
        "w_ovpot": len(w_o),
        "w_only_nncf": sorted(w_n - w_o),
        "w_only_ovpot": sorted(w_o - w_n),
        "sqnr_nncf": sqnr(core, model_dir / "model.xml", theirs, evals),
        "sqnr_ovpot": sqnr(core, model_dir / "model.xml", ours_xml, evals),
    }
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="?", help="a folder of model folders (scripts/extra_models.py OUT)")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--ovpot", default=str(ROOT / "target" / "release" / "ovpot"))
    ap.add_argument("--work", help="keep the IRs here (default: a temporary folder)")
    ap.add_argument("--eval-limit", type=int, default=30)
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--nncf-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nncf_worker:
        d, x, t = args.nncf_worker
        return nncf_worker(Path(d), x, t)
    if not args.models:
        ap.error("give the models folder")
    root = Path(args.models)
    dirs = sorted(p for p in root.iterdir() if (p / "model.xml").exists() and (p / "calib").is_dir())
    if args.only:
        want = set(args.only.split(","))
        dirs = [d for d in dirs if d.name in want]
    work_root = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="placement-"))
    print(f"CPU int8 arithmetic: {int8_isa()}; work in {work_root}", flush=True)
    rows = []
    for d in dirs:
        t0 = time.perf_counter()
        try:
            row = compare(args, d, work_root / d.name)
        except Exception as e:  # one model failing must not hide the others
            print(f"{d.name}: FAILED {e}", flush=True)
            continue
        rows.append(row)
        print(f"{d.name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    print()
    print("| model | transformer | act. FQ NNCF / ovpot | same | only NNCF | only ovpot | int8 weights NNCF / ovpot | SQNR dB NNCF / ovpot |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {'yes' if r['transformer'] else 'no'} | {r['fq_nncf']} / {r['fq_ovpot']} | {r['same']} | "
              f"{len(r['only_nncf'])} | {len(r['only_ovpot'])} | {r['w_nncf']} / {r['w_ovpot']} | "
              f"{r['sqnr_nncf']:.2f} / {r['sqnr_ovpot']:.2f} |")
    for r in rows:
        if not (r["only_nncf"] or r["only_ovpot"] or r["w_only_nncf"] or r["w_only_ovpot"]):
            continue
        print(f"\n{r['model']}:")
        for tag, keys in (("NNCF only", r["only_nncf"]), ("ovpot only", r["only_ovpot"])):
            for prod, cons in keys:
                print(f"  {tag}: {prod} [{r['types'][str((prod, cons))]}] -> {', '.join(cons)}")
        for tag, names in (("int8 weights NNCF only", r["w_only_nncf"]), ("int8 weights ovpot only", r["w_only_ovpot"])):
            for n in names:
                print(f"  {tag}: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
