//! liblocking's safe Rust core: cooperative, multiprocess- and
//! multithread-safe locks on names in a lock directory.
//!
//! This crate is what Rust programs use; it knows nothing of C. The C
//! library (`liblocking.so`, `include/locking.h`) is the `locking` crate at
//! the top of the repository, a thin layer over this one. The lock
//! protocols are described in `docs/PROTOCOL.md`, the on-disk layout in
//! `docs/FORMAT.md`.
//!
//! Layers, each using only those before it (`tests/layering.rs` checks):
//! `forksafe`, `error`, `options`, `sha256`, `testing` (no other module) <-
//! `sys` (system calls) <- `name`, `owner`, `lockdir` <- `wait` <-
//! `method/*`, `fence`, `shared` (one protocol step each), `backing` <-
//! `dirlock` (the lock-directory methods), `pg` (the PostgreSQL method) <-
//! `locker` <- `open_locked`.
//!
//! ```
//! use locking_core::{Locker, Method, Mode, Timeout, Expire};
//! use std::time::Duration;
//! let dir = std::env::temp_dir().join(format!("locking-doc-{}", std::process::id()));
//! let mut a = Locker::new(b"db", &dir, b"app", Timeout::Forever, Expire::Never, Method::Kernel)?;
//! let mut b = Locker::new(b"db", &dir, b"app", Timeout::TRY, Expire::Never, Method::Kernel)?;
//! {
//!     let _held = a.guard()?;                // exclusive, released at the end of the block
//!     assert!(!b.try_acquire(Mode::Shared)?); // busy
//! }
//! a.acquire(Mode::Shared, Duration::from_secs(1))?;
//! b.acquire(Mode::Shared, Timeout::TRY)?;     // shared holders coexist
//! assert!(b.fencing_token()? > a.fencing_token()?);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), locking_core::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod backing;
mod dirlock;
pub mod error;
mod fence;
#[doc(hidden)]
pub mod forksafe;
mod lockdir;
pub mod locker;
mod method;
pub mod name;
pub mod open_locked;
pub mod options;
pub mod owner;
mod pg;
mod queue;
mod sha256;
mod shared;
mod sys;
#[doc(hidden)]
pub mod testing;
mod wait;

pub use backing::HolderInfo;
pub use error::{Error, Result};
pub use locker::{Guard, Locker};
pub use open_locked::{open_locked, LockedFile};
pub use options::{Expire, Method, Mode, Timeout};
pub use owner::{Liveness, Record};

/// The crate version, e.g. "0.2.0".
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
