//! The suspended-frame-chain logic shared by CPython 3.12 and 3.13 (included by `py312.rs`
//! and by `py313.rs` as their `chain` submodule; only one of them is ever compiled): entry
//! frames of 3.12+ live on the C stack, so a suspended context's chain is rewired past them
//! (invariant P5) and put back when it resumes.  `is_incomplete` is the version file's own.

use super::super::refs::{clear_context, visit_frames, visit_stack_held, FrameChain, StackRecords};
use super::super::{at, offsets as off, Hint, StartHeld};
use super::{frame_object_of, is_incomplete, OwnedRef, PyState, CURRENT_OWNED};
use pyo3::ffi;
use std::cell::Cell;
use std::ptr;

thread_local! {
    /// What the raw `switch` under way told about the references it leaves on the stack.
    static HINT: Cell<Hint> = const { Cell::new(Hint::NONE) };
}

/// The frames of a context as seen while it is suspended (P5).
pub(super) struct Exposed {
    /// First complete frame from the top (null if none).
    pub(super) top: *mut u8,
    /// `(frame, original previous, rewired previous)` for every link rewired past
    /// C-stack/incomplete frames.
    pub(super) links: Vec<(*mut u8, *mut u8, *mut u8)>,
}

/// `_PyFrame_GetFirstComplete`.
///
/// # Safety
/// The chain from `f` up to the first complete frame is live and readable.
pub(super) unsafe fn first_complete(mut f: *mut u8) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        while !f.is_null() && is_incomplete(f) {
            f = *at::<*mut u8>(f, off::IFRAME_PREVIOUS);
        }
    }
    f
}

/// Rewire the chain from `current` so that it holds only complete frames (P5).
///
/// # Safety
/// The whole chain from `current` is live and readable: the context's C stack is in place.
pub(super) unsafe fn expose(current: *mut u8) -> Exposed {
    // SAFETY: per the contract; complete frames live in heap chunks or generators, so the
    // rewired links point only to heap memory.
    unsafe {
        let top = first_complete(current);
        let mut links = Vec::new();
        let mut f = top;
        while !f.is_null() {
            let prev = *at::<*mut u8>(f, off::IFRAME_PREVIOUS);
            let next = first_complete(prev);
            if next != prev {
                links.push((f, prev, next));
                *at::<*mut u8>(f, off::IFRAME_PREVIOUS) = next;
            }
            f = next;
        }
        Exposed { top, links }
    }
}

/// Undo [`expose`] (`rewired = false`) or do it again (`rewired = true`).
///
/// # Safety
/// The rewired frames are still alive (they belong to a context that exists).
pub(super) unsafe fn relink(e: &Exposed, rewired: bool) {
    // SAFETY: per the contract; only heap frames were rewired, and we store pointer values
    // without dereferencing them.
    unsafe {
        for &(f, orig, new) in &e.links {
            *at::<*mut u8>(f, off::IFRAME_PREVIOUS) = if rewired { new } else { orig };
        }
    }
}

/// Whether any frame of the chain starting at `iframe` has a frame object.
///
/// # Safety
/// `iframe` heads a chain of live heap interpreter frames (an exposed chain, P5).
pub(super) unsafe fn frames_have_objects(mut iframe: *mut u8) -> bool {
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

/// The top frame object of a suspended state (for greenlet's `gr_frame`), or null.
pub(crate) fn top_frame(s: &PyState) -> *mut ffi::PyObject {
    if s.exposed.top.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `s` is a suspended context's state; its exposed top frame is complete and alive
    // in its chunks (P5).
    unsafe { frame_object_of(s.exposed.top) }
}

/// Tell the next `save()` of this thread what the switch under way leaves on the stack.
pub(crate) fn hint_switch(h: Hint) {
    HINT.with(|t| t.set(h));
}

/// Forget an unused hint (the switch did not happen).
pub(crate) fn clear_hint() {
    HINT.with(|t| t.set(Hint::NONE));
}

/// The hint for the `save()` under way.
pub(super) fn take_hint() -> Hint {
    HINT.with(|t| t.replace(Hint::NONE))
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
pub(crate) fn set_call_end(
    end: super::super::fastcall::ArgsEnd,
) -> super::super::fastcall::ArgsEnd {
    CURRENT_OWNED.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(ptr::null(), |o| o.call_end.replace(end))
    })
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
    let links = &s.exposed.links;
    // SAFETY: R3 - the owner is alive while its context exists; the chain is exposed (P5,
    // heap frames only).  A frame whose link was rewired was entered from C: the frame below
    // it is in a C call, so its `stacktop` is not trusted (R2).
    unsafe {
        let hint = o.hint.get();
        visit_stack_held(&o.owner, &o.start_held, &hint, f)?;
        let inlined = |callee: *mut u8| !links.iter().any(|&(fr, _, _)| fr == callee);
        visit_frames(&frame_chain(s, o, &hint, &inlined), f)
    }
}

impl PyState {
    /// P8: lend the end of the context's root chunk for the switch under way.
    pub(crate) fn lend_chunk_end(&self, transit: continuation::Transit) {
        super::super::lend_chunk_end(
            self.owned.as_ref().map(|o| o.root_chunk),
            self.chunk,
            self.top,
            self.limit,
            transit,
        );
    }
}

/// The frame chain of the suspended context `s` (its resources `o`) as `refs` reads it.
fn frame_chain<'a>(
    s: &PyState,
    o: &super::OwnedCtx,
    hint: &'a Hint,
    callee_inlined: &'a dyn Fn(*mut u8) -> bool,
) -> FrameChain<'a> {
    FrameChain {
        innermost: s.exposed.top,
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
    let links = &s.exposed.links;
    let inlined = |callee: *mut u8| !links.iter().any(|&(fr, _, _)| fr == callee);
    let records = StackRecords {
        owner: &o.owner,
        start_held: &o.start_held,
        hint: &o.hint,
        call_end: &o.call_end,
    };
    // SAFETY: the chain is exposed (P5, heap frames only) and its context taken out of its
    // continulet, so nothing resumes it (P7).
    let verdict = unsafe { clear_context(&frame_chain(s, o, &hint, &inlined), &records) };
    o.cleared.set(verdict);
}
