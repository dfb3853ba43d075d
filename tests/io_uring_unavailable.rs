//! Startup without io_uring: `flit serve` prints one line naming the cause and
//! the fix, and exits 2.
//!
//! Two ways io_uring is denied in practice, both created here:
//!
//! - The `kernel.io_uring_disabled` sysctl (value 2): the test sets it for the
//!   whole machine and restores the old value when it ends, even on panic.
//!   Cargo runs test binaries one after another, and the tests of this one
//!   take turns (`MACHINE`), so no other flit process is affected, and the
//!   seccomp tests never run while the sysctl is set.
//!   Where the sysctl cannot be written (not root, read-only /proc), that test
//!   says so on stderr and checks nothing: it cannot create the condition.
//! - A container's seccomp profile: Docker's default and containerd 2.0's
//!   RuntimeDefault refuse io_uring_setup, io_uring_enter and
//!   io_uring_register with EPERM; podman's default (containers-common) with
//!   ENOSYS. The tests install such a filter on the flit process itself
//!   before it starts (`python3` with ctypes: `prctl(PR_SET_NO_NEW_PRIVS)`,
//!   then `prctl(PR_SET_SECCOMP)`, then `exec`), which needs no root and no
//!   container runtime, so they run everywhere python3 does (CI installs it).

use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// Held by each test for its whole run: the sysctl is machine-wide.
static MACHINE: Mutex<()> = Mutex::new(());

fn machine() -> MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

struct RestoreSysctl(String);

impl Drop for RestoreSysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
fn io_uring_denied_is_one_line_and_exit_code_2() {
    let _machine = machine();
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

/// Installs a seccomp filter that answers io_uring_setup, io_uring_enter and
/// io_uring_register with the errno in argv[1] (as a container runtime's
/// profile does), then execs argv[2..]. Exit 77: no filter for this machine.
const SECCOMP_WRAPPER: &str = r#"
import ctypes, os, struct, sys
errno, command = int(sys.argv[1]), sys.argv[2:]
arch = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}.get(os.uname().machine)
if arch is None:
    print("no seccomp filter for " + os.uname().machine, file=sys.stderr)
    sys.exit(77)
# The io_uring system calls are 425, 426 and 427 on every architecture.
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06
program = [
    (LD_ABS, 0, 0, 4),                   # the calling convention
    (JEQ, 0, 5, arch),                   # not this machine's: allow
    (LD_ABS, 0, 0, 0),                   # the system call number
    (JEQ, 2, 0, 425),                    # io_uring_setup
    (JEQ, 1, 0, 426),                    # io_uring_enter
    (JEQ, 0, 1, 427),                    # io_uring_register
    (RET, 0, 0, 0x00050000 | errno),     # SECCOMP_RET_ERRNO | errno
    (RET, 0, 0, 0x7FFF0000),             # SECCOMP_RET_ALLOW
]
filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *f) for f in program))
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Program(len(program), ctypes.cast(filters, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
if libc.prctl(38, 1, None, 0, 0) != 0:                        # PR_SET_NO_NEW_PRIVS
    sys.exit("PR_SET_NO_NEW_PRIVS: " + os.strerror(ctypes.get_errno()))
if libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) != 0:     # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    sys.exit("PR_SET_SECCOMP: " + os.strerror(ctypes.get_errno()))
os.execv(command[0], command)
"#;

/// Starts `flit serve` under a seccomp filter that refuses io_uring with
/// `errno`, and checks the one line it prints and its exit code.
fn io_uring_blocked_by_seccomp(errno: i32, kernel_words: &str) {
    let _machine = machine();
    let output = Command::new("python3")
        .args(["-c", SECCOMP_WRAPPER, &errno.to_string(), env!("CARGO_BIN_EXE_flit")])
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--no-pin"])
        .output()
        .expect("python3 runs the seccomp wrapper (CI installs python3)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(77) {
        eprintln!("cannot simulate a seccomp profile here: {stderr}");
        return;
    }
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "no ready line: {:?}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(stderr.lines().count(), 1, "exactly one line: {stderr}");
    // The kernel's error came from the filter, not from something else.
    assert!(stderr.contains(kernel_words), "the filter's errno: {stderr}");
    assert!(stderr.contains("io_uring is not available"), "names the cause: {stderr}");
    assert!(stderr.contains("seccomp profile"), "names seccomp as a cause: {stderr}");
    for fix in ["io_uring_setup, io_uring_enter and io_uring_register", "seccomp=unconfined", "Unconfined"] {
        assert!(stderr.contains(fix), "names the fix ({fix}): {stderr}");
    }
}

#[test]
fn io_uring_blocked_by_seccomp_with_eperm_names_seccomp_and_the_fix() {
    // Docker's default profile, containerd 2.0's RuntimeDefault.
    io_uring_blocked_by_seccomp(1, "os error 1");
}

#[test]
fn io_uring_blocked_by_seccomp_with_enosys_names_seccomp_and_the_fix() {
    // podman's default profile (containers-common: defaultErrnoRet 38).
    io_uring_blocked_by_seccomp(38, "os error 38");
}
