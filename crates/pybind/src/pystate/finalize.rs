//! # A native `tp_finalize` (PEP 442) for a type
//!
//! pyo3 gives a pyclass no finalizer, and a Python `__del__` costs a Python call per object —
//! and fails with a `RecursionError` ("Exception ignored in ...") when the object dies at the
//! recursion limit.  [`set_finalizer`] puts [`trampoline`] in a type's `tp_finalize`: plain
//! C, no Python frame; it hands the object to a safe Rust [`Finalize`], which decides (most
//! objects need nothing) and may call Python itself.
//!
//! # Invariants
//!
//! * **F2** The trampoline runs as CPython calls `tp_finalize`: with the GIL held, on a live
//!   object (a borrowed reference), at most once per object (PEP 442).
//! * **F3** It leaves the thread's current exception as it found it: saved before the
//!   finalizer and restored after; an exception of the finalizer itself is reported as
//!   unraisable, as CPython does for `__del__`.  A Rust panic never unwinds into CPython.
//! * **F4** Nothing else changes the type's `tp_finalize` behind our back: it is set on a type
//!   whose `__del__` (if any) stays in its dict, and assigning `__del__` again later makes
//!   CPython reset the slot, which is the Python behaviour one would expect.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// What a type's finalizer does with an object about to be destroyed (or resurrected).
pub(crate) trait Finalize {
    fn finalize(obj: &Bound<'_, PyAny>) -> PyResult<()>;
}

unsafe extern "C" fn trampoline<F: Finalize>(obj: *mut ffi::PyObject) {
    // Not `Python::attach`: finalizers also run while the interpreter shuts down, when pyo3
    // refuses to attach.  The GIL is held (F2); a `Finalize` works with `Bound`s, whose drop
    // is a plain reference-count change.
    let py = super::attached();
    // SAFETY: F2 - CPython passes a live object for the duration of the call.
    let obj = unsafe { Bound::from_borrowed_ptr(py, obj) };
    // F3 (most finalizers run with no exception set: then nothing to save, ~60 instructions)
    // SAFETY: the GIL is held (F2).
    let saved = if unsafe { ffi::PyErr_Occurred() }.is_null() {
        None
    } else {
        PyErr::take(py)
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| F::finalize(&obj)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => e.write_unraisable(py, Some(&obj)),
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err("panic in a native finalizer")
            .write_unraisable(py, Some(&obj)),
    }
    if let Some(e) = saved {
        e.restore(py);
    }
}

/// Make `F` the `tp_finalize` of `ty` (F4: call it after the type's last change of its
/// `__del__`).
pub(crate) fn set_finalizer<F: Finalize>(ty: &Bound<'_, PyType>) {
    let tp = ty.as_type_ptr();
    // SAFETY: `ty` is a live type object; `tp_finalize` is a plain slot of `PyTypeObject` that
    // CPython reads when an instance is finalized, and `PyType_Modified` drops any cached
    // lookups made before the change (GIL held, so no instance is being finalized meanwhile).
    unsafe {
        (*tp).tp_finalize = Some(trampoline::<F>);
        ffi::PyType_Modified(tp);
    }
}

/// Whether instances of `ty` finalize with `F`.  A Python subclass of a type finalized with
/// `F` does not inherit the slot (CPython sets it from `__del__` found in the MRO, and none
/// is there): one without a `__del__` anywhere in its MRO is given `F` here, the first time
/// it is asked about; one with a `__del__` finalizes with CPython's `slot_tp_finalize`.
pub(crate) fn is_finalizer<F: Finalize>(ty: &Bound<'_, PyType>) -> bool {
    let tp = ty.as_type_ptr();
    let ours: unsafe extern "C" fn(*mut ffi::PyObject) = trampoline::<F>;
    // SAFETY: `ty` is a live type object; reading a slot.
    match unsafe { (*tp).tp_finalize } {
        Some(f) => std::ptr::fn_addr_eq(f, ours),
        None if ty.getattr(pyo3::intern!(ty.py(), "__del__")).is_err() => {
            set_finalizer::<F>(ty);
            true
        }
        None => false,
    }
}
