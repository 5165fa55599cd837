//! CPython 3.10: `frame` (the top `PyFrameObject`, borrowed), `recursion_depth`, `cframe`
//! (`CFrame{int use_tracing, previous}`), `exc_info` + `exc_state` (type, value, traceback),
//! `trash_delete_nesting/later`.  There is no data stack: every frame is a heap
//! `PyFrameObject` chained by `f_back` and kept alive by the C stack of the context running
//! it, so a suspended context's frames are readable in place for as long as it exists.
//! The collector sees what they hold by `refs` R4 (frame objects, reference counts checked).

use super::offsets as off;
use super::refs::{clear_frames_310, take_stack_held, visit_frames_310, visit_stack_held};
use super::{at, tstate};
use super::{Hint, StartHeld, START_HELD_NONE};
use pyo3::ffi;
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::ptr;
use std::rc::{Rc, Weak};

const _: () = assert!(
    off::PY_VERSION_HEX >> 16 == 0x030A,
    "py310.rs built against another CPython"
);
const _: () = assert!(
    off::SIZEOF_CFRAME_USE_TRACING == std::mem::size_of::<c_int>(),
    "CFrame.use_tracing is an int on 3.10"
);

const CFRAME_WORDS: usize = off::SIZEOF_CFRAME.div_ceil(8);

/// The three owned references of a `_PyErr_StackItem` on 3.10.
const EXC_FIELDS: [usize; 3] = [
    off::EXC_ITEM_TYPE,
    off::EXC_ITEM_VALUE,
    off::EXC_ITEM_TRACEBACK,
];

/// What a context started by a continulet owns (see the module docs of `pystate`).
pub(crate) struct OwnedCtx {
    /// Owned storage the thread state's `cframe` points at while this context runs.
    _cframe: Box<[u64; CFRAME_WORDS]>,
    /// Top frame when last suspended (null while running or before any frame).
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
    /// Counts it among this thread's live contexts (P7).
    _live: super::LiveContext,
}

/// Resources of a context: shared with its continulet so that `_get_frame()` can find them.
pub(crate) type Owned = Rc<OwnedCtx>;
/// The continulet's weak view of its own context.
pub(crate) type OwnedRef = Weak<OwnedCtx>;

thread_local! {
    static CURRENT_OWNED: RefCell<Option<Owned>> = const { RefCell::new(None) };
    static USE_TRACING: Cell<c_int> = const { Cell::new(0) };
    /// What the raw `switch` under way told about the references it leaves on the stack.
    static HINT: Cell<Hint> = const { Cell::new(Hint::NONE) };
}

/// The saved interpreter state of a suspended context.
pub(crate) struct PyState {
    cframe: *mut u8,
    /// The top frame (borrowed, as in the thread state; kept alive by the context's stack).
    frame: *mut u8,
    recursion_depth: c_int,
    exc_info: *mut u8,
    /// `exc_type`, `exc_value`, `exc_traceback` of the context's own `exc_state` (owned).
    exc: [*mut ffi::PyObject; 3],
    exc_previous: *mut u8,
    trash_nesting: c_int,
    trash_later: *mut ffi::PyObject,
    owned: Option<Owned>,
}

impl PyState {
    /// P8 has nothing to lend on 3.10: its frames are heap objects, with no data stack.
    #[allow(clippy::unused_self)]
    pub(crate) fn lend_chunk_end(&self, _transit: continuation::Transit) {}
}

/// Capture the running context's state (before it is suspended).
pub(crate) fn save() -> PyState {
    let ts = tstate();
    // SAFETY: `ts` is the live thread state; every offset comes from the real 3.10 headers.
    // The cframe is read only through the thread state of the running context (its stack is
    // in place).
    unsafe {
        let cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        USE_TRACING.with(|u| u.set(*at::<c_int>(cframe, off::CFRAME_USE_TRACING)));
        let frame = *at::<*mut u8>(ts, off::TS_FRAME);
        let exc_state = ts.add(off::TS_EXC_STATE);
        let exc_info = *at::<*mut u8>(ts, off::TS_EXC_INFO);
        // P1: the references move into the saved state.
        let exc = EXC_FIELDS
            .map(|o| ptr::replace(at::<*mut ffi::PyObject>(exc_state, o), ptr::null_mut()));
        let owned = CURRENT_OWNED.with(|c| c.borrow_mut().take());
        let hint = HINT.with(|h| h.replace(Hint::NONE));
        if let Some(o) = &owned {
            o.suspended_top.set(frame);
            o.hint.set(hint);
        }
        PyState {
            cframe,
            frame,
            recursion_depth: *at::<c_int>(ts, off::TS_RECURSION_DEPTH),
            exc_info: if exc_info == exc_state {
                ptr::null_mut()
            } else {
                exc_info
            },
            exc,
            exc_previous: *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS),
            trash_nesting: *at::<c_int>(ts, off::TS_TRASH_DELETE_NESTING),
            trash_later: *at::<*mut ffi::PyObject>(ts, off::TS_TRASH_DELETE_LATER),
            owned,
        }
    }
}

/// Reinstate a saved state (before the stack switch: P2, nothing is dereferenced).
pub(crate) fn restore(mut s: PyState) {
    let ts = tstate();
    // SAFETY: `ts` is the live thread state; offsets from the real headers; only pointer
    // values are stored (P2).
    unsafe {
        *at::<*mut u8>(ts, off::TS_CFRAME) = s.cframe;
        *at::<*mut u8>(ts, off::TS_FRAME) = s.frame;
        *at::<c_int>(ts, off::TS_RECURSION_DEPTH) = s.recursion_depth;
        let exc_state = ts.add(off::TS_EXC_STATE);
        for (o, v) in EXC_FIELDS.iter().zip(s.exc.iter_mut()) {
            let old = ptr::replace(at::<*mut ffi::PyObject>(exc_state, *o), *v);
            debug_assert!(old.is_null(), "exc_state was saved before");
            *v = ptr::null_mut();
        }
        *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS) = s.exc_previous;
        *at::<*mut u8>(ts, off::TS_EXC_INFO) = if s.exc_info.is_null() {
            exc_state
        } else {
            s.exc_info
        };
        *at::<c_int>(ts, off::TS_TRASH_DELETE_NESTING) = s.trash_nesting;
        *at::<*mut ffi::PyObject>(ts, off::TS_TRASH_DELETE_LATER) = s.trash_later;
        let owned = s.owned.take();
        if let Some(o) = &owned {
            o.suspended_top.set(ptr::null_mut());
        }
        CURRENT_OWNED.with(|c| *c.borrow_mut() = owned);
    }
}

/// After the stack switch, on the resumed side: carry `use_tracing` over from the context we
/// came from, so `sys.settrace`/`setprofile` keep working (3.10 caches it in the cframe,
/// greenlet#256).
pub(crate) fn resumed() {
    let ts = tstate();
    // SAFETY: the stack is back in place, so the thread state's cframe is valid again.
    unsafe {
        let cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        *at::<c_int>(cframe, off::CFRAME_USE_TRACING) = USE_TRACING.with(Cell::get);
    }
}

/// Give the interpreter a fresh state for a starting context: its own cframe, no current
/// frame (so its bottom frame's `f_back` is None), no handled exception, an empty trashcan.
/// The recursion depth continues from the spawn point (the C stack does too).  Returns the
/// context's resources, for its continulet to watch.
pub(crate) fn enter_new(owner_obj: *mut ffi::PyObject, unwindable: bool) -> OwnedRef {
    let ts = tstate();
    // SAFETY: live thread state; the new cframe is ours, laid out as the headers say; the
    // previous state was moved out by `save()` (P1).
    unsafe {
        let old_cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        let use_tracing = *at::<c_int>(old_cframe, off::CFRAME_USE_TRACING);
        let mut cframe = Box::new([0u64; CFRAME_WORDS]);
        let cf = cframe.as_mut_ptr().cast::<u8>();
        *at::<c_int>(cf, off::CFRAME_USE_TRACING) = use_tracing;
        *at::<*mut u8>(cf, off::CFRAME_PREVIOUS) = ts.add(off::TS_ROOT_CFRAME);
        *at::<*mut u8>(ts, off::TS_CFRAME) = cf;
        *at::<*mut u8>(ts, off::TS_FRAME) = ptr::null_mut();
        let exc_state = ts.add(off::TS_EXC_STATE);
        for o in EXC_FIELDS {
            *at::<*mut ffi::PyObject>(exc_state, o) = ptr::null_mut();
        }
        *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS) = ptr::null_mut();
        *at::<*mut u8>(ts, off::TS_EXC_INFO) = exc_state;
        *at::<c_int>(ts, off::TS_TRASH_DELETE_NESTING) = 0;
        *at::<*mut ffi::PyObject>(ts, off::TS_TRASH_DELETE_LATER) = ptr::null_mut();
        let owned = Rc::new(OwnedCtx {
            _cframe: cframe,
            suspended_top: Cell::new(ptr::null_mut()),
            owner: Cell::new(owner_obj),
            unwindable: Cell::new(unwindable),
            start_held: Cell::new(START_HELD_NONE),
            call_end: Cell::new(ptr::null()),
            hint: Cell::new(Hint::NONE),
            _live: super::LiveContext::new(),
        });
        let weak = Rc::downgrade(&owned);
        CURRENT_OWNED.with(|c| *c.borrow_mut() = Some(owned));
        weak
    }
}

/// The running context finished (all its frames returned): release its handled exception and
/// its cframe (P3: 3.10 has no data stack).  The caller reinstates the next context's state
/// right after; its `use_tracing` is carried over by `resumed()`, as after any switch (a hook
/// set by the finishing context stays on).
pub(crate) fn leave_finished() {
    let ts = tstate();
    // SAFETY: live thread state; the exception references in it belong to the finishing
    // context, and its cframe is still in place (freed with `CURRENT_OWNED` below).
    unsafe {
        let cframe = *at::<*mut u8>(ts, off::TS_CFRAME);
        USE_TRACING.with(|u| u.set(*at::<c_int>(cframe, off::CFRAME_USE_TRACING)));
        let exc_state = ts.add(off::TS_EXC_STATE);
        for o in EXC_FIELDS {
            let v = ptr::replace(at::<*mut ffi::PyObject>(exc_state, o), ptr::null_mut());
            ffi::Py_XDECREF(v);
        }
    }
    CURRENT_OWNED.with(|c| drop(c.borrow_mut().take()));
}

impl Drop for PyState {
    fn drop(&mut self) {
        // A suspended context destroyed without resuming (P1).  Its frames are abandoned
        // (leaked with its stack, never freed under a frame object's feet).
        // SAFETY: GIL held (P4); the state is not installed in the thread state.
        unsafe {
            for v in self.exc {
                ffi::Py_XDECREF(v);
            }
        }
    }
}

/// The top frame object of a suspended state (for greenlet's `gr_frame`), or null.
pub(crate) fn top_frame(s: &PyState) -> *mut ffi::PyObject {
    let f = s.frame.cast::<ffi::PyObject>();
    // SAFETY: `s` is a suspended context's state; its frames are kept alive by its stack.
    unsafe { ffi::Py_XINCREF(f) };
    f
}

/// The bottom frame object of the context `owned` (the continulet's own), or null: walks
/// `f_back` from its top frame (live if it is running, saved if suspended) to the first one.
pub(crate) fn bottom_frame(owned: &OwnedRef) -> *mut ffi::PyObject {
    let Some(o) = owned.upgrade() else {
        return ptr::null_mut();
    };
    let running =
        CURRENT_OWNED.with(|c| c.borrow().as_ref().is_some_and(|cur| Rc::ptr_eq(cur, &o)));
    // SAFETY: the context is alive (`upgrade` succeeded), so its frames are alive; a frame
    // holds a strong reference to its `f_back`.
    unsafe {
        let mut frame = if running {
            *at::<*mut u8>(tstate(), off::TS_FRAME)
        } else {
            o.suspended_top.get()
        };
        if frame.is_null() {
            return ptr::null_mut();
        }
        loop {
            let back = *at::<*mut u8>(frame, off::FRAME_BACK);
            if back.is_null() {
                break;
            }
            frame = back;
        }
        let f = frame.cast::<ffi::PyObject>();
        ffi::Py_INCREF(f);
        f
    }
}

impl std::fmt::Debug for OwnedCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedCtx").finish_non_exhaustive()
    }
}

// ---- the collector's view (module `refs`, R4) ----

/// Record what the raw `switch` about to suspend the running context leaves on its stack.
pub(crate) fn hint_switch(h: Hint) {
    HINT.with(|t| t.set(h));
}

/// Forget an unused hint (the switch did not happen).
pub(crate) fn clear_hint() {
    HINT.with(|t| t.set(Hint::NONE));
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

/// Record that the running context's innermost Python frame waits in a native method call
/// whose arguments end at `end` (null: no longer); returns the previous record (R2).
pub(crate) fn set_call_end(end: super::fastcall::ArgsEnd) -> super::fastcall::ArgsEnd {
    CURRENT_OWNED.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(ptr::null(), |o| o.call_end.replace(end))
    })
}

/// Give up everything the suspended context `s` holds that `refs` vouches for (P7): it will
/// never run again.
pub(crate) fn clear_suspended(s: &PyState) {
    let Some(o) = s.owned.as_ref() else {
        return;
    };
    o.unwindable.set(false);
    let hint = o.hint.get();
    let mut out = Vec::new();
    // SAFETY: `s.frame` is the top frame of a suspended 3.10 context, whose stack keeps its
    // chain alive (R4); the context was taken out of its continulet, so nothing resumes it;
    // every taken reference is released once.
    unsafe {
        clear_frames_310(s.frame, &hint, o.call_end.get(), &mut out);
        take_stack_held(&o.owner, &o.start_held, &o.hint, &mut out);
        o.call_end.set(ptr::null());
        super::release(out);
    }
}

/// Where the running context records what the bottom of its stack holds (R3; null: the
/// thread's original context), for a `StartRecord`.
pub(crate) fn start_held_cell() -> *const Cell<StartHeld> {
    CURRENT_OWNED.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(ptr::null(), |o| &raw const o.start_held)
    })
}

/// Call `f` on every reference the suspended, unwindable context `s` holds (module `refs`).
pub(crate) fn visit_refs<E>(
    s: &PyState,
    f: &mut dyn FnMut(&pyo3::Py<pyo3::PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    let Some(o) = s.owned.as_ref().filter(|o| o.unwindable.get()) else {
        return Ok(());
    };
    // SAFETY: R3 - the owner is alive while its context exists; `s.frame` is the top frame
    // of a suspended 3.10 context, whose stack keeps its chain alive (R4).
    unsafe {
        let hint = o.hint.get();
        visit_stack_held(&o.owner, &o.start_held, &hint, f)?;
        visit_frames_310(s.frame, &hint, o.call_end.get(), f)
    }
}
