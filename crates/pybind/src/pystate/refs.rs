//! # What a suspended context holds, for the garbage collector (CPython 3.11-3.13)
//!
//! A continulet's body always references its continulet (the callable's first argument, and
//! `self` of the `switch` it is suspended in), so a suspended continulet nobody else references
//! is a cycle through its own frames.  CPython's collector only sees that cycle if the
//! continulet's `tp_traverse` visits what the frames of the context it stores hold.
//! [`visit_frames`] does, *exactly or less*: visiting a reference that does not exist (a stale
//! value-stack slot) would make the collector free a live object, while not visiting one
//! only keeps things alive (the cycle is then not collected: a leak, never a crash).
//!
//! # Invariants
//!
//! * **R1** Only interpreter frames owned by the thread (not by a generator or frame object)
//!   and lying inside the context's own data-stack chunks are read and visited.
//! * **R2** A frame's value stack is visited only up to a depth CPython wrote and that is still
//!   true: the innermost frame up to the end of the argument vector of the raw `switch` it is
//!   suspended in ([`Hint`]), when that vector lies inside its value stack; any other frame up
//!   to its `stacktop` only when its callee was pushed by an inlined Python call (CPython set
//!   `stacktop` there and has not resumed the frame since).  Otherwise only its locals
//!   (`co_nlocalsplus` slots, always initialized) are visited.
//! * **R3** Besides frames, a context holds owned references on its C stack: the continulet
//!   whose body it runs (held by `continuation`'s start closure: `owner`) and the two of the
//!   switch plan it is suspended in (`Hint::held`).  Nothing else on the C stack of a context
//!   that [`visit_frames`] is used for owns a Python reference (`run_python` borrows).

use super::{at, offsets as off, Hint};
use pyo3::ffi;
use pyo3::Py;
use pyo3::PyAny;
use std::cell::Cell;
use std::os::raw::c_int;
use std::ptr;

/// View an object pointer stored at `slot` as a `Py` (no reference-count change), for a visit.
///
/// # Safety
/// `slot` holds a non-null pointer to a live object, and stays unchanged while the result
/// is used.
unsafe fn as_py<'a>(slot: *const *mut ffi::PyObject) -> &'a Py<PyAny> {
    // SAFETY: `Py<PyAny>` is a transparent non-null object pointer; per the contract.
    unsafe { &*slot.cast::<Py<PyAny>>() }
}

/// Visit the object at `slot` if there is one.
///
/// # Safety
/// As [`as_py`], except that `slot` may hold null.
unsafe fn visit_slot<E>(
    slot: *const *mut ffi::PyObject,
    f: &mut dyn FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: per the contract.
    unsafe {
        if (*slot).is_null() {
            return Ok(());
        }
        f(as_py(slot))
    }
}

/// Whether `[p, p + len)` lies in the used part of one of the chunks from `chunk` (the
/// context's top chunk, used up to `top`) down its `previous` chain.
///
/// # Safety
/// `chunk` heads the live chunk chain of a suspended context whose top is `top`.
unsafe fn in_chunks(mut chunk: *mut u8, mut top: *mut u8, p: *mut u8, len: usize) -> bool {
    // SAFETY: per the contract; a previous chunk's `top` is the index (in words) of its end.
    unsafe {
        while !chunk.is_null() {
            let data = chunk.add(off::CHUNK_DATA);
            if p >= data && (p as usize).saturating_add(len) <= top as usize {
                return true;
            }
            let prev = *at::<*mut u8>(chunk, off::CHUNK_PREVIOUS);
            if prev.is_null() {
                return false;
            }
            top = prev
                .add(off::CHUNK_DATA)
                .add(*at::<usize>(prev, off::CHUNK_TOP) * 8);
            chunk = prev;
        }
    }
    false
}

/// Visit what the frames of a suspended context hold (R1, R2).
///
/// `innermost` is its top frame, `chunk`/`top` its data stack, `hint` what its suspending
/// switch told, and `callee_inlined(callee)` whether `callee` (a frame of the chain) was
/// pushed by an inlined call of the frame below it (so that frame's `stacktop` is exact).
///
/// # Safety
/// The chain from `innermost` holds only readable heap frames (3.11: all frames; 3.12+: the
/// exposed chain, P5), the context is suspended (nothing changes its frames meanwhile).
pub(super) unsafe fn visit_frames<E>(
    innermost: *mut u8,
    chunk: *mut u8,
    top: *mut u8,
    hint: &Hint,
    callee_inlined: &dyn Fn(*mut u8) -> bool,
    f: &mut dyn FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: per the contract and R1 (every field read belongs to a thread-owned frame in
    // the context's chunks, or to the code object it holds a strong reference to).
    unsafe {
        let mut callee: *mut u8 = ptr::null_mut();
        let mut frame = innermost;
        while !frame.is_null() {
            let owner = *at::<u8>(frame, off::IFRAME_OWNER);
            if owner == off::FRAME_OWNED_BY_THREAD {
                if !in_chunks(chunk, top, frame, off::IFRAME_LOCALSPLUS) {
                    // A thread frame of another context: the chain left ours.
                    return Ok(());
                }
                let code = *at::<*mut ffi::PyObject>(frame, off::IFRAME_CODE);
                if code.is_null() || ffi::Py_TYPE(code) != ptr::addr_of_mut!(ffi::PyCode_Type) {
                    return Ok(());
                }
                let nlocals = *at::<c_int>(code.cast(), off::CODE_NLOCALSPLUS) as usize;
                let stacksize = *at::<c_int>(code.cast(), off::CODE_STACKSIZE) as usize;
                let locals = at::<*mut ffi::PyObject>(frame, off::IFRAME_LOCALSPLUS);
                let (lo, hi) = (locals.add(nlocals), locals.add(nlocals + stacksize));
                let depth = if callee.is_null() {
                    let end = hint.end.cast_mut();
                    if !end.is_null() && end >= lo && end <= hi {
                        end.offset_from(locals) as usize
                    } else {
                        nlocals
                    }
                } else {
                    let stacktop = *at::<c_int>(frame, off::IFRAME_STACKTOP);
                    match usize::try_from(stacktop) {
                        Ok(d)
                            if d >= nlocals
                                && d <= nlocals + stacksize
                                && callee_inlined(callee) =>
                        {
                            d
                        }
                        _ => nlocals,
                    }
                };
                if !in_chunks(chunk, top, frame, off::IFRAME_LOCALSPLUS + depth * 8) {
                    return Ok(());
                }
                visit_slot(at(frame, off::IFRAME_FRAME_OBJ), f)?;
                visit_slot(at(frame, off::IFRAME_LOCALS), f)?;
                visit_slot(at(frame, off::IFRAME_FUNC), f)?;
                visit_slot(at(frame, off::IFRAME_CODE), f)?;
                for i in 0..depth {
                    visit_slot(locals.add(i), f)?;
                }
            }
            callee = frame;
            frame = *at::<*mut u8>(frame, off::IFRAME_PREVIOUS);
        }
    }
    Ok(())
}

/// Visit the owned references the C stack of a suspended context holds (R3): the continulet
/// whose body it runs (`owner`), what the start frame's caller holds (`start_held`), and the
/// two references of the switch plan it waits in (`hint`).
pub(super) fn visit_stack_held<E>(
    owner: &Cell<*mut ffi::PyObject>,
    start_held: &Cell<[*mut ffi::PyObject; 3]>,
    hint: &Hint,
    f: &mut dyn FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: R3 - these references live as long as the suspended context.
    unsafe {
        visit_slot(owner.as_ptr(), f)?;
        let start_held = start_held.as_ptr().cast::<*mut ffi::PyObject>();
        for i in 0..3 {
            visit_slot(start_held.add(i), f)?;
        }
        for p in &hint.held {
            visit_slot(p, f)?;
        }
    }
    Ok(())
}
