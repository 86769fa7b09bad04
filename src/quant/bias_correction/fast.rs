//! Fast bias correction (`use_fast_bias: true`, the default): each site's bias shifts by the FP32
//! output mean minus the INT8 layer's output on the FP32 input means, from the one statistics pass.

use super::shifts::{self, fast_shift, output_mean_is_linear, output_on_mean, site_output_means};
use super::shifts::{BiasSite, SiteOutlets};
use crate::error::Result;
use crate::hooks::{Hooks, Stage};
use crate::quant::quantized::Quantized;
use crate::quant::stats::Collected;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// FP32 input means (and the input's shape) per bias site, in the smoothed graph's terms.
pub type SiteInputs = Vec<Option<(Vec<f64>, Vec<usize>)>>;

/// What fast bias correction reads: the FP32 input means per site, the statistics with the
/// sites' FP32 output means, and the mean saturation of layers left at 8 bits (by weight index).
pub struct FastBiasMeasures<'a> {
    pub inputs: &'a SiteInputs,
    pub col: &'a Collected,
    pub outlets: SiteOutlets,
    pub saturation: &'a HashMap<usize, Vec<f64>>,
}

/// Fast bias correction: each site's bias shifts by the FP32 output mean minus the INT8 layer's
/// output on the FP32 input means. Sites are independent: computed in parallel.
pub fn correct(q: &mut Quantized, sites: &[(usize, BiasSite)], m: &FastBiasMeasures, hooks: &mut Hooks) -> Result<()> {
    use rayon::prelude::*;
    hooks.progress(Stage::BiasCorrection, 0, sites.len())?;
    let qr = &*q;
    let shifts: Vec<Option<Vec<f64>>> = sites
        .par_iter()
        .zip(m.inputs.par_iter())
        .map(|((wi, site), inp)| fast_shift_of(qr, *wi, site, inp.as_ref(), m))
        .collect::<Result<_>>()?;
    for ((_, site), shift) in sites.iter().zip(shifts) {
        if let Some(shift) = shift {
            q.bias_shifts.push((site.clone(), shift));
        }
    }
    Ok(())
}

/// One site's bias shift (None: no correction there).
fn fast_shift_of(
    q: &Quantized,
    wi: usize,
    site: &BiasSite,
    inp: Option<&(Vec<f64>, Vec<usize>)>,
    m: &FastBiasMeasures,
) -> Result<Option<Vec<f64>>> {
    let g = &q.fp_graph;
    let Some((in_means, shape)) = inp else { return Ok(None) };
    let w_input = q.setup.weights[wi].input;
    let linear = output_mean_is_linear(g, site, w_input);
    // A linear layer's output on a constant blob is the same at every position: one will do.
    let one_position: Vec<usize>;
    let shape = if linear {
        one_position = shifts::one_position(shape, site.in_axis);
        &one_position
    } else {
        shape
    };
    let on_mean = |w: &ndarray::ArrayD<f32>| output_on_mean(g, site, shape, in_means, &Tensor::F32(w.clone()), w_input);
    let out_means = match site_output_means(m.col, site, m.outlets.after_bias) {
        Some(v) => v,
        // Not measured where it equals the FP32 layer on the mean input.
        None if linear => match on_mean(&q.weights[wi].0)? {
            Some(v) => v,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    // What the target CPU's saturation takes off the layer's mean output is corrected with the
    // rest.
    let out_means: Vec<f64> = match m.saturation.get(&wi).filter(|s| s.len() == out_means.len()) {
        Some(sat) => out_means.iter().zip(sat).map(|(o, s)| o - s).collect(),
        None => out_means,
    };
    let Some(q_means) = on_mean(&q.weights[wi].1.dequantized())? else { return Ok(None) };
    Ok(fast_shift(site, &out_means, &q_means, q.config.bias_correction_threshold))
}
