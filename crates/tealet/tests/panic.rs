//! A panic in `run` never unwinds across a switch: the process aborts with a clear message.
//! The aborting code runs in a child process (this same test binary, re-run with an
//! environment variable), so the test can observe it.

use std::process::Command;

const CHILD: &str = "TEALET_PANIC_CHILD";

#[test]
fn panic_in_run_aborts_with_a_message() {
    if std::env::var_os(CHILD).is_some() {
        let _ = tealet::spawn(|_back: tealet::Suspended| -> (tealet::Suspended, u8) {
            panic!("boom in run")
        });
        unreachable!("spawn must not return after a panic in run");
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "panic_in_run_aborts_with_a_message",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "SIGABRT expected, got {:?}; stderr:\n{stderr}",
            out.status
        );
    }
    assert!(
        stderr.contains("tealet: fatal: panic in a tealet's run(), which cannot unwind across a stack switch: boom in run"),
        "stderr was:\n{stderr}"
    );
}

#[test]
fn panic_after_switches_is_caught_the_same_way() {
    if std::env::var_os(CHILD).is_some() {
        let r = tealet::spawn(|back: tealet::Suspended| -> (tealet::Suspended, u8) {
            let r = back.switch(1u8).unwrap();
            drop(r);
            panic!("late boom")
        })
        .unwrap();
        let _ = r.from.unwrap().switch(2u8);
        unreachable!();
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "panic_after_switches_is_caught_the_same_way",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot unwind across a stack switch: late boom"),
        "stderr was:\n{stderr}"
    );
}

#[test]
fn panic_inside_run_caught_by_run_itself_is_fine() {
    let r = tealet::spawn(|back| {
        let caught = std::panic::catch_unwind(|| panic!("contained")).is_err();
        (back, caught)
    })
    .unwrap();
    assert!(r.value);
}
