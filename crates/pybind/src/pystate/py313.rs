//! CPython 3.13: `current_frame` directly in the thread state (no `_PyCFrame` any more,
//! GH-108035), `py_recursion_remaining/limit` and `c_recursion_remaining` (saved as depths
//! `limit - remaining`, the C limit being the header's `Py_C_RECURSION_LIMIT`), `exc_info` +
//! `exc_state`, `delete_later` (the trashcan's nesting is counted in `c_recursion_remaining`),
//! `critical_section` (always 0 with the GIL; switched anyway), `datastack_chunk/top/limit`.
//! Not switched: `previous_executor` (the tier-2 optimizer, off in default builds; 3.14's
//! `current_executor` must be, see ARCHITECTURE.md).
//!
//! # Entry frames on the C stack (P5)
//!
//! Each `_PyEval_EvalFrameDefault` call links an *entry frame* (`FRAME_OWNED_BY_CSTACK`) that
//! lives in its C frame into the `previous` chain.  When a context is suspended its C stack is
//! moved to the heap by tealet and the addresses are reused by other contexts, so following
//! `previous` of a suspended frame through an entry frame reads garbage (gevent#1969,
//! greenlet#388).  As greenlet's `expose_frames` does, [`save`] (stack still in place) rewires
//! each complete frame's `previous` past incomplete and C-stack frames and remembers the
//! original links; [`restore`] puts them back (rewired frames are heap frames, so this writes
//! only heap memory and reads nothing on the target's stack, P2).  While a context is
//! suspended its chain therefore holds only heap frames (data-stack chunks or generators),
//! which `f_back`, `top_frame`, `bottom_frame` and the drop check may walk; no frame of a
//! running context is ever rewired (a returning frame follows `previous`).
//!
//! When a stack switch fails (no memory), `continuation` saves the just-restored target
//! again and restores the origin: `save()` then re-applies the target's recorded rewiring
//! instead of walking a chain whose stack is not in place (`RESTORED`/`REEXPOSED`).

use super::offsets as off;
#[path = "chain312.rs"]
mod chain;
use super::{alloc_root_chunk, at, free_chunks, tstate, ROOT_CHUNK_BYTES};
use super::{Hint, StartHeld, START_HELD_NONE};
pub(crate) use chain::{
    clear_hint, clear_suspended, hint_switch, keep_from_collector, set_call_end, start_held_cell,
    top_frame, unwindable, visit_refs,
};
use chain::{expose, first_complete, frames_have_objects, relink, Exposed};
use pyo3::ffi;
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::ptr;
use std::rc::{Rc, Weak};

const _: () = assert!(
    off::PY_VERSION_HEX >> 16 == 0x030D,
    "py313.rs built against another CPython"
);

/// `sizeof(_Py_CODEUNIT)`.
const CODEUNIT_BYTES: usize = 2;

/// What a context started by a continulet owns (see the module docs of `pystate`).
pub(crate) struct OwnedCtx {
    root_chunk: *mut u8,
    /// Top complete interpreter frame when last suspended (null while running or before any
    /// frame); its chain is exposed (P5).
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
    /// Whether it was cleared (P7).
    cleared: Cell<super::Cleared>,
}

/// Resources of a context: shared with its continulet so that `_get_frame()` can find them.
pub(crate) type Owned = Rc<OwnedCtx>;
/// The continulet's weak view of its own context.
pub(crate) type OwnedRef = Weak<OwnedCtx>;

thread_local! {
    static CURRENT_OWNED: RefCell<Option<Owned>> = const { RefCell::new(None) };
    /// The (unexposed) rewiring of the state `restore()` just installed, until `resumed()`
    /// drops it or `save()` of the same state, after a failed stack switch, re-applies it.
    static RESTORED: RefCell<Option<Exposed>> = const { RefCell::new(None) };
    /// Set by such a `save()`: the next `restore()` reinstates the origin of the failed
    /// switch, whose stack never left, so nothing is pending after it.
    static REEXPOSED: Cell<bool> = const { Cell::new(false) };
}

/// The saved interpreter state of a suspended context.
pub(crate) struct PyState {
    current_frame: *mut u8,
    exposed: Exposed,
    py_depth: c_int,
    c_depth: c_int,
    exc_info: *mut u8,
    exc_value: *mut ffi::PyObject,
    exc_previous: *mut u8,
    delete_later: *mut ffi::PyObject,
    critical_section: usize,
    chunk: *mut u8,
    top: *mut u8,
    limit: *mut u8,
    owned: Option<Owned>,
}

/// `_PyFrame_IsIncomplete` (3.13 tests for entry frames on the C stack first, as we do).
///
/// # Safety
/// `f` is a live, readable interpreter frame.
unsafe fn is_incomplete(f: *mut u8) -> bool {
    // SAFETY: per the contract; a non-C-stack frame holds a strong reference to its code
    // object in `f_executable`.
    unsafe {
        let owner = *at::<u8>(f, off::IFRAME_OWNER);
        if owner == off::FRAME_OWNED_BY_CSTACK {
            return true;
        }
        if owner == off::FRAME_OWNED_BY_GENERATOR {
            return false;
        }
        let code = *at::<*mut u8>(f, off::IFRAME_CODE);
        let first = *at::<c_int>(code, off::CODE_FIRSTTRACEABLE) as usize;
        let instr = *at::<*mut u8>(f, off::IFRAME_INSTR);
        instr < code.add(off::CODE_CODE_ADAPTIVE + first * CODEUNIT_BYTES)
    }
}

/// Capture the running context's state (before it is suspended).
pub(crate) fn save() -> PyState {
    let ts = tstate();
    // SAFETY: `ts` is the live thread state; every offset comes from the real 3.13 headers.
    // Either the context's stack is in place (a normal save: its frame chain is readable), or
    // `restore()` installed this state and the switch failed, in which case RESTORED holds its
    // recorded rewiring and nothing on its stack is read.
    unsafe {
        let current_frame = *at::<*mut u8>(ts, off::TS_CURRENT_FRAME);
        let exposed = match RESTORED.with(|p| p.borrow_mut().take()) {
            Some(e) => {
                relink(&e, true);
                REEXPOSED.set(true);
                e
            }
            None => expose(current_frame),
        };
        let exc_state = ts.add(off::TS_EXC_STATE);
        let exc_info = *at::<*mut u8>(ts, off::TS_EXC_INFO);
        // P1: the reference moves into the saved state.
        let exc_value = ptr::replace(
            at::<*mut ffi::PyObject>(exc_state, off::EXC_ITEM_VALUE),
            ptr::null_mut(),
        );
        let owned = CURRENT_OWNED.with(|c| c.borrow_mut().take());
        let hint = chain::take_hint();
        if let Some(o) = &owned {
            o.suspended_top.set(exposed.top);
            o.hint.set(hint);
        }
        PyState {
            current_frame,
            exposed,
            py_depth: *at::<c_int>(ts, off::TS_PY_RECURSION_LIMIT)
                - *at::<c_int>(ts, off::TS_PY_RECURSION_REMAINING),
            c_depth: off::C_RECURSION_LIMIT - *at::<c_int>(ts, off::TS_C_RECURSION_REMAINING),
            exc_info: if exc_info == exc_state {
                ptr::null_mut()
            } else {
                exc_info
            },
            exc_value,
            exc_previous: *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS),
            delete_later: *at::<*mut ffi::PyObject>(ts, off::TS_DELETE_LATER),
            critical_section: *at::<usize>(ts, off::TS_CRITICAL_SECTION),
            chunk: *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK),
            top: *at::<*mut u8>(ts, off::TS_DATASTACK_TOP),
            limit: *at::<*mut u8>(ts, off::TS_DATASTACK_LIMIT),
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
        *at::<*mut u8>(ts, off::TS_CURRENT_FRAME) = s.current_frame;
        let limit = *at::<c_int>(ts, off::TS_PY_RECURSION_LIMIT);
        *at::<c_int>(ts, off::TS_PY_RECURSION_REMAINING) = limit - s.py_depth;
        *at::<c_int>(ts, off::TS_C_RECURSION_REMAINING) = off::C_RECURSION_LIMIT - s.c_depth;
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
        *at::<*mut ffi::PyObject>(ts, off::TS_DELETE_LATER) = s.delete_later;
        *at::<usize>(ts, off::TS_CRITICAL_SECTION) = s.critical_section;
        *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK) = s.chunk;
        *at::<*mut u8>(ts, off::TS_DATASTACK_TOP) = s.top;
        *at::<*mut u8>(ts, off::TS_DATASTACK_LIMIT) = s.limit;
        s.chunk = ptr::null_mut();
        let exposed = std::mem::replace(
            &mut s.exposed,
            Exposed {
                top: ptr::null_mut(),
                links: Vec::new(),
            },
        );
        // P5: the context will run: its frames get their real links back.
        relink(&exposed, false);
        if !REEXPOSED.replace(false) {
            RESTORED.with(|p| *p.borrow_mut() = Some(exposed));
        }
        let owned = s.owned.take();
        if let Some(o) = &owned {
            o.suspended_top.set(ptr::null_mut());
        }
        CURRENT_OWNED.with(|c| *c.borrow_mut() = owned);
    }
}

/// After the stack switch, on the resumed side: the restored state is final (P5).  Tracing
/// needs nothing here on 3.13: `sys.settrace` is per thread and the
/// instrumentation per interpreter.
pub(crate) fn resumed() {
    RESTORED.with(|p| drop(p.borrow_mut().take()));
}

/// Give the interpreter a fresh state for a starting context: no current frame (so its bottom
/// frame's `f_back` is None), a small root data-stack chunk, no handled exception, an empty
/// trashcan, no critical section.  The recursion depths continue from the spawn point (the C
/// stack does too).  Returns the context's resources, for its continulet to watch.
pub(crate) fn enter_new(owner_obj: *mut ffi::PyObject, unwindable: bool) -> OwnedRef {
    let ts = tstate();
    // SAFETY: live thread state; the new chunk is ours, laid out as the headers say; the
    // previous state was moved out by `save()` (P1).
    unsafe {
        let chunk = alloc_root_chunk();
        *at::<*mut u8>(chunk, off::CHUNK_PREVIOUS) = ptr::null_mut();
        *at::<usize>(chunk, off::CHUNK_SIZE) = ROOT_CHUNK_BYTES;
        *at::<usize>(chunk, off::CHUNK_TOP) = 0;
        *at::<*mut u8>(ts, off::TS_CURRENT_FRAME) = ptr::null_mut();
        *at::<*mut u8>(ts, off::TS_DATASTACK_CHUNK) = chunk;
        // As CPython does for a root chunk: skip data[0], so the root is never popped.
        *at::<*mut u8>(ts, off::TS_DATASTACK_TOP) = chunk.add(off::CHUNK_DATA + 8);
        *at::<*mut u8>(ts, off::TS_DATASTACK_LIMIT) = chunk.add(ROOT_CHUNK_BYTES);
        let exc_state = ts.add(off::TS_EXC_STATE);
        *at::<*mut ffi::PyObject>(exc_state, off::EXC_ITEM_VALUE) = ptr::null_mut();
        *at::<*mut u8>(exc_state, off::EXC_ITEM_PREVIOUS) = ptr::null_mut();
        *at::<*mut u8>(ts, off::TS_EXC_INFO) = exc_state;
        *at::<*mut ffi::PyObject>(ts, off::TS_DELETE_LATER) = ptr::null_mut();
        *at::<usize>(ts, off::TS_CRITICAL_SECTION) = 0;
        let owned = Rc::new(OwnedCtx {
            root_chunk: chunk,
            suspended_top: Cell::new(ptr::null_mut()),
            owner: Cell::new(owner_obj),
            unwindable: Cell::new(unwindable),
            start_held: Cell::new(START_HELD_NONE),
            call_end: Cell::new(ptr::null()),
            hint: Cell::new(Hint::NONE),
            _live: super::LiveContext::new(),
            cleared: Cell::new(super::Cleared::No),
        });
        let weak = Rc::downgrade(&owned);
        CURRENT_OWNED.with(|c| *c.borrow_mut() = Some(owned));
        weak
    }
}

/// The running context finished (all its frames returned): free its data stack (P3).  The caller reinstates the next context's state right after.
pub(crate) fn leave_finished() {
    let ts = tstate();
    // SAFETY: live thread state; the chunks in it belong to the finishing context.
    unsafe {
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
    CURRENT_OWNED.with(|c| drop(c.borrow_mut().take()));
}

impl Drop for PyState {
    fn drop(&mut self) {
        // A suspended context destroyed without resuming (P1, P3).  Its frames are abandoned
        // (their links stay exposed, which keeps any surviving frame object's `f_back` safe);
        // their data-stack chunks are kept (leaked) if any frame has a frame object that may
        // still be referenced, since freeing them would leave that object dangling.
        // SAFETY: GIL held (P4); the state is not installed in the thread state; its chain is
        // exposed, so it holds only heap frames (P5).
        unsafe {
            ffi::Py_XDECREF(self.exc_value);
            let free = match self.owned.as_ref().map(|o| o.cleared.get()) {
                Some(super::Cleared::No) => !frames_have_objects(self.exposed.top),
                Some(super::Cleared::FreeChunks) => true,
                None | Some(super::Cleared::KeepChunks) => false,
            };
            if free && !self.chunk.is_null() {
                free_chunks(self.chunk);
            }
        }
    }
}

/// A frame object for the complete interpreter frame `iframe`, made the way
/// `PyEval_GetFrame` makes one for the running frame (with the GC off, so no finalizer can
/// run while the thread state points at a foreign frame).
///
/// # Safety
/// `iframe` is a live, complete interpreter frame of this thread: of the running context, or
/// of a suspended one (then on the heap, P5).
unsafe fn frame_object_of(iframe: *mut u8) -> *mut ffi::PyObject {
    // SAFETY: per the contract; the swap is undone before returning.  `iframe` is complete,
    // so `PyEval_GetFrame` does not walk `previous`.
    unsafe {
        let existing = *at::<*mut ffi::PyObject>(iframe, off::IFRAME_FRAME_OBJ);
        if !existing.is_null() {
            ffi::Py_INCREF(existing);
            return existing;
        }
        let cur = at::<*mut u8>(tstate(), off::TS_CURRENT_FRAME);
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

/// The bottom frame object of the context `owned` (the continulet's own), or null: walks from
/// its top frame (live if it is running, exposed if suspended) to the last complete one.
pub(crate) fn bottom_frame(owned: &OwnedRef) -> *mut ffi::PyObject {
    let Some(o) = owned.upgrade() else {
        return ptr::null_mut();
    };
    let running =
        CURRENT_OWNED.with(|c| c.borrow().as_ref().is_some_and(|cur| Rc::ptr_eq(cur, &o)));
    // SAFETY: the context is alive (`upgrade` succeeded).  If it runs, its C stack is in place
    // and the whole chain is readable; if it is suspended, its chain is exposed (P5).
    unsafe {
        let mut iframe = if running {
            first_complete(*at::<*mut u8>(tstate(), off::TS_CURRENT_FRAME))
        } else {
            o.suspended_top.get()
        };
        if iframe.is_null() {
            return ptr::null_mut();
        }
        loop {
            let prev = first_complete(*at::<*mut u8>(iframe, off::IFRAME_PREVIOUS));
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
