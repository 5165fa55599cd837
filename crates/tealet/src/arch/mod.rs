//! The one switch primitive, per target.
//!
//! Every target file exports the same items:
//!
//! * `STACK_GROWS_DOWN: bool`: every supported target grows its stack downwards; the slicing
//!   code in [`crate::stack`] is written for that and asserts it at compile time.
//! * `unsafe extern "C" fn switch(save, restore, ctx) -> *mut u8`: the step contract below.
//! * `unsafe extern "C" fn call_bottom(f, arg) -> !`: call `f(arg)` from a frame whose unwind
//!   info ends the stack (the return address is undefined), the bottom of every new tealet.
//!
//! # Step contract of `switch(save, restore, ctx)`
//!
//! 1. Push every callee-saved register of the ABI and the floating-point control words onto the
//!    current stack; call the resulting stack pointer `sp`.
//! 2. Call `save(sp, ctx)`.  It returns either null ("do not switch") or the stack pointer to
//!    switch to, `new_sp`.
//! 3. If null: pop what step 1 pushed and return null.
//! 4. Otherwise set the stack pointer to `new_sp` and call `restore(new_sp, ctx)`, which copies
//!    the target's saved bytes back to `[new_sp, ...)` (strictly above the stack pointer, so it
//!    never overwrites its own frame).  Its return value `r` is kept.
//! 5. Pop the target's registers (pushed by the target's own step 1) and return `r` into the
//!    target's caller of `switch`.
//!
//! No Rust code runs between the stack-pointer change and `restore`; `save` and `restore` are
//! `extern "C"` functions that run on the stack below `sp`.
//!
//! Adding a target is one file: implement the contract for its ABI, add it to the `cfg` list
//! below, and add a CI job that runs the tests on it.

#[cfg(all(target_arch = "x86_64", not(windows)))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", not(windows)))]
pub(crate) use self::x86_64::{call_bottom, switch, STACK_GROWS_DOWN};

#[cfg(not(all(target_arch = "x86_64", not(windows))))]
compile_error!(
    "tealet: no stack switch for this target yet; add src/arch/<target>.rs (see arch/mod.rs for the contract)"
);

/// `save(sp, ctx) -> new_sp or null`, called by [`switch`] on the old stack.
pub(crate) type SaveFn = unsafe extern "C" fn(sp: *mut u8, ctx: *mut u8) -> *mut u8;
/// `restore(new_sp, ctx) -> result`, called by [`switch`] on the new stack before its contents
/// are valid.
pub(crate) type RestoreFn = unsafe extern "C" fn(new_sp: *mut u8, ctx: *mut u8) -> *mut u8;
