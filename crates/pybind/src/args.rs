//! # PyPy's argument matching for the methods of `continulet`
//!
//! PyPy's `_continuation` methods are interp-level functions whose argument errors come from
//! PyPy's own argument parser: the messages count `self`, name the method without its class,
//! and report keyword problems first (a keyword naming a parameter already filled by a
//! positional argument is *unexpected*, not "multiple values").  pyo3's generated parsing
//! words them like CPython's C methods (`continulet.throw() takes from 1 to 4 ...`), so the
//! methods take `*args, **kwargs` and bind them here — all but `switch`, the hot path, which
//! keeps pyo3's fast-call parsing (no argument tuple per call) and so its wording.  Checked
//! against PyPy 3.9 (the oracle), case by case, in `conformance/test_continulet_*.py`.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

/// The Python-level signature of a method: `name(self, params[0], ..., params[n-1])`, the
/// first `required` of them without a default.
pub(crate) struct Signature {
    pub(crate) name: &'static str,
    pub(crate) params: &'static [&'static str],
    pub(crate) required: usize,
}

impl Signature {
    /// The value of each parameter (None: not given), or PyPy's `TypeError`.
    pub(crate) fn bind<'py, const N: usize>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
        debug_assert_eq!(self.params.len(), N);
        let given = args.len();
        let mut out: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
        for (slot, a) in out.iter_mut().zip(args.iter()) {
            *slot = Some(a);
        }
        if let Some(kw) = kwargs.filter(|k| !k.is_empty()) {
            let mut unexpected = (0, None);
            for (k, v) in kw.iter() {
                let name = k
                    .cast::<PyString>()
                    .ok()
                    .and_then(|s| s.to_str().ok().map(str::to_owned));
                match name
                    .as_deref()
                    .and_then(|n| self.params.iter().position(|p| *p == n))
                {
                    Some(i) if i >= given => out[i] = Some(v),
                    _ => unexpected = (unexpected.0 + 1, unexpected.1.or(name)),
                }
            }
            match unexpected {
                (0, _) => {}
                (1, name) => {
                    return Err(PyTypeError::new_err(format!(
                        "{}() got an unexpected keyword argument '{}'",
                        self.name,
                        name.unwrap_or_default()
                    )))
                }
                (many, _) => {
                    return Err(PyTypeError::new_err(format!(
                        "{}() got {many} unexpected keyword arguments",
                        self.name
                    )))
                }
            }
        }
        if given > N {
            return Err(self.too_many(given));
        }
        let missing: Vec<&str> = (0..self.required)
            .filter(|&i| out[i].is_none())
            .map(|i| self.params[i])
            .collect();
        if !missing.is_empty() {
            return Err(missing_error(self.name, &missing));
        }
        Ok(out)
    }

    fn too_many(&self, given: usize) -> PyErr {
        let n = self.params.len() + 1; // with self, as PyPy counts
        let takes = if self.required + 1 == n {
            format!("{n} positional argument{}", if n == 1 { "" } else { "s" })
        } else {
            format!("from {} to {n} positional arguments", self.required + 1)
        };
        PyTypeError::new_err(format!(
            "{}() takes {takes} but {} were given",
            self.name,
            given + 1
        ))
    }
}

/// `f() missing 1 required positional argument: 'a'` (CPython's and PyPy's wording).
fn missing_error(name: &str, missing: &[&str]) -> PyErr {
    let quoted: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
    let list = match quoted.as_slice() {
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => String::new(),
    };
    PyTypeError::new_err(format!(
        "{name}() missing {} required positional argument{}: {list}",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" }
    ))
}

/// `__init__`'s `callable`, `args` and `kwds`.
pub(crate) type InitArgs<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Option<Bound<'py, PyDict>>,
);

/// `__init__(self, callable, *args, **kwds)` as PyPy binds it: `callable` is the first
/// positional argument, or else the keyword `callable` (which, when a positional one was
/// given, stays in `kwds` for the callable).
pub(crate) fn bind_init<'py>(
    args: &Bound<'py, PyTuple>,
    kwds: Option<&Bound<'py, PyDict>>,
) -> PyResult<InitArgs<'py>> {
    let py = args.py();
    let kwds = kwds.filter(|k| !k.is_empty());
    if !args.is_empty() {
        let rest = args.get_slice(1, args.len());
        return Ok((args.get_item(0)?, rest, kwds.cloned()));
    }
    if let Some(k) = kwds {
        if let Some(callable) = k.get_item("callable")? {
            let rest = k.copy()?;
            rest.del_item("callable")?;
            let rest = (!rest.is_empty()).then_some(rest);
            return Ok((callable, PyTuple::empty(py), rest));
        }
    }
    Err(missing_error("__init__", &["callable"]))
}
