#!/usr/bin/env python3
"""ovpot's two backends against NNCF 3.4, whole processes, measured in one run (issue #15).

Run with the peers venv after `cargo build --release --bin ovpot`:
    .peers/venv/bin/python scripts/bench_backend.py [--runs 3] [--json OUT.json] [FIXTURE...]

Per fixture (default: all seven under ../shared/fixtures or $OVPOT_FIXTURES), median of --runs:
  * `ovpot quantize` with `--backend builtin` and with `--backend openvino` (OpenVINO's C library
    from this venv's wheel): wall time of the whole process (read, statistics, bias correction,
    saturation checks, latency measurement, write);
  * NNCF's whole process: Python start, `import nncf, openvino`, read, `nncf.quantize`, save;
  * the ratio ovpot-openvino / NNCF (the issue's bar: <= 0.5), and the ratio to the limit: the
    calibration samples times OpenVINO's FP32 latency at the thread count used (report.json);
  * quality: both of ovpot's IRs judged by ../shared/tools/ovcheck.py (SQNR against FP32 in the
    runtime; the bar: openvino within 0.3 dB of builtin).
The CPU's int8 arithmetic (ovcheck's first line) is printed with the table.

Larger models (issue #15 asks for "the largest models you can build or find"): `--extra DIR`
(repeatable) takes a model folder made by scripts/extra_models.py (model.xml, calib/, eval/), e.g.
the PP-PicoDet layout detector at 800x608; its SQNR is measured on up to 30 eval samples in OpenVINO
(scripts/compare_placement.py's measure), NNCF's whole process is that script's NNCF worker.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quantize as bq  # noqa: E402


def int8_isa():
    """The CPU's int8 arithmetic as ovcheck names it (for tables without an ovcheck run)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("SSE41", "AVX", "AVX2", "AVX512_CORE")
    return "vnni" if any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8")) and not capped else "no-vnni"


def openvino_lib():
    import openvino

    return Path(openvino.__file__).parent / "libs"


def ovpot_cmd(binary, fixture, meta, out_dir, backend):
    cmd = [str(binary), "--quiet", "quantize", "-m", str(fixture / "model.xml"), "--data", str(fixture / "calib")]
    cmd += ["-o", str(out_dir), "--backend", backend]
    if backend == "openvino":
        cmd += ["--openvino-lib", str(openvino_lib())]
    if meta.get("nncf", {}).get("options", {}).get("model_type") == "transformer":
        cmd += ["--model-type", "transformer"]
    return cmd


def timed(cmd, runs):
    times = []
    for _ in range(runs):
        code, _, err, secs, _ = bq.run_measured(cmd)
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {err.strip()[-2000:]}")
        times.append(secs)
    return statistics.median(times)


def bench(args, fixture, work):
    meta = json.loads((fixture / "meta.json").read_text())
    row = {"fixture": fixture.name}
    for backend in ("builtin", "openvino"):
        out = work / backend
        row[f"{backend}_s"] = timed(ovpot_cmd(args.ovpot, fixture, meta, out, backend), args.runs)
        xml = sorted((out / "optimized").glob("*.xml"))[0]
        judged = bq.ovcheck(fixture, xml, work / f"ovcheck_{backend}.json", 1)
        row[f"{backend}_sqnr"] = judged["candidate"]["sqnr_db"]
        row["cpu_int8"] = judged.get("cpu_int8")
        if backend == "openvino":
            rep = json.loads((out / "report.json").read_text())
            row["samples"] = rep["samples_used"]
            row["fp32_ms"] = (rep.get("latency") or {}).get("fp32_ms")
            row["int8_ms"] = (rep.get("latency") or {}).get("int8_ms")
    nncf_xml = work / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    worker = [sys.executable, bq.__file__, "--nncf-worker", str(fixture), str(nncf_xml), "--runs", "1"]
    row["nncf_s"] = timed(worker, args.runs)
    row["ratio_nncf"] = row["openvino_s"] / row["nncf_s"]
    limit = row["samples"] * row["fp32_ms"] / 1e3 if row.get("fp32_ms") else None
    row["limit_s"] = limit
    row["ratio_limit"] = row["openvino_s"] / limit if limit else None
    return row


def bench_extra(args, model_dir, work):
    """A row like bench()'s for a scripts/extra_models.py folder (no ovcheck fixture)."""
    import compare_placement as cp
    import openvino as ov

    row = {"fixture": model_dir.name}
    core = ov.Core()
    evals = cp.load_samples(model_dir / "eval", core.read_model(str(model_dir / "model.xml")))[:30]
    meta = {}
    for backend in ("builtin", "openvino"):
        out = work / backend
        cmd = ovpot_cmd(args.ovpot, model_dir, meta, out, backend)
        row[f"{backend}_s"] = timed(cmd, args.runs)
        row[f"{backend}_sqnr"] = cp.sqnr(core, model_dir / "model.xml", out / "optimized" / "model.xml", evals)
        if backend == "openvino":
            rep = json.loads((out / "report.json").read_text())
            row["samples"] = rep["samples_used"]
            row["fp32_ms"] = (rep.get("latency") or {}).get("fp32_ms")
            row["int8_ms"] = (rep.get("latency") or {}).get("int8_ms")
            transformer = rep.get("model_type") == "transformer"
    nncf_xml = work / "nncf" / "model.xml"
    nncf_xml.parent.mkdir(parents=True, exist_ok=True)
    worker = [sys.executable, cp.__file__, "--nncf-worker", str(model_dir), str(nncf_xml), "1" if transformer else "0"]
    row["nncf_s"] = timed(worker, args.runs)
    row["nncf_sqnr"] = cp.sqnr(core, model_dir / "model.xml", nncf_xml, evals)
    row["ratio_nncf"] = row["openvino_s"] / row["nncf_s"]
    limit = row["samples"] * row["fp32_ms"] / 1e3 if row.get("fp32_ms") else None
    row["limit_s"] = limit
    row["ratio_limit"] = row["openvino_s"] / limit if limit else None
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixtures", nargs="*", help=f"default: {' '.join(bq.ALL)}")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ovpot", default=str(bq.ROOT / "target" / "release" / "ovpot"))
    ap.add_argument("--work", help="keep IRs and ovcheck JSON here (default: a temporary folder)")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--extra", action="append", default=[], help="a scripts/extra_models.py model folder (repeatable)")
    args = ap.parse_args()
    os.environ.setdefault("INFERENCE_PRECISION_HINT", "f32")
    root = bq.fixtures_root()
    names = args.fixtures or bq.ALL
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ovpot-backend-"))
    rows = []
    print(f"ovpot {bq.revision()}, {os.cpu_count()} cores, medians of {args.runs}")
    head = ["fixture", "builtin s", "openvino s", "nncf s", "ov/nncf", "limit s", "ov/limit",
            "SQNR builtin", "SQNR openvino", "diff dB", "FP32/INT8 ms"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    if args.extra and not args.fixtures:
        names = []
    jobs = [(n, lambda n=n: bench(args, root / n, work / n)) for n in names]
    jobs += [(Path(d).name, lambda d=d: bench_extra(args, Path(d), work / Path(d).name)) for d in args.extra]
    for n, job in jobs:
        r = job()
        rows.append(r)
        lim = f"{r['limit_s']:.2f}" if r["limit_s"] else "-"
        rl = f"{r['ratio_limit']:.1f}x" if r["ratio_limit"] else "-"
        lat = f"{r['fp32_ms']:.3f} / {r['int8_ms']:.3f}" if r.get("fp32_ms") else "-"
        print(f"| {n} | {r['builtin_s']:.2f} | {r['openvino_s']:.2f} | {r['nncf_s']:.2f} | {r['ratio_nncf']:.2f} | "
              f"{lim} | {rl} | {r['builtin_sqnr']:.2f} | {r['openvino_sqnr']:.2f} | "
              f"{r['openvino_sqnr'] - r['builtin_sqnr']:+.2f} | {lat} |", flush=True)
    extra = [r for r in rows if "nncf_sqnr" in r]
    if extra:
        print("SQNR of NNCF's IR on the extra models (30 eval samples): "
              + ", ".join(f"{r['fixture']} {r['nncf_sqnr']:.2f} dB" for r in extra))
    print(f"cpu int8: {next((r['cpu_int8'] for r in rows if r.get('cpu_int8')), None) or int8_isa()}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
