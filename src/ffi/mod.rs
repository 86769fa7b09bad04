//! The C ABI. (Being built.)
