#!/usr/bin/env python3
"""What every benchmark in bench/ shares: fixtures, the ovpot binary, timing, the NNCF worker,
judging in OpenVINO, the CPU's int8 arithmetic and the results file.

The benchmarks import it as `import common` (Python puts the script's folder, bench/, first on
sys.path). Run as a script it is the worker the benchmarks start in a fresh process:

    python bench/common.py nncf SPEC_JSON     # nncf.quantize / quantize_with_accuracy_control /
                                              # compress_weights, timed; prints one JSON line
    python bench/common.py judge SPEC_JSON    # judge IRs against a fixture in OpenVINO; prints JSON

Results: one JSON line per measured number, appended to bench/results/<bench>.jsonl (or --results):
    {"commit", "date", "cpu", "int8_arith", "bench", "tool", "model", "metric", "value",
     "unit"?, "options"?}
bench/table.py prints the markdown tables from those files.
"""
import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SHARED = Path(os.environ.get("OVPOT_SHARED", ROOT.parent / "shared"))
FIXTURES = ["digits_mlp", "mnist_cnn", "mtcnn_rnet", "mtcnn_onet", "ppocr_cls", "mobilenet_v2", "minilm_l6"]
HEAVY = {"Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution"}
# ovcheck.py's configuration: FP32 means FP32 (bf16 otherwise on CPUs that have it), one thread.
JUDGE_CFG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
GNU_TIME = "/usr/bin/time"
BUILT_FROM = ["src", "Cargo.toml", "Cargo.lock", "python", "include"]

# Every judge and worker process inherits this; the CPU plugin honours the variable as well.
os.environ["INFERENCE_PRECISION_HINT"] = "f32"


# ---------------------------------------------------------------- command line and environment


ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "native": {}}


def isa_env(isa):
    """This environment with OpenVINO computing as `isa` says (avx2: as a CPU without VNNI;
    native: this CPU) and in f32."""
    e = dict(os.environ)
    e.pop("ONEDNN_MAX_CPU_ISA", None)
    e.update(ISA_ENV[isa])
    e["INFERENCE_PRECISION_HINT"] = "f32"
    return e


def parser(doc, fixtures=True, runs=1, name=None):
    """The options every benchmark shares: --ovpot, --fixtures, --runs, --results, --commit,
    --work and positional fixture names (fixtures=False leaves the positionals to the caller)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if fixtures:
        ap.add_argument("names", nargs="*", metavar="FIXTURE", help=f"default: {' '.join(FIXTURES)}")
    ap.add_argument("--ovpot", default=str(ROOT / "target" / "release" / "ovpot"),
                    help="the ovpot binary (default target/release/ovpot)")
    ap.add_argument("--fixtures", default=os.environ.get("OVPOT_FIXTURES", str(SHARED / "fixtures")),
                    help="the fixtures folder (default ../shared/fixtures or $OVPOT_FIXTURES)")
    ap.add_argument("--runs", type=int, default=runs, help=f"timed runs per tool, median reported (default {runs})")
    ap.add_argument("--results", help=f"append JSON lines here (default bench/results/{name or '<bench>'}.jsonl; "
                                      "'-' writes none)")
    ap.add_argument("--commit", help="the commit recorded (default: git HEAD of this tree, '+dirty' when src/ has "
                                     "uncommitted changes); give it when --ovpot is a binary of another commit")
    ap.add_argument("--work", help="keep IRs and judge output here (default: a temporary folder)")
    return ap


def work_dir(args, prefix):
    return Path(args.work) if getattr(args, "work", None) else Path(tempfile.mkdtemp(prefix=f"ovpot-{prefix}-"))


def ovpot_binary(args):
    p = Path(args.ovpot)
    if not p.exists():
        raise SystemExit(f"{p} missing: cargo build --release --bin ovpot, or give --ovpot PATH")
    return str(p)


def fixture_dirs(args, default=None):
    """[(name, Path)] of the positional fixture names (default: all seven) under --fixtures."""
    root = Path(args.fixtures)
    out = []
    for name in getattr(args, "names", None) or default or FIXTURES:
        d = root / name
        if not (d / "model.xml").exists():
            print(f"{name}: no model.xml under {root}, skipped", file=sys.stderr)
            continue
        out.append((name, d))
    return out


def meta(fixture):
    p = Path(fixture) / "meta.json"
    return json.loads(p.read_text()) if p.exists() else {}


def transformer(fixture_meta):
    return fixture_meta.get("nncf", {}).get("options", {}).get("model_type") == "transformer"


def int8_arith(env=None):
    """'vnni' (AVX-VNNI, AVX-512 VNNI, AMX: exact int32 sums) or 'no-vnni' (u8 x s8 pairs added in
    16 bits with saturation), as OpenVINO on this CPU computes under ONEDNN_MAX_CPU_ISA."""
    env = os.environ if env is None else env
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    capped = env.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("SSE41", "AVX", "AVX2", "AVX512_CORE")
    return "vnni" if vnni and not capped else "no-vnni"


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split()) + f", {os.cpu_count()} CPUs"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def revision():
    """The commit measured: the last one that changed what ovpot is built from (src/, Cargo.*,
    python/; a commit of the harness, CI or docs measures the same ovpot), '+dirty' when src/ has
    uncommitted changes."""
    r = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", *BUILT_FROM],
                       capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
                           capture_output=True, text=True).stdout.strip()
    return (r.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def openvino_c_lib():
    """OpenVINO's C library in this venv's wheel (ovpot --backend openvino loads it)."""
    import openvino

    libs = Path(openvino.__file__).parent / "libs"
    return next(iter(sorted(libs.glob("libopenvino_c.so*"))), libs / "libopenvino_c.so")


def versions():
    out = []
    for mod in ("openvino", "nncf"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            pass
    return "; ".join(out)


# ---------------------------------------------------------------- results


class Results:
    """Appends one JSON line per measured number to the benchmark's results file."""

    def __init__(self, bench, args):
        self.bench = bench
        self.path = None if args.results == "-" else Path(args.results or BENCH / "results" / f"{bench}.jsonl")
        self.base = {"commit": args.commit or revision(),
                     "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "cpu": cpu_name(), "int8_arith": int8_arith()}
        self.records = []
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, tool, model, metric, value, unit=None, options=None, int8_arith_=None):
        if value is None:
            return
        if isinstance(value, float):
            value = round(value, 6)
        rec = dict(self.base, bench=self.bench, tool=tool, model=model, metric=metric, value=value)
        if int8_arith_:
            rec["int8_arith"] = int8_arith_
        if unit:
            rec["unit"] = unit
        if options:
            rec["options"] = options
        self.records.append(rec)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec, sort_keys=False) + "\n")

    def add_judged(self, tool, model, judged, options=None, int8_arith_=None):
        """A judge() row: accuracy, agreement, SQNR, int8 layers, FQ count, latency, weights size."""
        for key, unit in JUDGED_UNITS.items():
            if key in judged:
                self.add(tool, model, key, judged[key], unit, options, int8_arith_)

    def done(self):
        if self.path:
            print(f"{len(self.records)} results appended to {self.path}", file=sys.stderr)


JUDGED_UNITS = {"accuracy": None, "agreement": None, "sqnr_db": "dB", "int8_layers": None, "heavy_layers": None,
                "fake_quantize": None, "latency_ms": "ms", "bin_bytes": "B"}


# ---------------------------------------------------------------- running and timing processes


def run_measured(cmd, env=None, timeout=None):
    """Runs `cmd`; returns (returncode, stdout, stderr, wall seconds, peak RSS in MiB) of that child.

    The peak RSS comes from GNU time when installed: a child forked from this Python process would
    inherit its high-water mark (openvino and nncf loaded here) through exec, so wait4() on a direct
    child overstates small processes. Without GNU time, wait4() it is."""
    cmd = [str(c) for c in cmd]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as rss:
        gnu = os.path.exists(GNU_TIME)
        timed = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name] + cmd if gnu else cmd
        t0 = time.perf_counter()
        # With a timeout the child leads a process group of its own, killed whole when time is up.
        p = subprocess.Popen(timed, stdout=out, stderr=err, env=env, start_new_session=timeout is not None)
        killed = []

        def kill():
            killed.append(True)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(p.pid, 0)
        if timer:
            timer.cancel()
        secs = time.perf_counter() - t0
        code = "timeout" if killed else os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        peak = usage.ru_maxrss / 1024
        if gnu:
            text = Path(rss.name).read_text().strip().splitlines()
            peak = int(text[-1]) / 1024 if text and text[-1].isdigit() else peak
        return code, out.read().decode(), err.read().decode(), secs, peak


def run_checked(cmd, env=None, what=None):
    """run_measured that raises RuntimeError on a failure; returns (stdout, seconds, peak MiB)."""
    code, out, err, secs, peak = run_measured(cmd, env)
    if code != 0:
        raise RuntimeError(f"{what or ' '.join(map(str, cmd))} failed ({code}):\n{out[-1500:]}\n{err.strip()[-3000:]}")
    return out, secs, peak


def timed_runs(cmd, runs, env=None):
    """Runs `cmd` `runs` times; returns (median seconds, max peak RSS MiB, stdout of the last run)."""
    times, peaks, out = [], [], ""
    for _ in range(max(runs, 1)):
        out, secs, peak = run_checked(cmd, env)
        times.append(secs)
        peaks.append(peak)
    return statistics.median(times), max(peaks), out


def ovpot_quantize_cmd(binary, model_xml, calib, out_dir, fixture_meta=None, extra=()):
    """`ovpot --quiet quantize -m MODEL --data CALIB -o OUT` with --model-type transformer where the
    fixture's meta.json says NNCF was given it."""
    cmd = [str(binary), "--quiet", "quantize", "-m", str(model_xml), "--data", str(calib), "-o", str(out_dir)]
    if fixture_meta and transformer(fixture_meta):
        cmd += ["--model-type", "transformer"]
    return cmd + [str(e) for e in extra]


def optimized_xml(out_dir, stem=None):
    """The IR ovpot wrote into OUT/optimized/."""
    d = Path(out_dir) / "optimized"
    if stem and (d / f"{stem}.xml").exists():
        return d / f"{stem}.xml"
    xmls = sorted(d.glob("*.xml"))
    if not xmls:
        raise RuntimeError(f"{d} has no .xml")
    return xmls[0]


# ---------------------------------------------------------------- data


def load_samples(folder, model, limit=None):
    """Samples of a data folder as [{input name: array with batch 1}] for an openvino.Model.

    Two layouts: one .npy per model input, samples on axis 0 (named after the input; `/` and `:`
    may be spelled `_`), or, for a single-input model, one .npy per sample."""
    import numpy as np

    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.npy") if p.stem != "eval_labels")
    arrays = {p.stem: p for p in files}
    columns = {}
    for port in model.inputs:
        names = set(port.get_names())
        names |= {n.replace("/", "_").replace(":", "_") for n in names}
        stem = next((s for s in arrays if s in names), None)
        if stem is None:
            if len(model.inputs) == 1 and files:
                samples = [{port.get_any_name(): np.load(f)} for f in files]
                return samples[:limit] if limit else samples
            raise RuntimeError(f"{folder}: no .npy for model input {sorted(port.get_names())}")
        columns[port.get_any_name()] = np.load(arrays[stem])
    n = min(len(a) for a in columns.values())
    if limit:
        n = min(n, limit)
    return [{k: a[i:i + 1] for k, a in columns.items()} for i in range(n)]


# ---------------------------------------------------------------- the NNCF worker


def nncf_run(spec, env=None):
    """Runs the NNCF worker in a fresh process of this Python (the peers venv).

    spec: {"op": "quantize" | "accuracy_control" | "compress", "model": XML, "out": XML,
           "calib": DIR (quantize), "eval": DIR + "labels": NPY + "metric_output": K +
           "max_drop": D (accuracy_control), "mode" + "group_size" (compress),
           "options": {"model_type": "transformer", "overflow_fix": "enable", "preset": ...},
           "runs": N (calls timed in the one process), "fp16": bool (save with compress_to_fp16)}
    Returns the worker's JSON ("seconds": [per call], "read_s", "save_s", ...) plus "wall_s" and
    "rss_mib" of the whole process (Python start, imports, read, the calls, save)."""
    out, secs, peak = run_checked([sys.executable, __file__, "nncf", json.dumps(spec)], env,
                                  f"NNCF {spec['op']} on {spec['model']}")
    res = json.loads(out.strip().splitlines()[-1])
    res["wall_s"] = secs
    res["rss_mib"] = peak
    return res


def _nncf_worker(spec):
    import nncf
    import numpy as np
    import openvino as ov

    nncf.set_log_level(40)  # errors only
    core = ov.Core()
    t0 = time.perf_counter()
    model = core.read_model(spec["model"])
    read_s = time.perf_counter() - t0
    opts = dict(spec.get("options") or {})
    if opts.get("model_type") == "transformer":
        opts["model_type"] = nncf.ModelType.TRANSFORMER
    if "preset" in opts:
        opts["preset"] = getattr(nncf.QuantizationPreset, opts["preset"].upper())
    if "overflow_fix" in opts:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

        fix = opts.pop("overflow_fix")
        opts["advanced_parameters"] = AdvancedQuantizationParameters(overflow_fix=getattr(OverflowFix, fix.upper()))
    res = {"options": {k: str(v) for k, v in opts.items()}}
    op = spec["op"]
    if op in ("quantize", "accuracy_control"):
        calib = load_samples(spec["calib"], model)
    if op == "accuracy_control":
        k = int(spec.get("metric_output", 0))
        evals = load_samples(spec["eval"], model)
        labels = np.load(spec["labels"]).reshape(-1)
        calls = []

        def validate(compiled, items):
            items = list(items)
            hits = [int(np.argmax(compiled(x)[compiled.outputs[k]]) == y) for x, y in items]
            acc = float(np.mean(hits))
            calls.append((len(items), acc))
            return acc, None

        validation = nncf.Dataset(list(zip(evals, labels.tolist())), lambda item: item[0])
    if op == "compress" and spec.get("group_size"):
        opts["group_size"] = int(spec["group_size"])
    times = []
    for _ in range(max(int(spec.get("runs", 1)), 1)):
        t0 = time.perf_counter()
        if op == "quantize":
            q = nncf.quantize(model, nncf.Dataset(calib), subset_size=len(calib), **opts)
        elif op == "accuracy_control":
            q = nncf.quantize_with_accuracy_control(model, nncf.Dataset(calib), validation, validate,
                                                    max_drop=float(spec["max_drop"]), subset_size=len(calib), **opts)
            full = [acc for n, acc in calls if n == len(evals)]
            res.update(full_evaluations=len(full), eval_inferences=sum(n for n, _ in calls),
                       first_metrics=full[:2], last_metric=full[-1] if full else None)
        elif op == "compress":
            q = nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode, spec["mode"].upper()), **opts)
        else:
            raise SystemExit(f"unknown worker op {op}")
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ov.save_model(q, spec["out"], compress_to_fp16=bool(spec.get("fp16", True)))
    res.update(seconds=times, read_s=read_s, save_s=time.perf_counter() - t0)
    print(json.dumps(res))


# ---------------------------------------------------------------- judging in OpenVINO


def judge(fixture, candidates, latency=1, env=None, fp32=True, fixture_nncf=False):
    """Judges IRs against a fixture in OpenVINO, as ../shared/tools/ovcheck.py does, in a fresh
    process (env: e.g. ONEDNN_MAX_CPU_ISA=AVX2 to compute as a CPU without VNNI).

    candidates: {label: XML}. Each model is compiled on CPU with INFERENCE_PRECISION_HINT=f32, one
    thread, and run on every eval sample one at a time. Returns {"fp32": {...}, label: {...},
    "int8_arith": ...} with, per model: accuracy (where eval_labels.npy exists), agreement (top-1
    with FP32; mean cosine of attention-mask pooled embeddings for metric 'embedding'), sqnr_db
    of the metric output against FP32, int8_layers / heavy_layers (Convolution, GroupConvolution,
    FullyConnected, MatMul, Deconvolution the runtime runs in u8/i8), fake_quantize, latency_ms
    (median of `latency` single-sample runs), bin_bytes. fixture_nncf adds the fixture's
    nncf_int8.xml as 'nncf_fixture'."""
    cands = {k: str(v) for k, v in candidates.items()}
    if fixture_nncf:
        cands["nncf_fixture"] = str(Path(fixture) / "nncf_int8.xml")
    spec = {"fixture": str(fixture), "candidates": cands, "latency": latency}
    full_env = dict(os.environ if env is None else env, INFERENCE_PRECISION_HINT="f32")
    out, _, _ = run_checked([sys.executable, __file__, "judge", json.dumps(spec)], full_env,
                            f"judging {', '.join(cands.values())} in OpenVINO")
    return json.loads(out.strip().splitlines()[-1])


def int8_share(compiled):
    """(heavy layers the runtime executes in u8/i8, all heavy layers) of a compiled model."""
    heavy = low = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        if rt["layerType"].astype(str) in HEAVY:
            heavy += 1
            low += rt["runtimePrecision"].astype(str).lower() in ("u8", "i8")
    return low, heavy


def sqnr_db(ref, out):
    """10 log10(|ref|^2 / |ref - out|^2) over all values (arrays or lists of arrays)."""
    import numpy as np

    if isinstance(ref, (list, tuple)):
        s = sum(float((np.asarray(r, np.float64) ** 2).sum()) for r in ref)
        e = sum(float(((np.asarray(r, np.float64) - np.asarray(o, np.float64)) ** 2).sum()) for r, o in zip(ref, out))
    else:
        r = np.asarray(ref, np.float64)
        s, e = float((r ** 2).sum()), float(((r - np.asarray(out, np.float64)) ** 2).sum())
    return float(10 * np.log10(max(s, 1e-30) / max(e, 1e-30)))


def sqnr_per_output(core, fp32_xml, int8_xml, samples):
    """Mean over the model's outputs of each output's SQNR (pooled over the samples), in OpenVINO
    (INFERENCE_PRECISION_HINT=f32): the measure for models without an ovcheck fixture."""
    import numpy as np

    ref = core.compile_model(str(fp32_xml), "CPU", F32)
    q = core.compile_model(str(int8_xml), "CPU", F32)
    num = np.zeros(len(ref.outputs))
    den = np.zeros(len(ref.outputs))
    for s in samples:
        a, b = ref(s), q(s)
        for k in range(len(ref.outputs)):
            r = np.asarray(a[k], dtype=np.float64)
            num[k] += (r ** 2).sum()
            den[k] += ((r - np.asarray(b[k], dtype=np.float64)) ** 2).sum()
    return float(np.mean(10 * np.log10(np.maximum(num, 1e-30) / np.maximum(den, 1e-30))))


def _judge_worker(spec):
    import numpy as np
    import openvino as ov

    fixture = Path(spec["fixture"])
    m = meta(fixture)
    feeds = {p.stem: np.load(p) for p in sorted((fixture / "eval").glob("*.npy"))}
    lab_p = fixture / "eval_labels.npy"
    labels = np.load(lab_p) if lab_p.exists() else None
    k, metric = m.get("metric_output", 0), m.get("metric", "classification")
    n = len(next(iter(feeds.values())))
    core = ov.Core()

    def view(out):  # what the metric looks at
        if metric == "embedding":
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            return (out * mask).sum(1) / mask.sum(1)
        return out

    def evaluate(xml):
        cm = core.compile_model(xml, "CPU", JUDGE_CFG)
        req = cm.create_infer_request()
        sample = lambda i: {name: v[i:i + 1] for name, v in feeds.items()}  # noqa: E731
        outs = [req.infer(sample(i))[cm.outputs[k]].copy() for i in range(n)]
        times = []
        for i in range(min(int(spec.get("latency", 1)), n)):
            t = time.perf_counter()
            req.infer(sample(i))
            times.append(time.perf_counter() - t)
        low, heavy = int8_share(cm)
        n_fq = sum(op.get_type_name() == "FakeQuantize" for op in core.read_model(xml).get_ops())
        info = dict(latency_ms=1e3 * statistics.median(times) if times else None, int8_layers=low,
                    heavy_layers=heavy, fake_quantize=n_fq, bin_bytes=os.path.getsize(xml[:-4] + ".bin"))
        return view(np.concatenate(outs)), info

    ref, info = evaluate(str(fixture / "model.xml"))
    if labels is not None:
        info["accuracy"] = float((ref.argmax(-1) == labels).mean())
    rows = {"fp32": info}
    for name, xml in spec["candidates"].items():
        out, info = evaluate(xml)
        if metric == "embedding":
            cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
            info["agreement"] = float(cos.mean())
        else:
            info["agreement"] = float((out.argmax(-1) == ref.argmax(-1)).mean())
        info["sqnr_db"] = sqnr_db(ref, out)
        if labels is not None:
            info["accuracy"] = float((out.argmax(-1) == labels).mean())
        rows[name] = info
    rows["int8_arith"] = int8_arith()
    rows["eval_samples"] = n
    rows["metric"] = metric
    print(json.dumps(rows))


def quality_key(judged):
    """The headline quality of a judged fixture: accuracy where there are labels, else agreement."""
    return "accuracy" if "accuracy" in judged.get("fp32", {}) else "agreement"


# ---------------------------------------------------------------- printing


def print_rows(rows):
    """Rows of strings as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def print_markdown(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


def header(args, what=""):
    """The first line of every benchmark's output."""
    print(f"ovpot {args.commit or revision()} ({args.ovpot}); {versions()}; cpu int8 {int8_arith()}; "
          f"{os.cpu_count()} CPUs; {what}".rstrip("; "), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("nncf", "judge"):
        raise SystemExit(__doc__)
    {"nncf": _nncf_worker, "judge": _judge_worker}[sys.argv[1]](json.loads(sys.argv[2]))
