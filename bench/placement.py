#!/usr/bin/env python3
"""Where ovpot and NNCF put FakeQuantize, model by model, and what each placement is worth in the
OpenVINO runtime.

    .peers/venv/bin/python bench/extra_models.py /tmp/extra          # the models (once)
    cargo build --release --bin ovpot
    .peers/venv/bin/python bench/placement.py /tmp/extra [--work DIR] [--only a,b]

For each model folder (model.xml, calib/*.npy, eval/*.npy, as bench/extra_models.py makes them,
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
Results: bench/results/placement.jsonl (act_fq, int8_weights and sqnr_db per tool; ovpot's
same_sites, only_nncf, only_ovpot).
"""
import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import common
import table


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


def compare(args, model_dir, work):
    import openvino as ov

    ours = work / "ovpot"
    common.run_checked(common.ovpot_quantize_cmd(args.ovpot, model_dir / "model.xml", model_dir / "calib", ours))
    report = json.loads((ours / "report.json").read_text())
    transformer = report.get("model_type") == "transformer"
    theirs = work / "nncf" / "model.xml"
    theirs.parent.mkdir(parents=True, exist_ok=True)
    common.nncf_run({"op": "quantize", "model": str(model_dir / "model.xml"), "out": str(theirs),
                     "calib": str(model_dir / "calib"), "options": {"model_type": "transformer"} if transformer else {}})
    originals = {layer.get("name") for layer in ET.parse(model_dir / "model.xml").getroot().iter("layer")}
    ours_xml = ours / "optimized" / "model.xml"
    a_n, w_n = placement(theirs, originals)
    a_o, w_o = placement(ours_xml, originals)
    core = ov.Core()
    evals = common.load_samples(model_dir / "eval", core.read_model(str(model_dir / "model.xml")), args.eval_limit)
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
        "sqnr_nncf": common.sqnr_per_output(core, model_dir / "model.xml", theirs, evals),
        "sqnr_ovpot": common.sqnr_per_output(core, model_dir / "model.xml", ours_xml, evals),
    }
    return row


def record(res, r, eval_limit):
    name = r["model"]
    for tool in ("ovpot", "nncf"):
        res.add(tool, name, "act_fq", r[f"fq_{tool}"])
        res.add(tool, name, "int8_weights", r[f"w_{tool}"])
        res.add(tool, name, "sqnr_db", r[f"sqnr_{tool}"], "dB", {"eval_samples": eval_limit})
    res.add("ovpot", name, "transformer", r["transformer"])
    res.add("ovpot", name, "same_sites", r["same"])
    res.add("ovpot", name, "only_nncf", len(r["only_nncf"]))
    res.add("ovpot", name, "only_ovpot", len(r["only_ovpot"]))


def main():
    ap = common.parser(__doc__, fixtures=False, name="placement")
    ap.add_argument("models", nargs="?", help="a folder of model folders (bench/extra_models.py OUT)")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--eval-limit", type=int, default=30)
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    if not args.models:
        ap.error("give the models folder")
    root = Path(args.models)
    dirs = sorted(p for p in root.iterdir() if (p / "model.xml").exists() and (p / "calib").is_dir())
    if args.only:
        want = set(args.only.split(","))
        dirs = [d for d in dirs if d.name in want]
    args.ovpot = common.ovpot_binary(args)
    work_root = common.work_dir(args, "placement")
    common.header(args, f"work in {work_root}")
    res = common.Results("placement", args)
    rows = []
    for d in dirs:
        t0 = time.perf_counter()
        try:
            row = compare(args, d, work_root / d.name)
        except Exception as e:  # one model failing must not hide the others
            print(f"{d.name}: FAILED {e}", flush=True)
            continue
        rows.append(row)
        record(res, row, args.eval_limit)
        print(f"{d.name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    table.print_records(res.records)
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
    res.done()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(main())
