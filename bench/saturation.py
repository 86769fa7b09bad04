#!/usr/bin/env python3
"""INT8 as the CPU that runs it computes: ovpot's default vs NNCF's two overflow-fix choices, judged
by OpenVINO on a CPU without VNNI and on one with it, in one run.

    .peers/venv/bin/python bench/saturation.py [--isa avx2 native] [FIXTURE...]

For each fixture (default: all seven under ../shared/fixtures or $OVPOT_FIXTURES):
  * NNCF 3.4 `nncf.quantize` twice: default (`overflow_fix` first layer; tool nncf) and
    `AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)` (tool nncf-overflow-enable);
    NNCF does not look at the CPU, so each IR serves every ISA below.
  * For each ISA: `ovpot quantize` with its defaults (`--target-isa auto`, `--saturation-fix auto`)
    run with `ONEDNN_MAX_CPU_ISA=AVX2` for `avx2` (OpenVINO then computes as a CPU without VNNI,
    and ovpot's auto detection honours the same variable) and without it for `native`; every IR is
    judged in OpenVINO (as ovcheck.py) under the same environment.
The table gives accuracy (or agreement) and SQNR per IR, int8 layers, and whether ovpot's SQNR is
within 0.3 dB of the better NNCF choice (issue #14's bar). Results: bench/results/saturation.jsonl,
options.variant = the ISA, int8_arith = what OpenVINO computed with.
"""
import json
import sys
import time

import common
import table

ISA_ENV = common.ISA_ENV
env_for = common.isa_env


def bench(args, name, fixture, work, res):
    meta = common.meta(fixture)
    nncf = {}
    for tool, extra in (("nncf", {}), ("nncf-overflow-enable", {"overflow_fix": "enable"})):
        xml = work / tool / "model.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        common.nncf_run({"op": "quantize", "model": str(fixture / "model.xml"), "out": str(xml),
                         "calib": str(fixture / "calib"),
                         "options": dict(meta.get("nncf", {}).get("options", {}), **extra)}, env_for("native"))
        nncf[tool] = xml
    rows = []
    for isa in args.isa:
        out = work / f"ovpot_{isa}"
        cmd = common.ovpot_quantize_cmd(args.ovpot, fixture / "model.xml", fixture / "calib", out, meta)
        t0 = time.perf_counter()
        common.run_checked(cmd, env_for(isa))
        secs = time.perf_counter() - t0
        arith = (json.loads((out / "report.json").read_text()).get("int8_arithmetic") or {})
        judged = common.judge(fixture, dict(nncf, ovpot=common.optimized_xml(out, "model")), env=env_for(isa))
        cpu = judged["int8_arith"]
        opt = {"variant": isa}
        for tool in ("fp32", "ovpot", "nncf", "nncf-overflow-enable"):
            res.add_judged(tool, name, judged[tool], opt, cpu)
        res.add("ovpot", name, "time_s", secs, "s", opt, cpu)
        res.add("ovpot", name, "target_isa", arith.get("target_isa"), None, opt, cpu)
        res.add("ovpot", name, "seven_bit_layers", len(arith.get("seven_bit_layers", [])), None, opt, cpu)
        res.add("ovpot", name, "saturating_layers", len(arith.get("saturating_layers", [])), None, opt, cpu)
        rows.append((name, isa, cpu, judged))
    return rows


def main():
    ap = common.parser(__doc__, name="saturation")
    ap.add_argument("--isa", nargs="+", default=["avx2", "native"], choices=list(ISA_ENV))
    args = ap.parse_args()
    args.ovpot = common.ovpot_binary(args)
    common.header(args, "avx2 = ONEDNN_MAX_CPU_ISA=AVX2")
    res = common.Results("saturation", args)
    base = common.work_dir(args, "saturation")
    rows = []
    for name, fixture in common.fixture_dirs(args):
        try:
            rows += bench(args, name, fixture, base / name, res)
        except RuntimeError as e:
            print(f"{name}: {e}", file=sys.stderr)
        print(f"  {name} done", file=sys.stderr, flush=True)
    table.print_records(res.records)
    # Issue #14's bars: without VNNI, within 0.3 dB of the better NNCF choice; with VNNI, of NNCF's
    # default (its overflow fix only costs there); and no fewer int8 layers than NNCF's default.
    for isa in args.isa:
        diffs = []
        for name, i, cpu, j in rows:
            if i != isa:
                continue
            d, e, o = j["nncf"], j["nncf-overflow-enable"], j["ovpot"]
            best = max(d["sqnr_db"], e["sqnr_db"]) if cpu == "no-vnni" else d["sqnr_db"]
            ok = o["sqnr_db"] >= best - 0.3 and o["int8_layers"] >= d["int8_layers"]
            diffs.append(o["sqnr_db"] - best)
            print(f"{isa} ({cpu}) {name}: {'ok' if ok else 'BELOW'} ({o['sqnr_db'] - best:+.2f} dB)")
        if diffs:
            what = "the better NNCF choice" if any(c == "no-vnni" for _, i, c, _ in rows if i == isa) else "NNCF default"
            print(f"{isa}: bar SQNR >= {what} - 0.3 dB; mean SQNR vs {what}: {sum(diffs) / len(diffs):+.2f} dB")
    res.done()


if __name__ == "__main__":
    main()
