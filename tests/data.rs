//! Datasets from files: npy folders (the fixtures' calib/ layout, per-sample files, one file) and
//! image folders (PNGs generated here), with their error messages.

mod common;

use ovpot::api::PortDesc;
use ovpot::data::{open_dataset, read_labels, DataOptions, ImageFolderDataset, ImageOptions, Layout, NpyFolderDataset};
use ovpot::graph::{Dim, PartialShape};
use ovpot::tensor::{ElementType, Tensor};
use ovpot::{Dataset, Model};
use std::path::Path;

fn inputs_of(fixture: &Path) -> Vec<PortDesc> {
    Model::read(&fixture.join("model.xml"), None).unwrap().inputs()
}

fn port(name: &str, et: ElementType, dims: &[i64]) -> PortDesc {
    let d = dims.iter().map(|&x| if x < 0 { Dim::Dynamic } else { Dim::Static(x as usize) }).collect();
    PortDesc { name: name.to_string(), element_type: et, shape: PartialShape(Some(d)) }
}

#[test]
fn calib_folder_of_every_small_fixture() {
    for name in ["digits_mlp", "mnist_cnn", "mtcnn_rnet", "mtcnn_onet"] {
        let Some(dir) = common::fixture(name) else {
            continue;
        };
        let inputs = inputs_of(&dir);
        let ds = NpyFolderDataset::open(&dir.join("calib"), &inputs).unwrap();
        let stacked = common::read_inputs(&dir.join("calib"));
        assert_eq!(ds.len(), stacked[0].1.shape()[0], "{name}");
        for i in [0, ds.len() - 1] {
            let s = ds.get(i).unwrap();
            assert_eq!(s, common::sample(&stacked, i), "{name} sample {i}");
            assert_eq!(s[0].1.shape()[0], 1, "{name}: batch dim 1");
        }
        assert!(ds.get(ds.len()).is_err());
    }
}

#[test]
fn limit_caps_samples() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let ds = NpyFolderDataset::open(&dir.join("calib"), &inputs_of(&dir)).unwrap().with_limit(Some(7));
    assert_eq!(ds.len(), 7);
    assert_eq!(ds.available(), 300);
    assert!(ds.get(7).is_err());
    let opts = DataOptions { limit: Some(1000), ..Default::default() };
    assert_eq!(open_dataset(&dir.join("calib"), &inputs_of(&dir), &opts).unwrap().len(), 300);
}

#[test]
fn single_file_and_per_sample_files() {
    let Some(dir) = common::fixture("digits_mlp") else {
        return;
    };
    let inputs = inputs_of(&dir);
    let file = dir.join("calib/input.npy");
    let one = NpyFolderDataset::open(&file, &inputs).unwrap();
    assert_eq!(one.len(), 300);

    // One file per sample, some without the batch dim, named so that text order != natural order.
    let stacked = common::read_inputs(&dir.join("calib"));
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..12 {
        let s = common::sample(&stacked, i).remove(0).1;
        let s = if i % 2 == 0 { s.reshaped(&[64]).unwrap() } else { s };
        ovpot::npy::write_npy(&tmp.path().join(format!("s{i}.npy")), &s).unwrap();
    }
    let ds = NpyFolderDataset::open(tmp.path(), &inputs).unwrap();
    assert_eq!(ds.len(), 12);
    for i in 0..12 {
        assert_eq!(ds.get(i).unwrap(), common::sample(&stacked, i), "sample {i} (natural file order)");
    }
    // A folder with a single oddly named file is that input, stacked.
    let tmp1 = tempfile::tempdir().unwrap();
    std::fs::copy(&file, tmp1.path().join("digits.npy")).unwrap();
    assert_eq!(NpyFolderDataset::open(tmp1.path(), &inputs).unwrap().len(), 300);
}

#[test]
fn mismatches_name_input_and_shapes() {
    let (Some(mnist), Some(rnet)) = (common::fixture("mnist_cnn"), common::fixture("mtcnn_rnet")) else {
        return;
    };
    // MNIST data (named input.npy) for R-Net (input 'x'): a single file, wrong shape.
    let e = NpyFolderDataset::open(&mnist.join("calib"), &inputs_of(&rnet)).unwrap_err().to_string();
    assert!(e.contains("'x'") && e.contains("[1,3,24,24]") && e.contains("[300, 1, 28, 28]"), "{e}");

    // Wrong element type.
    let tmp = tempfile::tempdir().unwrap();
    let t = Tensor::i64_from_vec(&[2, 64], vec![0; 128]).unwrap();
    ovpot::npy::write_npy(&tmp.path().join("input.npy"), &t).unwrap();
    let e = NpyFolderDataset::open(tmp.path(), &[port("input", ElementType::F32, &[-1, 64])]).unwrap_err().to_string();
    assert!(e.contains("'input'") && e.contains("f32") && e.contains("i64"), "{e}");

    // Multi-input model: a missing file is named; unequal sample counts are refused.
    let two = [port("a", ElementType::I64, &[1, 4]), port("b", ElementType::I64, &[1, 4])];
    let tmp = tempfile::tempdir().unwrap();
    ovpot::npy::write_npy(&tmp.path().join("a.npy"), &Tensor::i64_from_vec(&[3, 4], vec![1; 12]).unwrap()).unwrap();
    let e = NpyFolderDataset::open(tmp.path(), &two).unwrap_err().to_string();
    assert!(e.contains("'b'"), "{e}");
    // One file per sample is for single-input models; the error says so.
    let per_sample = tempfile::tempdir().unwrap();
    for i in 0..2 {
        let t = Tensor::i64_from_vec(&[1, 4], vec![i; 4]).unwrap();
        ovpot::npy::write_npy(&per_sample.path().join(format!("s{i}.npy")), &t).unwrap();
    }
    let e = NpyFolderDataset::open(per_sample.path(), &two).unwrap_err().to_string();
    assert!(e.contains("'a', 'b'") && e.contains("single-input models only"), "{e}");
    ovpot::npy::write_npy(&tmp.path().join("b.npy"), &Tensor::i64_from_vec(&[2, 4], vec![1; 8]).unwrap()).unwrap();
    let e = NpyFolderDataset::open(tmp.path(), &two).unwrap_err().to_string();
    assert!(e.contains("3 samples") || e.contains("holds 2"), "{e}");
    ovpot::npy::write_npy(&tmp.path().join("b.npy"), &Tensor::i64_from_vec(&[3, 4], vec![2; 12]).unwrap()).unwrap();
    let ds = NpyFolderDataset::open(tmp.path(), &two).unwrap();
    let s = ds.get(2).unwrap();
    assert_eq!((s[0].0.as_str(), s[1].0.as_str()), ("a", "b"));
    assert_eq!(s[1].1.to_i64_vec(), vec![2; 4]);
}

/// Writes `n` solid-colour RGB PNGs of `w`x`h`; image i has colour (10i, 20i+1, 30i+2).
fn write_pngs(dir: &Path, n: usize, w: u32, h: u32) {
    for i in 0..n {
        let c = [10 * i as u8, 20 * i as u8 + 1, 30 * i as u8 + 2];
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(c));
        img.save(dir.join(format!("img{i}.png"))).unwrap();
    }
}

#[test]
fn images_nchw_f32_with_mean_scale() {
    let tmp = tempfile::tempdir().unwrap();
    write_pngs(tmp.path(), 3, 40, 30);
    let input = port("x", ElementType::F32, &[1, 3, 24, 24]);
    let opts = ImageOptions { mean: vec![1.0, 2.0, 3.0], scale: vec![2.0], ..Default::default() };
    let ds = ImageFolderDataset::open(tmp.path(), std::slice::from_ref(&input), &opts).unwrap();
    assert_eq!(ds.layout(), Layout::NCHW);
    assert_eq!(ds.len(), 3);
    let s = ds.get(2).unwrap();
    assert_eq!(s[0].0, "x");
    let t = s[0].1.as_f32().unwrap();
    assert_eq!(t.shape(), &[1, 3, 24, 24]);
    // Solid colour survives resizing; channel c is (pixel - mean[c]) / 2.
    let want = [(20.0 - 1.0) / 2.0, (41.0 - 2.0) / 2.0, (62.0 - 3.0) / 2.0];
    for (c, want_c) in want.iter().enumerate() {
        for v in t.index_axis(ndarray::Axis(1), c).iter() {
            assert!((v - want_c).abs() < 1e-4, "channel {c}: {v} vs {want_c}");
        }
    }

    // BGR swaps channels 0 and 2.
    let bgr =
        ImageFolderDataset::open(tmp.path(), &[input], &ImageOptions { bgr: true, ..Default::default() }).unwrap();
    let t = bgr.get(1).unwrap().remove(0).1;
    let v = t.to_f64_vec();
    assert_eq!((v[0], v[24 * 24 * 2]), (32.0, 10.0));
}

#[test]
fn images_nhwc_u8_gray_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    write_pngs(tmp.path(), 2, 50, 10);
    // u8 NHWC like ppocr_cls: raw pixels, layout from the shape.
    let u8in = port("x", ElementType::U8, &[1, 48, 192, 3]);
    let ds = ImageFolderDataset::open(tmp.path(), std::slice::from_ref(&u8in), &ImageOptions::default()).unwrap();
    assert_eq!(ds.layout(), Layout::NHWC);
    let t = ds.get(1).unwrap().remove(0).1;
    assert_eq!(t.element_type(), ElementType::U8);
    assert_eq!(t.shape(), &[1, 48, 192, 3]);
    assert_eq!(&t.to_f64_vec()[..3], &[10.0, 21.0, 32.0]);
    // Grey input of dynamic batch (MNIST-like) gets luma.
    let gray = port("input", ElementType::F32, &[-1, 1, 28, 28]);
    let ds = open_dataset(tmp.path(), &[gray], &DataOptions { limit: Some(1), ..Default::default() }).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(ds.get(0).unwrap()[0].1.shape(), &[1, 1, 28, 28]);

    // mean/scale on a u8 input, a wrong number of mean values, an unguessable layout.
    let e = ImageFolderDataset::open(tmp.path(), &[u8in], &ImageOptions { mean: vec![1.0], ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("'x'") && e.contains("u8"), "{e}");
    let f = port("x", ElementType::F32, &[1, 3, 8, 8]);
    let e = ImageFolderDataset::open(tmp.path(), &[f], &ImageOptions { mean: vec![1.0, 2.0], ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 values") && e.contains("3 channels"), "{e}");
    let odd = port("x", ElementType::F32, &[1, 5, 8, 9]);
    let e = ImageFolderDataset::open(tmp.path(), std::slice::from_ref(&odd), &ImageOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--layout"), "{e}");
    let e = ImageFolderDataset::open(
        tmp.path(),
        &[odd],
        &ImageOptions { layout: Some(Layout::NHWC), ..Default::default() },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("9 channels"), "{e}");
    // A folder with neither npy nor images.
    let empty = tempfile::tempdir().unwrap();
    let e = open_dataset(empty.path(), &[port("x", ElementType::F32, &[1, 3, 8, 8])], &DataOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("neither"), "{e}");
}

#[test]
fn labels_read() {
    let Some(dir) = common::fixture("mnist_cnn") else {
        return;
    };
    let l = read_labels(&dir.join("eval_labels.npy")).unwrap();
    assert_eq!(l.len(), 1000);
    assert!(l.iter().all(|&x| (0..10).contains(&x)));
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("l.npy");
    ovpot::npy::write_npy(&p, &Tensor::f32_from_vec(&[2], vec![1.0, 2.5]).unwrap()).unwrap();
    assert!(read_labels(&p).unwrap_err().to_string().contains("2.5"));
    ovpot::npy::write_npy(&p, &Tensor::f32_from_vec(&[2, 2], vec![1.0; 4]).unwrap()).unwrap();
    assert!(read_labels(&p).is_err());
}
