//! # Object fields of the native base classes (`scheduler`, `greenlet`)
//!
//! The tasklet, channel, scheduler, greenlet and greenlet-thread-state bases keep Python
//! objects in `Option<Py<PyAny>>` fields that the Python layers read and write as attributes
//! (or `Option<Py<T>>` where the fast paths want a known class without checking it per use).
//!
//! # Invariants
//!
//! * **F1** A field's old value is released only after the object's borrow guard has ended:
//!   releasing it can run a finalizer that reads or writes the same object (a killed greenlet's
//!   `__del__`, a replaced `tempval`'s), which would otherwise find it borrowed.  pyo3's
//!   generated `set` drops the old value under the guard, so object fields get written-out
//!   setters that go through [`set_field`].

use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::False;
use pyo3::{PyClass, PyTraverseError, PyVisit};

type Obj = Py<PyAny>;

/// `field = value` (Python None stored as `None`), the old value released after the borrow
/// (F1).
pub(crate) fn set_field<T: PyClass<Frozen = False>>(
    obj: &Bound<'_, T>,
    value: Obj,
    field: impl FnOnce(&mut T) -> &mut Option<Obj>,
) {
    let value = if value.is_none(obj.py()) {
        None
    } else {
        Some(value)
    };
    set_typed_field(obj, value, field);
}

/// `field = value` for a field of one class (pyo3 checked the type when it extracted
/// `value`), the old value released after the borrow (F1).
pub(crate) fn set_typed_field<T: PyClass<Frozen = False>, V>(
    obj: &Bound<'_, T>,
    value: Option<Py<V>>,
    field: impl FnOnce(&mut T) -> &mut Option<Py<V>>,
) {
    let old = std::mem::replace(field(&mut obj.borrow_mut()), value);
    drop(old); // F1: the guard is gone
}

/// Visit every field that holds an object (`__traverse__`).
pub(crate) fn visit_all(visit: &PyVisit<'_>, objs: &[&Option<Obj>]) -> Result<(), PyTraverseError> {
    for o in objs.iter().copied().flatten() {
        visit.call(o)?;
    }
    Ok(())
}

/// Old field values released as `Bound`s: a plain reference-count drop, without the
/// per-thread lookup pyo3 makes when a `Py` is dropped (F1: called after the borrow ended).
pub(crate) trait ReleaseNow {
    fn release_now(self, py: Python<'_>);
}

impl ReleaseNow for Option<Obj> {
    fn release_now(self, py: Python<'_>) {
        drop(self.map(|o| o.into_bound(py)));
    }
}

impl ReleaseNow for (Option<Obj>, Option<Obj>) {
    fn release_now(self, py: Python<'_>) {
        self.0.release_now(py);
        self.1.release_now(py);
    }
}

/// `cell = value` for a field of a frozen class (Python None stored as `None`), the old value
/// released after the store (F1; pystate `gil_cell` L2).
pub(crate) fn set_cell(
    py: Python<'_>,
    cell: &crate::pystate::gil_cell::GilCell<Option<Obj>>,
    value: Obj,
) {
    let value = (!value.is_none(py)).then_some(value);
    let old = cell.replace(py, value);
    drop(old); // F1
}
