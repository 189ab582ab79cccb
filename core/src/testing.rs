//! Test hooks: points in the protocol where a test can run code of its own
//! to force an interleaving that timing alone would make rare. Not part of
//! the supported API; a process that never sets a hook pays one atomic load
//! on the (rare) break path.

use std::sync::atomic::{AtomicUsize, Ordering};

static BEFORE_BREAK: AtomicUsize = AtomicUsize::new(0);

/// Runs `hook` in a waiter after it judged a lock stale and before it breaks
/// it (`None` removes the hook). Process-wide. For tests only.
#[doc(hidden)]
pub fn set_before_break(hook: Option<fn()>) {
    BEFORE_BREAK.store(hook.map_or(0, |f| f as usize), Ordering::SeqCst);
}

/// Called by the waiting loop between judging a holder and breaking its lock.
pub(crate) fn before_break() {
    let p = BEFORE_BREAK.load(Ordering::SeqCst);
    if p != 0 {
        // SAFETY: the only non-zero values stored are `fn()` pointers, by
        // set_before_break.
        let f: fn() = unsafe { std::mem::transmute::<usize, fn()>(p) };
        f();
    }
}
