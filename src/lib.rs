//! liblocking: cooperative, multiprocess- and multithread-safe locks.
//!
//! The safe core ([`Locker`], [`open_locked`]) knows nothing of C; the C ABI
//! lives in [`ffi`] alone. The lock protocols are described in
//! `docs/PROTOCOL.md`.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod error;
pub mod ffi;
mod forksafe;
mod lockdir;
pub mod locker;
mod method;
pub mod name;
pub mod open_locked;
pub mod options;
pub mod owner;
mod sha256;
mod sys;
#[doc(hidden)]
pub mod testing;
mod wait;

pub use error::{Error, Result};
pub use locker::{HolderInfo, Locker};
pub use open_locked::{open_locked, LockedFile};
pub use options::{Expire, Method, Timeout};
pub use owner::{Liveness, Record};

/// The crate version, e.g. "0.1.0".
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
