//! [`ThreadBound`]: a value that may be *referenced* from any thread but only *used* on the
//! thread that made it.
//!
//! Tealet handles are `!Send` because a suspended stack exists only on its own thread.  Objects
//! of an interpreter (a Python `continulet`) are shared between threads nevertheless, and must
//! answer a use from the wrong thread with an error, not a crash.  `ThreadBound` gives exactly
//! that: `Send + Sync`, with [`ThreadBound::get`] returning `None` off the owner thread.
//!
//! # Invariants
//!
//! * **T1** Every thread gets a token from a global counter the first time it asks; tokens are
//!   never reused, so a value of a thread that has exited is never taken for the value of a
//!   new thread.  A token is never 0.
//! * **T2** The inner value is only touched (borrowed or dropped) on the owner thread.  Dropped
//!   elsewhere, it is leaked instead (and counted by [`ThreadBound::leaked_count`]).  The one
//!   exception is [`ThreadBound::get_unchecked`]: a borrow from another thread by a caller that
//!   rules out every concurrent use by other means (pybind: the interpreter lock, for reads).

use crate::{ctx, ThreadCtx};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);
static LEAKED: AtomicU64 = AtomicU64::new(0);

/// The token of the thread whose switching context `ctx` is, given on first request (T1).
fn token_of(ctx: &ThreadCtx) -> u64 {
    let mut v = ctx.token.get();
    if v == 0 {
        v = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        ctx.token.set(v);
    }
    v
}

/// This thread's token (T1): unique for the life of the process, never 0.  (It lives in
/// the thread's switching context, which has no destructor: it can be asked for even while
/// the thread's other thread-locals are being destroyed.)
pub fn current_thread_token() -> u64 {
    // SAFETY: this thread's context, which outlives the thread's code (no destructor).
    token_of(unsafe { &*ctx() })
}

/// Proof, for the code holding it, that it runs on the thread it was made on: one
/// thread-local lookup reused for several [`ThreadBound::get_on`] checks, and for the
/// thread's switching context ([`crate::Transit::of`]).  One word: the context, whose token
/// was given when the `ThreadToken` was made.  `!Send` and `!Sync` (it holds a raw pointer),
/// so it cannot reach another thread.
#[derive(Clone, Copy, Debug)]
pub struct ThreadToken {
    pub(crate) ctx: *const ThreadCtx,
}

impl ThreadToken {
    /// The running thread's token.
    pub fn current() -> ThreadToken {
        let ctx = ctx();
        // SAFETY: as in `current_thread_token`.
        token_of(unsafe { &*ctx });
        ThreadToken { ctx }
    }

    /// Its value (T1).
    #[inline]
    fn value(self) -> u64 {
        // SAFETY: this thread's context (a `ThreadToken` stays on its thread), which outlives
        // the thread's code; its token was given by `current`.
        unsafe { &*self.ctx }.token.get()
    }
}

/// A value usable only on the thread that created it (see the module docs).
pub struct ThreadBound<T> {
    owner: u64,
    value: ManuallyDrop<T>,
}

// SAFETY: the inner value is only reached through `get`/`get_mut`/`into_inner`/`drop`, which
// all check that the current thread is the owner (T2); other threads only move the wrapper.
unsafe impl<T> Send for ThreadBound<T> {}
// SAFETY: as above: `&ThreadBound<T>` on another thread gives no access to the inner value.
unsafe impl<T> Sync for ThreadBound<T> {}

impl<T> ThreadBound<T> {
    /// Bind `value` to the current thread.
    pub fn new(value: T) -> Self {
        ThreadBound {
            owner: current_thread_token(),
            value: ManuallyDrop::new(value),
        }
    }

    /// The owner thread's token.
    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// Whether the current thread owns the value.
    pub fn is_owner(&self) -> bool {
        self.owner == current_thread_token()
    }

    /// The value, on the owner thread only.
    pub fn get(&self) -> Option<&T> {
        if self.is_owner() {
            Some(&self.value)
        } else {
            None
        }
    }

    /// [`ThreadBound::get`] with the running thread's token already in hand.
    pub fn get_on(&self, thread: ThreadToken) -> Option<&T> {
        if self.owner == thread.value() {
            Some(&self.value)
        } else {
            None
        }
    }

    /// The value, on the owner thread only.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        if self.is_owner() {
            Some(&mut self.value)
        } else {
            None
        }
    }

    /// The value, from any thread (T2's exception).
    ///
    /// # Safety
    /// While the returned reference lives, no other thread uses the value (the owner thread
    /// included), and the caller leaves nothing of it behind: whatever it clones from the
    /// value is dropped before the reference ends.
    pub unsafe fn get_unchecked(&self) -> &T {
        &self.value
    }

    /// How many values were leaked because they were dropped off their owner thread.
    pub fn leaked_count() -> u64 {
        LEAKED.load(Ordering::Relaxed)
    }
}

impl<T> Drop for ThreadBound<T> {
    fn drop(&mut self) {
        if self.is_owner() {
            // SAFETY: dropped once, here, on the owner thread (T2).
            unsafe { ManuallyDrop::drop(&mut self.value) };
        } else {
            LEAKED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ThreadBound;
    use std::sync::Arc;

    #[test]
    fn other_threads_see_nothing_and_tokens_are_unique() {
        let tb = Arc::new(ThreadBound::new(std::rc::Rc::new(5)));
        assert_eq!(**tb.get().unwrap(), 5);
        let tb2 = tb.clone();
        let (seen, token) =
            std::thread::spawn(move || (tb2.get().is_none(), super::current_thread_token()))
                .join()
                .unwrap();
        assert!(seen);
        assert_ne!(token, tb.owner());
        // A new thread never reuses the token of the exited one.
        let token2 = std::thread::spawn(super::current_thread_token)
            .join()
            .unwrap();
        assert_ne!(token2, token);
    }

    #[test]
    fn get_unchecked_reads_from_another_thread() {
        let tb = Arc::new(ThreadBound::new(String::from("owned here")));
        let tb2 = tb.clone();
        // The owner thread does not touch the value while the other thread reads it (join).
        let read = std::thread::spawn(move || {
            assert!(tb2.get().is_none());
            // SAFETY: the owner thread is blocked in `join` for the whole read.
            unsafe { tb2.get_unchecked() }.clone()
        })
        .join()
        .unwrap();
        assert_eq!(read, "owned here");
        assert_eq!(tb.get().map(String::as_str), Some("owned here"));
    }

    #[test]
    fn a_token_opens_only_its_own_threads_values() {
        let tb = Arc::new(ThreadBound::new(7));
        let here = super::ThreadToken::current();
        assert_eq!(tb.get_on(here), Some(&7));
        let tb2 = tb.clone();
        let seen = std::thread::spawn(move || tb2.get_on(super::ThreadToken::current()).is_none())
            .join()
            .unwrap();
        assert!(seen);
    }

    #[test]
    fn dropped_on_another_thread_is_leaked_not_touched() {
        let before = ThreadBound::<()>::leaked_count();
        let tb = ThreadBound::new(std::rc::Rc::new(1));
        std::thread::spawn(move || drop(tb)).join().unwrap();
        assert_eq!(ThreadBound::<()>::leaked_count(), before + 1);
    }
}
