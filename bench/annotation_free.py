#!/usr/bin/env python3
"""Annotation-free accuracy control judged by OpenVINO (issue 19): `ovpot quantize --annotation-free
--max-drop D` on a fixture's evaluation set (no labels used), then, in the OpenVINO CPU plugin
(INFERENCE_PRECISION_HINT=f32): top-1 agreement of the INT8 IR with FP32 on the samples the FP32
model is confident about (POT's rule: softmax unless the scores are already in [0, 1], top score
above the threshold) and on all samples, beside ovpot's default INT8 and NNCF's INT8 (the
fixture's nncf_int8.xml).

    .peers/venv/bin/python bench/annotation_free.py [--max-drop 0.01] [--threshold 0.6] [FIXTURE...]

Default fixture: mobilenet_v2 (`--fixture NAME` as before works too). Results:
bench/results/annotation_free.jsonl; tools ovpot (--annotation-free), ovpot-default, nncf.
"""
import numpy as np

import common
import table


def outputs(core, xml, samples):
    c = core.compile_model(str(xml), "CPU", common.F32)
    req = c.create_infer_request()
    return [np.asarray(req.infer(s)[c.outputs[0]]).ravel() for s in samples]


def confident(scores, threshold):
    keep, labels = [], []
    for i, v in enumerate(scores):
        v = v.astype(np.float64)
        top = 1.0 / np.exp(v - v.max()).sum() if (v.max() > 1 or v.min() < 0) else v.max()
        if top > threshold:
            keep.append(i)
            labels.append(int(np.argmax(v)))
    return keep, labels


def bench(args, name, fx, work, res):
    import openvino as ov

    cmd = [args.ovpot, "quantize", "-m", fx / "model.xml", "--data", fx / "calib"]
    common.run_checked(cmd + ["-o", work / "default"])
    common.run_checked(cmd + ["--eval-data", fx / "eval", "--annotation-free", "--max-drop", args.max_drop,
                              "--annotation-conf-threshold", args.threshold, "-o", work / "af"])
    core = ov.Core()
    samples = common.load_samples(fx / "eval", core.read_model(str(fx / "model.xml")))
    fp = outputs(core, fx / "model.xml", samples)
    keep, labels = confident(fp, args.threshold)
    fp_top = [int(np.argmax(v)) for v in fp]
    opt = {"variant": f"max_drop {args.max_drop:g}, threshold {args.threshold:g}"}
    res.add("fp32", name, "eval_samples", len(samples), None, opt)
    res.add("fp32", name, "confident_samples", len(keep), None, opt)
    for tool, xml in (("ovpot", common.optimized_xml(work / "af")), ("ovpot-default", common.optimized_xml(work / "default")),
                      ("nncf", fx / "nncf_int8.xml")):
        top = [int(np.argmax(v)) for v in outputs(core, xml, samples)]
        on_conf = float(np.mean([top[i] == lab for i, lab in zip(keep, labels)]))
        res.add(tool, name, "agreement_confident", on_conf, None, opt)
        res.add(tool, name, "drop_confident", 1 - on_conf, None, opt)
        res.add(tool, name, "agreement_all", float(np.mean([t == f for t, f in zip(top, fp_top)])), None, opt)


def main():
    ap = common.parser(__doc__, name="annotation_free")
    ap.add_argument("--fixture", help="one fixture (the old spelling of the positional name)")
    ap.add_argument("--max-drop", type=float, default=0.01)
    ap.add_argument("--threshold", type=float, default=0.6)
    args = ap.parse_args()
    args.names = args.names or [args.fixture or "mobilenet_v2"]
    args.ovpot = common.ovpot_binary(args)
    common.header(args)
    res = common.Results("annotation_free", args)
    work = common.work_dir(args, "annotation_free")
    for name, fx in common.fixture_dirs(args):
        bench(args, name, fx, work / name, res)
    table.print_records(res.records)
    res.done()


if __name__ == "__main__":
    main()
