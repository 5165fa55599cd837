//! # cast: a checked cast without the MRO walk for one remembered subclass
//!
//! The native bases (`TaskletBase`, `ChannelBase`, `GreenletBase`) are used through Python
//! subclasses (`stackless.tasklet`, `greenlet.greenlet`), so pyo3's checked cast of their
//! instances is not an exact-type test but `PyType_IsSubtype`, a walk of the MRO tuple — paid
//! on every link of a run queue or channel queue the native scheduler follows.  A
//! [`KnownSubclass`] remembers the first subclass it saw pass the checked cast and afterwards
//! accepts that type by pointer comparison.
//!
//! The type questions the fast paths ask beside it live here too: whether a class looks
//! attributes up the default way ([`plain_getattr`]), what its MRO gives for a name (CPython's
//! cached `_PyType_Lookup`, [`class_attr_is`]), and `isinstance` answered from the type alone
//! when that is all `isinstance` would read ([`isinstance_by_type`]).
//!
//! # Invariants
//!
//! * **K1** A remembered type was accepted by the checked cast (it is `T` or a subclass of
//!   it), and it is never freed: the reference taken when it is remembered is never
//!   released, so its address cannot come to denote another type.  (A subclass keeps `T` as a
//!   base for good: CPython refuses a `__bases__` assignment to a class of another layout.)
//! * **K2** A type remembered with its version tag by a [`TypeVerdict`] (of
//!   [`isinstance_by_type`], of a call site of [`class_attr_is`]) answered that question yes
//!   when the tag was valid, and the answer reads only the type's MRO and slots: CPython
//!   invalidates a type's tag whenever the type or a base changes (an assigned `__class__`,
//!   `__getattribute__` or `__getattr__` included) and never hands out a tag twice, so the
//!   same type pointer with the same valid tag is that type, unchanged.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyTypeInfo;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// See the module docs.
pub(crate) struct KnownSubclass<T> {
    ty: AtomicPtr<ffi::PyTypeObject>,
    _class: PhantomData<fn() -> T>,
}

impl<T: PyTypeInfo> KnownSubclass<T> {
    pub(crate) const fn new() -> Self {
        KnownSubclass {
            ty: AtomicPtr::new(std::ptr::null_mut()),
            _class: PhantomData,
        }
    }

    /// `obj` as a `T` if its type is the remembered one (no check otherwise).
    #[inline]
    pub(crate) fn known<'a, 'py>(&self, obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, T>> {
        if obj.get_type_ptr() == self.ty.load(Ordering::Relaxed) {
            // SAFETY: K1: a remembered type is `T` or a subclass of it, and still that type.
            Some(unsafe { obj.cast_unchecked::<T>() })
        } else {
            None
        }
    }

    /// `obj` as a `T`, if it is one.
    #[inline]
    pub(crate) fn cast<'a, 'py>(&self, obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, T>> {
        self.known(obj).or_else(|| self.cast_slow(obj))
    }

    /// `obj` as a `T`, if it is one (consuming it).
    #[inline]
    pub(crate) fn cast_into<'py>(&self, obj: Bound<'py, PyAny>) -> Option<Bound<'py, T>> {
        if self.known(&obj).is_some() {
            // SAFETY: K1, as in `known`.
            return Some(unsafe { obj.cast_into_unchecked::<T>() });
        }
        self.cast_slow(&obj)?;
        // SAFETY: `cast_slow` checked it.
        Some(unsafe { obj.cast_into_unchecked::<T>() })
    }

    #[cold]
    #[inline(never)]
    fn cast_slow<'a, 'py>(&self, obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, T>> {
        let t = obj.cast::<T>().ok()?;
        let tp = obj.get_type_ptr();
        if self
            .ty
            .compare_exchange(
                std::ptr::null_mut(),
                tp,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            // K1: never released.  SAFETY: `tp` is the live type of `obj`; GIL held.
            unsafe { ffi::Py_INCREF(tp.cast()) };
        }
        Some(t)
    }
}

/// Whether instances of `ty` look attributes up the default way (`object.__getattribute__`,
/// no `__getattr__`): then a class attribute found on the type is what reading it gives.
fn plain_getattr(ty: &Bound<'_, pyo3::types::PyType>) -> bool {
    // SAFETY: a live type object (GIL held); `tp_getattro` is a plain field read.
    let getattro = unsafe { (*ty.as_type_ptr()).tp_getattro };
    getattro
        .is_some_and(|f| std::ptr::fn_addr_eq(f, ffi::PyObject_GenericGetAttr as ffi::getattrofunc))
}

extern "C" {
    /// CPython's MRO lookup with its method cache (exported by 3.10 to 3.13, not in
    /// pyo3-ffi): a borrowed reference or null, no exception set, no descriptor called.
    fn _PyType_Lookup(ty: *mut ffi::PyTypeObject, name: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Whether `ty` looks attributes up the default way ([`plain_getattr`]) and `name` found on
/// its MRO is `expected` itself: what its instances find for `name` before their own dict (a
/// data descriptor wins there), not anything a subclass put there.  A cached lookup, not
/// `getattr(ty, name)` (a metaclass lookup and a descriptor call); `seen` remembers the last
/// type for which it held (K2: one `TypeVerdict` per question, always the same `name` and
/// `expected`).
pub(crate) fn class_attr_is(
    ty: &Bound<'_, pyo3::types::PyType>,
    name: &Bound<'_, pyo3::types::PyString>,
    expected: &Bound<'_, PyAny>,
    seen: &TypeVerdict,
) -> bool {
    if seen.holds_for(ty) {
        return true;
    }
    // SAFETY: a live type and a live str (GIL held); the result is borrowed and only
    // compared, never dereferenced.
    let holds = plain_getattr(ty)
        && unsafe { _PyType_Lookup(ty.as_type_ptr(), name.as_ptr()) } == expected.as_ptr();
    if holds {
        seen.remember(ty);
    }
    holds
}

/// `isinstance(obj, cls)` answered from `obj`'s type alone, when that is all `isinstance`
/// would look at: `cls`'s metaclass is `type` (no `__instancecheck__` of its own) and `obj`'s
/// class looks attributes up the default way with `object`'s `__class__` (no proxy giving
/// another class).  None: ask `isinstance` itself.
pub(crate) fn isinstance_by_type(
    obj: &Bound<'_, PyAny>,
    cls: &Bound<'_, pyo3::types::PyType>,
) -> Option<bool> {
    let py = obj.py();
    let ty = obj.get_type();
    // SAFETY: live type objects (GIL held); plain pointer reads and comparisons, and
    // CPython's subtype test, which only reads the MRO.
    unsafe {
        if cls.get_type_ptr() != std::ptr::addr_of_mut!(ffi::PyType_Type) {
            return None;
        }
        let tp = ty.as_type_ptr();
        if ffi::PyType_IsSubtype(tp, cls.as_type_ptr()) != 0 {
            return Some(true);
        }
        if PLAIN_CLASS.holds_for(&ty) {
            return Some(false); // K2
        }
        let name = pyo3::intern!(py, "__class__");
        let default = _PyType_Lookup(
            std::ptr::addr_of_mut!(ffi::PyBaseObject_Type),
            name.as_ptr(),
        );
        let plain = plain_getattr(&ty) && _PyType_Lookup(tp, name.as_ptr()) == default;
        if plain {
            PLAIN_CLASS.remember(&ty);
        }
        plain.then_some(false)
    }
}

/// The last type [`isinstance_by_type`] found to give its instances `object`'s `__class__`
/// (and look attributes up the default way).
static PLAIN_CLASS: TypeVerdict = TypeVerdict::new();

/// The last type a question about types held for, with its version tag then (K2): while the
/// type keeps that tag, nothing the answer read has changed.  (Touched with the GIL held.)
pub(crate) struct TypeVerdict {
    ty: AtomicPtr<ffi::PyTypeObject>,
    tag: AtomicU32,
}

impl TypeVerdict {
    pub(crate) const fn new() -> Self {
        TypeVerdict {
            ty: AtomicPtr::new(std::ptr::null_mut()),
            tag: AtomicU32::new(0),
        }
    }

    /// Whether the answer was found for `ty` as it is now.
    fn holds_for(&self, ty: &Bound<'_, pyo3::types::PyType>) -> bool {
        self.ty.load(Ordering::Relaxed) == ty.as_type_ptr()
            && version_tag(ty).is_some_and(|tag| tag == self.tag.load(Ordering::Relaxed))
    }

    /// The answer was just found for `ty` (after a lookup in it, which gives it a tag if it
    /// can have one).
    fn remember(&self, ty: &Bound<'_, pyo3::types::PyType>) {
        if let Some(tag) = version_tag(ty) {
            self.ty.store(ty.as_type_ptr(), Ordering::Relaxed);
            self.tag.store(tag, Ordering::Relaxed);
        }
    }
}

/// `ty`'s method-cache version tag, if it has a valid one.
fn version_tag(ty: &Bound<'_, pyo3::types::PyType>) -> Option<u32> {
    let tp = ty.as_type_ptr();
    // SAFETY: a live type object (GIL held); plain field reads.
    let (flags, tag) = unsafe { ((*tp).tp_flags, (*tp).tp_version_tag) };
    (flags & ffi::Py_TPFLAGS_VALID_VERSION_TAG != 0 && tag != 0).then_some(tag)
}
