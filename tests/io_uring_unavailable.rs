//! Startup without io_uring: `flit serve` prints one line naming the cause and
//! the fix, and exits 2.
//!
//! The test denies io_uring for the whole machine with the
//! `kernel.io_uring_disabled` sysctl (value 2) and restores the old value when
//! it ends, even on panic. It is the only test in this binary, and cargo runs
//! test binaries one after another, so no other flit process is affected.
//! Where the sysctl cannot be written (not root, read-only /proc), the test
//! says so on stderr and checks nothing: it cannot create the condition.

use std::process::Command;

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

struct RestoreSysctl(String);

impl Drop for RestoreSysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
fn io_uring_denied_is_one_line_and_exit_code_2() {
    let Ok(previous) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("{SYSCTL} does not exist: kernel without the switch, nothing to test");
        return;
    };
    if std::fs::write(SYSCTL, "2").is_err() {
        eprintln!("cannot write {SYSCTL} (not root?): io_uring cannot be denied here, nothing to test");
        return;
    }
    let _restore = RestoreSysctl(previous.trim().to_string());
    let output = Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--no-pin"])
        .output()
        .expect("run flit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "no ready line: {:?}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(stderr.lines().count(), 1, "exactly one line: {stderr}");
    assert!(stderr.contains("io_uring is not available"), "names the cause: {stderr}");
    assert!(stderr.contains("io_uring_disabled=0"), "names the fix: {stderr}");
}
