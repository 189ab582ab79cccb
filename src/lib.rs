//! liblocking, the C library: the C ABI ([`ffi`], exported from
//! `liblocking.so`/`liblocking.a` and declared in `include/locking.h`) over
//! the safe Rust core, the `locking-core` crate, whose API is re-exported
//! here for the `lockrun` command and the tests. Rust programs depend on
//! `locking-core` directly and never build the C artefacts.

#![deny(unsafe_op_in_unsafe_fn)]

pub use locking_core::*;

pub mod ffi;
