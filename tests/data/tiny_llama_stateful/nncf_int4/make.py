"""NNCF 3.4's data-aware INT4 results on the tiny stateful Llama, the references of
tests/compress_data_aware.rs. Made with the peers' venv (../shared/tools/setup_peers.sh):
    .peers/venv/bin/python tests/data/tiny_llama_stateful/nncf_int4/make.py
Each case is compress_weights on model.xml with the calib/ windows as the dataset (one dict per
window, batch 1), saved without FP16 compression; <case>.json keeps, per constant of the result,
its element type, shape and the FNV-1a 64 hash of its bytes in the .bin, for the weights and their
codes, scales and zero points (the IR itself is not kept)."""
import glob, json, os, tempfile
import xml.etree.ElementTree as ET
import numpy as np, openvino as ov, nncf

here = os.path.dirname(os.path.abspath(__file__))
fixture = os.path.dirname(here)
arrays = {os.path.basename(f)[:-4]: np.load(f) for f in glob.glob(f"{fixture}/calib/*.npy")}
n = len(arrays["input_ids"])
items = [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)]
M = nncf.CompressWeightsMode
S = nncf.SensitivityMetric
cases = {
    "awq_se": dict(mode=M.INT4_ASYM, group_size=16, dataset=nncf.Dataset(items), awq=True, scale_estimation=True),
    "se_sym": dict(mode=M.INT4_SYM, group_size=32, dataset=nncf.Dataset(items), scale_estimation=True),
    "mixed": dict(mode=M.INT4_ASYM, group_size=16, ratio=0.5, dataset=nncf.Dataset(items)),
    "hessian": dict(mode=M.INT4_SYM, group_size=16, ratio=0.3, dataset=nncf.Dataset(items),
                    sensitivity_metric=S.HESSIAN_INPUT_ACTIVATION),
    "awq_data_free": dict(mode=M.INT4_ASYM, group_size=16, awq=True),
    "gptq": dict(mode=M.INT4_ASYM, group_size=16, dataset=nncf.Dataset(items), gptq=True),
    "gptq_se": dict(mode=M.INT4_ASYM, group_size=16, dataset=nncf.Dataset(items), gptq=True, scale_estimation=True),
    # Blocks of 32 columns: errors spread across blocks (hidden 64, intermediate 128).
    "gptq_blocks": dict(mode=M.INT4_ASYM, group_size=16, dataset=nncf.Dataset(items), gptq=True, scale_estimation=True,
                        advanced_parameters=nncf.AdvancedCompressionParameters(
                            gptq_params=nncf.quantization.advanced_parameters.AdvancedGPTQParameters(block_size=32))),
    "awq_gptq_sym": dict(mode=M.INT4_SYM, group_size=32, dataset=nncf.Dataset(items), awq=True, gptq=True),
}


WEIGHT_TYPES = {"u4", "i4", "u8", "i8", "f16", "f32"}


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def constants(xml, bin_path):
    blob = open(bin_path, "rb").read()
    out = {}
    for layer in ET.parse(xml).getroot().iter("layer"):
        if layer.get("type") != "Const" or layer.find("data").get("element_type") not in WEIGHT_TYPES:
            continue
        d = layer.find("data")
        off, size = int(d.get("offset")), int(d.get("size"))
        out[layer.get("name")] = {"type": d.get("element_type"), "shape": d.get("shape"),
                                  "fnv": fnv1a64(blob[off:off + size])}
    return out


with tempfile.TemporaryDirectory() as tmp:
    for name, kw in cases.items():
        model = ov.Core().read_model(f"{fixture}/model.xml")
        ov.save_model(nncf.compress_weights(model, **kw), f"{tmp}/{name}.xml", compress_to_fp16=False)
        with open(f"{here}/{name}.json", "w") as f:
            json.dump(constants(f"{tmp}/{name}.xml", f"{tmp}/{name}.bin"), f, separators=(",", ":"), sort_keys=True)
