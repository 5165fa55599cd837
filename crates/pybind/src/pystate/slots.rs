//! # A raw `tp_new` for a pyclass whose fresh value is all zeros
//!
//! pyo3's `tp_new` for a `#[new]` taking `*args, **kwargs` copies the positional arguments
//! into a tuple of its own and makes the object through the base's `object.__new__` (found
//! by a slot lookup) before it runs the body, all under its argument-extraction machinery:
//! ~160 instructions more per greenlet than this module's (a whole creation, start and end
//! costs ~8,000).  [`set_raw_new`] replaces the slot of such a class with [`new_body`], under
//! pyo3's own `newfunc` trampoline: the object from the type's `tp_alloc` (zeroed memory, as
//! CPython's allocators give it), its contents left as those zeros, the instance `__dict__`
//! made as `object.__new__` makes it, then a safe Rust [`RawNew::init`] for the rest.
//!
//! # Invariants
//!
//! * **Z1** All-zero bytes are a valid `RawNew::Class` value and its `Default` (the `unsafe
//!   impl` of [`ZeroDefault`] below, per class, says why), and the contents pyo3 would write
//!   around it are zeros too: checked once by [`set_raw_new`] on an instance made the raw way
//!   (its borrow flag free, its value `RawNew::is_default`); if that check fails the slot stays
//!   pyo3's (and the instance is leaked, never dropped).  The weak reference list starts
//!   null, as for any object CPython allocates, and so does the instance `__dict__` on 3.10
//!   and 3.13 (made on first use); 3.11 and 3.12 make it at once, as `object.__new__` does
//!   there ([`eager_dict`]: an instance without one is slower to call methods on).
//! * **Z2** What `object.__new__` checks stays: a class with abstract methods is refused by
//!   `object.__new__` itself (called for it, not for the others).
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
pub(crate) unsafe trait ZeroDefault:
    pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::False> + Default
{
}

// SAFETY: Z1 - its fields are `Option<Py<_>>` (None is null: `Py` is a `repr(transparent)`
// `NonNull`) and `bool` (false is 0), all None and false by default.
unsafe impl ZeroDefault for crate::greenlet::GreenletBase {}

/// What a raw `tp_new` does after allocating the instance.
pub(crate) trait RawNew {
    type Class: ZeroDefault;
    /// The rest of `__new__` on the fresh (default) instance; an error drops it.
    fn init(obj: &Bound<'_, Self::Class>) -> PyResult<()>;
    /// Whether `value` is the default one (Z1's check).
    fn is_default(value: &Self::Class) -> bool;
}

struct NewDef<N>(std::marker::PhantomData<N>);

impl<N: RawNew> MethodDef<newfunc::Func> for NewDef<N> {
    const METH: newfunc::Func = new_body::<N>;
}

/// A fresh instance of `subtype` (a subclass of `N::Class`), zeroed (Z1).
///
/// # Safety
/// `subtype` is a live type object whose instances have `N::Class`'s layout.
unsafe fn alloc_zeroed<N: RawNew>(
    py: Python<'_>,
    subtype: *mut ffi::PyTypeObject,
) -> PyResult<Bound<'_, N::Class>> {
    // SAFETY: per the contract; `tp_alloc` is set on every ready type.
    let obj = unsafe {
        match (*subtype).tp_alloc {
            Some(alloc) => alloc(subtype, 0),
            None => ffi::PyType_GenericAlloc(subtype, 0),
        }
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
    // SAFETY: reading a flag of a live type.
    if unsafe { (*subtype).tp_flags } & ffi::Py_TPFLAGS_IS_ABSTRACT != 0 {
        return Err(refused_by_object_new(py, subtype));
    }
    // SAFETY: per the contract.
    let obj = unsafe { alloc_zeroed::<N>(py, subtype)? };
    #[cfg(all(Py_3_11, not(Py_3_13)))]
    eager_dict(&obj)?;
    N::init(&obj)?;
    Ok(obj.into_ptr())
}

/// The instance `__dict__`, made now as `object.__new__` makes it on 3.11 and 3.12 (Z1): there
/// an instance whose class has a `__dict__` slot but has none yet fails the specialization of
/// its method loads (3.11: `LOAD_METHOD`), so every `obj.method()` would take the slow path.
#[cfg(all(Py_3_11, not(Py_3_13)))]
fn eager_dict<T>(obj: &Bound<'_, T>) -> PyResult<()> {
    // SAFETY: a live object of a class with a `__dict__` slot; a new reference or null.
    let dict = unsafe { ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()) };
    if dict.is_null() {
        return Err(PyErr::fetch(obj.py()));
    }
    // SAFETY: the new reference just returned (the object keeps its own).
    unsafe { ffi::Py_DECREF(dict) };
    Ok(())
}

/// `object.__new__`'s error for `subtype` (a class with abstract methods, Z2).
#[cold]
#[inline(never)]
fn refused_by_object_new(py: Python<'_>, subtype: *mut ffi::PyTypeObject) -> PyErr {
    let empty = PyTuple::empty(py);
    // SAFETY: `object.__new__` with a live type and an empty argument tuple.
    let obj = unsafe {
        let new = ffi::PyBaseObject_Type.tp_new.expect("object has a tp_new");
        new(subtype, empty.as_ptr(), std::ptr::null_mut())
    };
    if obj.is_null() {
        return PyErr::fetch(py);
    }
    // SAFETY: a new reference; its zeroed contents are a valid default (Z1).
    drop(unsafe { Bound::from_owned_ptr(py, obj) });
    pyo3::exceptions::PySystemError::new_err("object.__new__ accepted an abstract class")
}

/// Give `ty` (`N::Class`'s own type, before it has subclasses: Z3) the raw `tp_new`, if the
/// check of Z1 passes; says whether it did.
pub(crate) fn set_raw_new<N: RawNew>(ty: &Bound<'_, PyType>) -> bool {
    let py = ty.py();
    let tp = ty.as_type_ptr();
    // SAFETY: `ty` is `N::Class`'s type.
    let Ok(probe) = (unsafe { alloc_zeroed::<N>(py, tp) }) else {
        return false;
    };
    let zeros_are_default = probe
        .try_borrow_mut()
        .is_ok_and(|value| N::is_default(&*value));
    if !zeros_are_default {
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
