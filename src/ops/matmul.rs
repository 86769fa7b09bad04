//! MatMul (opset1): numpy matmul with `transpose_a`/`transpose_b`, 1-D operands (a 1-D A is a
//! row, a 1-D B a column, and the added axis is dropped again; transposes do not apply to 1-D) and
//! broadcasting of the batch axes. Runs on matrixmultiply's sgemm/dgemm through ndarray, with
//! transposes expressed as strides (no copies).

use super::op::{BuildCtx, Op, Registry};
use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, IxDyn, LinalgScalar};
use rayon::prelude::*;

pub fn register(r: &mut Registry) {
    r.add("MatMul", &["opset1"], build_matmul);
}

#[derive(Debug)]
struct MatMul {
    transpose_a: bool,
    transpose_b: bool,
}

fn build_matmul(ctx: &BuildCtx) -> Result<Box<dyn Op>> {
    Ok(Box::new(MatMul {
        transpose_a: ctx.attr_bool_or("transpose_a", false)?,
        transpose_b: ctx.attr_bool_or("transpose_b", false)?,
    }))
}

/// Shapes of one product, after 1-D promotion and broadcasting.
#[derive(Debug, PartialEq)]
struct Plan {
    m: usize,
    k: usize,
    n: usize,
    /// Stored (untransposed) row/col counts of each operand matrix.
    a_rc: (usize, usize),
    b_rc: (usize, usize),
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    out_batch: Vec<usize>,
    out_shape: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<Plan> {
    if a.is_empty() || b.is_empty() {
        return Err(Error::mismatch(format!("MatMul operands must have rank >= 1, got {a:?} and {b:?}")));
    }
    let (a_rc, a_batch, ta) = if a.len() == 1 {
        ((1, a[0]), vec![], false)
    } else {
        ((a[a.len() - 2], a[a.len() - 1]), a[..a.len() - 2].to_vec(), ta)
    };
    let (b_rc, b_batch, tb) = if b.len() == 1 {
        ((b[0], 1), vec![], false)
    } else {
        ((b[b.len() - 2], b[b.len() - 1]), b[..b.len() - 2].to_vec(), tb)
    };
    let (m, k) = if ta { (a_rc.1, a_rc.0) } else { a_rc };
    let (k2, n) = if tb { (b_rc.1, b_rc.0) } else { b_rc };
    if k != k2 {
        return Err(Error::mismatch(format!(
            "MatMul inner dimensions differ: A {a:?}{} and B {b:?}{} give K = {k} and {k2}",
            if ta { " (transposed)" } else { "" },
            if tb { " (transposed)" } else { "" }
        )));
    }
    let rank = a_batch.len().max(b_batch.len());
    let mut out_batch = vec![0; rank];
    for i in 0..rank {
        let da = if i + a_batch.len() >= rank { a_batch[i + a_batch.len() - rank] } else { 1 };
        let db = if i + b_batch.len() >= rank { b_batch[i + b_batch.len() - rank] } else { 1 };
        out_batch[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::mismatch(format!("MatMul batch dimensions of {a:?} and {b:?} do not broadcast"))),
        };
    }
    let mut out_shape = out_batch.clone();
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    Ok(Plan { m, k, n, a_rc, b_rc, a_batch, b_batch, out_batch, out_shape })
}

/// Offset (in matrices) of batch `idx` of an operand whose batch dims broadcast to `out`.
fn batch_offset(idx: usize, out: &[usize], own: &[usize]) -> usize {
    let mut rem = idx;
    let mut off = 0;
    let mut stride = 1;
    for i in (0..out.len()).rev() {
        let coord = rem % out[i];
        rem /= out[i];
        let j = i as isize - (out.len() - own.len()) as isize;
        if j >= 0 {
            let d = own[j as usize];
            if d != 1 {
                off += coord * stride;
            }
            stride *= d;
        }
    }
    off
}

fn mat<'a, T>(s: &'a [T], rc: (usize, usize), t: bool) -> Result<ArrayView2<'a, T>> {
    let v = ArrayView2::from_shape(rc, s).map_err(|e| Error::internal(format!("MatMul view: {e}")))?;
    Ok(if t { v.reversed_axes() } else { v })
}

/// A matrix product C = A·B into a zeroed C.
type Gemm<T> = fn(ArrayView2<T>, ArrayView2<T>, ArrayViewMut2<T>);

fn gemm_f32(a: ArrayView2<f32>, b: ArrayView2<f32>, c: ArrayViewMut2<f32>) {
    super::gemm::gemm_f32(a, b, c, 0.0);
}

fn gemm_any<T: LinalgScalar>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    general_mat_mul(T::one(), &a, &b, T::zero(), &mut c);
}

fn run<T: LinalgScalar + Send + Sync>(a: &[T], b: &[T], p: &Plan, ta: bool, tb: bool, mm: Gemm<T>) -> Result<Vec<T>> {
    let (m, n) = (p.m, p.n);
    let batches: usize = p.out_batch.iter().product();
    let a_sz = p.a_rc.0 * p.a_rc.1;
    let b_sz = p.b_rc.0 * p.b_rc.1;
    let mut out = vec![T::zero(); batches * m * n];
    if out.is_empty() {
        return Ok(out);
    }
    let a_batches: usize = p.a_batch.iter().product();
    let b_shared = p.b_batch.iter().all(|&d| d == 1);
    if b_shared && !ta && batches == a_batches && batches > 1 {
        // One B for every batch of a row-major A: fold the batches into M, one large GEMM.
        let av = mat(a, (batches * m, p.k), false)?;
        let bv = mat(&b[..b_sz], p.b_rc, tb)?;
        let mut cv = ArrayViewMut2::from_shape((batches * m, n), &mut out[..])
            .map_err(|e| Error::internal(format!("MatMul view: {e}")))?;
        mm(av, bv, cv.view_mut());
        return Ok(out);
    }
    let one = |i: usize, c: &mut [T]| -> Result<()> {
        let ao = batch_offset(i, &p.out_batch, &p.a_batch) * a_sz;
        let bo = batch_offset(i, &p.out_batch, &p.b_batch) * b_sz;
        if m == 1 {
            // A is one contiguous row whatever its transpose: skip GEMM packing (which copies all
            // of B on every call) and stream B once.
            gemv(&a[ao..ao + a_sz], &b[bo..bo + b_sz], p.k, n, tb, c, batches == 1);
            return Ok(());
        }
        let av = mat(&a[ao..ao + a_sz], p.a_rc, ta)?;
        let bv = mat(&b[bo..bo + b_sz], p.b_rc, tb)?;
        let mut cv = ArrayViewMut2::from_shape((m, n), c).map_err(|e| Error::internal(format!("MatMul view: {e}")))?;
        mm(av, bv, cv.view_mut());
        Ok(())
    };
    if batches > 1 {
        out.par_chunks_mut(m * n).enumerate().try_for_each(|(i, c)| one(i, c))?;
    } else {
        one(0, &mut out)?;
    }
    Ok(out)
}

/// y = a · B for one row `a` (len k); B is [k, n] row-major, or [n, k] when `b_transposed`.
fn gemv<T: LinalgScalar + Send + Sync>(
    a: &[T],
    b: &[T],
    k: usize,
    n: usize,
    b_transposed: bool,
    y: &mut [T],
    par: bool,
) {
    const CHUNK: usize = 64;
    let work = |j0: usize, ys: &mut [T]| {
        if b_transposed {
            for (jj, yv) in ys.iter_mut().enumerate() {
                *yv = dot(a, &b[(j0 + jj) * k..(j0 + jj + 1) * k]);
            }
        } else {
            ys.iter_mut().for_each(|v| *v = T::zero());
            for (kk, &av) in a.iter().enumerate() {
                let row = &b[kk * n + j0..kk * n + j0 + ys.len()];
                for (yv, &bv) in ys.iter_mut().zip(row) {
                    *yv = *yv + av * bv;
                }
            }
        }
    };
    if par && n * k >= 1 << 15 {
        y.par_chunks_mut(CHUNK).enumerate().for_each(|(c, ys)| work(c * CHUNK, ys));
    } else {
        work(0, y);
    }
}

/// Dot product with 8 independent partial sums (lets the compiler vectorize).
fn dot<T: LinalgScalar>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] = acc[i] + x[i] * y[i];
        }
    }
    let mut s = T::zero();
    for (&x, &y) in ar.iter().zip(br) {
        s = s + x * y;
    }
    let a4 = [acc[0] + acc[4], acc[1] + acc[5], acc[2] + acc[6], acc[3] + acc[7]];
    s + (a4[0] + a4[2]) + (a4[1] + a4[3])
}

impl Op for MatMul {
    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let [at, bt] = inputs else {
            return Err(Error::invalid(format!("MatMul expects 2 inputs, got {}", inputs.len())));
        };
        let p = plan(at.shape(), bt.shape(), self.transpose_a, self.transpose_b)?;
        let (ta, tb) = (self.transpose_a && at.rank() > 1, self.transpose_b && bt.rank() > 1);
        let et = at.element_type();
        let out = match (at, bt) {
            (Tensor::F32(a), Tensor::F32(b)) => {
                let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
                let (a, b) = (contiguous(&a)?, contiguous(&b)?);
                Tensor::F32(shaped(&p.out_shape, run(a, b, &p, ta, tb, gemm_f32)?)?)
            }
            _ if matches!(et, ElementType::F16 | ElementType::BF16) => {
                let (a, b) = (at.to_f32(), bt.to_f32());
                let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
                let r = run(contiguous(&a)?, contiguous(&b)?, &p, ta, tb, gemm_f32)?;
                Tensor::F32(shaped(&p.out_shape, r)?).convert(et)?
            }
            _ => {
                // f64 and integers (shape arithmetic) in double precision.
                let (a, b) = (at.to_f64_vec(), bt.to_f64_vec());
                let r = run(&a, &b, &p, ta, tb, gemm_any::<f64>)?;
                Tensor::from_f64_vec(et, &p.out_shape, r)?
            }
        };
        Ok(vec![out])
    }
}

fn contiguous<'a, T>(a: &'a ndarray::CowArray<'_, T, IxDyn>) -> Result<&'a [T]> {
    a.as_slice().ok_or_else(|| Error::internal("MatMul operand is not contiguous"))
}

fn shaped<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| Error::internal(format!("MatMul output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::f32_from_vec(shape, v).unwrap()
    }

    fn mm(ta: bool, tb: bool, a: &Tensor, b: &Tensor) -> Tensor {
        MatMul { transpose_a: ta, transpose_b: tb }.eval(&[a, b]).unwrap().remove(0)
    }

    fn seq(n: usize) -> Vec<f32> {
        (1..=n).map(|i| i as f32).collect()
    }

    #[test]
    fn plain_and_transposed_2d() {
        let a = t(&[2, 3], seq(6)); // [[1,2,3],[4,5,6]]
        let b = t(&[3, 2], seq(6)); // [[1,2],[3,4],[5,6]]
        let y = mm(false, false, &a, &b);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.to_f64_vec(), vec![22.0, 28.0, 49.0, 64.0]);
        // Aᵀ (3x2) · Bᵀ (2x3) = (B·A)ᵀ
        let y = mm(true, true, &a, &b);
        assert_eq!(y.shape(), &[3, 3]);
        assert_eq!(y.to_f64_vec(), vec![9.0, 19.0, 29.0, 12.0, 26.0, 40.0, 15.0, 33.0, 51.0]);
        // A · Aᵀ
        let y = mm(false, true, &a, &a);
        assert_eq!(y.to_f64_vec(), vec![14.0, 32.0, 32.0, 77.0]);
        let y = mm(true, false, &a, &a);
        assert_eq!(y.shape(), &[3, 3]);
        assert_eq!(y.to_f64_vec()[..3], [17.0, 22.0, 27.0]);
    }

    #[test]
    fn one_d_operands() {
        let v = t(&[3], vec![1.0, 2.0, 3.0]);
        let m = t(&[3, 2], seq(6));
        let y = mm(false, false, &v, &m);
        assert_eq!(y.shape(), &[2]);
        assert_eq!(y.to_f64_vec(), vec![22.0, 28.0]);
        // transpose flags are ignored for 1-D operands
        let mt = t(&[2, 3], seq(6));
        let y = mm(true, false, &mt, &t(&[2], vec![1.0, 1.0]));
        assert_eq!(y.shape(), &[3]);
        assert_eq!(y.to_f64_vec(), vec![5.0, 7.0, 9.0]);
        let y = mm(false, true, &mt, &v);
        assert_eq!(y.shape(), &[2]);
        assert_eq!(y.to_f64_vec(), vec![14.0, 32.0]);
        let y = mm(false, false, &v, &v);
        assert_eq!(y.shape(), &[] as &[usize]);
        assert_eq!(y.to_f64_vec(), vec![14.0]);
        // batched matrix times vector
        let bm = t(&[2, 2, 3], seq(12));
        let y = mm(false, false, &bm, &v);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.to_f64_vec(), vec![14.0, 32.0, 50.0, 68.0]);
    }

    #[test]
    fn batch_broadcasting() {
        // A [2,1,2,2] x B [3,2,2] → [2,3,2,2]
        let a = t(&[2, 1, 2, 2], vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0]);
        let b = t(&[3, 2, 2], seq(12));
        let y = mm(false, false, &a, &b);
        assert_eq!(y.shape(), &[2, 3, 2, 2]);
        let v = y.to_f64_vec();
        assert_eq!(v[..12], seq(12).iter().map(|&x| x as f64).collect::<Vec<_>>()[..]);
        assert_eq!(v[12..], seq(12).iter().map(|&x| 2.0 * x as f64).collect::<Vec<_>>()[..]);
        // shared 2-D B folded into one GEMM, with transpose_b (the transformer case)
        let a = t(&[2, 3, 2], seq(12));
        let b = t(&[4, 2], seq(8));
        let y = mm(false, true, &a, &b);
        assert_eq!(y.shape(), &[2, 3, 4]);
        assert_eq!(y.to_f64_vec()[..4], [5.0, 11.0, 17.0, 23.0]);
        assert_eq!(y.to_f64_vec()[20..], [35.0, 81.0, 127.0, 173.0]);
        // transposed batched A with a shared B must not take the folded path
        let y = mm(true, false, &t(&[2, 2, 3], seq(12)), &t(&[2, 1], vec![1.0, 1.0]));
        assert_eq!(y.shape(), &[2, 3, 1]);
        assert_eq!(y.to_f64_vec(), vec![5.0, 7.0, 9.0, 17.0, 19.0, 21.0]);
    }

    #[test]
    fn row_vector_paths_match_gemm() {
        // m == 1 takes the GEMV path; compare with the same product computed as m == 2.
        let k = 37;
        let n = 900;
        let a: Vec<f32> = (0..k).map(|i| (i % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        for tb in [false, true] {
            let bt = if tb { t(&[n, k], b.clone()) } else { t(&[k, n], b.clone()) };
            let one = mm(false, tb, &t(&[1, k], a.clone()), &bt);
            let two = mm(false, tb, &t(&[2, k], [a.clone(), a.clone()].concat()), &bt);
            assert_eq!(one.to_f64_vec(), two.to_f64_vec()[..n].to_vec(), "tb {tb}");
            let ta = mm(true, tb, &t(&[k, 1], a.clone()), &bt);
            assert_eq!(ta.to_f64_vec(), one.to_f64_vec());
        }
    }

    #[test]
    fn types_and_errors() {
        let a = Tensor::i64_from_vec(&[1, 2], vec![2, 3]).unwrap();
        let b = Tensor::i64_from_vec(&[2, 1], vec![4, 5]).unwrap();
        let y = mm(false, false, &a, &b);
        assert_eq!(y.element_type(), ElementType::I64);
        assert_eq!(y.to_i64_vec(), vec![23]);
        let h = t(&[2, 2], seq(4)).convert(ElementType::F16).unwrap();
        let y = mm(false, false, &h, &h);
        assert_eq!(y.element_type(), ElementType::F16);
        assert_eq!(y.to_f64_vec(), vec![7.0, 10.0, 15.0, 22.0]);
        let e = MatMul { transpose_a: false, transpose_b: false }
            .eval(&[&t(&[2, 3], seq(6)), &t(&[2, 3], seq(6))])
            .unwrap_err();
        assert!(e.to_string().contains("inner dimensions"), "{e}");
        let e = MatMul { transpose_a: false, transpose_b: false }
            .eval(&[&t(&[2, 2, 2], seq(8)), &t(&[3, 2, 2], seq(12))])
            .unwrap_err();
        assert!(e.to_string().contains("broadcast"), "{e}");
    }
}
