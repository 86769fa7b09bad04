//! Typed access to `<data>` attributes, with errors naming the layer.

use super::op::BuildCtx;
use crate::error::Result;
use crate::tensor::ElementType;

impl BuildCtx<'_> {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.node.attrs.get(key)
    }
    pub fn attr_req(&self, key: &str) -> Result<&str> {
        self.attr(key).ok_or_else(|| self.err(format!("missing attribute '{key}'")))
    }
    pub fn attr_str_or<'b>(&'b self, key: &str, default: &'b str) -> &'b str {
        self.attr(key).unwrap_or(default)
    }
    pub fn attr_f64(&self, key: &str) -> Result<f64> {
        let s = self.attr_req(key)?;
        s.trim().parse().map_err(|_| self.err(format!("attribute '{key}' is not a number: '{s}'")))
    }
    pub fn attr_f64_or(&self, key: &str, default: f64) -> Result<f64> {
        if self.attr(key).is_some() {
            self.attr_f64(key)
        } else {
            Ok(default)
        }
    }
    pub fn attr_i64(&self, key: &str) -> Result<i64> {
        let s = self.attr_req(key)?;
        s.trim().parse().map_err(|_| self.err(format!("attribute '{key}' is not an integer: '{s}'")))
    }
    pub fn attr_i64_or(&self, key: &str, default: i64) -> Result<i64> {
        if self.attr(key).is_some() {
            self.attr_i64(key)
        } else {
            Ok(default)
        }
    }
    pub fn attr_bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.attr(key).map(|s| s.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(s) if s == "true" || s == "1" => Ok(true),
            Some(s) if s == "false" || s == "0" => Ok(false),
            Some(s) => Err(self.err(format!("attribute '{key}' is not a boolean: '{s}'"))),
        }
    }
    /// A comma separated integer list ("1, 1"; empty for none).
    pub fn attr_i64_list(&self, key: &str) -> Result<Vec<i64>> {
        let s = self.attr_req(key)?;
        parse_list(s).ok_or_else(|| self.err(format!("attribute '{key}' is not an integer list: '{s}'")))
    }
    pub fn attr_i64_list_or(&self, key: &str, default: Vec<i64>) -> Result<Vec<i64>> {
        if self.attr(key).is_some() {
            self.attr_i64_list(key)
        } else {
            Ok(default)
        }
    }
    pub fn attr_usize_list(&self, key: &str) -> Result<Vec<usize>> {
        let v = self.attr_i64_list(key)?;
        v.iter()
            .map(|&x| usize::try_from(x).map_err(|_| self.err(format!("attribute '{key}' has a negative value"))))
            .collect()
    }
    pub fn attr_f32_list(&self, key: &str) -> Result<Vec<f32>> {
        let s = self.attr_req(key)?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(vec![]);
        }
        s.split(',')
            .map(|x| x.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| self.err(format!("attribute '{key}' is not a number list: '{s}'")))
    }
    pub fn attr_type(&self, key: &str) -> Result<ElementType> {
        let s = self.attr_req(key)?;
        ElementType::from_ir(s).ok_or_else(|| self.err(format!("attribute '{key}' is not an element type: '{s}'")))
    }
    /// The constant value of input `k` as i64s, required (axes, shapes, pads...).
    pub fn const_i64s(&self, k: usize) -> Result<Vec<i64>> {
        self.const_inputs
            .get(k)
            .copied()
            .flatten()
            .map(|t| t.to_i64_vec())
            .ok_or_else(|| self.err(format!("input {k} must be constant")))
    }
}

pub fn parse_list(s: &str) -> Option<Vec<i64>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(vec![]);
    }
    s.split(',').map(|x| x.trim().parse::<i64>().ok()).collect()
}

/// Normalizes a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(crate::error::Error::invalid(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}
