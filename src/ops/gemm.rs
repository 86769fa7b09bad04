//! f32 matrix products for Conv and MatMul: faer's kernels (AVX-512 where the CPU has it; 2–4×
//! matrixmultiply's on conv and transformer shapes) for row-major or transposed operands, and
//! matrixmultiply through ndarray for narrow outputs and other layouts, where it measured faster.

use ndarray::{ArrayView2, ArrayViewMut2};

/// Narrower outputs than this go to matrixmultiply (faer measured slower there).
const FAER_MIN_COLS: usize = 64;

fn as_faer<'a>(v: ArrayView2<'a, f32>) -> Option<faer::MatRef<'a, f32>> {
    let (r, c) = v.dim();
    if let Some(s) = v.to_slice() {
        return Some(faer::MatRef::from_row_major_slice(s, r, c));
    }
    v.reversed_axes().to_slice().map(|s| faer::MatRef::from_row_major_slice(s, c, r).transpose())
}

/// C = A·B + beta·C (beta 0 or 1 take the fast path).
pub fn gemm_f32(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>, beta: f32) {
    let (m, n) = c.dim();
    let fast = n >= FAER_MIN_COLS && (beta == 0.0 || beta == 1.0) && c.is_standard_layout();
    let operands = if fast { as_faer(a).zip(as_faer(b)) } else { None };
    match (operands, c.as_slice_mut()) {
        (Some((fa, fb)), Some(cs)) => {
            let fc = faer::MatMut::from_row_major_slice_mut(cs, m, n);
            let acc = if beta == 0.0 { faer::Accum::Replace } else { faer::Accum::Add };
            // Inside a rayon task the caller already runs samples (or batches) in parallel;
            // called from outside (one sample at a time), the product itself takes the threads.
            let par = if rayon::current_thread_index().is_none() && rayon::current_num_threads() > 1 {
                faer::Par::rayon(0)
            } else {
                faer::Par::Seq
            };
            faer::linalg::matmul::matmul(fc, acc, fa, fb, 1.0f32, par);
        }
        _ => ndarray::linalg::general_mat_mul(1.0, &a, &b, beta, &mut c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn matches_reference_in_every_layout() {
        let (m, k, n) = (5, 7, 70);
        let a = Array2::from_shape_fn((m, k), |(i, j)| (i * 3 + j) as f32 * 0.25 - 2.0);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i + 2 * j) % 11) as f32 * 0.5 - 1.0);
        let want = a.dot(&b);
        let at = a.t().to_owned();
        let bt = b.t().to_owned();
        for (av, bv) in [(a.view(), b.view()), (at.t(), b.view()), (a.view(), bt.t()), (at.t(), bt.t())] {
            let mut c = Array2::<f32>::zeros((m, n));
            gemm_f32(av, bv, c.view_mut(), 0.0);
            assert!((&c - &want).iter().all(|d| d.abs() < 1e-4));
            gemm_f32(av, bv, c.view_mut(), 1.0);
            assert!((&c - &(&want * 2.0)).iter().all(|d| d.abs() < 1e-4));
        }
    }
}
