//! fork() safety of the library's process-wide state.
//!
//! A child of `fork()` has only the forking thread; a mutex that another
//! thread held at that moment would stay locked in the child forever. So
//! every process-wide mutex of the library is a [`ForkMutex`], which
//! registers itself on first use; `pthread_atfork` handlers take every
//! registered mutex before the fork (waiting for other threads to leave
//! their short critical sections) and release them afterwards in both
//! parent and child. The child also forgets the cached PID ([`pid`]) and
//! counts one more [`generation`].
//! Everything else process-wide is lock-free (atomics).
//!
//! This module names no other module of the library: it is the bottom
//! layer, beside `sys`.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

static REGISTER: Once = Once::new();

/// Every [`ForkMutex`] used so far, in the order of first use. None of them
/// is ever held while taking another, so taking them all in this order
/// cannot deadlock with the library's own threads.
static REGISTRY: Mutex<Vec<&'static dyn Hold>> = Mutex::new(Vec::new());

thread_local! {
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A mutex that is taken across every `fork()`, so the child finds it
/// unlocked and consistent. For `static`s only (it registers itself by
/// reference). Never hold one while taking another.
#[derive(Debug)]
pub struct ForkMutex<T> {
    inner: Mutex<T>,
    registered: AtomicBool,
}

trait Hold: Sync {
    fn hold(&'static self) -> Box<dyn Any>;
}

impl<T: Send + 'static> Hold for ForkMutex<T> {
    fn hold(&'static self) -> Box<dyn Any> {
        Box::new(self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<T: Send + 'static> ForkMutex<T> {
    /// A new mutex holding `value`.
    pub const fn new(value: T) -> Self {
        ForkMutex {
            inner: Mutex::new(value),
            registered: AtomicBool::new(false),
        }
    }

    /// Locks it (a poisoned mutex is used as it is: every critical section
    /// of the library leaves its data consistent at every step).
    pub fn lock(&'static self) -> MutexGuard<'static, T> {
        if !self.registered.load(Ordering::Acquire) {
            ensure();
            // No `Once` here: a fork while a thread is inside `call_once`
            // would leave the child's `Once` running forever. The registry
            // lock is held by the fork handlers, so a registration simply
            // waits for the fork to finish.
            let mut all = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            if !self.registered.load(Ordering::Acquire) {
                all.push(self);
                self.registered.store(true, Ordering::Release);
            }
        }
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static PID: AtomicU32 = AtomicU32::new(0);

/// See [`generation`].
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// How many `fork()`s separate this process from the one that loaded the
/// library (counted in the child of each). A value cached together with
/// the generation is this process's own only while the generation is the
/// same: unlike the PID, it never repeats down a line of descent (a child
/// in a new PID namespace can get the very PID number of an ancestor whose
/// cache it inherited).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// This process's PID without a system call per use: cached, and forgotten
/// in the child of every `fork()`, so a child never mistakes the parent's
/// locks for its own.
pub fn pid() -> u32 {
    let p = PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    ensure();
    let p = std::process::id();
    PID.store(p, Ordering::Relaxed);
    p
}

extern "C" fn prepare() {
    let all = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let mut guards: Vec<Box<dyn Any>> = all.iter().map(|m| m.hold()).collect();
    // The registry's own guard goes last, so it is released last.
    guards.push(Box::new(all));
    HELD.with(|h| *h.borrow_mut() = guards);
}

fn release_all() {
    HELD.with(|h| {
        let mut guards = std::mem::take(&mut *h.borrow_mut());
        // In order: the registry's guard (last) is dropped after the others.
        for g in guards.drain(..) {
            drop(g);
        }
    });
}

extern "C" fn parent() {
    release_all();
}

extern "C" fn child() {
    PID.store(0, Ordering::Relaxed);
    GENERATION.fetch_add(1, Ordering::Relaxed);
    release_all();
}

/// Registers the handlers (once per process). Called by every entry point
/// that creates library state.
pub fn ensure() {
    REGISTER.call_once(|| {
        // SAFETY: pthread_atfork with three valid `extern "C"` functions
        // that only take and drop the library's own mutexes.
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
