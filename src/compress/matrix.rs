//! A weight seen as a matrix of output channels × input channels in f32, as the data-aware
//! methods (AWQ, scale estimation) read and rewrite it, and the f32 arithmetic they compute in,
//! written to round as NumPy does in NNCF: pairwise sums and sequential fused multiply-adds.

use super::lowering::{decode_floats, Layout};
use crate::error::Result;
use crate::tensor::ElementType;
use half::{bf16, f16};

/// Rows are output channels (`outer × inner` of the layout, in that order), columns the
/// reduced (input) channels.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl WeightMatrix {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Reads a weight of type `et` laid out as `layout` (its group size is ignored).
    pub fn read(raw: &[u8], et: ElementType, layout: Layout) -> Result<WeightMatrix> {
        let mut flat = vec![0f32; layout.len()];
        decode_floats(et, raw, &mut flat, &mut Vec::new())?;
        let (rows, cols) = (layout.outer * layout.inner, layout.reduce);
        if layout.inner == 1 {
            return Ok(WeightMatrix { rows, cols, data: flat });
        }
        let mut data = vec![0f32; rows * cols];
        for o in 0..layout.outer {
            for r in 0..layout.reduce {
                for i in 0..layout.inner {
                    data[(o * layout.inner + i) * cols + r] = flat[(o * layout.reduce + r) * layout.inner + i];
                }
            }
        }
        Ok(WeightMatrix { rows, cols, data })
    }

    /// The weight back in `layout`, as bytes of `et`, rounded as NNCF writes a rescaled weight:
    /// f16 to nearest even; bf16 as OpenVINO converts f32 (round up only when bits 15 and 16
    /// are both set).
    pub fn to_bytes(&self, et: ElementType, layout: Layout) -> Vec<u8> {
        let mut flat = vec![0f32; self.data.len()];
        if layout.inner == 1 {
            flat.copy_from_slice(&self.data);
        } else {
            for o in 0..layout.outer {
                for r in 0..layout.reduce {
                    for i in 0..layout.inner {
                        flat[(o * layout.reduce + r) * layout.inner + i] =
                            self.data[(o * layout.inner + i) * self.cols + r];
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(et.byte_size(flat.len()));
        match et {
            ElementType::F16 => flat.iter().for_each(|&v| out.extend_from_slice(&f16::from_f32(v).to_le_bytes())),
            ElementType::BF16 => flat.iter().for_each(|&v| out.extend_from_slice(&bf16_as_openvino(v).to_le_bytes())),
            ElementType::F64 => flat.iter().for_each(|&v| out.extend_from_slice(&(v as f64).to_le_bytes())),
            _ => flat.iter().for_each(|&v| out.extend_from_slice(&v.to_le_bytes())),
        }
        out
    }
}

/// OpenVINO's f32 → bf16 constant conversion.
fn bf16_as_openvino(v: f32) -> bf16 {
    let bits = v.to_bits();
    bf16::from_bits(((bits + ((bits & 0x1_0000) >> 1)) >> 16) as u16)
}

/// NumPy's pairwise sum of f32 values (blocks of 8 partial sums below 128 values, halves above).
pub fn pairwise_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut r = -0.0f32;
        for &v in a {
            r += v;
        }
        r
    } else if n <= 128 {
        let mut r = [0f32; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        let mut i = 8;
        while i < whole {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// NumPy's f32 mean: the pairwise sum over the count.
pub fn mean(a: &[f32]) -> f32 {
    pairwise_sum(a) / a.len() as f32
}

/// `a [m × k] · b [k × n]`, row-major, each output a sequential chain of fused multiply-adds
/// over k (what OpenBLAS's sgemm computes for these shapes).
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    matmul_into(a, b, m, k, n, &mut c);
    c
}

/// [`matmul`] into `c` (overwritten). Tiles of 4 rows × 16 columns stay in registers over k; the
/// order of operations per output is the same sequential chain.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
pub fn matmul_into(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, c: &mut [f32]) {
    const R: usize = 4;
    const W: usize = 16;
    let full_cols = n - n % W;
    let mut i = 0;
    while i < m {
        let rows = R.min(m - i);
        let mut j = 0;
        while j < full_cols {
            let mut acc = [[0f32; W]; R];
            for kk in 0..k {
                let bv: &[f32; W] = b[kk * n + j..kk * n + j + W].try_into().expect("a full tile");
                for (r, row) in acc.iter_mut().enumerate().take(rows) {
                    let x = a[(i + r) * k + kk];
                    for t in 0..W {
                        row[t] = x.mul_add(bv[t], row[t]);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(rows) {
                c[(i + r) * n + j..(i + r) * n + j + W].copy_from_slice(row);
            }
            j += W;
        }
        for r in 0..rows {
            for jj in full_cols..n {
                let mut acc = 0f32;
                for kk in 0..k {
                    acc = a[(i + r) * k + kk].mul_add(b[kk * n + jj], acc);
                }
                c[(i + r) * n + jj] = acc;
            }
        }
        i += rows;
    }
}

/// NumPy's linear quantile of f32 values computed in f64.
pub fn quantile(values: &[f32], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    v.sort_by(f64::total_cmp);
    let idx = (v.len() - 1) as f64 * q;
    let lo = idx.floor() as usize;
    let g = idx - lo as f64;
    if lo + 1 >= v.len() {
        return v[lo];
    }
    let (a, b) = (v[lo], v[lo + 1]);
    if g < 0.5 {
        a + (b - a) * g
    } else {
        b - (b - a) * (1.0 - g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_follows_numpy_blocks() {
        // 0.1 added 200 times: NumPy's pairwise result differs from a plain running sum.
        let v = vec![0.1f32; 200];
        let running: f32 = v.iter().fold(0.0, |a, &b| a + b);
        let pw = pairwise_sum(&v);
        assert_eq!(pw, pairwise_sum(&v[..96]) + pairwise_sum(&v[96..]));
        assert!((pw - 20.0).abs() <= (running - 20.0).abs());
        assert_eq!(pairwise_sum(&[1.0, 2.0, 3.0]), 6.0);
    }

    #[test]
    fn matmul_and_quantile() {
        let a = [1.0, 2.0, 3.0, 4.0]; // 2x2
        let b = [5.0, 6.0, 7.0, 8.0];
        assert_eq!(matmul(&a, &b, 2, 2, 2), vec![19.0, 22.0, 43.0, 50.0]);
        // Tiles and the ragged edge agree with the plain definition, bit for bit.
        let (m, k, n) = (7, 5, 37);
        let a: Vec<f32> = (0..m * k).map(|v| (v as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|v| (v as f32 * 0.11).cos()).collect();
        let got = matmul(&a, &b, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let want = (0..k).fold(0f32, |acc, kk| a[i * k + kk].mul_add(b[kk * n + j], acc));
                assert_eq!(got[i * n + j], want);
            }
        }
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.1), 1.4);
    }

    #[test]
    fn strided_weights_read_and_write_back() {
        let layout = Layout { outer: 1, reduce: 3, inner: 2, group: 3 };
        let vals = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let raw: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let m = WeightMatrix::read(&raw, ElementType::F32, layout).unwrap();
        assert_eq!(m.row(0), &[1.0, 3.0, 5.0]);
        assert_eq!(m.to_bytes(ElementType::F32, layout), raw);
    }
}
