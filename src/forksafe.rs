//! fork() safety of the library's process-wide state.
//!
//! A child of `fork()` has only the forking thread; a lock that another
//! thread held at that moment would stay locked in the child forever. So
//! `pthread_atfork` handlers take every process-wide lock of the library
//! before the fork (waiting for other threads to leave their short critical
//! sections) and release them afterwards in both parent and child; the
//! child also forgets the cached PID. Everything else process-wide is
//! lock-free (atomics).

use std::any::Any;
use std::cell::RefCell;
use std::sync::Once;

static REGISTER: Once = Once::new();

thread_local! {
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// The process-wide locks, always taken in this order. None of them is
/// ever held while taking another.
fn take_all() -> Vec<Box<dyn Any>> {
    // Make sure the identity is computed before, not during, a fork.
    let _ = crate::owner::identity();
    vec![
        crate::lockdir::fork_guard(),
        crate::owner::fork_guard(),
        crate::ffi::fork_guard(),
        crate::wait::fork_guard(),
    ]
}

extern "C" fn prepare() {
    let guards = take_all();
    HELD.with(|h| *h.borrow_mut() = guards);
}

extern "C" fn parent() {
    HELD.with(|h| h.borrow_mut().clear());
}

extern "C" fn child() {
    crate::sys::forget_pid();
    HELD.with(|h| h.borrow_mut().clear());
}

/// Registers the handlers (once per process). Called by every entry point
/// that creates library state.
pub fn ensure() {
    REGISTER.call_once(|| {
        // SAFETY: the handlers only take and drop the library's own locks.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
}

/// Registers the handlers when the library is loaded, so that no fork can
/// ever race with the first registration.
#[used]
#[link_section = ".init_array"]
static REGISTER_AT_LOAD: extern "C" fn() = {
    extern "C" fn at_load() {
        ensure();
    }
    at_load
};
