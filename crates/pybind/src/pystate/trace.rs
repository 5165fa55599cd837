//! # A C-level trace function for the native scheduler's preemption budget
//!
//! `stackless.run(timeout)` interrupts the running tasklet after `timeout` virtual
//! instructions.  The pure-Python core counts them with a `sys.settrace` function called for
//! every opcode; on CPython the native core installs [`set_trace`] instead: the interpreter
//! calls [`trampoline`] (plain C, no Python frame, no argument tuple) and it hands the event to
//! a safe Rust [`Tracer`], which counts ticks in the scheduler's Rust fields and only calls
//! back into Python when the budget has run out.
//!
//! # Invariants
//!
//! * **T1** The trampoline runs only as the thread's trace function, i.e. on that thread with
//!   the GIL held, and CPython passes it borrowed references (trace object, frame) that live
//!   for the call.
//! * **T2** A Rust panic never unwinds into the interpreter: it becomes a Python exception and
//!   the trampoline returns -1 (CPython then removes the trace function and raises).
//! * **T3** Removing it is CPython's own business: `sys.settrace(old)` (or `None`) replaces it.

use std::os::raw::c_int;

use pyo3::ffi;
use pyo3::prelude::*;

/// The trace events a [`Tracer`] is given (the others are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TraceEvent {
    /// A Python frame starts (`PyTrace_CALL`).
    Call,
    /// One bytecode instruction, in frames whose `f_trace_opcodes` is set (`PyTrace_OPCODE`).
    Opcode,
}

/// What the trace function does with an event; `owner` is the object given to [`set_trace`].
pub(crate) trait Tracer {
    fn event(owner: &Bound<'_, PyAny>, frame: &Bound<'_, PyAny>, event: TraceEvent)
        -> PyResult<()>;
}

unsafe extern "C" fn trampoline<T: Tracer>(
    owner: *mut ffi::PyObject,
    frame: *mut ffi::PyFrameObject,
    what: c_int,
    _arg: *mut ffi::PyObject,
) -> c_int {
    let event = match what {
        ffi::PyTrace_CALL => TraceEvent::Call,
        ffi::PyTrace_OPCODE => TraceEvent::Opcode,
        _ => return 0,
    };
    if owner.is_null() || frame.is_null() {
        return 0;
    }
    // SAFETY: T1 - a trace function runs on its thread with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: T1 - both are borrowed references, valid for the duration of this call.
    let owner = unsafe { Bound::from_borrowed_ptr(py, owner) };
    // SAFETY: as above; a frame object is a Python object.
    let frame = unsafe { Bound::from_borrowed_ptr(py, frame.cast::<ffi::PyObject>()) };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        T::event(&owner, &frame, event)
    }));
    let err = match result {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => e,
        Err(_) => {
            pyo3::exceptions::PyRuntimeError::new_err("panic in the native preemption tracer")
        } // T2
    };
    err.restore(py);
    -1
}

/// Make `T` the calling thread's trace function, with `owner` as its trace object (what
/// `sys.gettrace()` returns while it is installed).
pub(crate) fn set_trace<T: Tracer>(owner: &Bound<'_, PyAny>) {
    // SAFETY: the GIL is held (we hold a `Bound`); CPython keeps its own reference to `owner`
    // for as long as the function is installed.
    unsafe { ffi::PyEval_SetTrace(Some(trampoline::<T>), owner.as_ptr()) }
}
