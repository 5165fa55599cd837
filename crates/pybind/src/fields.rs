//! # Object fields of the native base classes (`scheduler`, `greenlet`)
//!
//! The tasklet, channel, scheduler, greenlet and greenlet-thread-state bases are frozen
//! pyclasses whose fields are pystate `GilCell`s: `Option<Py<PyAny>>` for the objects the
//! Python layers read and write as attributes (or `Option<Py<T>>` where the fast paths want a
//! known class without checking it per use), plain values for numbers and flags.
//!
//! # Invariants
//!
//! * **F1** A field's old value is released only after the store that replaced it: releasing
//!   it can run a finalizer that reads or writes the same object (a killed greenlet's
//!   `__del__`, a replaced `tempval`'s).  Attribute setters go through [`set_cell`].

use pyo3::prelude::*;

type Obj = Py<PyAny>;

/// Values released as `Bound`s: a plain reference-count drop, without the per-thread lookup
/// pyo3 makes when a `Py` is dropped (old field values: F1, called after the store; a
/// switch's returned payload).
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
