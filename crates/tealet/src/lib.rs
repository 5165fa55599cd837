//! # tealet: coroutines by C-stack slicing
//!
//! Every tealet of a thread runs on that thread's own stack.  Switching to a suspended tealet
//! copies the part of the running stack that the target is about to occupy to the heap, copies
//! the target's saved slice back to the very addresses it came from, and swaps the registers
//! with one small piece of assembly per target.  This is the technique of Stackless Python's
//! `slp_switch`, PyPy's stacklets, greenlet and Kristján Valur Jónsson's tealet, written in
//! Rust.  Saving is incremental: only the bytes that overlap the target's extent are copied,
//! the rest stays in place until a later switch needs that region (see [`stack`](crate) docs in
//! `src/stack.rs`).
//!
//! The API is stacklet's: [`spawn`] starts `run` *immediately* on top of the current stack and
//! returns when somebody switches back; a suspended context is a one-shot [`Suspended`] handle
//! consumed by [`Suspended::switch`]; `run` returns the handle to resume when it finishes.
//!
//! ```
//! use tealet::{spawn, Resumed};
//!
//! // The new tealet doubles what it is sent until it is sent 0.
//! let Resumed { from, value } = spawn(|mut back| {
//!     let mut n: u64 = 1;
//!     loop {
//!         let r = back.switch(n * 2).unwrap();
//!         back = r.from.unwrap();
//!         n = r.value;
//!         if n == 0 {
//!             return (back, 0);
//!         }
//!     }
//! })
//! .unwrap();
//! assert_eq!(value, 2u64);
//! let r = from.unwrap().switch(21u64).unwrap();
//! assert_eq!(r.value, 42);
//! let r = r.from.unwrap().switch(0u64).unwrap();
//! assert!(r.from.is_none()); // it finished
//! assert_eq!(r.value, 0);
//! ```
//!
//! ## Targets
//!
//! | target | switch | status |
//! |---|---|---|
//! | x86-64 System V (Linux, macOS, BSD) | `src/arch/x86_64.rs` | tested in CI |
//! | aarch64, Windows x64 | one file each under `src/arch/`, same contract | not written yet |
//!
//! ## Safety model
//!
//! * **I1 one-shot**: a [`Suspended`] handle is consumed by `switch` (or dropped, which destroys
//!   the context); it can never be resumed twice.
//! * **I2 same thread**: handles are `!Send` and `!Sync`, so a context is only ever resumed on
//!   the thread whose stack holds it.
//! * **I3 owned values**: closures and values crossing a switch are `'static`, so nothing on one
//!   context's stack is borrowed by another (a suspended stack may not be at its addresses).
//! * **I4 no unwinding across a switch**: a panic escaping `run` is caught at the bootstrap frame
//!   and aborts the process with a message; it never unwinds into another context's frames.
//!   Nor does an unwinder walking the stack (a panic's backtrace, a debugger): a new tealet's
//!   bottom frame (`arch::call_bottom`) says the stack ends there.
//! * **I5 exact restore**: a context's stack bytes are back at their original addresses, with
//!   its callee-saved registers, before any of its code runs again (`src/stack.rs`, S1-S3).
//! * Destroying a suspended context frees its saved bytes without running the destructors of
//!   the values on its stack: they are leaked, which is safe.
//! * Out of memory while saving a slice is an [`AllocError`], not an abort, for `spawn` and
//!   `switch`; it can only abort (with a message) when a *finished* tealet cannot save enough of
//!   the stack to leave, since it has nowhere else to go.
//!
//! ## Performance
//!
//! A switch costs one allocation for the new handle plus copying the overlapping bytes.  See
//! `benches/switch.rs` and the README's table.

mod arch;
mod stack;
#[cfg(test)]
mod tests;
mod thread_bound;

use std::any::TypeId;
use std::cell::{Cell, UnsafeCell};
use std::hint::black_box;
use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};

pub use stack::AllocError;
use stack::{Chain, Slice};
pub use thread_bound::{current_thread_token, ThreadBound, ThreadToken};

const _: () = assert!(
    arch::STACK_GROWS_DOWN,
    "stack.rs assumes a downward-growing stack"
);

/// Largest value (in bytes) that [`Suspended::switch`] carries without boxing.
pub const MAX_VALUE_SIZE: usize = 256;

/// A suspended context: a one-shot continuation (invariants I1, I2).
///
/// Dropping it destroys the context without resuming it.
pub struct Suspended {
    slice: NonNull<Slice>,
    _not_send: PhantomData<*mut ()>,
}

/// What a [`spawn`] or [`Suspended::switch`] returns with when its context is resumed.
pub struct Resumed<T> {
    /// The context that switched to us, now suspended; `None` if we were resumed because a
    /// tealet's `run` finished (its stack is gone).
    pub from: Option<Suspended>,
    /// The value it sent.
    pub value: T,
}

/// The end of a tealet's `run` for [`spawn_finishing`]: the handle of the context to resume,
/// its value already in transit ([`Transit::finish`]).
#[must_use]
pub struct Finished<T> {
    next: Suspended,
    _value: PhantomData<fn() -> T>,
}

/// A failed switch: nothing happened, and the caller gets everything back.
pub struct SwitchError<T> {
    /// The target, still suspended.
    pub target: Suspended,
    /// The value that was to be sent.
    pub value: T,
    /// Why.
    pub error: AllocError,
}

impl<T> std::fmt::Debug for SwitchError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// `boot(source, arg) -> slice to resume`: the bootstrap of a tealet being spawned.
type BootFn = unsafe fn(*mut Slice, *mut u8) -> *mut Slice;

/// Per-thread switching state.  No destructor, so it stays valid while other thread-locals
/// (which may hold [`Suspended`] handles) are destroyed.
struct ThreadCtx {
    chain: UnsafeCell<Chain>,
    /// Far end of the running context's stack (grows for the thread's original context).
    current_stop: Cell<*mut u8>,
    /// Where a tealet being spawned starts: its slice's far end.
    marker: Cell<*mut u8>,
    /// Out of a switch: the slice of the context that was left (null: it finished).
    source: Cell<*mut Slice>,
    /// Into a switch: the slice to resume.
    target: Cell<*mut Slice>,
    /// Set by a save callback that could not allocate.
    failed: Cell<bool>,
    /// Bootstrap of the tealet being spawned: `boot(source, arg) -> slice to resume`.
    boot: Cell<Option<BootFn>>,
    boot_arg: Cell<*mut u8>,
    transfer: Transfer,
    /// This thread's [`ThreadToken`] value, 0 until first asked for (`thread_bound`, T1).
    token: Cell<u64>,
    /// Memory lent for the saved stack of the context the next switch suspends
    /// ([`Transit::lend`]); taken by that switch.
    spare: Cell<Spare>,
    /// Recently freed slices, reused by the next switches (in the context itself, so a switch
    /// looks up one thread-local, not two).
    cache: SliceCache,
}

thread_local! {
    static CTX: ThreadCtx = const {
        ThreadCtx {
            chain: UnsafeCell::new(Chain::new()),
            current_stop: Cell::new(ptr::null_mut()),
            marker: Cell::new(ptr::null_mut()),
            source: Cell::new(ptr::null_mut()),
            target: Cell::new(ptr::null_mut()),
            failed: Cell::new(false),
            boot: Cell::new(None),
            boot_arg: Cell::new(ptr::null_mut()),
            transfer: Transfer::new(),
            token: Cell::new(0),
            spare: Cell::new(Spare::NONE),
            cache: SliceCache {
                slots: [const { Cell::new(ptr::null_mut()) }; CACHE_SLOTS],
                len: Cell::new(0),
                state: Cell::new(CacheState::Unarmed),
            },
        }
    };
}

/// Memory lent by the owner of the context being suspended ([`Transit::lend`]).
#[derive(Clone, Copy)]
struct Spare {
    at: NonNull<u8>,
    len: usize,
}

impl Spare {
    const NONE: Spare = Spare {
        at: NonNull::dangling(),
        len: 0,
    };
}

/// Recently freed slices of this thread, reused by the next switches so that a steady stream of
/// switches allocates nothing.  `ThreadCtx` has no destructor, so the cache is emptied at
/// thread exit by a separate guard ([`CacheGuard`]), armed when the first slice is kept.
struct SliceCache {
    slots: [Cell<*mut Slice>; CACHE_SLOTS],
    len: Cell<usize>,
    state: Cell<CacheState>,
}

/// Whether the cache may keep slices.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CacheState {
    /// Nothing kept yet; the exit guard is not registered.
    Unarmed,
    /// The exit guard is registered: slices may be kept.
    Armed,
    /// The thread is exiting (or its guard could not be registered): nothing is kept.
    Closed,
}

/// Empties this thread's slice cache when the thread's locals are destroyed.
struct CacheGuard;

impl Drop for CacheGuard {
    fn drop(&mut self) {
        // SAFETY: `CTX` has no destructor, so it is still valid while other thread-locals are
        // destroyed.
        let c = unsafe { &*ctx() };
        c.cache.state.set(CacheState::Closed);
        c.cache.clear();
    }
}

thread_local! {
    static CACHE_GUARD: CacheGuard = const { CacheGuard };
}

const CACHE_SLOTS: usize = 8;
/// Buffers larger than this are not kept (a deep switch should not pin its memory).
const CACHE_MAX_CAPACITY: usize = 16 * 1024;

impl SliceCache {
    fn pop(&self) -> Option<*mut Slice> {
        let n = self.len.get();
        if n == 0 {
            return None;
        }
        self.len.set(n - 1);
        Some(self.slots[n - 1].get())
    }

    fn push(&self, slice: *mut Slice) -> bool {
        let n = self.len.get();
        if n == CACHE_SLOTS || !self.arm() {
            return false;
        }
        self.slots[n].set(slice);
        self.len.set(n + 1);
        true
    }

    fn clear(&self) {
        while let Some(s) = self.pop() {
            // SAFETY: cached slices are owned by the cache, out of any chain.
            unsafe { Slice::free(s) };
        }
    }

    /// Register the exit guard the first time a slice is to be kept.
    fn arm(&self) -> bool {
        match self.state.get() {
            CacheState::Armed => true,
            CacheState::Closed => false,
            CacheState::Unarmed => {
                let armed = CACHE_GUARD.try_with(|_| ()).is_ok();
                self.state.set(if armed {
                    CacheState::Armed
                } else {
                    CacheState::Closed
                });
                armed
            }
        }
    }
}

/// A slice for `[start, stop)` of the context being suspended, with the memory it was lent
/// (taken: a loan is for one switch): recycled if the cache has one, else freshly allocated.
#[inline]
fn new_slice(c: &ThreadCtx, start: *mut u8, stop: *mut u8) -> Result<*mut Slice, AllocError> {
    let spare = c.spare.replace(Spare::NONE);
    if let Some(s) = c.cache.pop() {
        // SAFETY: the cache owned `s`, out of any chain; now we do.  The loan is as S4 says
        // (the lender's promise, `Transit::lend`).
        unsafe { Slice::reset(s, start, stop, spare.at.as_ptr(), spare.len) };
        Ok(s)
    } else {
        let s = Slice::alloc(start, stop)?;
        // SAFETY: as above; nothing is saved in a new slice.
        unsafe { (*s).lend(spare.at.as_ptr(), spare.len) };
        Ok(s)
    }
}

/// Give back a slice that is out of any chain: cached for reuse, or freed.
///
/// # Safety
///
/// The caller owns `slice` and does not use it afterwards.
#[inline]
unsafe fn drop_slice(c: &ThreadCtx, slice: *mut Slice) {
    // SAFETY: per the contract.
    let small = unsafe { (*slice).capacity() } <= CACHE_MAX_CAPACITY;
    if !(small && c.cache.push(slice)) {
        // SAFETY: per the contract.
        unsafe { Slice::free(slice) };
    }
}

/// Free the slices this thread keeps for reuse (at most 8, each at most 16 KiB).  Switching
/// keeps working afterwards; the next switches allocate again.
pub fn trim_cache() {
    // SAFETY: this thread's context outlives the thread's code (no destructor).
    unsafe { &*ctx() }.cache.clear();
}

fn ctx() -> *const ThreadCtx {
    CTX.with(ptr::from_ref)
}

/// The value crossing a switch, in per-thread storage (never on a stack that is about to be
/// overwritten).
struct Transfer {
    tag: Cell<Option<TypeId>>,
    drop_fn: Cell<Option<unsafe fn(*mut u8)>>,
    buf: UnsafeCell<MaybeUninit<[u64; MAX_VALUE_SIZE / 8]>>,
}

impl Transfer {
    const fn new() -> Transfer {
        Transfer {
            tag: Cell::new(None),
            drop_fn: Cell::new(None),
            buf: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    fn put<T: 'static>(&self, value: T) {
        const { assert!(mem::size_of::<T>() <= MAX_VALUE_SIZE && mem::align_of::<T>() <= 8) };
        assert!(
            self.tag.get().is_none(),
            "tealet: a value is already in transit"
        );
        // SAFETY: the buffer is large and aligned enough for T (checked above) and empty.
        unsafe { self.buf.get().cast::<T>().write(value) };
        self.tag.set(Some(TypeId::of::<T>()));
        self.drop_fn.set(Some(drop_erased::<T>));
    }

    fn take<T: 'static>(&self) -> T {
        match self.tag.take() {
            // SAFETY: the tag says the buffer holds a T, written by `put::<T>`.
            Some(tag) if tag == TypeId::of::<T>() => unsafe { self.buf.get().cast::<T>().read() },
            Some(_) => {
                if let Some(drop_fn) = self.drop_fn.get() {
                    // SAFETY: `drop_fn` was stored with the value it drops.
                    unsafe { drop_fn(self.buf.get().cast()) };
                }
                panic!("tealet: the value sent across a switch is not of the type the receiver expects")
            }
            None => panic!("tealet: resumed without a value in transit"),
        }
    }
}

unsafe fn drop_erased<T>(p: *mut u8) {
    // SAFETY: the caller passes a pointer to a valid T that is dropped exactly once.
    unsafe { ptr::drop_in_place(p.cast::<T>()) };
}

// ---- callbacks run by the assembly ------------------------------------------------------------
// These are `extern "C"` and `#[inline(never)]`; they run on the stack below the switch frame
// and must not unwind (they cannot panic: no indexing, allocation failure is a value).

#[inline(never)]
unsafe extern "C" fn save_state(sp: *mut u8, ctx: *mut u8) -> *mut u8 {
    // SAFETY: `ctx` is this thread's `ThreadCtx` (passed by `switch_raw`); the target was set
    // from a live handle consumed by the caller (I1), and the chain invariants hold (S1-S3).
    unsafe {
        let ctx = &*ctx.cast::<ThreadCtx>();
        let Ok(source) = new_slice(ctx, sp, ctx.current_stop.get()) else {
            ctx.failed.set(true);
            return ptr::null_mut();
        };
        let chain = &mut *ctx.chain.get();
        chain.push(source);
        let target = ctx.target.get();
        if chain.clear_for(target, (*target).stop).is_err() {
            chain.pop(source);
            drop_slice(ctx, source);
            ctx.failed.set(true);
            return ptr::null_mut();
        }
        ctx.source.set(source);
        (*target).start
    }
}

#[inline(never)]
unsafe extern "C" fn initial_save_state(sp: *mut u8, ctx: *mut u8) -> *mut u8 {
    // SAFETY: as in `save_state`; `[sp, marker)` is the live frame of the spawning call chain.
    unsafe {
        let ctx = &*ctx.cast::<ThreadCtx>();
        let Ok(source) = new_slice(ctx, sp, ctx.current_stop.get()) else {
            ctx.failed.set(true);
            return ptr::null_mut();
        };
        // Save what the new tealet will overwrite right away: the frames below the marker.
        let saved = (*source).save_upto_checked(ctx.marker.get());
        if saved.is_err() {
            drop_slice(ctx, source);
            ctx.failed.set(true);
            return ptr::null_mut();
        }
        (*ctx.chain.get()).push(source);
        ctx.source.set(source);
        ptr::null_mut()
    }
}

#[inline(never)]
unsafe extern "C" fn destroy_state(_sp: *mut u8, ctx: *mut u8) -> *mut u8 {
    // SAFETY: as in `save_state`; the finished context's own stack needs no saving.
    unsafe {
        let ctx = &*ctx.cast::<ThreadCtx>();
        ctx.source.set(ptr::null_mut());
        ctx.spare.set(Spare::NONE);
        let target = ctx.target.get();
        if (*ctx.chain.get())
            .clear_for(target, (*target).stop)
            .is_err()
        {
            abort_with("out of memory while leaving a finished tealet");
        }
        (*target).start
    }
}

#[inline(never)]
unsafe extern "C" fn restore_state(_new_sp: *mut u8, ctx: *mut u8) -> *mut u8 {
    // SAFETY: the stack pointer is now the target's `start` and this frame lies below it, so the
    // restore overwrites no live frame (I5); the target was unlinked by `clear_for` and is
    // freed exactly once here (I1).
    unsafe {
        let ctx = &*ctx.cast::<ThreadCtx>();
        let target = ctx.target.get();
        (*target).restore();
        ctx.current_stop.set((*target).stop);
        drop_slice(ctx, target);
        ptr::dangling_mut::<u8>()
    }
}

fn abort_with(msg: &str) -> ! {
    eprintln!("tealet: fatal: {msg}");
    std::process::abort()
}

// ---- the switching functions ------------------------------------------------------------------
// Must never be inlined: each takes the stack marker in its own frame, and its caller's frame
// must be entirely above the marker (spawn) or part of the saved slice (switch).  A Rust local
// used across `arch::switch` is exactly what it was before (I5: the frame's bytes and the
// callee-saved registers come back unchanged, on the same thread, I2); the thread's context
// pointer is the only one the switching functions keep across it.

/// Raise the running context's far end to cover `marker` (only the thread's original context
/// can run above its recorded end).
fn cover(ctx: &ThreadCtx, marker: *mut u8) {
    if ctx.current_stop.get() <= marker {
        // SAFETY-free: pointer arithmetic by one byte within the caller's frame.
        ctx.current_stop.set(marker.wrapping_add(1));
    }
}

/// Switch to `target`; returns the slice of whoever resumed us (null: a tealet finished), or
/// `Err` if nothing happened because memory ran out.
#[inline(never)]
unsafe fn switch_raw(c: &ThreadCtx, target: *mut Slice) -> Result<*mut Slice, AllocError> {
    let marker = 0u8;
    cover(c, black_box(ptr::from_ref(&marker).cast_mut()));
    c.target.set(target);
    c.failed.set(false);
    // SAFETY: the callbacks honour the step contract (arch/mod.rs); `target` is a live,
    // suspended slice of this thread (I1, I2).
    let r = unsafe {
        arch::switch(
            save_state,
            restore_state,
            ptr::from_ref(c).cast_mut().cast(),
        )
    };
    // `c` is still right: this frame was put back exactly as it was, on the same thread.
    if r.is_null() {
        debug_assert!(c.failed.get());
        return Err(AllocError);
    }
    Ok(c.source.get())
}

#[inline(never)]
unsafe fn spawn_raw(c: &ThreadCtx, boot: BootFn, arg: *mut u8) -> Result<*mut Slice, AllocError> {
    let marker = 0u8;
    let marker = black_box(ptr::from_ref(&marker).cast_mut());
    cover(c, marker);
    c.marker.set(marker);
    c.boot.set(Some(boot));
    c.boot_arg.set(arg);
    // SAFETY: called once per spawn from this frame, which lies above nothing but the stub.
    unsafe { initial_stub(c) }
}

/// Returns twice: first (null from the assembly, no failure) in the new tealet, which runs its
/// bootstrap and never comes back here; then in the spawner when it is resumed.
#[inline(never)]
unsafe fn initial_stub(c: &ThreadCtx) -> Result<*mut Slice, AllocError> {
    c.failed.set(false);
    // SAFETY: `initial_save_state` saves the frames below the marker and returns null, so the
    // assembly returns at once without moving the stack pointer.
    let r = unsafe {
        arch::switch(
            initial_save_state,
            restore_state,
            ptr::from_ref(c).cast_mut().cast(),
        )
    };
    // `c` is still right (both times it returns): this frame is exactly as it was, on the
    // same thread.
    if r.is_null() {
        if c.failed.get() {
            return Err(AllocError);
        }
        // First return: we are the new tealet, running below the marker.
        // SAFETY: `run_new_tealet` never returns.
        unsafe { arch::call_bottom(run_new_tealet, ptr::from_ref(c).cast_mut().cast()) }
    }
    Ok(c.source.get())
}

/// The new tealet's life, called by [`initial_stub`] through the frame that ends its stack
/// for unwinders (`arch::call_bottom`): its bootstrap, then the switch that leaves it.
unsafe extern "C" fn run_new_tealet(c: *mut u8) -> ! {
    // SAFETY: `c` is this thread's context (passed by `initial_stub`).
    let c = unsafe { &*c.cast::<ThreadCtx>() };
    c.current_stop.set(c.marker.get());
    let boot = c.boot.take().expect("tealet: bootstrap missing");
    let source = c.source.get();
    // SAFETY: `boot` and its argument were set by `spawn_raw` for this very tealet.
    let next = unsafe { boot(source, c.boot_arg.get()) };
    c.target.set(next);
    // SAFETY: `next` is a live suspended slice returned by `run` (I1); this stack is
    // finished and abandoned, nothing on it is used again.
    unsafe {
        arch::switch(
            destroy_state,
            restore_state,
            ptr::from_ref(c).cast_mut().cast(),
        )
    };
    abort_with("a finished tealet was resumed");
}

/// The bootstrap frame of a new tealet: runs `run` with the spawner's handle, catches panics
/// (I4), and hands back the slice to resume (`run` put the finishing value in transit).
/// This frame stays below the body, on every suspended stack of the tealet: it holds little
/// more than `run`.
unsafe fn boot<T: 'static, F: FnOnce(Suspended) -> Finished<T> + 'static>(
    source: *mut Slice,
    arg: *mut u8,
) -> *mut Slice {
    // SAFETY: `arg` points at the spawner's `Option<F>`, which lies above the marker and is
    // still in place on the stack (S3); we take it before any switch.
    let run = unsafe { (*arg.cast::<Option<F>>()).take() }.expect("tealet: run already taken");
    let from = Suspended {
        slice: NonNull::new(source).expect("tealet: the spawner's slice"),
        _not_send: PhantomData,
    };
    match panic::catch_unwind(AssertUnwindSafe(move || run(from))) {
        // (Its value is in this thread's transfer slot for the resumed side.)
        Ok(finished) => finished.next.into_raw(),
        Err(payload) => abort_on_panic(&*payload),
    }
}

/// I4: a panic that escaped a tealet's `run`.  Out of line (cold): its temporaries stay out
/// of the bootstrap frame, which is saved with every suspended tealet.
#[cold]
#[inline(never)]
fn abort_on_panic(payload: &(dyn std::any::Any + Send)) -> ! {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned());
    abort_with(&format!(
        "panic in a tealet's run(), which cannot unwind across a stack switch: {msg}"
    ))
}

/// This thread's slot for the value crossing a switch, looked up once (one thread-local
/// access) for the parts of a switch ([`Suspended::switch_in_transit`]).  `!Send`.
#[derive(Clone, Copy)]
pub struct Transit {
    ctx: *const ThreadCtx,
}

impl Transit {
    /// The running thread's.
    pub fn current() -> Transit {
        Transit { ctx: ctx() }
    }

    /// The running thread's, from its token (no thread-local lookup).
    pub fn of(thread: ThreadToken) -> Transit {
        Transit { ctx: thread.ctx }
    }

    /// Put `value` in transit, for the next switch of this thread.
    ///
    /// # Panics
    ///
    /// If a value is in transit already.
    pub fn put<T: 'static>(self, value: T) {
        // SAFETY: this thread's context (a `Transit` stays on its thread: the raw pointer
        // makes it `!Send`), which outlives the thread's code (no destructor).
        unsafe { &*self.ctx }.transfer.put(value);
    }

    /// Lend `len` bytes at `at` to the context that this thread's next switch (or spawn)
    /// suspends: its stack is saved there first, and only what does not fit goes to the
    /// heap.  An interpreter lends the unused end of the context's own frame stack, memory
    /// that would otherwise sit idle next to the heap copy.  The next switch takes the loan
    /// whether it succeeds or not.
    ///
    /// # Safety
    ///
    /// `[at, at + len)` is writable memory that nothing else reads, writes or frees from now
    /// until the context that the next switch of this thread suspends is resumed or its
    /// [`Suspended`] handle is dropped; and that next switch is the one meant (lend right
    /// before it).
    pub unsafe fn lend(self, at: NonNull<u8>, len: usize) {
        // SAFETY: as in `put`.
        unsafe { &*self.ctx }.spare.set(Spare { at, len });
    }

    /// Finish a tealet's `run` ([`spawn_finishing`]): put `value` in transit for `next`, the
    /// context to resume.  The last step of `run`, whose result it is: the value waits in
    /// transit until the tealet ends (a switch before that would find the slot taken and
    /// panic).
    pub fn finish<T: 'static>(self, next: Suspended, value: T) -> Finished<T> {
        self.put(value);
        Finished {
            next,
            _value: PhantomData,
        }
    }

    /// Take the value in transit (after [`Suspended::switch_in_transit`]).
    ///
    /// # Panics
    ///
    /// If no value is in transit, or one of another type (which is dropped).
    pub fn take<T: 'static>(self) -> T {
        // SAFETY: as in `put`.
        unsafe { &*self.ctx }.transfer.take::<T>()
    }
}

/// Start `run` now, on top of the current stack, with the handle of the current context.
///
/// Returns when some context switches back to the current one (`from` is that context), or
/// when a tealet whose `run` returned the current context's handle finishes (`from` is
/// `None`).  `run` returns the handle of the context to resume and the value to give it.
///
/// # Errors
///
/// [`AllocError`] if the spawner's stack could not be saved; `run` was not started.
pub fn spawn<T, F>(run: F) -> Result<Resumed<T>, AllocError>
where
    T: 'static,
    F: FnOnce(Suspended) -> (Suspended, T) + 'static,
{
    spawn_finishing(move |from| {
        let (next, value) = run(from);
        Transit::current().finish(next, value)
    })
}

/// [`spawn`] for a `run` that puts its finishing value in transit itself
/// ([`Transit::finish`]), so that the new tealet's bottom frame, which stays below the body on
/// every suspended stack of the tealet, needs no room for that value.
///
/// # Errors
///
/// As [`spawn`].
pub fn spawn_finishing<T, F>(run: F) -> Result<Resumed<T>, AllocError>
where
    T: 'static,
    F: FnOnce(Suspended) -> Finished<T> + 'static,
{
    let mut slot: Option<F> = Some(run);
    // SAFETY: see `switch_raw`.
    let c = unsafe { &*ctx() };
    // SAFETY: `slot` lives in this frame, above the marker taken by `spawn_raw`, until the new
    // tealet takes it (before its first switch); `boot::<T, F>` matches the slot's type.
    let res = unsafe { spawn_raw(c, boot::<T, F>, ptr::from_mut(&mut slot).cast()) };
    let source = res?;
    // `c` is still this thread's context (see `switch_raw`).
    let value = c.transfer.take::<T>();
    Ok(Resumed {
        from: Suspended::from_raw(source),
        value,
    })
}

impl Suspended {
    fn from_raw(slice: *mut Slice) -> Option<Suspended> {
        NonNull::new(slice).map(|slice| Suspended {
            slice,
            _not_send: PhantomData,
        })
    }

    fn into_raw(self) -> *mut Slice {
        let p = self.slice.as_ptr();
        mem::forget(self);
        p
    }

    /// Suspend the current context and resume this one, which receives `value`.
    ///
    /// Returns when the current context is resumed in turn.
    ///
    /// # Errors
    ///
    /// A [`SwitchError`] (with the target and value given back) if memory for saving the
    /// current stack ran out; nothing switched.
    pub fn switch<T: 'static>(self, value: T) -> Result<Resumed<T>, SwitchError<T>> {
        let transit = Transit::current();
        transit.put(value);
        match self.switch_in_transit(transit) {
            Ok(from) => Ok(Resumed {
                from,
                value: transit.take::<T>(),
            }),
            Err(target) => Err(SwitchError {
                target,
                value: transit.take::<T>(),
                error: AllocError,
            }),
        }
    }

    /// [`Suspended::switch`] in parts, for a caller whose frame stays on the suspended stack
    /// (every byte of it is copied with each switch) and so should not hold the value or the
    /// result: the value to send was put in `transit` ([`Transit::put`]) and, either way, the
    /// caller takes the value for it from there afterwards ([`Transit::take`]).
    ///
    /// Returns the context that resumed us (`None`: a tealet finished).
    ///
    /// # Errors
    ///
    /// The target, still suspended, if memory for saving the current stack ran out; nothing
    /// switched (the value sent is still in transit).
    #[inline]
    pub fn switch_in_transit(self, transit: Transit) -> Result<Option<Suspended>, Suspended> {
        // SAFETY: a `Transit` holds this thread's context (it is `!Send`).
        let c = unsafe { &*transit.ctx };
        let target = self.into_raw();
        // SAFETY: `target` is a live suspended slice of this thread, consumed here (I1, I2).
        match unsafe { switch_raw(c, target) } {
            Ok(source) => Ok(Suspended::from_raw(source)),
            Err(AllocError) => Err(Suspended::from_raw(target).expect("non-null")),
        }
    }

    /// Bytes of this context's stack copied away so far (to the heap or lent memory).
    pub fn saved_bytes(&self) -> usize {
        // SAFETY: the handle owns a live slice (I1).
        unsafe { self.slice.as_ref() }.saved_len()
    }

    /// Of [`Suspended::saved_bytes`], those copied to the heap (the others went to memory
    /// lent with [`Transit::lend`]).
    pub fn heap_bytes(&self) -> usize {
        // SAFETY: the handle owns a live slice (I1).
        unsafe { self.slice.as_ref() }.heap_len()
    }

    /// Bytes of this context's whole stack slice (saved or still in place).
    pub fn stack_size(&self) -> usize {
        // SAFETY: the handle owns a live slice (I1).
        unsafe { self.slice.as_ref() }.size()
    }

    /// Where the byte that was at stack address `addr` in this suspended context is now:
    /// in the heap copy if it was saved, else still at `addr`.
    pub fn translate(&self, addr: *const u8) -> *const u8 {
        // SAFETY: the handle owns a live slice (I1).
        unsafe { self.slice.as_ref() }.translate(addr)
    }

    /// Destroy the context without resuming it (same as dropping the handle).
    pub fn destroy(self) {
        drop(self);
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        let slice = self.slice.as_ptr();
        // SAFETY: the handle owns a live slice of this thread (I1, I2); it is unlinked from the
        // chain, then freed exactly once.
        unsafe {
            let c = &*ctx();
            (*c.chain.get()).unlink(slice);
            drop_slice(c, slice);
        }
    }
}

impl std::fmt::Debug for Suspended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suspended")
            .field("stack_size", &self.stack_size())
            .field("saved_bytes", &self.saved_bytes())
            .finish()
    }
}
