//! The CLI's output path: a reader that goes away must not make `coffer` panic.

use std::process::{Command, Stdio};

#[test]
fn closed_stdout_is_not_a_panic() {
    for _ in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["completions", "bash"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn coffer");
        // Close the read end before the CLI writes, as `coffer ... | head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for coffer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "coffer panicked: {stderr}");
        assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    }
}
