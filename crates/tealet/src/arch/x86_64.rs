//! x86-64 System V (Linux, macOS, the BSDs).
//!
//! # Register contract
//!
//! Callee-saved and therefore pushed: `rbx`, `rbp`, `r12`-`r15`, plus the control bits of
//! `MXCSR` and the x87 control word (the ABI says both are callee-preserved "control" state).
//! All `xmm`/`ymm` registers, `rax`, `rcx`, `rdx`, `rsi`, `rdi`, `r8`-`r11` are caller-saved, so
//! the Rust caller of `switch` already assumes they are clobbered by the call.
//!
//! Arguments: `rdi` = `save`, `rsi` = `restore`, `rdx` = `ctx`.  Result in `rax`.
//!
//! # Frame of `switch` while suspended (addresses grow upwards)
//!
//! ```text
//!            +--------------------+
//!            | caller's frame     |
//!            | return address     |  <- rsp at entry (== 8 mod 16)
//!            | rbp                |
//!            | rbx                |
//!            | r12                |
//!            | r13                |
//!            | r14                |
//!            | r15                |
//!            | x87 CW | MXCSR     |  <- sp handed to save(): 16-byte aligned
//!            +--------------------+
//!            | save()/restore()   |  frames of the callbacks live below sp
//! ```
//!
//! `sp` is what a suspended stack's saved slice starts at: everything from `sp` up to the
//! slice's far end is copied to the heap, and back to the very same addresses before the pops.

/// The stack grows towards lower addresses.
pub(crate) const STACK_GROWS_DOWN: bool = true;

/// Switch stacks according to the step contract in [`super`].
///
/// # Safety
///
/// * `save` and `restore` must honour the step contract: `save` returns null or a stack pointer
///   previously handed to a `save` by this function (whose bytes `restore` puts back before
///   returning), and neither may unwind.
/// * The caller must be an `#[inline(never)]` function that keeps no Rust local alive across
///   the call other than in memory that is saved and restored with the slice (its own frame).
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn switch(
    save: super::SaveFn,
    restore: super::RestoreFn,
    ctx: *mut u8,
) -> *mut u8 {
    core::arch::naked_asm!(
        // Step 1: push the callee-saved registers of the running context.
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        // 8 bytes for MXCSR (low 4) and the x87 control word (next 2); this also brings rsp
        // from 8 mod 16 (after the return address and six pushes) to 0 mod 16 for the calls.
        "sub rsp, 8",
        "stmxcsr [rsp]",
        "fnstcw [rsp + 4]",
        // Keep `restore` and `ctx` in callee-saved registers: they survive the call to save().
        "mov r12, rsi",
        "mov r13, rdx",
        // Step 2: new_sp = save(sp, ctx).
        "mov rax, rdi",
        "mov rdi, rsp",
        "mov rsi, r13",
        "call rax",
        // Step 3: null means "do not switch": return null on this same stack.
        "test rax, rax",
        "jz 2f",
        // Step 4: switch the stack pointer; the memory above it is not valid until restore().
        "mov rsp, rax",
        "mov rdi, rax",
        "mov rsi, r13",
        "call r12",
        // Step 5 (and the end of step 3): pop the registers of whichever context now owns the
        // stack, in the reverse order of step 1, and return `rax` to it.
        "2:",
        "ldmxcsr [rsp]",
        "fldcw [rsp + 4]",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// Call `f(arg)` as the bottom frame of a new tealet's stack.  This frame's unwind info says
/// that the return address is undefined, so an unwinder (a panic's backtrace, a debugger)
/// stops here instead of walking on into the spawner's frames, whose stack bytes may belong
/// to another context by then.  `f` never returns.
///
/// # Safety
///
/// `f` must not return or unwind.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn call_bottom(
    f: unsafe extern "C" fn(*mut u8) -> !,
    arg: *mut u8,
) -> ! {
    core::arch::naked_asm!(
        // (Naked functions get no unwind info of their own: this is all of it.)
        ".cfi_startproc",
        ".cfi_undefined rip",
        // rsp is 8 mod 16 at entry; the call needs 0 mod 16.
        "sub rsp, 8",
        ".cfi_adjust_cfa_offset 8",
        "mov rax, rdi",
        "mov rdi, rsi",
        "call rax",
        "ud2",
        ".cfi_endproc",
    )
}
