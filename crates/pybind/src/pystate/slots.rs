//! # A raw `tp_new` for a pyclass whose fresh value is all zeros
//!
//! pyo3's `tp_new` for a `#[new]` taking `*args, **kwargs` copies the positional arguments
//! into a tuple of its own and finds the base's `tp_new` by a slot lookup, under its
//! argument-extraction machinery, before it runs the body: ~160 instructions more per
//! greenlet than this module's (a whole creation, start and end costs ~8,000).
//! [`set_raw_new`] replaces the slot of such a class with [`new_body`], under pyo3's own
//! `newfunc` trampoline: the object from `object.__new__` (as pyo3 makes it: the memory from
//! the type's `tp_alloc`, zeroed as CPython's allocators give it, and the instance dict or
//! inline values CPython's version makes there), its pyclass contents left as those zeros,
//! then a safe Rust [`RawNew::init`] for the rest.
//!
//! # Invariants
//!
//! * **Z1** All-zero bytes are a valid `RawNew::Class` value and its `Default` (the `unsafe
//!   impl` of [`ZeroDefault`] below, per class, says why), and the contents pyo3 would write
//!   around it are zeros too: checked once by [`set_raw_new`] on an instance made the raw way
//!   (`RawNew::probe_is_default`: its borrow flag free, for a class that has one, and its
//!   value the default); if that check fails the slot stays pyo3's (and the instance is
//!   leaked, never dropped).
//! * **Z2** The object is made by `object.__new__`, as pyo3's `tp_new` makes it: what that
//!   checks (abstract classes) and sets up (3.11–3.12 make the instance `__dict__` or inline
//!   values at once, 3.13 initializes inline values) stays CPython's.
//! * **Z3** The slot is set before the class has subclasses (they copy it when created), and
//!   `Class.__new__` reads the slot when called, so every way of creating an instance takes it.

use pyo3::ffi;
use pyo3::impl_::trampoline::{newfunc, MethodDef};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};

/// A pyclass whose instances may start as zeroed memory (Z1).
///
/// # Safety
/// All-zero bytes are a valid value of `Self`, equal to `Self::default()`.
pub(crate) unsafe trait ZeroDefault: pyo3::PyClass + Default {}

// SAFETY: Z1 - its fields are `GilCell`s (an `UnsafeCell`, laid out as what it holds) of
// `Option<Py<_>>` (None is null: `Py` is a `repr(transparent)` `NonNull`) and `bool` (false
// is 0), all None and false by default.
unsafe impl ZeroDefault for crate::greenlet::GreenletBase {}

// SAFETY: Z1 - its fields are `GilCell`s (as above) of `Option<Py<_>>` (None is null), an
// `i64` and `bool`s, all None, 0 and false by default.
unsafe impl ZeroDefault for crate::scheduler::TaskletBase {}

/// What a raw `tp_new` does after allocating the instance.
pub(crate) trait RawNew {
    type Class: ZeroDefault;
    /// The rest of `__new__` on the fresh (default) instance; an error drops it.
    fn init(obj: &Bound<'_, Self::Class>) -> PyResult<()>;
    /// Whether the fresh `probe` is as pyo3 would have made it: its borrow flag free (for a
    /// class that has one) and its value the default (Z1's check).
    fn probe_is_default(probe: &Bound<'_, Self::Class>) -> bool;
}

struct NewDef<N>(std::marker::PhantomData<N>);

impl<N: RawNew> MethodDef<newfunc::Func> for NewDef<N> {
    const METH: newfunc::Func = new_body::<N>;
}

/// A fresh instance of `subtype` (a subclass of `N::Class`) from `object.__new__`: its
/// contents zeroed (Z1), its instance dict or values as CPython makes them (Z2).
///
/// # Safety
/// `subtype` is a live type object whose instances have `N::Class`'s layout.
unsafe fn object_new<N: RawNew>(
    py: Python<'_>,
    subtype: *mut ffi::PyTypeObject,
) -> PyResult<Bound<'_, N::Class>> {
    let empty = PyTuple::empty(py);
    // SAFETY: `object.__new__` with a live type and an empty argument tuple (what pyo3's
    // `tp_new` calls too): a new reference or null with an error set.
    let obj = unsafe {
        let new = ffi::PyBaseObject_Type.tp_new.expect("object has a tp_new");
        new(subtype, empty.as_ptr(), std::ptr::null_mut())
    };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: a new reference to an instance of `subtype`, laid out as `N::Class` (contract).
    Ok(unsafe { Bound::from_owned_ptr(py, obj).cast_into_unchecked() })
}

/// `tp_new` of `N::Class` and its subclasses (the arguments are left to `__init__`).
///
/// # Safety
/// Called by CPython as a `tp_new` of a subclass of `N::Class` (GIL held).
unsafe fn new_body<N: RawNew>(
    py: Python<'_>,
    subtype: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: per the contract.
    let obj = unsafe { object_new::<N>(py, subtype)? };
    N::init(&obj)?;
    Ok(obj.into_ptr())
}

/// Give `ty` (`N::Class`'s own type, before it has subclasses: Z3) the raw `tp_new`, if the
/// check of Z1 passes; says whether it did.
pub(crate) fn set_raw_new<N: RawNew>(ty: &Bound<'_, PyType>) -> bool {
    let py = ty.py();
    let tp = ty.as_type_ptr();
    // SAFETY: `ty` is `N::Class`'s type.
    let Ok(probe) = (unsafe { object_new::<N>(py, tp) }) else {
        return false;
    };
    if !N::probe_is_default(&probe) {
        // pyo3 lays its contents out otherwise: the probe is not a valid object to drop.
        std::mem::forget(probe);
        return false;
    }
    drop(probe);
    // SAFETY: a plain slot of a live type object (GIL held); `PyType_Modified` drops any
    // cached lookups made before the change.
    unsafe {
        (*tp).tp_new = Some(newfunc::<NewDef<N>>);
        ffi::PyType_Modified(tp);
    }
    true
}

/// Whether `ty`'s instances are made by [`set_raw_new`]'s slot for `N`.
pub(crate) fn is_raw_new<N: RawNew>(ty: &Bound<'_, PyType>) -> bool {
    let ours: ffi::newfunc = newfunc::<NewDef<N>>;
    // SAFETY: reading a slot of a live type.
    unsafe { (*ty.as_type_ptr()).tp_new }.is_some_and(|f| std::ptr::fn_addr_eq(f, ours))
}
