//! Reads the CPython thread-state layout from the *real* headers of the interpreter being
//! built for: a small C program (`src/pystate/offsets.c`) is compiled against
//! `sysconfig.get_paths()['include']` of `PYO3_PYTHON` (the interpreter maturin passes) and
//! run; its output becomes `OUT_DIR/offsets.rs`.  The Rust side reads fields only at these
//! offsets, so a layout change fails the build or follows it, never corrupts memory.
//! (Cross-compiling would need to read the object file instead of running it; we build for
//! the host only.)

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    println!("cargo:rerun-if-changed=src/pystate/offsets.c");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let cfg = pyo3_build_config::get();
    let python = cfg
        .executable()
        .map(ToOwned::to_owned)
        .or_else(|| env::var("PYO3_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let dest = out.join("offsets.rs");
    if cfg.implementation() != pyo3_build_config::PythonImplementation::CPython {
        // Not CPython (PyPy has its own builtin `_continuation`): nothing to read.
        std::fs::write(&dest, "// not CPython\n").unwrap();
        return;
    }
    let include = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['include'])",
        ])
        .output()
        .expect("run the target python for its include dir");
    assert!(
        include.status.success(),
        "could not ask {python} for its include dir"
    );
    let include = String::from_utf8(include.stdout).unwrap().trim().to_owned();
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let exe = out.join("offsets");
    let status = Command::new(&cc)
        .args([
            "-std=c11",
            "-O0",
            "-DPy_BUILD_CORE",
            "-I",
            &include,
            "-I",
            &format!("{include}/internal"),
            "src/pystate/offsets.c",
            "-o",
        ])
        .arg(&exe)
        .status()
        .expect("run the C compiler for src/pystate/offsets.c");
    assert!(
        status.success(),
        "compiling src/pystate/offsets.c against {include} failed"
    );
    let res = Command::new(&exe)
        .output()
        .expect("run the offsets program");
    assert!(res.status.success());
    std::fs::write(&dest, res.stdout).unwrap();
}
