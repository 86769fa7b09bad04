"""Builds libovpot (the Rust crate one folder up) as the package's shared library."""
import os

from setuptools import setup
from setuptools_rust import Binding, RustExtension, Strip

HERE = os.path.dirname(os.path.abspath(__file__))

setup(
    rust_extensions=[
        RustExtension(
            # ctypes loads it by path: no Python module init, only the C ABI.
            "ovpot._libovpot",
            path=os.path.join(HERE, "..", "Cargo.toml"),
            binding=Binding.NoBinding,
            # The crate types Cargo.toml declares (setuptools-rust would otherwise pass
            # `--crate-type cdylib` alone): the same build as `cargo build --lib` / `cargo test`,
            # so a checkout that already has one (CI's python step) does not compile the crate
            # again. The cdylib is the artifact taken into the package.
            args=["--crate-type", "rlib,cdylib,staticlib"],
            # The release profile keeps line tables for profiling; the wheel does not need them.
            strip=Strip.All,
        )
    ],
)
