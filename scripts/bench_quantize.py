#!/usr/bin/env python3
"""ovpot quantize vs NNCF 3.4 nncf.quantize on the fixtures, both judged in the real OpenVINO runtime.

Run with the peers venv (openvino + nncf; `../shared/tools/setup_peers.sh .peers` makes one), after
`cargo build --release --bin ovpot`:
    .peers/venv/bin/python scripts/bench_quantize.py [--runs 3] [--json OUT.json] [FIXTURE...]

For each fixture (default: all seven under ../shared/fixtures or $OVPOT_FIXTURES):
  * ovpot: `target/release/ovpot --quiet quantize -m model.xml --data calib -o DIR` with the default
    settings (`--model-type transformer` where meta.json says NNCF used it); the wall time of the
    whole process (read IR, statistics, write IR), median of --runs runs.
  * NNCF: `nncf.quantize(model, Dataset(calib samples, batch 1), subset_size=<all calib samples>)`,
    the options of meta.json (model_type=transformer for minilm_l6), in a fresh Python process per
    fixture; the time of the nncf.quantize() call alone (what meta.json reports), median of --runs
    runs. Reading the model and saving the IR are timed separately (column "nncf+io").
  * Both resulting IRs are judged by ../shared/tools/ovcheck.py (CPU plugin,
    INFERENCE_PRECISION_HINT=f32, 1 thread, every eval sample) and printed side by side.
Peak RSS is each tool's whole process (ovpot: the CLI; NNCF: the Python worker with OpenVINO and
NNCF loaded), from GNU time (/usr/bin/time) when installed, else wait4(). OpenVINO latency of both IRs comes from the same ovcheck run.
A row is flagged when ours is below NNCF (issue #4's bar): accuracy by more than 0.001, agreement
(top-1 or mean cosine) by more than 0.005, SQNR by more than 0.5 dB, fewer int8 layers, OpenVINO
latency more than 5% above NNCF's, more quantize time, or more peak RSS.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ALL = ["digits_mlp", "mnist_cnn", "mtcnn_rnet", "mtcnn_onet", "ppocr_cls", "mobilenet_v2", "minilm_l6"]
ROOT = Path(__file__).resolve().parent.parent
TOL = {"accuracy": 0.001, "agreement": 0.005, "sqnr_db": 0.5}
LATENCY_TOL = 0.05  # our IR's OpenVINO latency may exceed NNCF's by this fraction


def fixtures_root():
    env = os.environ.get("OVPOT_FIXTURES")
    return Path(env) if env else ROOT.parent / "shared" / "fixtures"


def revision():
    """The commit measured, noting uncommitted changes to src/ (other agents work in this tree)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
                           capture_output=True, text=True).stdout.strip()
    return commit.stdout.strip() + (" (+ uncommitted changes in src/)" if dirty else "")


def load_calib(model, folder):
    """Calibration samples as a list of {input name: array with batch 1}, one per sample.

    Files are named after the model's inputs; `/` and `:` in a name may be spelled `_`."""
    import numpy as np

    arrays = {p.stem: np.load(p) for p in sorted(folder.glob("*.npy"))}
    columns = {}
    for port in model.inputs:
        names = set(port.get_names())
        names |= {n.replace("/", "_").replace(":", "_") for n in names}
        stem = next((s for s in arrays if s in names), None)
        if stem is None:
            raise SystemExit(f"{folder}: no .npy for model input {sorted(port.get_names())}")
        columns[port.get_any_name()] = arrays[stem]
    n = min(len(a) for a in columns.values())
    return [{k: a[i : i + 1] for k, a in columns.items()} for i in range(n)]


def nncf_options(meta):
    import nncf

    opts = dict(meta.get("nncf", {}).get("options", {}))
    if opts.get("model_type") == "transformer":
        opts["model_type"] = nncf.ModelType.TRANSFORMER
    return opts


def nncf_worker(fixture, out_xml, runs):
    """Child process: run nncf.quantize `runs` times, save the last result, print the times as JSON."""
    import nncf
    import openvino as ov

    nncf.set_log_level(40)  # errors only: keep the table readable
    meta = json.loads((fixture / "meta.json").read_text())
    core = ov.Core()
    t0 = time.perf_counter()
    model = core.read_model(str(fixture / "model.xml"))
    read_s = time.perf_counter() - t0
    samples = load_calib(model, fixture / "calib")
    dataset = nncf.Dataset(samples)
    opts = nncf_options(meta)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        q = nncf.quantize(model, dataset, subset_size=len(samples), **opts)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ov.save_model(q, out_xml)
    save_s = time.perf_counter() - t0
    print(json.dumps({"quantize_s": times, "read_s": read_s, "save_s": save_s, "options": str(opts)}))


GNU_TIME = "/usr/bin/time"


def run_measured(cmd):
    """Runs `cmd`; returns (returncode, stdout, stderr, wall seconds, peak RSS in MiB) of that child.

    The peak RSS comes from GNU time when it is installed: a child forked from this Python process
    would inherit its high-water mark (the openvino and nncf modules loaded here) through exec, so
    wait4() on a direct child overstates small processes. Without GNU time, wait4() it is."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as rss:
        timed = [GNU_TIME, "-q", "-f", "%M", "-o", rss.name] + cmd if os.path.exists(GNU_TIME) else cmd
        t0 = time.perf_counter()
        p = subprocess.Popen(timed, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        secs = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        peak = usage.ru_maxrss / 1024
        if timed is not cmd:
            text = Path(rss.name).read_text().strip().splitlines()
            peak = int(text[-1]) / 1024 if text and text[-1].isdigit() else peak
        return p.returncode, out.read().decode(), err.read().decode(), secs, peak


def run_ovpot(binary, fixture, meta, out_dir, runs):
    cmd = [str(binary), "--quiet", "quantize", "-m", str(fixture / "model.xml"), "--data", str(fixture / "calib")]
    cmd += ["-o", str(out_dir)]
    if meta.get("nncf", {}).get("options", {}).get("model_type") == "transformer":
        cmd += ["--model-type", "transformer"]
    times, rss = [], []
    for _ in range(runs):
        code, _, err, secs, peak = run_measured(cmd)
        times.append(secs)
        rss.append(peak)
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {err.strip()}")
    xmls = sorted((out_dir / "optimized").glob("*.xml"))
    if not xmls:
        raise RuntimeError(f"{out_dir}/optimized has no .xml")
    return times, max(rss), xmls[0], cmd


def run_nncf(fixture, out_xml, runs):
    cmd = [sys.executable, __file__, "--nncf-worker", str(fixture), str(out_xml), "--runs", str(runs)]
    code, out, err, _, peak = run_measured(cmd)
    if code != 0:
        raise RuntimeError(f"nncf.quantize on {fixture.name} failed: {err.strip()[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    res["rss_mib"] = peak
    return res


def ovcheck(fixture, xml, json_out, latency):
    tool = fixture.parent.parent / "tools" / "ovcheck.py"
    cmd = [sys.executable, str(tool), str(fixture), str(xml), "--json", str(json_out), "--latency", str(latency)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ovcheck {xml} failed: {r.stderr.strip()[-2000:]}")
    return json.loads(Path(json_out).read_text())


def quality_key(rows):
    return "accuracy" if "accuracy" in rows["candidate"] else "agreement"


def shortfalls(ours, theirs):
    """The measures on which our IR is below NNCF's by more than the tolerance."""
    low = []
    for key, tol in TOL.items():
        if key in ours and key in theirs and ours[key] < theirs[key] - tol:
            low.append(key)
    if ours["int8_layers"] < theirs["int8_layers"]:
        low.append("int8_layers")
    if ours["latency_ms"] > theirs["latency_ms"] * (1 + LATENCY_TOL):
        low.append("latency")
    return low


def bench_fixture(args, fixture, work):
    meta = json.loads((fixture / "meta.json").read_text())
    ov_times, ov_rss, our_xml, cmd = run_ovpot(args.ovpot, fixture, meta, work / "ovpot", args.runs)
    nncf_xml = work / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    nn = run_nncf(fixture, nncf_xml, args.runs)
    ours = ovcheck(fixture, our_xml, work / "ovcheck_ovpot.json", args.latency)
    fresh = ovcheck(fixture, nncf_xml, work / "ovcheck_nncf.json", 1)
    return {
        "fixture": fixture.name,
        "ovpot_cmd": " ".join(cmd[:-2] + ["-o", "OUT"]),
        "ovpot_s": ov_times,
        "nncf_s": nn["quantize_s"],
        "nncf_io_s": nn["read_s"] + nn["save_s"],
        "ovpot_rss_mib": ov_rss,
        "nncf_rss_mib": nn["rss_mib"],
        "nncf_options": nn["options"],
        "fp32": ours["fp32"],
        "ovpot": ours["candidate"],
        "nncf": fresh["candidate"],
        "nncf_fixture_ir": ours.get("nncf"),
        "quality": quality_key(ours),
    }


def fmt_row(r):
    q = r["quality"]
    o, n = r["ovpot"], r["nncf"]
    # Latency of NNCF's fixture IR measured in the same ovcheck run as ours (same repetitions).
    n_lat = (r.get("nncf_fixture_ir") or n)["latency_ms"]
    t_o, t_n = statistics.median(r["ovpot_s"]), statistics.median(r["nncf_s"])
    low = shortfalls(o, {**n, "latency_ms": n_lat})
    if r["ovpot_s"] and t_o > t_n:
        low.append("time")
    if r.get("ovpot_rss_mib", 0) > r.get("nncf_rss_mib", float("inf")):
        low.append("RSS")
    return [
        r["fixture"],
        f"{t_o:.2f}",
        f"{t_n:.2f}",
        f"{t_n + r['nncf_io_s']:.2f}",
        f"{t_n / t_o:.1f}x",
        {"accuracy": "acc", "agreement": "cos" if r["fixture"] == "minilm_l6" else "agr"}[q],
        f"{o[q]:.4f} / {n[q]:.4f}",
        f"{o['sqnr_db']:.2f} / {n['sqnr_db']:.2f}",
        f"{o['int8_layers']} / {n['int8_layers']} of {o['heavy_layers']}",
        f"{o['fake_quantize']} / {n['fake_quantize']}",
        f"{o['latency_ms']:.3f} / {n_lat:.3f}",
        f"{r['ovpot_rss_mib']:.0f} / {r['nncf_rss_mib']:.0f}",
        "BELOW NNCF: " + ", ".join(low) if low else "ok",
    ]


HEAD = ["fixture", "ovpot s", "nncf s", "nncf+io s", "nncf/ovpot", "metric", "quality ours / nncf",
        "SQNR dB ours / nncf", "int8 layers ours / nncf", "FQ ours / nncf", "OV latency ms ours / nncf", "peak RSS MiB ours / nncf", "vs NNCF"]


def print_rows(rows):
    """Prints rows of strings as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def print_table(results):
    print_rows([HEAD] + [fmt_row(r) for r in results])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixtures", nargs="*", help=f"default: {' '.join(ALL)}")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool (median reported)")
    ap.add_argument("--ovpot", default=str(ROOT / "target" / "release" / "ovpot"), help="the ovpot binary")
    ap.add_argument("--work", help="keep the IRs and ovcheck JSON here (default: a temporary folder)")
    ap.add_argument("--json", help="write all measurements to this file")
    ap.add_argument("--latency", type=int, default=20, help="ovcheck --latency for our IR")
    ap.add_argument("--nncf-worker", nargs=2, metavar=("FIXTURE", "OUT_XML"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nncf_worker:
        nncf_worker(Path(args.nncf_worker[0]), args.nncf_worker[1], args.runs)
        return
    os.environ["INFERENCE_PRECISION_HINT"] = "f32"  # ovcheck and NNCF set it too; this CPU defaults to bf16
    root = fixtures_root()
    names = args.fixtures or ALL
    if not Path(args.ovpot).exists():
        raise SystemExit(f"{args.ovpot} missing: cargo build --release --bin ovpot")
    import openvino as ov
    import nncf

    rev = revision()
    print(f"ovpot {rev}; openvino {ov.__version__}; nncf {nncf.__version__}; {os.cpu_count()} CPUs; "
          f"median of {args.runs} runs", flush=True)
    load0 = os.getloadavg()[0]
    base = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_quantize_"))
    results = []
    for name in names:
        fixture = root / name
        if not (fixture / "model.xml").exists():
            print(f"{name}: not found under {root}, skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            r = bench_fixture(args, fixture, base / name)
        except RuntimeError as e:
            print(f"{name}: {e}", file=sys.stderr)
            continue
        results.append(r)
        print(f"  {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print_table(results)
    print(f"load average (1 min): {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    if args.json:
        Path(args.json).write_text(json.dumps({"revision": rev, "runs": args.runs, "results": results}, indent=1))


if __name__ == "__main__":
    main()
