//! CPython 3.11: `cframe` (with `use_tracing`), `recursion_remaining/limit`, `exc_info` +
//! `exc_state`, `trash_delete_nesting/later`, `datastack_chunk/top/limit`.
//! All interpreter frames of 3.11 live in data-stack chunks on the heap (none on the C stack),
//! so a suspended context's frames are readable in place.

use super::offsets as off;
use super::refs::{clear_context, visit_frames, visit_stack_held, FrameChain, StackRecords};
use super::{alloc_root_chunk, at, free_chunks, tstate, ROOT_CHUNK_BYTES};
use super::{Hint, StartHeld, START_HELD_NONE};
use pyo3::ffi;
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::ptr;
use std::rc::{Rc, Weak};

const _: () = assert!(
    off::PY_VERSION_HEX >> 16 == 0x030B,
    "py311.rs built against another CPython"
);

const CFRAME_WORDS: usize = off::SIZEOF_CFRAME.div_ceil(8);

/// What a context started by a continulet owns (see the module docs of `pystate`).
pub(crate) struct OwnedCtx {
    /// Owned storage the thread state's `cframe` points at while this context runs.
    /// (Inline: the `Rc` never moves it, and one allocation less per context.)
    cframe: std::cell::UnsafeCell<[u64; CFRAME_WORDS]>,
    root_chunk: *mut u8,
    /// Top interpreter frame when last suspended (null while running or before any frame).
    suspended_top: Cell<*mut u8>,
    /// The continulet whose body this context runs (`continuation`'s start closure holds a
    /// reference to it on this context's stack, R3).
    owner: Cell<*mut ffi::PyObject>,
    /// Whether the collector may see what this context holds (`refs`), so that its holder's
    /// finalizer unwinds it: a Python-body continulet no layer above looks after.
    unwindable: Cell<bool>,
    /// What the start frame's caller holds while the body runs (`call_start`, R3).
    start_held: Cell<StartHeld>,
    /// Where the arguments end of a native method call the body is in (null: none), while
    /// it calls back into Python: the calling frame's stack depth (R2, `set_call_end`).
    call_end: Cell<super::fastcall::ArgsEnd>,
    /// What the switch that last suspended it told (R2, R3; valid while suspended).
    hint: Cell<Hint>,
    /// Whether it was cleared (P7).
    cleared: Cell<super::Cleared>,
}

/// Resources of a context: shared with its continulet so that `_get_frame()` can find them.
pub(crate) type Owned = Rc<OwnedCtx>;
/// The continulet's weak view of its own context.
pub(crate) type OwnedRef = Weak<OwnedCtx>;

/// This thread's switching bookkeeping, in one thread-local so that a switch pays for one
/// thread-local lookup per step (extension modules use the slow general-dynamic TLS model).
struct PerThread {
    /// Resources of the running context (None for the thread's original context).
    current_owned: RefCell<Option<Owned>>,
    /// `use_tracing` of the context that switched away, carried over by `resumed()`.
    use_tracing: Cell<u8>,
    /// The state of the context that is switching away, between `save_parked` (before the
    /// stack switch) and `take_parked` (on the resumed side, right after it).
    parked: RefCell<Option<PyState>>,
    /// What the raw `switch` under way told about the references it leaves on the stack.
    hint: Cell<Hint>,
    /// The cframe `park_and_restore` reinstated: the thread state's again on the resumed
    /// side of that switch (no Python code runs in between), so `resumed_take_parked` need
    /// not ask for the thread state.
    resumed_cframe: Cell<*mut u8>,
    /// Contexts of this thread started by a continulet and not yet finished or destroyed
    /// (`live_contexts`, P7): counted in `enter_new`, `leave_finished` and `PyState`'s drop.
    live: Cell<usize>,
}

thread_local! {
    static TLS: PerThread = const {
        PerThread {
            current_owned: RefCell::new(None),
            use_tracing: Cell::new(0),
            parked: RefCell::new(None),
            hint: Cell::new(Hint::NONE),
            resumed_cframe: Cell::new(ptr::null_mut()),
            live: Cell::new(0),
        }
    };
}

/// How many contexts started by a continulet this thread has (running or suspended).
pub(crate) fn live_contexts() -> usize {
    TLS.try_with(|t| t.live.get()).unwrap_or(0)
}

/// `save()` into the parking place (see `continuation::Host::save_parked`).
pub(crate) fn save_parked() {
    TLS.with(|t| {
        let s = save_in(t, tstate());
        let old = t.parked.borrow_mut().replace(s);
        debug_assert!(old.is_none(), "a parked state was never taken");
    });
}

/// Take the parked state (on the resumed side of a switch).
pub(crate) fn take_parked() -> PyState {
    TLS.with(|t| t.parked.borrow_mut().take())
        .expect("a state was parked before the switch")
}

/// `save_parked()` then `restore(s)`, with one thread-local lookup, lending the context
/// switching away the end of its root chunk for the switch under way (P8).
pub(crate) fn park_and_restore(s: PyState, transit: continuation::Transit) {
    TLS.with(|t| {
        let ts = tstate();
        let parked = save_in(t, ts);
        super::lend_chunk_end(
            parked.owned.as_ref().map(|o| o.root_chunk),
            parked.chunk,
            parked.top,
            parked.limit,
            transit,
        );
        let old = t.parked.borrow_mut().replace(parked);
        debug_assert!(old.is_none(), "a parked state was never taken");
        t.resumed_cframe.set(s.cframe);
        restore_in(t, ts, s);
    });
}

/// `resumed()` then `take_parked()`, with one thread-local lookup.
#[inline]
pub(crate) fn resumed_take_parked() -> PyState {
    TLS.with(|t| {
        set_use_tracing(t, t.resumed_cframe.get());
        t.parked.borrow_mut().take()
    })
    .expect("a state was parked before the switch")
}

/// The saved interpreter state of a suspended context.
pub(crate) struct PyState {
    cframe: *mut u8,
    current_frame: *mut u8,
    recursion_depth: c_int,
    exc_info: *mut u8,
    exc_value: *mut ffi::PyObject,
    exc_previous: *mut u8,
    trash_nesting: c_int,
    trash_later: *mut ffi::PyObject,
    chunk: *mut u8,
    top: *mut u8,
    limit: *mut u8,
    owned: Option<Owned>,
}

/// Capture the running context's state (before it is suspended).
pub(crate) fn save() -> PyState {
    TLS.with(|t| save_in(t, tstate()))
}

#[inline(always)] // (on every switch; LLVM stopped inlining it on its own)
#[allow(clippy::inline_always)]
fn save_in(t: &PerThread, ts: *mut u8) -> PyState {
    // SAFETY: `ts` is the live thread state; every offset comes from the real 3.11 headers.
    unsafe {
        let cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        let current_frame = *at::<*mut u8>(cframe, off::CFRAME_CURRENT_FRAME);
        t.use_tracing
            .set(*at::<u8>(cframe, off::CFRAME_USE_TRACING));
        let limit = *at::<c_int>(ts, off::TS_RECURSION_LIMIT);
        let remaining = *at::<c_int>(ts, off::TS_RECURSION_REMAINING);
        let exc_state = ts.add(off::TS_EXC_STATE);
        let exc_info = *at::<*mut u8>(ts, off::TS_EXC_INFO);
        // P1: the reference moves into the saved state.
        let exc_value = ptr::replace(
            at::<*mut ffi::PyObject>(exc_state, off::EXC_ITEM_VALUE),
            ptr::null_mut(),
        );
        let owned = t.current_owned.borrow_mut().take();
        let hint = t.hint.replace(Hint::NONE);
        if let Some(o) = &owned {
            o.suspended_top.set(current_frame);
            o.hint.set(hint);
        }
        PyState {
            cframe,
            current_frame,
            recursion_depth: limit - remaining,
            exc_info: if exc_info == exc_state {
                ptr::null_mut()
            } else {
                exc_info
            },
            exc_value,
            exc_previous: *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS),
            trash_nesting: *at::<c_int>(ts, off::TS_TRASH_DELETE_NESTING),
            trash_later: *at::<*mut ffi::PyObject>(ts, off::TS_TRASH_DELETE_LATER),
            chunk: *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK),
            top: *at::<*mut u8>(ts, off::TS_DATASTACK_TOP),
            limit: *at::<*mut u8>(ts, off::TS_DATASTACK_LIMIT),
            owned,
        }
    }
}

/// Reinstate a saved state (before the stack switch: P2, nothing is dereferenced).
pub(crate) fn restore(s: PyState) {
    TLS.with(|t| restore_in(t, tstate(), s));
}

#[inline(always)] // (on every switch: a call would move the whole state by value)
#[allow(clippy::inline_always)]
fn restore_in(t: &PerThread, ts: *mut u8, mut s: PyState) {
    // SAFETY: `ts` is the live thread state; offsets from the real headers; only pointer
    // values are stored (P2).
    unsafe {
        *at::<*mut u8>(ts, off::TS_CFRAME) = s.cframe;
        let limit = *at::<c_int>(ts, off::TS_RECURSION_LIMIT);
        *at::<c_int>(ts, off::TS_RECURSION_REMAINING) = limit - s.recursion_depth;
        let exc_state = ts.add(off::TS_EXC_STATE);
        let old = ptr::replace(
            at::<*mut ffi::PyObject>(exc_state, off::EXC_ITEM_VALUE),
            s.exc_value,
        );
        debug_assert!(old.is_null(), "exc_state was saved before");
        s.exc_value = ptr::null_mut();
        *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS) = s.exc_previous;
        *at::<*mut u8>(ts, off::TS_EXC_INFO) = if s.exc_info.is_null() {
            exc_state
        } else {
            s.exc_info
        };
        *at::<c_int>(ts, off::TS_TRASH_DELETE_NESTING) = s.trash_nesting;
        *at::<*mut ffi::PyObject>(ts, off::TS_TRASH_DELETE_LATER) = s.trash_later;
        *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK) = s.chunk;
        *at::<*mut u8>(ts, off::TS_DATASTACK_TOP) = s.top;
        *at::<*mut u8>(ts, off::TS_DATASTACK_LIMIT) = s.limit;
        s.chunk = ptr::null_mut();
        let owned = s.owned.take();
        if let Some(o) = &owned {
            o.suspended_top.set(ptr::null_mut());
        }
        *t.current_owned.borrow_mut() = owned;
        // Everything it owned moved into the thread state: nothing left for its `Drop`.
        std::mem::forget(s);
    }
}

/// After the stack switch, on the resumed side: carry `use_tracing` over from the context we
/// came from, so `sys.settrace`/`setprofile` keep working (3.11 caches it in the cframe).
pub(crate) fn resumed() {
    TLS.with(resumed_in);
}

fn resumed_in(t: &PerThread) {
    // SAFETY: live thread state.
    set_use_tracing(t, unsafe { *at::<*mut u8>(tstate(), off::TS_CFRAME) });
}

/// `resumed()` with the thread state's cframe in hand.
#[inline]
fn set_use_tracing(t: &PerThread, cframe: *mut u8) {
    // SAFETY: the stack is back in place, so the thread state's cframe is valid again.
    unsafe { *at::<u8>(cframe, off::CFRAME_USE_TRACING) = t.use_tracing.get() };
}

/// Give the interpreter a fresh state for a starting context: its own cframe (no current
/// frame, so its bottom frame's `f_back` is None), a small root data-stack chunk, no handled
/// exception, an empty trashcan.  The recursion depth continues from the spawn point (the C
/// stack does too).  Returns the context's resources, for its continulet to watch.
pub(crate) fn enter_new(owner_obj: *mut ffi::PyObject, unwindable: bool) -> OwnedRef {
    let ts = tstate();
    // SAFETY: live thread state; the new cframe and chunk are ours, laid out as the headers
    // say; the previous state was moved out by `save()` (P1).
    unsafe {
        let old_cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        let use_tracing = *at::<u8>(old_cframe, off::CFRAME_USE_TRACING);
        let chunk = alloc_root_chunk();
        let owned = Rc::new(OwnedCtx {
            cframe: std::cell::UnsafeCell::new([0; CFRAME_WORDS]),
            root_chunk: chunk,
            suspended_top: Cell::new(ptr::null_mut()),
            owner: Cell::new(owner_obj),
            unwindable: Cell::new(unwindable),
            start_held: Cell::new(START_HELD_NONE),
            call_end: Cell::new(ptr::null()),
            hint: Cell::new(Hint::NONE),
            cleared: Cell::new(super::Cleared::No),
        });
        let cf = owned.cframe.get().cast::<u8>();
        *at::<u8>(cf, off::CFRAME_USE_TRACING) = use_tracing;
        *at::<*mut u8>(cf, off::CFRAME_CURRENT_FRAME) = ptr::null_mut();
        *at::<*mut u8>(cf, off::CFRAME_PREVIOUS) = ts.add(off::TS_ROOT_CFRAME);
        *at::<*mut u8>(chunk, off::CHUNK_PREVIOUS) = ptr::null_mut();
        *at::<usize>(chunk, off::CHUNK_SIZE) = ROOT_CHUNK_BYTES;
        *at::<usize>(chunk, off::CHUNK_TOP) = 0;
        *at::<*mut u8>(ts, off::TS_CFRAME) = cf;
        *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK) = chunk;
        // As CPython does for a root chunk: skip data[0], so the root is never popped.
        *at::<*mut u8>(ts, off::TS_DATASTACK_TOP) = chunk.add(off::CHUNK_DATA + 8);
        *at::<*mut u8>(ts, off::TS_DATASTACK_LIMIT) = chunk.add(ROOT_CHUNK_BYTES);
        let exc_state = ts.add(off::TS_EXC_STATE);
        *at::<*mut ffi::PyObject>(exc_state, off::EXC_ITEM_VALUE) = ptr::null_mut();
        *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS) = ptr::null_mut();
        *at::<*mut u8>(ts, off::TS_EXC_INFO) = exc_state;
        *at::<c_int>(ts, off::TS_TRASH_DELETE_NESTING) = 0;
        *at::<*mut ffi::PyObject>(ts, off::TS_TRASH_DELETE_LATER) = ptr::null_mut();
        let weak = Rc::downgrade(&owned);
        TLS.with(|t| {
            t.live.set(t.live.get() + 1);
            *t.current_owned.borrow_mut() = Some(owned);
        });
        weak
    }
}

/// The running context finished (all its frames returned): free its data stack and cframe
/// (P3).  The caller reinstates the next context's state right after; its `use_tracing`
/// is carried over by `resumed()`, as after any switch (a hook set by the finishing context
/// stays on).
pub(crate) fn leave_finished() {
    let ts = tstate();
    // SAFETY: live thread state; the chunks in it belong to the finishing context, and its
    // cframe is still in place.
    unsafe {
        let cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        let use_tracing = *at::<u8>(cframe, off::CFRAME_USE_TRACING);
        TLS.with(|t| t.use_tracing.set(use_tracing));
        let chunk = *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK);
        free_chunks(chunk);
        *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK) = ptr::null_mut();
        *at::<*mut u8>(ts, off::TS_DATASTACK_TOP) = ptr::null_mut();
        *at::<*mut u8>(ts, off::TS_DATASTACK_LIMIT) = ptr::null_mut();
        let exc_state = ts.add(off::TS_EXC_STATE);
        let v = ptr::replace(
            at::<*mut ffi::PyObject>(exc_state, off::EXC_ITEM_VALUE),
            ptr::null_mut(),
        );
        ffi::Py_XDECREF(v);
    }
    TLS.with(|t| {
        t.live.set(t.live.get().saturating_sub(1));
        drop(t.current_owned.borrow_mut().take());
    });
}

impl Drop for PyState {
    fn drop(&mut self) {
        // A suspended context destroyed without resuming (P1, P3): one live context less.
        // Its frames are abandoned (or were cleared, P7); their data-stack chunks are kept
        // (leaked) if any frame has a frame object that may still be referenced, since
        // freeing them would leave that object dangling.
        if self.owned.is_some() {
            let _ = TLS.try_with(|t| t.live.set(t.live.get().saturating_sub(1)));
        }
        // SAFETY: GIL held (P4); the state is not installed in the thread state.
        unsafe {
            ffi::Py_XDECREF(self.exc_value);
            let free = match self.owned.as_ref().map(|o| o.cleared.get()) {
                Some(super::Cleared::No) => !frames_have_objects(self.current_frame),
                Some(super::Cleared::FreeChunks) => true,
                None | Some(super::Cleared::KeepChunks) => false,
            };
            if free && !self.chunk.is_null() {
                free_chunks(self.chunk);
            }
        }
    }
}

/// Whether any frame of the chain starting at `iframe` has a frame object.
///
/// # Safety
/// `iframe` heads a chain of live interpreter frames (3.11: on the heap).
unsafe fn frames_have_objects(mut iframe: *mut u8) -> bool {
    // SAFETY: per the contract.
    unsafe {
        while !iframe.is_null() {
            if !(*at::<*mut ffi::PyObject>(iframe, off::IFRAME_FRAME_OBJ)).is_null() {
                return true;
            }
            iframe = *at::<*mut u8>(iframe, off::IFRAME_PREVIOUS);
        }
    }
    false
}

/// A frame object for interpreter frame `iframe` of a context that is not running, made the
/// way `PyEval_GetFrame` makes one for the running frame (with the GC off, so no finalizer
/// can run while the thread state points at a foreign frame).
///
/// # Safety
/// `iframe` is a live interpreter frame of a suspended context of this thread (3.11: in a
/// heap chunk that stays allocated while the context exists).
unsafe fn frame_object_of(iframe: *mut u8) -> *mut ffi::PyObject {
    // SAFETY: per the contract; the swap is undone before returning.
    unsafe {
        let existing = *at::<*mut ffi::PyObject>(iframe, off::IFRAME_FRAME_OBJ);
        if !existing.is_null() {
            ffi::Py_INCREF(existing);
            return existing;
        }
        let ts = tstate();
        let cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        let cur = at::<*mut u8>(cframe, off::CFRAME_CURRENT_FRAME);
        let saved = *cur;
        let gc_was_enabled = ffi::PyGC_Disable();
        *cur = iframe;
        let f = ffi::PyEval_GetFrame();
        *cur = saved;
        if gc_was_enabled != 0 {
            ffi::PyGC_Enable();
        }
        let f = f.cast::<ffi::PyObject>();
        ffi::Py_XINCREF(f);
        f
    }
}

/// The top frame object of a suspended state (for greenlet's `gr_frame`), or null.
pub(crate) fn top_frame(s: &PyState) -> *mut ffi::PyObject {
    if s.current_frame.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `s` is a suspended context's state, its frames are alive in its chunks.
    unsafe { frame_object_of(s.current_frame) }
}

/// The bottom frame object of the context `owned` (the continulet's own), or null: walks from
/// its top frame (live if it is running, saved if suspended) to the first one.
pub(crate) fn bottom_frame(owned: &OwnedRef) -> *mut ffi::PyObject {
    let Some(o) = owned.upgrade() else {
        return ptr::null_mut();
    };
    let running = TLS.with(|t| {
        t.current_owned
            .borrow()
            .as_ref()
            .is_some_and(|cur| Rc::ptr_eq(cur, &o))
    });
    // SAFETY: the context is alive (`upgrade` succeeded), so its frames are in its chunks.
    unsafe {
        let mut iframe = if running {
            let cframe = *at::<*mut u8>(tstate(), off::TS_CFRAME);
            *at::<*mut u8>(cframe, off::CFRAME_CURRENT_FRAME)
        } else {
            o.suspended_top.get()
        };
        if iframe.is_null() {
            return ptr::null_mut();
        }
        loop {
            let prev = *at::<*mut u8>(iframe, off::IFRAME_PREVIOUS);
            if prev.is_null() {
                break;
            }
            iframe = prev;
        }
        frame_object_of(iframe)
    }
}

impl std::fmt::Debug for OwnedCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedCtx")
            .field("root_chunk", &self.root_chunk)
            .finish_non_exhaustive()
    }
}

/// Tell the next `save()` of this thread what the switch under way leaves on the stack.
pub(crate) fn hint_switch(h: Hint) {
    TLS.with(|t| t.hint.set(h));
}

/// Forget an unused hint (the switch did not happen).
pub(crate) fn clear_hint() {
    TLS.with(|t| t.hint.set(Hint::NONE));
}

/// Whether the suspended context `s` may be shown to the collector and unwound.
pub(crate) fn unwindable(s: &PyState) -> bool {
    s.owned.as_ref().is_some_and(|o| o.unwindable.get())
}

/// Never show the context `own` to the collector (a layer above kills it itself).
pub(crate) fn keep_from_collector(own: &OwnedRef) {
    if let Some(o) = own.upgrade() {
        o.unwindable.set(false);
    }
}

/// Call `f` on every reference the suspended, unwindable context `s` holds (module `refs`).
pub(crate) fn visit_refs<E>(
    s: &PyState,
    f: &mut dyn FnMut(&pyo3::Py<pyo3::PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    let Some(o) = s.owned.as_ref().filter(|o| o.unwindable.get()) else {
        return Ok(());
    };
    // SAFETY: R3 - the owner is alive while its context exists; the frames are those of a
    // suspended 3.11 context (all on the heap), `is_entry` a plain field of each of them.
    unsafe {
        let hint = o.hint.get();
        visit_stack_held(&o.owner, &o.start_held, &hint, f)?;
        let inlined = |callee: *mut u8| !*at::<bool>(callee, off::IFRAME_IS_ENTRY);
        visit_frames(&frame_chain(s, o, &hint, &inlined), f)
    }
}

/// The frame chain of the suspended context `s` (its resources `o`) as `refs` reads it.
fn frame_chain<'a>(
    s: &PyState,
    o: &OwnedCtx,
    hint: &'a Hint,
    callee_inlined: &'a dyn Fn(*mut u8) -> bool,
) -> FrameChain<'a> {
    FrameChain {
        innermost: s.current_frame,
        chunk: s.chunk,
        top: s.top,
        hint,
        call_end: o.call_end.get(),
        callee_inlined,
    }
}

/// Give up everything the suspended context `s` holds that `refs` vouches for (P7): it will
/// never run again.  Its chunks are freed when `s` is dropped, unless a frame object someone
/// else holds still reads them.
pub(crate) fn clear_suspended(s: &PyState) {
    let Some(o) = s.owned.as_ref() else {
        return;
    };
    o.unwindable.set(false);
    let hint = o.hint.get();
    let inlined = |callee: *mut u8| {
        // SAFETY: `callee` is a frame of the chain, readable (`walk_frames`).
        unsafe { !*at::<bool>(callee, off::IFRAME_IS_ENTRY) }
    };
    let records = StackRecords {
        owner: &o.owner,
        start_held: &o.start_held,
        hint: &o.hint,
        call_end: &o.call_end,
    };
    // SAFETY: the frames are those of a suspended 3.11 context (all on the heap) taken out
    // of its continulet, so nothing resumes it (P7).
    let verdict = unsafe { clear_context(&frame_chain(s, o, &hint, &inlined), &records) };
    o.cleared.set(verdict);
}

/// Record that the running context's innermost Python frame waits in a native method call
/// whose arguments end at `end` (null: no longer); returns the previous record (R2).
pub(crate) fn set_call_end(end: super::fastcall::ArgsEnd) -> super::fastcall::ArgsEnd {
    TLS.with(|t| {
        t.current_owned
            .borrow()
            .as_ref()
            .map_or(ptr::null(), |o| o.call_end.replace(end))
    })
}

/// Where the running context records what the bottom of its stack holds (R3; null: the
/// thread's original context), for a `StartRecord`.
pub(crate) fn start_held_cell() -> *const Cell<StartHeld> {
    TLS.with(|t| {
        t.current_owned
            .borrow()
            .as_ref()
            .map_or(ptr::null(), |o| &raw const o.start_held)
    })
}
