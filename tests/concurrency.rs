//! Sessions on many threads over one shared Model: results are byte-identical to a serial run,
//! failures in one session do not leak into the others, and the result does not depend on the
//! number of rayon threads.

mod common;
use ovpot::tensor::Tensor;
use ovpot::{Dataset, Error, InMemoryDataset, Model, QuantConfig, Session};
use std::path::PathBuf;

fn fixture() -> Option<(PathBuf, Model, InMemoryDataset)> {
    let dir = common::fixture("mnist_cnn")?;
    let m = Model::read(&dir.join("model.xml"), None).unwrap();
    let data = common::dataset(&dir.join("calib"), 40);
    Some((dir, m, data))
}

fn config() -> QuantConfig {
    QuantConfig { stat_subset_size: 40, ..QuantConfig::default() }
}

fn quantize_bytes(m: &Model, data: &dyn Dataset) -> ovpot::Result<(String, Vec<u8>)> {
    Session::new(m, config())?.quantize(data)?.model.to_memory()
}

/// Fails at `fail_at` with a user error.
struct Failing<'a> {
    inner: &'a InMemoryDataset,
    fail_at: usize,
}

impl Dataset for Failing<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, index: usize) -> ovpot::Result<Vec<(String, Tensor)>> {
        if index == self.fail_at {
            return Err(Error::Callback(format!("camera {index} unplugged")));
        }
        self.inner.get(index)
    }
}

#[test]
fn threads_sharing_a_model_match_a_serial_run() {
    let Some((_, model, data)) = fixture() else { return };
    let serial = quantize_bytes(&model, &data).unwrap();
    const N: usize = 4;
    let results: Vec<ovpot::Result<(String, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (model, data) = (&model, &data);
                s.spawn(move || {
                    if i % 2 == 1 {
                        // Every other thread runs a session that fails midway.
                        let failing = Failing { inner: data, fail_at: 5 + i };
                        let e = quantize_bytes(model, &failing).unwrap_err();
                        assert_eq!(e.kind(), "callback", "{e}");
                        assert!(e.to_string().contains(&format!("camera {}", 5 + i)), "{e}");
                    }
                    quantize_bytes(model, data)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a session thread panicked")).collect()
    });
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        assert!(r.0 == serial.0, "thread {i}: xml differs from the serial run");
        assert!(r.1 == serial.1, "thread {i}: weights differ from the serial run");
    }
    // The shared model itself is untouched.
    let dir = common::fixture("mnist_cnn").unwrap();
    let fresh = Model::read(&dir.join("model.xml"), None).unwrap();
    assert!(model.to_memory().unwrap() == fresh.to_memory().unwrap());
}

#[test]
fn rayon_thread_count_does_not_change_the_result() {
    let Some((_, model, data)) = fixture() else { return };
    let run_in = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| quantize_bytes(&model, &data)).unwrap()
    };
    let one = run_in(1);
    let two = run_in(2);
    let three = run_in(3);
    assert!(one.0 == two.0 && one.1 == two.1, "1 vs 2 rayon threads differ");
    assert!(one.0 == three.0 && one.1 == three.1, "1 vs 3 rayon threads differ");
    // And the global pool agrees.
    assert!(quantize_bytes(&model, &data).unwrap() == one, "the global pool differs from 1 thread");
}

#[test]
fn sessions_on_different_models_at_once() {
    let Some((_, cnn, cnn_data)) = fixture() else { return };
    let Some(mlp_dir) = common::fixture("digits_mlp") else { return };
    let mlp = Model::read(&mlp_dir.join("model.xml"), None).unwrap();
    let mlp_data = common::dataset(&mlp_dir.join("calib"), 40);
    let serial = (quantize_bytes(&cnn, &cnn_data).unwrap(), quantize_bytes(&mlp, &mlp_data).unwrap());
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| quantize_bytes(&cnn, &cnn_data));
        let b = s.spawn(|| quantize_bytes(&mlp, &mlp_data));
        // A wrong-model dataset at the same time: clean error, no effect on the others.
        let c = s.spawn(|| quantize_bytes(&mlp, &cnn_data));
        let e = c.join().unwrap().unwrap_err();
        assert!(matches!(e.kind(), "invalid_argument" | "mismatch"), "{e}");
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert!(a == serial.0, "cnn differs when run next to others");
    assert!(b == serial.1, "mlp differs when run next to others");
}

#[test]
fn one_plan_shared_by_threads() {
    let Some((dir, model, _)) = fixture() else { return };
    let plan = model.plan().unwrap();
    let data = common::dataset(&dir.join("eval"), 16);
    let serial: Vec<Vec<f64>> = data.samples.iter().map(|s| plan.run(s).unwrap()[0].to_f64_vec()).collect();
    let parallel: Vec<Vec<Vec<f64>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| data.samples.iter().map(|x| plan.run(x).unwrap()[0].to_f64_vec()).collect()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for p in parallel {
        assert!(p == serial, "a plan run on another thread gave different outputs");
    }
}
