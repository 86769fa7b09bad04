#!/usr/bin/env python3
"""Differential mutation campaign: ovpot against OpenVINO's reader (issue #20).

Each case mutates one fixture IR once (a number, an attribute, a dim, an edge, an op type, an
opset version, an element type, the weights), runs `ovpot quantize` on it, and loads the input
and ovpot's output in OpenVINO. ovpot is held to:
  * never a crash, panic or hang (exit code 0 or 1..=99 with a message; 60 s limit);
  * every IR it writes with exit 0 compiles in OpenVINO (CPU, f32 precision hint);
  * every refusal names its cause: the message names a layer (id or name), an edge, a port, the
    file or the sample.
Where OpenVINO refuses an input, ovpot refuses it too or writes an output OpenVINO accepts.

Run with the peers venv after `cargo build --release --bin ovpot`:
    .peers/venv/bin/python .ci/tools/mutate.py [--count 2000] [--seed 1] [--keep DIR] [FIXTURE_DIR...]
Fixtures default to the small ones in tests/data. Prints a table and exits 1 on any violation;
with --keep, each violating case is saved (model.xml/.bin + what happened) for tests/.
"""
import argparse
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIXTURES = ["digits_mlp", "mnist_cnn", "mtcnn_rnet", "mtcnn_onet", "ppocr_cls"]
OP_TYPES = ["Relu", "Add", "Multiply", "Convolution", "MatMul", "Concat", "Reshape", "Softmax", "MaxPool",
            "Sigmoid", "Transpose", "Const", "Parameter", "Result", "GroupConvolution", "Frobnicate", "Subtract"]
VERSIONS = ["opset1", "opset3", "opset8", "opset17", "opset18", "opset99", "experimental", "", "opset0"]
ELEMENT_TYPES = ["f32", "f16", "i64", "i32", "u8", "i8", "boolean", "dynamic", "undefined", "u1", "f64", "xyz"]
PRECISIONS = ["FP32", "FP16", "I64", "I32", "U8", "I8", "BOOL", "dynamic", "DYNAMIC", "undefined", "fp32", "Q78"]
NUMBERS = ["0", "-1", "-5", "1", "2", "3", "7", "64", "100000000", "4294967296", "1e36", "nan", "-0", "0.5", ""]


class Case:
    def __init__(self, fixture, kind, detail, xml, bin_bytes):
        self.fixture, self.kind, self.detail, self.xml, self.bin = fixture, kind, detail, xml, bin_bytes


def mutate(rng, fixture, xml, bin_bytes):
    """One mutation of the IR text or weights."""
    kind = rng.choice(["number", "attribute", "dim", "edge", "op_type", "version", "element_type",
                       "precision", "truncate_bin", "flip_bits", "absurd_weight", "delete_layer"])
    if kind == "number":
        spots = [m for m in re.finditer(r'="(-?[0-9][0-9., -]*)"', xml)]
        m = rng.choice(spots)
        parts = m.group(1).split(",")
        i = rng.randrange(len(parts))
        parts[i] = rng.choice(NUMBERS)
        new = ",".join(parts)
        return Case(fixture, kind, f"{xml[max(0, m.start() - 30):m.start()].split()[-1]}{m.group(0)} -> {new}",
                    xml[:m.start(1)] + new + xml[m.end(1):], bin_bytes)
    if kind == "attribute":
        spots = [m for m in re.finditer(r' ([a-z_\-]+)="[^"]*"', xml)]
        m = rng.choice(spots)
        if rng.random() < 0.5:
            return Case(fixture, kind, f"delete {m.group(0).strip()}", xml[:m.start()] + xml[m.end():], bin_bytes)
        val = rng.choice(["", "x", "1,2", "true", "-1", "same_upper", "numpy", "f32"])
        return Case(fixture, kind, f"{m.group(0).strip()} -> {m.group(1)}=\"{val}\"",
                    xml[:m.start()] + f' {m.group(1)}="{val}"' + xml[m.end():], bin_bytes)
    if kind == "dim":
        spots = [m for m in re.finditer(r"<dim>[^<]*</dim>", xml)]
        m = rng.choice(spots)
        op = rng.choice(["value", "drop", "add"])
        if op == "value":
            new = f"<dim>{rng.choice(NUMBERS)}</dim>"
        elif op == "drop":
            new = ""
        else:
            new = m.group(0) + f"<dim>{rng.choice(['1', '3', '-1'])}</dim>"
        return Case(fixture, kind, f"{m.group(0)} -> {new or 'removed'}", xml[:m.start()] + new + xml[m.end():],
                    bin_bytes)
    if kind == "edge":
        spots = [m for m in re.finditer(r"<edge [^>]*/>", xml)]
        m = rng.choice(spots)
        op = rng.choice(["drop", "duplicate", "from-layer", "to-layer", "from-port", "to-port"])
        if op == "drop":
            new = ""
        elif op == "duplicate":
            new = m.group(0) + m.group(0)
        else:
            ids = re.findall(r'<layer id="(\d+)"', xml)
            val = rng.choice(ids + ["0", "1", "999"])
            new = re.sub(f'{op}="[^"]*"', f'{op}="{val}"', m.group(0))
        return Case(fixture, kind, f"{m.group(0)} -> {new or 'removed'}", xml[:m.start()] + new + xml[m.end():],
                    bin_bytes)
    if kind == "op_type":
        spots = [m for m in re.finditer(r' type="([A-Za-z]+)"', xml)]
        m = rng.choice(spots)
        t = rng.choice(OP_TYPES)
        return Case(fixture, kind, f"type {m.group(1)} -> {t}", xml[:m.start(1)] + t + xml[m.end(1):], bin_bytes)
    if kind == "version":
        spots = [m for m in re.finditer(r' version="(opset\d+)"', xml)]
        m = rng.choice(spots)
        v = rng.choice(VERSIONS)
        return Case(fixture, kind, f"version {m.group(1)} -> {v}", xml[:m.start(1)] + v + xml[m.end(1):], bin_bytes)
    if kind == "element_type":
        spots = [m for m in re.finditer(r'element_type="([a-z0-9]+)"', xml)]
        m = rng.choice(spots)
        t = rng.choice(ELEMENT_TYPES)
        return Case(fixture, kind, f"element_type {m.group(1)} -> {t}", xml[:m.start(1)] + t + xml[m.end(1):],
                    bin_bytes)
    if kind == "precision":
        spots = [m for m in re.finditer(r'precision="([A-Za-z0-9]+)"', xml)]
        m = rng.choice(spots)
        p = rng.choice(PRECISIONS)
        return Case(fixture, kind, f"precision {m.group(1)} -> {p}", xml[:m.start(1)] + p + xml[m.end(1):],
                    bin_bytes)
    if kind == "truncate_bin":
        n = rng.randrange(len(bin_bytes))
        return Case(fixture, kind, f"bin {len(bin_bytes)} -> {n} bytes", xml, bin_bytes[:n])
    if kind == "flip_bits":
        b = bytearray(bin_bytes)
        flips = rng.randint(1, 16)
        for _ in range(flips):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return Case(fixture, kind, f"{flips} bit flips", xml, bytes(b))
    if kind == "absurd_weight":
        b = bytearray(bin_bytes)
        i = rng.randrange(len(b) // 4) * 4
        v = rng.choice([1e36, -1e36, float("nan"), float("inf"), 3e38, 1e20, 7e4])
        b[i:i + 4] = np.float32(v).tobytes()
        return Case(fixture, kind, f"float at byte {i} -> {v}", xml, bytes(b))
    # delete_layer
    spots = [m for m in re.finditer(r"<layer id=.*?</layer>\s*", xml, re.S)]
    m = rng.choice(spots)
    name = re.search(r'name="([^"]*)"', m.group(0)).group(1)
    return Case(fixture, kind, f"delete layer {name}", xml[:m.start()] + xml[m.end():], bin_bytes)


WORKER = r"""
import sys, json, numpy as np, openvino as ov
core = ov.Core()
for line in sys.stdin:
    xml, bin_path = json.loads(line)
    try:
        data = open(bin_path, "rb").read()
        w = ov.Tensor(np.frombuffer(data, dtype=np.uint8)) if data else ov.Tensor(np.zeros(0, np.uint8))
        m = core.read_model(model=open(xml).read(), weights=w)
        core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        r = None
    except Exception as e:
        lines = [x for x in str(e).splitlines() if x.strip()]
        r = (lines[-1] if lines else type(e).__name__)[:300]
    print(json.dumps(r), flush=True)
"""


class OvChecker:
    """OpenVINO's verdict on an IR, in a worker process: a mutated IR can crash OpenVINO itself,
    which then counts as a refusal and the worker is restarted."""

    def __init__(self):
        self.p = None

    def _start(self):
        self.p = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)

    def check(self, xml_path, bin_path):
        """None if OpenVINO reads and compiles the IR, else its message's last line."""
        if self.p is None or self.p.poll() is not None:
            self._start()
        try:
            self.p.stdin.write(json.dumps([str(xml_path), str(bin_path)]) + "\n")
            self.p.stdin.flush()
            ready, _, _ = select.select([self.p.stdout], [], [], 120)
            line = self.p.stdout.readline() if ready else None
            if line:
                return json.loads(line)
        except (BrokenPipeError, OSError):
            line = ""
        self.p.kill()
        self.p = None
        return "OpenVINO crashed on it" if line is not None else "OpenVINO took over 120 s"


def names_cause(message, xml_text):
    """Whether a refusal says where: a layer id or name, an edge, a port, the file or a sample."""
    if re.search(r"id=\d+|layer|edge|port|sample|\.bin|\.xml|input '|output '", message):
        return True
    return any(f"'{n}'" in message for n in re.findall(r'name="([^"]+)"', xml_text))


def run_case(binary, case, fixture_dir, core, work):
    d = work / "case"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "model.xml").write_text(case.xml)
    (d / "model.bin").write_bytes(case.bin)
    out = d / "out"
    cmd = [str(binary), "--quiet", "quantize", "-m", str(d / "model.xml"), "--data", str(fixture_dir / "calib"),
           "-o", str(out), "--subset-size", "16"]
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        code, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        code, err = None, "timeout"
    r = {"fixture": case.fixture, "kind": case.kind, "detail": case.detail, "exit": code,
         "seconds": round(time.time() - t, 2), "ovpot_message": err.strip().splitlines()[-1][:300] if err.strip() else ""}
    r["ov_input"] = core.check(d / "model.xml", d / "model.bin")
    violations = []
    if code is None:
        violations.append("hang")
    elif code < 0 or code >= 100 or "panick" in err:
        violations.append(f"crash (exit {code})")
    elif code == 0:
        xmls = list(out.rglob("*.xml"))
        if not xmls:
            violations.append("exit 0 without an output IR")
        else:
            x = xmls[0]
            r["ov_output"] = core.check(x, x.with_suffix(".bin"))
            if r["ov_output"] is not None:
                violations.append("output refused by OpenVINO")
    elif not names_cause(err, case.xml):
        violations.append("refusal names no layer")
    r["violations"] = violations
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", default=str(ROOT / "target/release/ovpot"))
    ap.add_argument("--keep", help="save violating cases here")
    ap.add_argument("--json", help="write every case's record here")
    ap.add_argument("fixtures", nargs="*")
    a = ap.parse_args()
    dirs = [Path(f) for f in a.fixtures] or [ROOT / "tests/data" / f for f in DEFAULT_FIXTURES]
    dirs = [d for d in dirs if (d / "model.xml").exists() and (d / "calib").exists()]
    if not dirs:
        sys.exit("no fixture with model.xml and calib/")
    core = OvChecker()
    rng = random.Random(a.seed)
    sources = {d.name: ((d / "model.xml").read_text(), (d / "model.bin").read_bytes(), d) for d in dirs}
    records = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="ovpot-mutate-") as tmp:
        work = Path(tmp)
        for i in range(a.count):
            name = rng.choice(sorted(sources))
            xml, bin_bytes, d = sources[name]
            case = mutate(rng, name, xml, bin_bytes)
            r = run_case(a.binary, case, d, core, work)
            r["case"] = i
            records.append(r)
            if r["violations"]:
                print(f"[{i}] {name} {case.kind}: {case.detail}: {r['violations']} "
                      f"(ovpot: {r['ovpot_message']!r}; OpenVINO input: {r['ov_input']!r}; "
                      f"output: {r.get('ov_output')!r})", flush=True)
                if a.keep:
                    k = Path(a.keep) / f"case{i:05d}_{name}_{case.kind}"
                    k.mkdir(parents=True, exist_ok=True)
                    (k / "model.xml").write_text(case.xml)
                    (k / "model.bin").write_bytes(case.bin)
                    (k / "what.json").write_text(json.dumps(r, indent=1))
            if (i + 1) % 100 == 0:
                print(f"... {i + 1}/{a.count} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(records, indent=1))
    summarize(records, time.time() - t0)
    sys.exit(1 if any(r["violations"] for r in records) else 0)


def summarize(records, seconds):
    kinds = sorted({r["kind"] for r in records})
    print(f"\n{len(records)} mutations in {seconds:.0f} s, OpenVINO {ov.get_version()}")
    print("| mutation | cases | OpenVINO refuses input | ovpot refuses | ovpot writes | output OK in OpenVINO"
          " | violations |")
    print("|---|---|---|---|---|---|---|")
    for k in kinds + ["all"]:
        rs = [r for r in records if k == "all" or r["kind"] == k]
        ov_refuses = sum(r["ov_input"] is not None for r in rs)
        refuses = sum(r["exit"] not in (0, None) for r in rs)
        writes = sum(r["exit"] == 0 for r in rs)
        ok = sum(r["exit"] == 0 and r.get("ov_output") is None for r in rs)
        bad = sum(bool(r["violations"]) for r in rs)
        print(f"| {k} | {len(rs)} | {ov_refuses} | {refuses} | {writes} | {ok} | {bad} |")
    both = sum(r["ov_input"] is not None and r["exit"] == 0 for r in records)
    print(f"OpenVINO refused the input but ovpot wrote an output OpenVINO accepts: {both}")


if __name__ == "__main__":
    main()
