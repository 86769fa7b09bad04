//! Reading and writing NumPy `.npy` files (the data folders' format).

use crate::error::{Error, Result};
use crate::tensor::{ElementType, Tensor};
use std::path::Path;

fn dtype_of(descr: &str) -> Option<ElementType> {
    let d = descr.trim_start_matches(['<', '|', '=']);
    Some(match d {
        "f4" => ElementType::F32,
        "f8" => ElementType::F64,
        "f2" => ElementType::F16,
        "i1" => ElementType::I8,
        "u1" => ElementType::U8,
        "i2" => ElementType::I16,
        "u2" => ElementType::U16,
        "i4" => ElementType::I32,
        "u4" => ElementType::U32,
        "i8" => ElementType::I64,
        "u8" => ElementType::U64,
        "b1" => ElementType::Boolean,
        _ => return None,
    })
}

fn descr_of(et: ElementType) -> Option<&'static str> {
    Some(match et {
        ElementType::F32 => "<f4",
        ElementType::F64 => "<f8",
        ElementType::F16 => "<f2",
        ElementType::I8 => "|i1",
        ElementType::U8 => "|u1",
        ElementType::I16 => "<i2",
        ElementType::U16 => "<u2",
        ElementType::I32 => "<i4",
        ElementType::U32 => "<u4",
        ElementType::I64 => "<i8",
        ElementType::U64 => "<u8",
        ElementType::Boolean => "|b1",
        _ => return None,
    })
}

/// Extracts the quoted value (or tuple) of `key` from the header dict.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k = format!("'{key}'");
    let start = header.find(&k)? + k.len();
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(r) = rest.strip_prefix('\'') {
        return r.split('\'').next();
    }
    if rest.starts_with('(') {
        return rest.find(')').map(|e| &rest[..=e]);
    }
    rest.split([',', '}']).next().map(str::trim)
}

/// Parses `.npy` bytes; `what` names the source in errors.
pub fn parse_npy(bytes: &[u8], what: &str) -> Result<Tensor> {
    let bad = |m: &str| Error::parse(what, m.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let major = bytes[6];
    let (hlen, hstart): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    let hend = hstart.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(&bytes[hstart..hend]).map_err(|_| bad("header is not text"))?;
    let descr = header_field(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    if descr.starts_with('>') && !descr.ends_with('1') {
        return Err(bad(&format!("big-endian dtype '{descr}' is not supported")));
    }
    let et = dtype_of(descr).ok_or_else(|| bad(&format!("unsupported dtype '{descr}'")))?;
    if header_field(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported"));
    }
    let shape_s = header_field(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape: Vec<usize> = shape_s
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(&format!("bad shape {shape_s}")))?;
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let need = et.byte_size(n);
    let data = &bytes[hend..];
    if data.len() < need {
        return Err(bad(&format!("data truncated: {} bytes for {need} expected", data.len())));
    }
    Tensor::from_bytes(et, &shape, &data[..need])
}

pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy(&bytes, &path.display().to_string())
}

/// Encodes a tensor as `.npy` (version 1.0).
pub fn to_npy_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let et = t.element_type();
    let descr = descr_of(et).ok_or_else(|| Error::unsupported(format!("{et} cannot be written to .npy")))?;
    let shape = match t.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + et.byte_size(t.len()));
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&t.to_bytes(et)?);
    Ok(out)
}

pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let bytes = to_npy_bytes(t)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = Tensor::f32_from_vec(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let b = to_npy_bytes(&t).unwrap();
        assert_eq!(parse_npy(&b, "x").unwrap(), t);
        let s = Tensor::i64_from_vec(&[], vec![7]).unwrap();
        assert_eq!(parse_npy(&to_npy_bytes(&s).unwrap(), "x").unwrap(), s);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert_eq!(parse_npy(b"hello world!", "x").unwrap_err().kind(), "parse");
    }
}
