//! # pystate: the CPython thread state of one continulet context
//!
//! The only place that reads or writes CPython's `PyThreadState` fields (and the only module
//! of this crate with `unsafe`).  Field offsets come from the interpreter's real headers at
//! build time (`build.rs`, `offsets.c` → `OUT_DIR/offsets.rs`).  One file per CPython minor
//! version holds what differs (`py310.rs` … `py313.rs`), each exporting the same API, chosen by
//! the `Py_3_x` cfgs of `pyo3_build_config::use_pyo3_cfgs()`.
//!
//! # State
//!
//! A [`PyState`] is what a *suspended* context needs back when it resumes: its C-stack
//! `_PyCFrame` pointer (whose `current_frame` is its top interpreter frame), its Python
//! recursion depth, its handled-exception state (`exc_info`, `exc_state`: `sys.exc_info()` is
//! per context), its trashcan state, and its data stack (`datastack_chunk/top/limit`: the
//! heap chunks holding its interpreter frames).  The contextvars context is *not* switched:
//! PyPy's continulets share the thread's context (checked on PyPy 3.9); greenlet switches it
//! itself through `get/set_contextvar_context`.
//!
//! Contexts started by a continulet own their resources ([`Owned`]: a heap `_PyCFrame` and a
//! small root data-stack chunk); the thread's original context owns nothing (CPython does).
//! While a context runs, its `Owned` sits in a thread-local of the version's file.
//!
//! # Invariants
//!
//! * **P1** `save()` moves the handled exception's reference out of the thread state into the
//!   `PyState`; `restore()` moves it back.  A `PyState` dropped without being restored
//!   releases it.
//! * **P2** Between `restore()` of a target and the stack switch, no Python API is called and
//!   nothing dereferences the thread state's frame pointers: they point into the target's
//!   stack, which is not back in place yet.
//! * **P3** A context's data-stack chunks are freed exactly once: by `leave_finished` when it
//!   finishes, or by dropping its `PyState` when it is destroyed while suspended.
//! * **P4** All of this happens with the GIL held, on the thread the state belongs to.
//! * **P6** (3.11+) A root data-stack chunk is in exactly one place: a context's chain, or
//!   this thread's cache of free root chunks ([`alloc_root_chunk`], at most
//!   [`ROOT_CHUNK_CACHE`] of them, freed with the thread).
//! * **P7** A context that will never run again — suspended when its thread state is cleared
//!   (R5 of `refs`) — gives up what its frames and stack hold (`clear_suspended`): its
//!   thread's watch (`lib.rs`) takes it out of its continulet first, so it cannot be resumed.
//! * **P5** (3.12+) A suspended context's interpreter-frame chain holds only heap frames:
//!   `save()` rewires the links that go through C-stack entry frames (whose bytes tealet has
//!   moved away) and `restore()` puts them back (`py312.rs`, `py313.rs`).
//! * **P8** (3.11+) A context started by a continulet that is suspended while running in its
//!   root chunk lends the end of that chunk above its top frame, `[top, limit)`, to tealet for
//!   its saved C stack ([`lend_chunk_end`]).  Nobody else touches that memory until the
//!   context resumes: CPython pushes frames only for the running context, and everything that
//!   reads a suspended context's frames reads below `top`.  The chunk outlives the loan: it is
//!   freed only when the context finishes (running, so nothing is lent) or by its `PyState`'s
//!   drop, which comes after the tealet handle's (`continuation::Frame` drops its handle
//!   first, C4).

pub(crate) mod cast;
pub(crate) mod fastcall;
pub(crate) mod finalize;
pub(crate) mod gil_cell;
mod refs;
pub(crate) mod slots;
pub(crate) mod trace;

#[cfg(all(Py_3_10, not(Py_3_11)))]
mod py310;
#[cfg(all(Py_3_10, not(Py_3_11)))]
pub(crate) use py310::*;

#[cfg(all(Py_3_11, not(Py_3_12)))]
mod py311;
#[cfg(all(Py_3_11, not(Py_3_12)))]
pub(crate) use py311::*;

#[cfg(all(Py_3_12, not(Py_3_13)))]
mod py312;
#[cfg(all(Py_3_12, not(Py_3_13)))]
pub(crate) use py312::*;

#[cfg(all(Py_3_13, not(Py_3_14)))]
mod py313;
#[cfg(all(Py_3_13, not(Py_3_14)))]
pub(crate) use py313::*;

/// `save_parked` / `take_parked` for the version files that do not provide their own (3.11
/// keeps the parked state in its single per-thread struct): the saved state of the context
/// switching away waits here between the two ends of a switch
/// (`continuation::Host::save_parked`).
#[cfg(all(Py_3_10, not(all(Py_3_11, not(Py_3_12))), not(Py_3_14)))]
mod parked {
    use std::cell::RefCell;

    thread_local! {
        static PARKED: RefCell<Option<super::PyState>> = const { RefCell::new(None) };
    }

    pub(crate) fn save_parked() {
        park(super::save());
    }

    /// [`save_parked`], lending the context the end of its root chunk (P8).
    pub(crate) fn save_parked_lending(transit: continuation::Transit) {
        let s = super::save();
        s.lend_chunk_end(transit);
        park(s);
    }

    fn park(s: super::PyState) {
        PARKED.with(|p| {
            let old = p.borrow_mut().replace(s);
            debug_assert!(old.is_none(), "a parked state was never taken");
        });
    }

    pub(crate) fn take_parked() -> super::PyState {
        PARKED
            .with(|p| p.borrow_mut().take())
            .expect("a state was parked before the switch")
    }
}
#[cfg(all(Py_3_10, not(all(Py_3_11, not(Py_3_12))), not(Py_3_14)))]
pub(crate) use parked::{save_parked, save_parked_lending, take_parked};

/// `save_parked()` then `restore(s)` (3.11 does both with one thread-local lookup), lending
/// the context switching away the end of its root chunk for the switch under way (P8).
#[cfg(all(Py_3_10, not(all(Py_3_11, not(Py_3_12))), not(Py_3_14)))]
pub(crate) fn park_and_restore(s: PyState, transit: continuation::Transit) {
    save_parked_lending(transit);
    restore(s);
}

/// `resumed()` then `take_parked()` (3.11 does both with one thread-local lookup).
#[cfg(all(Py_3_10, not(all(Py_3_11, not(Py_3_12))), not(Py_3_14)))]
pub(crate) fn resumed_take_parked() -> PyState {
    resumed();
    take_parked()
}

#[cfg(any(not(Py_3_10), Py_3_14))]
compile_error!(
    "continulet: CPython 3.10 to 3.13 have a src/pystate/ file (3.14: see ARCHITECTURE.md)"
);

#[allow(dead_code, clippy::unreadable_literal)]
pub(crate) mod offsets {
    include!(concat!(env!("OUT_DIR"), "/offsets.rs"));
}

use pyo3::prelude::{Bound, PyResult};
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyAny, Python};

/// A GIL token for code that runs inside a continulet context.
///
/// Our contexts only ever run while the thread holds the GIL: they are entered from a
/// Python call (`switch`, `__init__`) and leave through one.
pub(crate) fn attached() -> Python<'static> {
    // SAFETY: P4 - every continulet context runs with the GIL held by this thread, since it is
    // only entered from and left through Python calls on this thread.
    unsafe { Python::assume_attached() }
}

/// Whether `obj`'s reference is its only one.
pub(crate) fn only_reference(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a live object (GIL held): a plain read of its reference count.
    unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) == 1 }
}

/// Turn a new reference (or null) into a Python object (None for null).
pub(crate) fn frame_into_py(py: Python<'_>, p: *mut pyo3::ffi::PyObject) -> pyo3::Py<pyo3::PyAny> {
    if p.is_null() {
        return py.None();
    }
    // SAFETY: `p` is a new (owned) reference produced by this module.
    unsafe { pyo3::Bound::from_owned_ptr(py, p) }.unbind()
}

/// Refuse to load into an interpreter other than the one whose headers we were built with.
pub(crate) fn check_runtime_version(py: Python<'_>) -> pyo3::PyResult<()> {
    let v = py.version_info();
    let built = offsets::PY_VERSION_HEX;
    let (maj, min) = ((built >> 24) & 0xff, (built >> 16) & 0xff);
    if u32::from(v.major) != maj || u32::from(v.minor) != min {
        return Err(pyo3::exceptions::PyImportError::new_err(format!(
            "continulet._native was built for CPython {maj}.{min} but this is {}.{}",
            v.major, v.minor
        )));
    }
    Ok(())
}

/// Whether the interpreter's cyclic collector is collecting (`gc.collecting` of the
/// interpreter state, 3.10-3.13): set from the start of a collection to the end of its
/// `gc.callbacks`, so also while the finalizers of the garbage it found run — when its lists
/// of garbage have their heads in C frames on this stack (no switch may run then).
pub(crate) fn gc_collecting(_py: Python<'_>) -> bool {
    // SAFETY: with the GIL held (`_py`) the interpreter state is alive and `collecting` is a
    // plain `int` field at the offset the headers give (`offsets.c`); only read.
    unsafe {
        let interp = ffi::PyInterpreterState_Get().cast::<u8>();
        *at::<std::os::raw::c_int>(interp, off::INTERP_GC_COLLECTING) != 0
    }
}

/// `bound`'s value, from whichever thread holds the GIL (`py`): for the read-only queries of a
/// continulet another thread owns (its frames, its saved stack).  Everything any thread does
/// with such a value happens with the GIL held, so no two threads use it at once; the
/// callers clone nothing from it that outlives the call (a context's `Rc` is upgraded and
/// dropped within it), and the frames it leads to are freed only with the continulet itself
/// (an exited thread's contexts stay allocated: `ThreadBound` leaks what is dropped off its
/// thread).
pub(crate) fn read_under_gil<'py, T>(
    bound: &'py tealet::ThreadBound<T>,
    _py: pyo3::Python<'py>,
) -> &'py T {
    // SAFETY: the GIL, held for 'py, serializes every use of the value (see above).
    unsafe { bound.get_unchecked() }
}

#[cfg(not(all(Py_3_11, not(Py_3_12))))]
thread_local! {
    /// Contexts of this thread started by a continulet and not yet destroyed ([`LiveContext`]).
    static LIVE_CONTEXTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts its context in [`LIVE_CONTEXTS`] while it exists (a field of every `OwnedCtx`;
/// 3.11 counts in its one per-thread struct instead, at no extra thread-local lookup).
#[cfg(not(all(Py_3_11, not(Py_3_12))))]
pub(super) struct LiveContext(());

#[cfg(not(all(Py_3_11, not(Py_3_12))))]
impl LiveContext {
    pub(super) fn new() -> LiveContext {
        LIVE_CONTEXTS.with(|n| n.set(n.get() + 1));
        LiveContext(())
    }
}

#[cfg(not(all(Py_3_11, not(Py_3_12))))]
impl Drop for LiveContext {
    fn drop(&mut self) {
        let _ = LIVE_CONTEXTS.try_with(|n| n.set(n.get() - 1));
    }
}

/// How many contexts started by a continulet this thread has (running or suspended).
#[cfg(not(all(Py_3_11, not(Py_3_12))))]
pub(crate) fn live_contexts() -> usize {
    LIVE_CONTEXTS.try_with(std::cell::Cell::get).unwrap_or(0)
}

/// Whether a suspended context was cleared (P7), and what its `PyState`'s drop may then do
/// with its data-stack chunks (3.11+): its frames must not be walked any more (a generator's
/// frame in its chain may be freed).
#[cfg(Py_3_11)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Cleared {
    /// Not cleared: the drop looks for frame objects in its chain.
    No,
    /// Cleared, no frame object reads the chunks: free them.
    FreeChunks,
    /// Cleared, a frame object someone else holds reads them: keep them (leaked).
    KeepChunks,
}

/// The running thread state's dict (`PyThreadState_GetDict`): cleared by CPython, on its
/// thread and with the GIL, when the thread state is (its thread exits).
pub(crate) fn thread_dict(py: Python<'_>) -> Option<Bound<'_, pyo3::types::PyDict>> {
    // SAFETY: GIL held (`py`); the dict is borrowed from the thread state, which keeps it
    // while we take our own reference; it is a dict or null.
    unsafe {
        let d = ffi::PyThreadState_GetDict();
        Bound::from_borrowed_ptr_or_opt(py, d).map(|d| d.cast_into_unchecked())
    }
}

/// Release references taken out of a cleared context (P7).
///
/// # Safety
/// Each pointer is an owned reference, released once, here; the GIL is held.
pub(super) unsafe fn release(refs: Vec<*mut ffi::PyObject>) {
    for p in refs {
        // SAFETY: per the contract.
        unsafe { ffi::Py_DECREF(p) };
    }
}

/// How many owned references the bottom of a context's C stack may record as held while its
/// body runs (R3): the start frame caller's `func`/`args`/`kwds` (`call_start`), or a native
/// tasklet's tasklet, function, arguments and keywords (`scheduler::run_body`).
pub(crate) const START_HELD: usize = 4;
/// Those references (null: none).
pub(crate) type StartHeld = [*mut ffi::PyObject; START_HELD];
/// No reference recorded.
pub(crate) const START_HELD_NONE: StartHeld = [ptr::null_mut(); START_HELD];

/// The running context's record of what the bottom of its stack holds while its body runs
/// (R3: `START_HELD` references), looked up once for a recording and its clearing.
pub(crate) struct StartRecord(*const std::cell::Cell<StartHeld>);

impl StartRecord {
    /// The running context's record.
    pub(crate) fn current() -> StartRecord {
        StartRecord(start_held_cell())
    }

    /// Record `held` (owned by the caller's frame, which runs in the context) or, with
    /// [`START_HELD_NONE`], forget it before those references go.
    pub(crate) fn set(&self, held: StartHeld) {
        if !self.0.is_null() {
            // SAFETY: the cell is in the running context's `OwnedCtx`, which lives until the
            // context finishes — after its body, whose frames hold this record, returned —
            // or is destroyed without resuming (then this record is never used again).
            unsafe { (*self.0).set(held) };
        }
    }
}

/// What the raw `switch` that suspends a context knows about the references it leaves on the
/// stack (R2, R3), handed to the next `save()` of the same thread.
#[derive(Clone, Copy)]
pub(crate) struct Hint {
    /// One past the last argument of the `switch` call (inside the calling frame's value
    /// stack when it was called by a CALL instruction), or null.
    end: *const *mut ffi::PyObject,
    /// The objects the switch plan holds owned references to while the context is suspended.
    held: [*mut ffi::PyObject; 2],
    /// An owned reference the Rust frames of the caller hold across the switch (a native
    /// scheduler step's: the tasklet that blocks), or null.
    extra: *mut ffi::PyObject,
}

impl Hint {
    pub(crate) const NONE: Hint = Hint {
        end: ptr::null(),
        held: [ptr::null_mut(); 2],
        extra: ptr::null_mut(),
    };

    /// A hint for a switch called with its arguments ending at `end`, holding `a` and `b`.
    pub(crate) fn new(
        end: *const *mut ffi::PyObject,
        a: *mut ffi::PyObject,
        b: *mut ffi::PyObject,
    ) -> Hint {
        Hint {
            end,
            held: [a, b],
            extra: ptr::null_mut(),
        }
    }

    /// [`Hint::new`], the caller's Rust frames holding one reference to `extra` too, for as
    /// long as the context is suspended.
    pub(crate) fn with_extra(self, extra: *mut ffi::PyObject) -> Hint {
        Hint { extra, ..self }
    }

    /// A hint that tells only where the arguments of a call end (`set_call_end`).
    fn end_only(end: *const *mut ffi::PyObject) -> Hint {
        Hint { end, ..Hint::NONE }
    }

    /// The end of the switch's arguments, if it lies within `[lo, hi]` (the value stack of
    /// the frame that called it).
    fn end_within(
        &self,
        lo: *mut *mut ffi::PyObject,
        hi: *mut *mut ffi::PyObject,
    ) -> Option<*mut *mut ffi::PyObject> {
        let end = self.end.cast_mut();
        (!end.is_null() && end >= lo && end <= hi).then_some(end)
    }
}

/// What a call at the bottom of a context returned: a new reference, or null with the
/// exception set.  Made only by [`call_start`] and [`call`]; [`Called::into_result`] and
/// [`Called::into_payload`] turn it into a result after the call, in a frame of their own, so
/// that a context's bottom frames, which stay on its stack (and are copied with each of its
/// switches) while its body runs, need no room for one.
#[must_use]
pub(crate) struct Called(*mut ffi::PyObject);

impl Called {
    /// The call's result.
    #[inline(never)]
    pub(crate) fn into_result(self, py: Python<'_>) -> PyResult<pyo3::Py<PyAny>> {
        // SAFETY: made by `call_start` or `call` from a call's result: a new reference, or
        // null with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, self.0) }.map(Bound::unbind)
    }

    /// The call's result as a payload (two words: see `Payload::of`).
    #[inline(never)]
    pub(crate) fn into_payload(self, py: Python<'_>) -> crate::Payload {
        crate::Payload::of(self.into_result(py))
    }
}

/// `f(*args, **kwargs)` (`PyObject_Call`), its result left raw (see [`Called`]).
pub(crate) fn call(
    f: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> Called {
    let kw = kwargs.map_or(ptr::null_mut(), Bound::as_ptr);
    // SAFETY: a live callable, tuple and dict (or null), borrowed for the call.
    Called(unsafe { ffi::PyObject_Call(f.as_ptr(), args.as_ptr(), kw) })
}

/// Call PyPy's hidden `start(c, func, args, kwds)` from the context that is starting, with
/// borrowed arguments (no argument tuple, so the caller's own references are all this frame
/// holds).  While the call runs, the starting context records `func`, `args` and `kwds` as
/// held by its C stack (`refs`, R3): the caller owns one reference to each for the duration.
/// Inlined into its caller: a frame of its own (64 bytes) would stay below the body while it
/// runs, saved with each of the context's switches.
#[inline(always)]
#[allow(clippy::inline_always)] // measured: 64 bytes less saved per suspended continulet
pub(crate) fn call_start(start: &Bound<'_, PyAny>, args: &[&Bound<'_, PyAny>; 4]) -> Called {
    let record = StartRecord::current();
    record.set([
        args[1].as_ptr(),
        args[2].as_ptr(),
        args[3].as_ptr(),
        ptr::null_mut(),
    ]);
    let ptrs = args.map(Bound::as_ptr);
    // SAFETY: live callable and arguments (borrowed from the caller for the call).
    let r = unsafe { ffi::PyObject_Vectorcall(start.as_ptr(), ptrs.as_ptr(), 4, ptr::null_mut()) };
    record.set(START_HELD_NONE);
    Called(r)
}

/// `f(*args)` as a vectorcall of borrowed arguments: no argument tuple, so that nothing but
/// the caller's own references is held while `f` runs (what the collector may be told, R3).
pub(crate) fn call_borrowed<'py>(
    f: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let ptrs: Vec<*mut ffi::PyObject> = args.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: a live callable and arguments borrowed from the caller for the call; a
    // vectorcall returns a new reference or null with an exception set.
    unsafe {
        let r = ffi::PyObject_Vectorcall(f.as_ptr(), ptrs.as_ptr(), ptrs.len(), ptr::null_mut());
        Bound::from_owned_ptr_or_err(f.py(), r)
    }
}

/// `f(*args, **kwargs)` as a vectorcall whose arguments are borrowed from `args` and from the
/// values of `kwargs` (only the tuple of keyword names is made), so that nothing but the
/// caller's own references to `args` and `kwargs` is held while `f` runs (R3).  `kwargs` must
/// be the caller's alone (a copy: nothing can change it during the call).  None when a key is
/// not an exact `str` (the caller then calls `f` the usual way, which reports it).
pub(crate) fn call_kw_borrowed<'py>(
    f: &Bound<'py, PyAny>,
    args: &Bound<'py, pyo3::types::PyTuple>,
    kwargs: &Bound<'py, pyo3::types::PyDict>,
) -> Option<PyResult<Bound<'py, PyAny>>> {
    let py = f.py();
    let mut names: Vec<Bound<'py, PyAny>> = Vec::new();
    let mut ptrs: Vec<*mut ffi::PyObject> = Vec::new();
    // SAFETY: `args` is a live tuple, `kwargs` a live dict nobody else changes during the
    // call (the caller's contract), so the borrowed item and value pointers stay valid for
    // it; keys are checked to be exact `str` before they become keyword names.
    unsafe {
        let nargs = ffi::PyTuple_GET_SIZE(args.as_ptr());
        for i in 0..nargs {
            ptrs.push(ffi::PyTuple_GET_ITEM(args.as_ptr(), i));
        }
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key: *mut ffi::PyObject = ptr::null_mut();
        let mut value: *mut ffi::PyObject = ptr::null_mut();
        while ffi::PyDict_Next(kwargs.as_ptr(), &raw mut pos, &raw mut key, &raw mut value) != 0 {
            if ffi::PyUnicode_CheckExact(key) == 0 {
                return None;
            }
            names.push(Bound::from_borrowed_ptr(py, key));
            ptrs.push(value);
        }
        let kwnames = match pyo3::types::PyTuple::new(py, names) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let r = ffi::PyObject_Vectorcall(
            f.as_ptr(),
            ptrs.as_ptr(),
            usize::try_from(nargs).unwrap_or(0),
            kwnames.as_ptr(),
        );
        Some(Bound::from_owned_ptr_or_err(py, r))
    }
}

// ---- helpers shared by every version file (identical there; field offsets from the build) ----

use offsets as off;
use pyo3::ffi;
use std::ptr;

/// # Safety
/// `base + offset` is a field of type `T` of a live structure.
pub(super) unsafe fn at<T>(base: *mut u8, offset: usize) -> *mut T {
    // SAFETY: per the contract.
    unsafe { base.add(offset).cast::<T>() }
}

pub(super) fn tstate() -> *mut u8 {
    // SAFETY: P4 - called with the GIL held, so there is a current thread state.
    unsafe { ffi::PyThreadState_Get().cast() }
}

/// The address of the calling thread's `PyThreadState`, as an identity only (never
/// dereferenced by the caller).  An exited thread's address may be reused by a new thread:
/// callers pair it with their own "this thread exited" flag.
pub(crate) fn thread_state_id() -> usize {
    tstate() as usize
}

/// The thread's current contextvars context (a new reference), or null.
pub(crate) fn get_context() -> *mut ffi::PyObject {
    // SAFETY: live thread state; `context` is a strong reference owned by it.
    unsafe {
        let c = *at::<*mut ffi::PyObject>(tstate(), off::TS_CONTEXT);
        ffi::Py_XINCREF(c);
        c
    }
}

/// Make `ctx` (a new reference, or null) the thread's current context, as PyContext_Enter
/// does without keeping a "previous" link, and invalidate the ContextVar caches.
pub(crate) fn set_context(ctx: *mut ffi::PyObject) {
    let ts = tstate();
    // SAFETY: live thread state; we move `ctx`'s reference in and release the old one.
    unsafe {
        let old = ptr::replace(at::<*mut ffi::PyObject>(ts, off::TS_CONTEXT), ctx);
        *at::<u64>(ts, off::TS_CONTEXT_VER) += 1;
        ffi::Py_XDECREF(old);
    }
}

/// Bytes of a started context's root data-stack chunk (CPython adds 16 KiB chunks if its frames
/// need more).
#[cfg(Py_3_11)]
pub(super) const ROOT_CHUNK_BYTES: usize = 2048;

/// P8: lend the context being suspended, running in the data-stack `chunk` up to `top`, the
/// end of that chunk, `[top, limit)`, for its saved C stack, if `chunk` is the context's own
/// root chunk.  (Not CPython's 16 KiB chunks, which it maps page by page as they are used:
/// their idle ends cost no memory, and writing there would.)
#[cfg(Py_3_11)]
#[inline]
pub(super) fn lend_chunk_end(
    root_chunk: Option<*mut u8>,
    chunk: *mut u8,
    top: *mut u8,
    limit: *mut u8,
    transit: continuation::Transit,
) {
    if root_chunk == Some(chunk) {
        if let Some(at) = ptr::NonNull::new(top) {
            // SAFETY: P8 - `[top, limit)` is the unused end of the suspended context's root
            // chunk, untouched until the context resumes, freed only after its tealet handle.
            unsafe { transit.lend(at, limit as usize - top as usize) };
        }
    }
}

/// How many free root chunks a thread keeps for its next new contexts (P6).
#[cfg(Py_3_11)]
const ROOT_CHUNK_CACHE: usize = 8;

#[cfg(Py_3_11)]
/// Free root chunks of this thread (P6): a new context takes one instead of a `malloc`.
struct RootChunks(std::cell::RefCell<Vec<*mut u8>>);

#[cfg(Py_3_11)]
impl Drop for RootChunks {
    fn drop(&mut self) {
        for chunk in self.0.get_mut().drain(..) {
            // SAFETY: P6: the chunk is only in this cache; the raw allocator needs no GIL.
            unsafe { ffi::PyMem_RawFree(chunk.cast()) };
        }
    }
}

#[cfg(Py_3_11)]
thread_local! {
    static ROOT_CHUNKS: RootChunks = const { RootChunks(std::cell::RefCell::new(Vec::new())) };
}

#[cfg(Py_3_11)]
/// A root data-stack chunk of [`ROOT_CHUNK_BYTES`] (header not set): from this thread's cache,
/// else newly allocated.  Panics when out of memory.
pub(super) fn alloc_root_chunk() -> *mut u8 {
    let cached = ROOT_CHUNKS
        .try_with(|c| c.0.borrow_mut().pop())
        .ok()
        .flatten();
    if let Some(chunk) = cached {
        return chunk;
    }
    // SAFETY: a plain allocation from the raw domain, freed by `free_chunks` or the cache.
    let chunk = unsafe { ffi::PyMem_RawMalloc(ROOT_CHUNK_BYTES) }.cast::<u8>();
    assert!(
        !chunk.is_null(),
        "out of memory for a continulet's data stack"
    );
    chunk
}

#[cfg(Py_3_11)]
/// Free a chain of data-stack chunks: CPython's own ones with its arena allocator (as it
/// allocated them), our root chunk back to this thread's cache or with `PyMem_RawFree` (P6).
///
/// # Safety
/// `chunk` heads a chain that nothing uses any more.
pub(super) unsafe fn free_chunks(mut chunk: *mut u8) {
    // SAFETY: per the contract; `PyObject_GetArenaAllocator` fills the allocator CPython uses
    // for data-stack chunks (`_PyObject_VirtualAlloc`).
    unsafe {
        while !chunk.is_null() {
            let prev = *at::<*mut u8>(chunk, off::CHUNK_PREVIOUS);
            if prev.is_null() {
                let kept = ROOT_CHUNKS
                    .try_with(|c| {
                        let mut c = c.0.borrow_mut();
                        let room = c.len() < ROOT_CHUNK_CACHE;
                        if room {
                            c.push(chunk);
                        }
                        room
                    })
                    .unwrap_or(false);
                if !kept {
                    ffi::PyMem_RawFree(chunk.cast());
                }
            } else {
                let mut alloc = std::mem::zeroed::<ffi::PyObjectArenaAllocator>();
                ffi::PyObject_GetArenaAllocator(&raw mut alloc);
                if let Some(free) = alloc.free {
                    free(
                        alloc.ctx,
                        chunk.cast(),
                        *at::<usize>(chunk, off::CHUNK_SIZE),
                    );
                }
            }
            chunk = prev;
        }
    }
}
