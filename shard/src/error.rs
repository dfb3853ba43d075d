//! Why a router could not start or a shard stopped. Each variant's message is
//! one line for a person: the cause, then the fix.

use std::io;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "cannot listen on {address}: address already in use; stop the process holding it or choose another {flag}"
    )]
    AddressInUse { address: SocketAddr, flag: &'static str },
    #[error("cannot listen on {address}: {source}; check the address belongs to this host and the port is allowed")]
    Bind { address: SocketAddr, source: io::Error },
    #[error(
        "io_uring is not available ({source}): kernel.io_uring_disabled or a container seccomp profile (Docker's and \
         podman's defaults, some RuntimeDefault profiles) forbids it; set `sysctl kernel.io_uring_disabled=0`, or \
         allow io_uring_setup, io_uring_enter and io_uring_register (`--security-opt seccomp=unconfined`, Kubernetes \
         `seccompProfile: Unconfined`, or a custom profile)"
    )]
    IoUringDenied { source: io::Error },
    #[error("io_uring rejected SINGLE_ISSUER|DEFER_TASKRUN ({source}); flit needs Linux 6.1 or newer")]
    KernelTooOld { source: io::Error },
    #[error(
        "locked memory limit too low for io_uring ({source}); raise it with `ulimit -l` or LimitMEMLOCK= in the \
         systemd unit"
    )]
    MemlockTooLow { source: io::Error },
    #[error("io_uring setup failed: {source}")]
    IoUring { source: io::Error },
    #[error("cannot start shard threads: {0}")]
    Thread(io::Error),
    #[error(transparent)]
    Streams(#[from] crate::streams::startup::StreamStartError),
}

impl StartError {
    /// Names the cause of a failed `io_uring_setup`.
    pub fn from_ring_error(source: io::Error) -> StartError {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::ENOSYS) | Some(libc::EACCES) => StartError::IoUringDenied { source },
            Some(libc::EINVAL) => StartError::KernelTooOld { source },
            Some(libc::ENOMEM) => StartError::MemlockTooLow { source },
            _ => StartError::IoUring { source },
        }
    }
}

/// Why a shard's loop ended other than by a requested shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("shard {shard}: io_uring failed: {source}")]
    Ring { shard: usize, source: io::Error },
    #[error("shard {shard} panicked")]
    Panicked { shard: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ring_failure_names_its_cause_and_fix_in_one_line() {
        let cases = [
            (libc::EPERM, "io_uring_disabled"),
            (libc::ENOSYS, "seccomp"),
            (libc::EINVAL, "Linux 6.1"),
            (libc::ENOMEM, "LimitMEMLOCK"),
        ];
        for (errno, fix) in cases {
            let message = StartError::from_ring_error(io::Error::from_raw_os_error(errno)).to_string();
            assert!(message.contains(fix), "{errno}: {message}");
            assert!(!message.contains('\n'));
        }
    }
}
