//! # Fields of frozen pyclasses, read and written under the GIL
//!
//! A `#[pyclass(frozen)]` has no borrow flag: pyo3 hands out `&T` only.  Its mutable fields
//! are [`GilCell`]s: a value that is copied, cloned as a new reference (objects) or moved in
//! and out, never lent.  A borrow of a non-frozen pyclass costs a checked, atomic
//! `try_borrow` and its release (~10 instructions, an out-of-line call); a `GilCell` access is
//! a load or a store.  The greenlet and stackless bases use them (a greenlet's creation,
//! start and end made ~45 borrows, a channel message ~40), and so do a few statics read and
//! written only under the GIL (greenlet's start hand-over).
//!
//! # Invariants
//!
//! * **L1** A `GilCell` is reached only by a thread attached to the interpreter, which holds
//!   the GIL: every accessor takes a `Python` token, and [`GilCell::visit`] runs in the
//!   collector's traversal (attached too).  The module says it uses the GIL
//!   (`#[pymodule(gil_used = true)]`), so a free-threaded interpreter enables the GIL when it
//!   imports it.  So one thread at a time.
//! * **L2** No reference into a cell outlives an accessor, and no accessor runs Python code:
//!   so two accesses never overlap, even on one thread.  An old value moved out by
//!   [`GilCell::replace`] is released by the caller, after the accessor returned (its
//!   finalizer may read or write the same cell).

use std::cell::UnsafeCell;

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

/// A field of a frozen pyclass, or a static, used under the GIL (L1, L2).
#[derive(Default)]
pub(crate) struct GilCell<T>(UnsafeCell<T>);

// SAFETY: L1 - only threads holding the GIL reach the value, one at a time, and L2 - no
// reference to it escapes an accessor; `T: Send` since the value may be dropped (or moved
// out) by another thread than the one that stored it.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        GilCell(UnsafeCell::new(value))
    }

    /// Store `value`, returning the old one, to be released by the caller (L2).
    #[inline]
    pub(crate) fn replace(&self, _py: Python<'_>, value: T) -> T {
        // SAFETY: L1 (the token: this thread holds the GIL), L2 (no other reference exists
        // during the swap, which runs no code).
        unsafe { std::mem::replace(&mut *self.0.get(), value) }
    }

    /// The value, for its owner alone (`Drop`, `__clear__` of a value being torn down).
    #[inline]
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }

    /// `f` on a shared view of the value.  Private: every `f` here only copies, compares or
    /// takes a new reference (an incref), which runs no code (L2).
    #[inline]
    fn peek<R>(&self, _py: Python<'_>, f: impl FnOnce(&T) -> R) -> R {
        // SAFETY: L1 (token), L2 (`f` runs no code, and the reference does not outlive this
        // call).
        f(unsafe { &*self.0.get() })
    }
}

impl<T: Default> GilCell<T> {
    /// Move the value out, leaving the default (to be released by the caller, L2).
    #[inline]
    pub(crate) fn take(&self, py: Python<'_>) -> T {
        self.replace(py, T::default())
    }
}

impl<T: Copy> GilCell<T> {
    #[inline]
    pub(crate) fn get(&self, py: Python<'_>) -> T {
        self.peek(py, |v| *v)
    }

    #[inline]
    pub(crate) fn set(&self, py: Python<'_>, value: T) {
        self.replace(py, value);
    }
}

impl<T> GilCell<Option<Py<T>>> {
    /// The object, as a new reference.
    #[inline]
    pub(crate) fn bound<'py>(&self, py: Python<'py>) -> Option<Bound<'py, T>> {
        self.peek(py, |v| v.as_ref().map(|o| o.bind(py).clone()))
    }

    /// The object, as a new reference (for pyo3 getters).
    #[inline]
    pub(crate) fn cloned(&self, py: Python<'_>) -> Option<Py<T>> {
        self.peek(py, |v| v.as_ref().map(|o| o.clone_ref(py)))
    }

    #[inline]
    pub(crate) fn is_some(&self, py: Python<'_>) -> bool {
        self.peek(py, Option::is_some)
    }

    #[inline]
    pub(crate) fn is_none(&self, py: Python<'_>) -> bool {
        self.peek(py, Option::is_none)
    }

    /// The object's address (its identity only: no reference is taken).
    #[inline]
    pub(crate) fn ptr(&self, py: Python<'_>) -> Option<*mut pyo3::ffi::PyObject> {
        self.peek(py, |v| v.as_ref().map(Py::as_ptr))
    }

    /// Whether it holds `obj` itself.
    #[inline]
    pub(crate) fn holds<U>(&self, py: Python<'_>, obj: &Bound<'_, U>) -> bool {
        self.peek(py, |v| {
            v.as_ref().is_some_and(|o| o.as_ptr() == obj.as_ptr())
        })
    }

    /// Whether both hold the same object (or both nothing).
    #[inline]
    pub(crate) fn same_as<U>(&self, py: Python<'_>, other: &GilCell<Option<Py<U>>>) -> bool {
        self.ptr(py) == other.ptr(py)
    }

    /// Visit the object, if any (`__traverse__`).
    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: L1 - the collector traverses with the GIL held; L2 - it runs no Python code
        // while the reference lives, and no accessor is under way (none runs code).
        match unsafe { &*self.0.get() } {
            Some(o) => visit.call(o),
            None => Ok(()),
        }
    }
}

/// `#[pyo3(get)]` on a `GilCell` field of a frozen class: the value, converted.
impl<'py, T> IntoPyObject<'py> for &GilCell<Option<Py<T>>> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Bound<'py, PyAny>, Self::Error> {
        Ok(self
            .bound(py)
            .map_or_else(|| py.None().into_bound(py), Bound::into_any))
    }
}

macro_rules! copied_into_py {
    ($($t:ty),*) => {$(
        /// `#[pyo3(get)]` on a `GilCell` field of a frozen class: the value, converted.
        impl<'py> IntoPyObject<'py> for &GilCell<$t> {
            type Target = <$t as IntoPyObject<'py>>::Target;
            type Output = <$t as IntoPyObject<'py>>::Output;
            type Error = <$t as IntoPyObject<'py>>::Error;

            fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
                self.get(py).into_pyobject(py)
            }
        }
    )*};
}

copied_into_py!(bool, i64);
