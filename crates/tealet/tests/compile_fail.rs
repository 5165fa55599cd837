//! Compile-fail tests: handles are not `Send`; `run` cannot borrow from the spawner's stack.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/not_send.rs");
    t.compile_fail("tests/ui/borrowed_closure.rs");
}
