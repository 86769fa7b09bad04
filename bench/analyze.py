#!/usr/bin/env python3
"""`ovpot analyze` against what it promises, judged in OpenVINO (issue #36), in one run.

    .peers/venv/bin/python bench/analyze.py [FIXTURE...] [--isa avx2 native] [--target-sqnr DB]

For each fixture (default: ppocr_cls mobilenet_v2) and ISA (avx2 = ONEDNN_MAX_CPU_ISA=AVX2 and
`--target-isa avx2`: OpenVINO computes as a CPU without VNNI; native = this CPU):
  * `ovpot quantize` with its defaults (timed: one quantization);
  * `ovpot analyze` with the same options, SQNRs on --samples evaluation samples (default: its own choice) (timed), whose suggested
    ignored scope must reach --target-sqnr (default: its own, the quantized model's SQNR + 3 dB);
  * `ovpot quantize --ignored-scope <the suggestion>`;
  * `ovpot quantize -q accuracy_aware` on the labels with --max-drop (default 0.005), where the
    fixture has labels;
and every IR, with NNCF 3.4's default INT8 of the fixture (nncf_int8.xml) beside them, is judged in
OpenVINO on all evaluation samples (as ovcheck.py). Printed: the layer
groups whose revert gains most, SQNR and accuracy of default / suggested scope / accuracy-aware in
the runtime, whether the suggestion reaches the target there, and analyze time / quantize time.
Results: bench/results/analyze.jsonl.
"""
import json
import sys
import time

import common
import table

ISA_ENV = common.ISA_ENV
env_for = common.isa_env


def timed(cmd, env):
    t0 = time.perf_counter()
    common.run_checked(cmd, env)
    return time.perf_counter() - t0


def bench(args, name, fixture, work, res, isa):
    meta = common.meta(fixture)
    env = env_for(isa)
    isa_opt = ["--target-isa", "avx2"] if isa == "avx2" else []
    if args.backend == "openvino":
        isa_opt += ["--backend", "openvino", "--openvino-lib", str(common.openvino_c_lib().parent)]
    model = fixture / "model.xml"
    q_out = work / f"default_{isa}"
    t_q = timed(common.ovpot_quantize_cmd(args.ovpot, model, fixture / "calib", q_out, meta, isa_opt), env)
    a_out = work / f"analysis_{isa}"
    cmd = common.ovpot_quantize_cmd(args.ovpot, model, fixture / "calib", a_out, meta, isa_opt)
    cmd[cmd.index("quantize")] = "analyze"
    cmd += ["--eval-data", str(fixture / "eval")]
    if args.samples:
        cmd += ["--samples", str(args.samples)]
    if args.target_sqnr is not None:
        cmd += ["--target-sqnr", str(args.target_sqnr)]
    t_a = timed(cmd, env)
    analysis = json.loads((a_out / "analysis.json").read_text())
    s = analysis["suggestion"] or {"ignored": [], "target_sqnr_db": None, "measured_sqnr_db": None}
    candidates = {"ovpot-default": common.optimized_xml(q_out, "model")}
    if s["ignored"]:
        scoped = work / f"suggested_{isa}"
        scope = ",".join(s["ignored"])
        common.run_checked(common.ovpot_quantize_cmd(args.ovpot, model, fixture / "calib", scoped, meta,
                                                     isa_opt + ["--ignored-scope", scope]), env)
        candidates["ovpot-suggested"] = common.optimized_xml(scoped, "model")
    if (fixture / "eval_labels.npy").exists():
        aa = work / f"aa_{isa}"
        common.run_checked(common.ovpot_quantize_cmd(
            args.ovpot, model, fixture / "calib", aa, meta,
            isa_opt + ["-q", "accuracy_aware", "--labels", fixture / "eval_labels.npy", "--eval-data",
                       fixture / "eval", "--max-drop", args.max_drop]), env)
        candidates["ovpot-accuracy-aware"] = common.optimized_xml(aa, "model")
    judged = common.judge(fixture, candidates, env=env, fixture_nncf=True)
    candidates["nncf_fixture"] = fixture / "nncf_int8.xml"
    cpu = judged["int8_arith"]
    opt = {"variant": isa, "backend": args.backend, "target_sqnr_db": s["target_sqnr_db"]}
    for tool in ["fp32"] + list(candidates):
        res.add_judged(tool, name, judged[tool], opt, cpu)
    res.add("ovpot", name, "analyze_time_ratio", t_a / t_q, None, opt, cpu)
    res.add("ovpot", name, "suggested_layers", len(s["ignored"]), None, opt, cpu)
    print(f"\n{name}, {isa} ({cpu}): output SQNR {analysis['sqnr_db']:.2f} dB in ovpot's judge "
          f"({analysis['judge']}); worst groups:")
    for layer in analysis["layers"][:5]:
        print(f"  {', '.join(layer['layers'])}: revert {layer['revert_gain_db']:+.2f} dB, "
              f"alone {layer['only_this_sqnr_db']:.2f} dB")
    print(f"  suggested ignored scope ({len(s['ignored'])} layers): {', '.join(s['ignored'])}")
    rows = [("model", "SQNR dB (OpenVINO)", "accuracy", "int8 layers")]
    for tool in ["fp32"] + list(candidates):
        j = judged[tool]
        rows.append((tool, f"{j.get('sqnr_db', float('inf')):.2f}" if "sqnr_db" in j else "-",
                     f"{j['accuracy']:.4f}" if "accuracy" in j else "-", f"{j['int8_layers']}/{j['heavy_layers']}"))
    common.print_rows(rows)
    target = s["target_sqnr_db"]
    if "ovpot-suggested" in judged and target is not None:
        got = judged["ovpot-suggested"]["sqnr_db"]
        print(f"  target {target:.2f} dB: the suggested scope gives {got:.2f} dB in OpenVINO "
              f"({'reached' if got >= target else 'NOT reached'}; ovpot measured {s['measured_sqnr_db']:.2f} dB "
              f"on {s.get('samples', analysis['samples'])} samples, chosen on {analysis['samples']})")
    print(f"  time: quantize {t_q:.1f} s, analyze {t_a:.1f} s ({t_a / t_q:.2f}x)")
    return t_a / t_q


def main():
    ap = common.parser(__doc__, name="analyze")
    ap.add_argument("--isa", nargs="+", default=["avx2", "native"], choices=list(ISA_ENV))
    ap.add_argument("--backend", default="builtin", choices=["builtin", "openvino"],
                    help="ovpot's backend for every quantization and the analysis (openvino: the suggestion "
                         "is checked in OpenVINO)")
    ap.add_argument("--target-sqnr", type=float, help="default: the analysis' own (its SQNR + 3 dB)")
    ap.add_argument("--max-drop", default="0.005", help="accuracy-aware's maximal drop (default 0.005)")
    ap.add_argument("--samples", type=int, help="evaluation samples the analysis measures on "
                                                 "(default: its own choice, 16 to 256 by output size)")
    args = ap.parse_args()
    args.ovpot = common.ovpot_binary(args)
    common.header(args, "avx2 = ONEDNN_MAX_CPU_ISA=AVX2 and --target-isa avx2")
    res = common.Results("analyze", args)
    base = common.work_dir(args, "analyze")
    if not args.names:
        args.names = ["ppocr_cls", "mobilenet_v2"]
    for name, fixture in common.fixture_dirs(args):
        for isa in args.isa:
            try:
                bench(args, name, fixture, base / name, res, isa)
            except RuntimeError as e:
                print(f"{name} {isa}: {e}", file=sys.stderr)
    table.print_records(res.records)
    res.done()


if __name__ == "__main__":
    main()
