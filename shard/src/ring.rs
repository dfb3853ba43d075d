//! The shard's io_uring ring: the only module in flit with `unsafe`.
//!
//! The ring carries readiness, not data: multishot `POLL_ADD` for listeners,
//! connections and the wake pipe, one-shot `POLL_ADD(POLLOUT)` when a socket's
//! send buffer is full, and `ASYNC_CANCEL` when a connection closes. Bytes
//! move with plain `recv`/`send` on non-blocking sockets owned by safe code.
//! Because no submission points at user memory, the kernel can never write
//! into a buffer we freed, which is the whole safety argument below.
//!
//! The ring is created with `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG`:
//! completions are only posted when this thread asks (no inter-processor
//! interrupts into a spinning shard), and the SQ's `TASKRUN` flag tells a
//! spinning loop when an `enter` is worth making (see PLATFORM.md, where this
//! recipe measured 1.1x the loopback floor).
//!
//! Invariants: only the thread that created the ring touches it; every token
//! is a [`Token`]; a full submission queue is flushed to the kernel, never
//! dropped. On shutdown the ring is dropped with the shard: the kernel cancels
//! whatever is still armed.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// What a completion is about, packed into the 64-bit user data:
/// the kind in the top 8 bits, a connection key in the low 56.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Listener,
    WakePipe,
    Readable(u64),
    Writable(u64),
    /// Completions of cancel requests themselves; nothing to do.
    Cancel,
}

const KIND_SHIFT: u32 = 56;
const KEY_MASK: u64 = (1 << KIND_SHIFT) - 1;

impl Token {
    fn encode(self) -> u64 {
        let (kind, key) = match self {
            Token::Listener => (1u64, 0),
            Token::WakePipe => (2, 0),
            Token::Readable(key) => (3, key),
            Token::Writable(key) => (4, key),
            Token::Cancel => (5, 0),
        };
        debug_assert!(key <= KEY_MASK);
        (kind << KIND_SHIFT) | (key & KEY_MASK)
    }

    fn decode(user_data: u64) -> Option<Token> {
        let key = user_data & KEY_MASK;
        match user_data >> KIND_SHIFT {
            1 => Some(Token::Listener),
            2 => Some(Token::WakePipe),
            3 => Some(Token::Readable(key)),
            4 => Some(Token::Writable(key)),
            5 => Some(Token::Cancel),
            _ => None,
        }
    }
}

/// One completion, copied out of the completion queue.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub token: Token,
    /// The poll mask on success, `-errno` on failure.
    pub result: i32,
    /// False when a multishot request has ended and must be armed again.
    pub more: bool,
}

/// Submission queue entries the ring holds; completions get four times as many.
pub const RING_ENTRIES: u32 = 1024;

pub struct Ring {
    ring: IoUring,
}

impl Ring {
    /// Creates the ring. Errors are the kernel's: EPERM/ENOSYS when io_uring is
    /// denied, EINVAL when the kernel predates DEFER_TASKRUN (6.1), ENOMEM when
    /// locked memory is too low. The caller turns them into one clear line.
    pub fn new() -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(RING_ENTRIES * 4)
            .build(RING_ENTRIES)?;
        Ok(Ring { ring })
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built in this module is a POLL_ADD, POLL_REMOVE
            // or ASYNC_CANCEL: none points at user memory, so nothing the kernel
            // does with it can touch freed or moved buffers. The file descriptors
            // they name are owned by the caller, who cancels before closing.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            // The submission queue is full: hand what is there to the kernel.
            self.submit()?;
        }
    }

    /// Arms a multishot readiness poll for input (and hang-up) on `fd`.
    pub fn poll_readable(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        let mask = (libc::POLLIN | libc::POLLRDHUP) as u32;
        let entry = opcode::PollAdd::new(types::Fd(fd), mask).multi(true).build().user_data(token.encode());
        self.push(entry)
    }

    /// Arms a one-shot readiness poll for output on `fd`.
    pub fn poll_writable(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build().user_data(token.encode());
        self.push(entry)
    }

    /// Cancels whatever request carries `token` (its completion says -ECANCELED).
    pub fn cancel(&mut self, token: Token) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(token.encode()).build().user_data(Token::Cancel.encode());
        self.push(entry)
    }

    /// Hands queued submissions to the kernel and, when the kernel says
    /// completions are waiting (`TASKRUN`), runs them. Never blocks.
    pub fn submit(&mut self) -> io::Result<()> {
        match self.ring.submit() {
            Ok(_) => Ok(()),
            // EBUSY: the completion queue is full; draining it is the caller's
            // next step anyway. EINTR: a signal; the loop comes back here.
            Err(error) if matches!(error.raw_os_error(), Some(libc::EBUSY) | Some(libc::EINTR)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether the kernel holds deferred work that only an `enter` will post.
    /// Completions that overflowed the completion queue also wait for an
    /// `enter` (among them the last completion of a multishot poll that the
    /// overflow ended, which must be seen to re-arm it).
    pub fn has_deferred_work(&mut self) -> bool {
        let submission = self.ring.submission();
        submission.taskrun() || submission.cq_overflow() || !submission.is_empty()
    }

    /// Submits and blocks until at least one completion, or `timeout` passes.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) => {
                let timespec = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(error) if matches!(error.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)) => {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Moves ready completions into `out` (cleared first).
    pub fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        for entry in self.ring.completion() {
            let Some(token) = Token::decode(entry.user_data()) else {
                debug_assert!(false, "completion with unknown user data {:#x}", entry.user_data());
                continue;
            };
            out.push(Completion { token, result: entry.result(), more: cqueue::more(entry.flags()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in [
            Token::Listener,
            Token::WakePipe,
            Token::Readable(0),
            Token::Readable(KEY_MASK),
            Token::Writable(12345),
            Token::Cancel,
        ] {
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
    }
}
