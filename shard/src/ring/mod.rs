//! The shard's io_uring ring: with [`provided_buffers`], the only code in
//! flit with `unsafe`.
//!
//! The ring carries received bytes and readiness:
//! - multishot `RECV` with buffer selection for plain connections: the kernel
//!   receives into the shard's provided buffers ([`ProvidedBuffers`]) and
//!   posts one completion per chunk, with no system call per socket (falls
//!   back to readiness where the kernel lacks buffer rings, or by setting);
//! - `SEND` for plain connections: the bytes queued for a connection are
//!   frozen into one `Bytes` that the ring owns until the send's completion
//!   ([`Ring::send`], [`Ring::finish_send`]), or, when large payloads are
//!   queued by reference (`crate::outgoing`), `SENDMSG` over their segments,
//!   whose iovecs and message header the ring owns likewise; at most one send per
//!   connection is in flight, which keeps its bytes in order. Sends carry
//!   `MSG_DONTWAIT`, so each completes while it is submitted: all of it, a
//!   short count, or `-EAGAIN` when the socket's buffer is full (measured on
//!   this kernel: without the flag a send to a full socket waits in the kernel
//!   instead, even on an `O_NONBLOCK` socket). That is what lets a parking
//!   shard submit its pass's sends and wait for the next event in one
//!   `io_uring_enter` ([`Ring::wait`] asks for one completion more than the
//!   sends it submits);
//! - `WRITE` and `FSYNC(DATASYNC)`, linked, for the stream logs the shard
//!   owns (shard/src/streams): the ring owns each write's bytes until its
//!   completion, as for sends;
//! - multishot `POLL_ADD` for listeners, the wake pipe and TLS connections
//!   (rustls reads and writes its records with `recv` and `send`), one-shot
//!   `POLL_ADD(POLLOUT)` when a socket's send buffer is full, and
//!   `ASYNC_CANCEL` when a connection closes or must stop receiving.
//!
//! Safety: a submission points at user memory only through the buffer ring,
//! whose memory lives (or is leaked) until the kernel can no longer select
//! from it (see `provided_buffers` for who owns each buffer when), or through
//! a send, whose `Bytes` (and, for `SENDMSG`, iovecs and header) the ring
//! holds in `sends_in_flight` until that send's completion has been taken; if
//! the ring is dropped with sends in flight their buffers are leaked, never
//! freed under the kernel.
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

use crate::outgoing::Outgoing;
use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use rustc_hash::FxHashMap;

pub mod provided_buffers;
#[cfg(test)]
mod send_zero_copy_measurement;
mod vectored;
pub use provided_buffers::ProvidedBuffers;
pub use vectored::SEND_SEGMENTS_MAX;
use vectored::{SendInFlight, VectoredSend};

/// The buffer group id of the shard's provided buffers (one group per ring).
const RECEIVE_BUFFER_GROUP: u16 = 0;

/// What a completion is about, packed into the 64-bit user data:
/// the kind in the top 8 bits, a connection key in the low 56.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Listener,
    WakePipe,
    Readable(u64),
    Writable(u64),
    /// A multishot receive on a connection.
    Received(u64),
    /// A send on a connection (at most one in flight per connection).
    Sent(u64),
    /// A stream log's write or fdatasync (key: the owner's slot and IO tag).
    Disk(u64),
    /// Completions of cancel requests themselves; nothing to do.
    Cancel,
    /// The NATS-protocol listener (`[nats] listen`).
    NatsListener,
    /// The route listener (`[cluster] listen`).
    RouteListener,
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
            Token::Received(key) => (6, key),
            Token::Sent(key) => (7, key),
            Token::Disk(key) => (8, key),
            Token::NatsListener => (9, 0),
            Token::RouteListener => (10, 0),
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
            6 => Some(Token::Received(key)),
            7 => Some(Token::Sent(key)),
            8 => Some(Token::Disk(key)),
            9 => Some(Token::NatsListener),
            10 => Some(Token::RouteListener),
            _ => None,
        }
    }
}

/// One completion, copied out of the completion queue.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub token: Token,
    /// The poll mask or the bytes received on success, `-errno` on failure.
    pub result: i32,
    /// False when a multishot request has ended and must be armed again.
    pub more: bool,
    /// The provided buffer holding the bytes received, if any: the shard's
    /// until it gives it back.
    pub buffer: Option<u16>,
}

/// Submission queue entries the ring holds; completions get four times as many.
pub const RING_ENTRIES: u32 = 1024;

pub struct Ring {
    ring: IoUring,
    /// The buffers multishot receives fill; None: receives go through
    /// readiness and `recv` (no buffer rings, or turned off).
    buffers: Option<ProvidedBuffers>,
    /// The bytes of every send the kernel may still read, by connection key:
    /// inserted when the SQE is pushed, removed by `finish_send` after its
    /// completion was drained.
    sends_in_flight: FxHashMap<u64, SendInFlight>,
    /// Sends pushed since the last `io_uring_enter`: each posts exactly one
    /// completion while it is submitted (`MSG_DONTWAIT`).
    sends_unsubmitted: u32,
    /// The bytes of every stream-log write the kernel may still read, by
    /// key, until `finish_disk_write`.
    disk_writes_in_flight: FxHashMap<u64, Bytes>,
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
        Ok(Ring {
            ring,
            buffers: None,
            sends_in_flight: FxHashMap::default(),
            sends_unsubmitted: 0,
            disk_writes_in_flight: FxHashMap::default(),
        })
    }

    /// Registers `count` provided buffers of `buffer_bytes` for multishot
    /// receives. An error (a kernel without buffer rings, ENOMEM) leaves the
    /// ring on readiness; the caller reports it.
    pub fn provide_receive_buffers(&mut self, count: u16, buffer_bytes: u32) -> io::Result<()> {
        self.buffers = Some(ProvidedBuffers::register(&self.ring, RECEIVE_BUFFER_GROUP, count, buffer_bytes)?);
        Ok(())
    }

    /// Whether connections receive through the ring.
    pub fn receives_on_ring(&self) -> bool {
        self.buffers.is_some()
    }

    /// Arms a multishot receive on `fd` into the provided buffers.
    pub fn receive(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        let Some(buffers) = &self.buffers else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        let entry = opcode::RecvMulti::new(types::Fd(fd), buffers.group()).build().user_data(token.encode());
        self.push(entry)
    }

    /// The bytes a receive completion delivered in buffer `id`.
    pub fn received(&self, id: u16, length: usize) -> &[u8] {
        self.buffers.as_ref().expect("a buffer id comes only from provided buffers").received(id, length)
    }

    /// Gives buffer `id` back to the kernel once its bytes are copied out.
    pub fn give_back(&mut self, id: u16) {
        if let Some(buffers) = self.buffers.as_mut() {
            buffers.give_back(id);
        }
    }

    /// Sends `data` on `fd`: the ring keeps `data` alive until the send's
    /// completion (token `Sent(key)`) has been drained and `finish_send`
    /// called. The caller keeps at most one send per key in flight, and
    /// submits before it closes `fd` (see `sends_unsubmitted`). Segments go
    /// out as one `SENDMSG` (at most `SEND_SEGMENTS_MAX` of them; the caller
    /// bounds that).
    pub fn send(&mut self, fd: RawFd, key: u64, data: Outgoing) -> io::Result<()> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let (entry, in_flight) = match data {
            Outgoing::Contiguous(bytes) => {
                let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), length).flags(flags).build();
                (entry, SendInFlight { data: Outgoing::Contiguous(bytes), vectored: None })
            }
            Outgoing::Segments(segments) => {
                debug_assert!(segments.len() <= SEND_SEGMENTS_MAX, "the caller bounds a send's segments");
                let vectored = VectoredSend::new(&segments);
                let entry = opcode::SendMsg::new(types::Fd(fd), vectored.header_pointer()).flags(flags as u32).build();
                (entry, SendInFlight { data: Outgoing::Segments(segments), vectored: Some(vectored) })
            }
        };
        let entry = entry.user_data(Token::Sent(key).encode());
        // Owned by the ring before the SQE exists, so no path (an error from
        // `push`, a later drop of the caller's state) can free the bytes, the
        // iovecs or the header the SQE points at.
        if let Some(earlier) = self.sends_in_flight.insert(key, in_flight) {
            // The caller broke "one send in flight per key" (or a key was
            // reused before an old completion was drained): the earlier bytes
            // may still be read by the kernel, so they are leaked, not freed.
            debug_assert!(false, "a second send in flight for key {key}");
            std::mem::forget(earlier);
        }
        self.push(entry)?;
        self.sends_unsubmitted += 1;
        Ok(())
    }

    /// After a `Sent(key)` completion: hands back the bytes that send
    /// carried (the caller resumes a short send from them).
    pub fn finish_send(&mut self, key: u64) -> Option<Outgoing> {
        self.sends_in_flight.remove(&key).map(|in_flight| in_flight.data)
    }

    /// Writes `data` at `offset` of the file `fd` (a stream's segment); when
    /// `then_sync_data`, an fdatasync of the same file is linked after it
    /// (IOSQE_IO_LINK: it runs only if the write wrote everything, else it
    /// completes `-ECANCELED`). The ring keeps `data` alive until
    /// `finish_disk_write(write_key)`. Both SQEs go into one submission.
    pub fn write_at(
        &mut self,
        fd: RawFd,
        offset: u64,
        data: Bytes,
        write_key: u64,
        then_sync_data: Option<u64>,
    ) -> io::Result<()> {
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut write = opcode::Write::new(types::Fd(fd), data.as_ptr(), length)
            .offset(offset)
            .build()
            .user_data(Token::Disk(write_key).encode());
        if then_sync_data.is_some() {
            write = write.flags(squeue::Flags::IO_LINK);
        }
        if let Some(earlier) = self.disk_writes_in_flight.insert(write_key, data) {
            debug_assert!(false, "a second disk write in flight for key {write_key}");
            std::mem::forget(earlier);
        }
        if then_sync_data.is_some() && self.submission_room() < 2 {
            // A link must not be split across two submissions.
            self.submit()?;
        }
        self.push(write)?;
        if let Some(sync_key) = then_sync_data {
            self.push(Self::sync_entry(fd, sync_key))?;
        }
        Ok(())
    }

    /// An fdatasync of `fd` on its own.
    pub fn sync_data(&mut self, fd: RawFd, key: u64) -> io::Result<()> {
        self.push(Self::sync_entry(fd, key))
    }

    fn sync_entry(fd: RawFd, key: u64) -> squeue::Entry {
        opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(Token::Disk(key).encode())
    }

    /// After a `Disk(key)` completion of a write: its bytes, handed back.
    pub fn finish_disk_write(&mut self, key: u64) -> Option<Bytes> {
        self.disk_writes_in_flight.remove(&key)
    }

    fn submission_room(&mut self) -> usize {
        let submission = self.ring.submission();
        submission.capacity() - submission.len()
    }

    /// Sends pushed but not yet handed to the kernel.
    pub fn sends_unsubmitted(&self) -> u32 {
        self.sends_unsubmitted
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built in this module is a POLL_ADD,
            // ASYNC_CANCEL, a RECV with buffer selection, a SEND, a SENDMSG,
            // a WRITE or an FSYNC. A RECV points at user memory only through
            // the provided-buffer ring, whose memory outlives the kernel's use
            // of it (provided_buffers.rs). A SEND or WRITE points into a
            // `Bytes` that `sends_in_flight` or `disk_writes_in_flight` owns
            // until its completion has been drained (`finish_send`,
            // `finish_disk_write`), or forever if the ring is dropped first
            // (Drop). A SENDMSG points at a boxed header and iovecs that
            // `sends_in_flight` owns with the `Bytes` they point into, under
            // the same rule (vectored.rs).
            // The file descriptors they name are owned by the caller, who
            // cancels before closing and submits pending sends first.
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
        let result = self.ring.submit();
        self.count_submitted_sends();
        match result {
            Ok(_) => Ok(()),
            // EBUSY: the completion queue is full; draining it is the caller's
            // next step anyway. EINTR: a signal; the loop comes back here.
            Err(error) if matches!(error.raw_os_error(), Some(libc::EBUSY) | Some(libc::EINTR)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// After an `io_uring_enter`: sends still in the submission queue (none,
    /// unless the kernel refused some with EBUSY) are all that can still be
    /// unsubmitted. An upper bound is what `wait` needs.
    fn count_submitted_sends(&mut self) {
        let queued = self.ring.submission().len() as u32;
        self.sends_unsubmitted = self.sends_unsubmitted.min(queued);
    }

    /// Whether the kernel holds deferred work that only an `enter` will post.
    /// Completions that overflowed the completion queue also wait for an
    /// `enter` (among them the last completion of a multishot poll that the
    /// overflow ended, which must be seen to re-arm it).
    pub fn has_deferred_work(&mut self) -> bool {
        let submission = self.ring.submission();
        submission.taskrun() || submission.cq_overflow() || !submission.is_empty()
    }

    /// Submits and blocks until at least one completion beyond those of the
    /// sends it submits, or `timeout` passes. Every send completes while it is
    /// submitted (`MSG_DONTWAIT`), so asking for `sends + 1` completions waits
    /// for something else to happen, in the same `io_uring_enter` that hands
    /// the sends over. (If the count were ever too low the wait would only end
    /// early; it cannot be too high, as each send posts one completion.)
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let want = self.sends_unsubmitted as usize + 1;
        let result = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(timeout) => {
                let timespec = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&timespec);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        self.count_submitted_sends();
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
            let flags = entry.flags();
            out.push(Completion {
                token,
                result: entry.result(),
                more: cqueue::more(flags),
                buffer: cqueue::buffer_select(flags),
            });
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Before the ring goes: afterwards the kernel selects no buffer
        // again, so the buffers' memory may be freed (provided_buffers.rs).
        if let Some(buffers) = self.buffers.as_mut() {
            buffers.unregister(&self.ring);
        }
        // A send whose completion was never drained may, as far as this code
        // can prove, still be read by the kernel while the ring winds down:
        // its bytes are leaked rather than freed (shutdown only; normally none).
        for (_, in_flight) in self.sends_in_flight.drain() {
            std::mem::forget(in_flight);
        }
        for (_, data) in self.disk_writes_in_flight.drain() {
            std::mem::forget(data);
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
            Token::Received(KEY_MASK),
            Token::Sent(77),
            Token::Cancel,
        ] {
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
    }

    #[test]
    fn multishot_receives_fill_provided_buffers_and_reuse_them() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut ring = Ring::new().expect("io_uring");
        ring.provide_receive_buffers(2, 8).expect("buffer ring");
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().expect("pair");
        ring.receive(reader.as_raw_fd(), Token::Received(7)).expect("arm");
        ring.submit().expect("submit");
        let mut received = Vec::new();
        let mut completions = Vec::new();
        // Three writes of 5 bytes into two 8-byte buffers: only possible if
        // buffers given back are used again.
        for chunk in [b"hello", b"world", b"again"] {
            writer.write_all(chunk).expect("write");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                ring.wait(Some(Duration::from_millis(50))).expect("wait");
                ring.drain_completions(&mut completions);
                let mut got = false;
                for completion in &completions {
                    assert_eq!(completion.token, Token::Received(7));
                    assert!(completion.result > 0, "{completion:?}");
                    assert!(completion.more, "still armed");
                    let id = completion.buffer.expect("a provided buffer");
                    received.extend_from_slice(ring.received(id, completion.result as usize));
                    ring.give_back(id);
                    got = true;
                }
                if got {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "no completion");
            }
        }
        assert_eq!(received, b"helloworldagain");
    }

    #[test]
    fn sends_complete_as_they_are_submitted_and_a_full_socket_answers_eagain() {
        use std::os::fd::AsRawFd;
        let mut ring = Ring::new().expect("io_uring");
        let (writer, _reader) = std::os::unix::net::UnixStream::pair().expect("pair");
        let data = Bytes::from(vec![5u8; 256 * 1024]);
        let mut completions = Vec::new();
        let mut results = Vec::new();
        for _ in 0..8 {
            ring.send(writer.as_raw_fd(), 3, Outgoing::Contiguous(data.clone())).expect("send");
            assert_eq!(ring.sends_unsubmitted(), 1);
            ring.submit().expect("submit");
            assert_eq!(ring.sends_unsubmitted(), 0);
            // No wait: the completion is there as soon as the submit returns.
            ring.drain_completions(&mut completions);
            assert_eq!(completions.len(), 1, "{completions:?}");
            assert_eq!(completions[0].token, Token::Sent(3));
            let sent = ring.finish_send(3).expect("the ring kept the bytes");
            assert_eq!(sent.len(), data.len());
            results.push(completions[0].result);
        }
        assert!(results[0] > 0, "{results:?}");
        assert!(results.contains(&-libc::EAGAIN), "nobody reads: the socket fills and says so: {results:?}");
        assert_eq!(ring.finish_send(3), None, "bytes are handed back once");
    }

    #[test]
    fn a_vectored_send_puts_its_segments_out_in_order_and_a_short_one_leaves_the_rest() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let mut ring = Ring::new().expect("io_uring");
        let (writer, mut reader) = std::os::unix::net::UnixStream::pair().expect("pair");
        // Segments of different sizes and contents, more than fit the socket
        // at once: the first send is short, the rest goes on from its end.
        let segments: Vec<Bytes> =
            (0..40u8).map(|index| Bytes::from(vec![index; 1000 + 997 * index as usize])).collect();
        let expected: Vec<u8> = segments.iter().flat_map(|segment| segment.iter().copied()).collect();
        let mut outgoing = Outgoing::from_parts(segments, Bytes::new());
        let mut received = Vec::new();
        let mut completions = Vec::new();
        let mut short_sends = 0;
        while !outgoing.is_empty() {
            ring.send(writer.as_raw_fd(), 9, outgoing).expect("send");
            ring.submit().expect("submit");
            ring.drain_completions(&mut completions);
            assert_eq!(completions.len(), 1, "{completions:?}");
            let sent = ring.finish_send(9).expect("the ring kept the segments");
            let result = completions[0].result;
            assert!(result > 0 || result == -libc::EAGAIN, "{result}");
            let written = result.max(0) as usize;
            short_sends += usize::from(written < sent.len());
            outgoing = sent.advance(written);
            // Read what arrived, so the next send has room.
            let mut chunk = vec![0u8; 1 << 20];
            while received.len() < expected.len() - outgoing.len() {
                let read = reader.read(&mut chunk).expect("read");
                received.extend_from_slice(&chunk[..read]);
            }
        }
        assert!(short_sends > 0, "the socket never filled: the test did not resume a short vectored send");
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes arrived out of order or changed");
    }

    #[test]
    fn a_wait_with_sends_waits_for_something_beyond_their_completions() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut ring = Ring::new().expect("io_uring");
        let (sender, _peer) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (mut poker, watched) = std::os::unix::net::UnixStream::pair().expect("pair");
        ring.poll_readable(watched.as_raw_fd(), Token::Readable(9)).expect("poll");
        ring.submit().expect("submit the poll");
        for key in 0..3 {
            ring.send(sender.as_raw_fd(), key, Outgoing::Contiguous(Bytes::from_static(b"frame"))).expect("send");
        }
        // Nothing else happens: the wait submits the three sends, takes their
        // completions, and still waits out its timeout.
        let started = std::time::Instant::now();
        ring.wait(Some(Duration::from_millis(300))).expect("wait");
        assert!(started.elapsed() >= Duration::from_millis(250), "returned after {:?}", started.elapsed());
        let mut completions = Vec::new();
        ring.drain_completions(&mut completions);
        assert_eq!(completions.iter().filter(|c| matches!(c.token, Token::Sent(_))).count(), 3, "{completions:?}");
        // With sends queued again, an event 50 ms later ends the wait then.
        for key in 0..3 {
            ring.finish_send(key);
            ring.send(sender.as_raw_fd(), key, Outgoing::Contiguous(Bytes::from_static(b"frame"))).expect("send");
        }
        let poke = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            poker.write_all(b"x").expect("poke");
            poker
        });
        let started = std::time::Instant::now();
        ring.wait(Some(Duration::from_secs(5))).expect("wait");
        let waited = started.elapsed();
        let _poker = poke.join().expect("poke thread");
        assert!(waited >= Duration::from_millis(40), "it waited for the event, not the sends: {waited:?}");
        assert!(waited < Duration::from_secs(4), "and the event ended it: {waited:?}");
        ring.drain_completions(&mut completions);
        assert!(completions.iter().any(|c| c.token == Token::Readable(9)), "{completions:?}");
    }

    #[test]
    fn a_multishot_receive_ends_with_enobufs_when_buffers_run_out_and_can_be_armed_again() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut ring = Ring::new().expect("io_uring");
        ring.provide_receive_buffers(2, 8).expect("buffer ring");
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().expect("pair");
        writer.write_all(&[7u8; 56]).expect("write");
        let mut received = 0;
        let mut completions = Vec::new();
        for round in 0..3 {
            ring.receive(reader.as_raw_fd(), Token::Received(1)).expect("arm");
            let mut held = Vec::new();
            let mut ended = false;
            for _ in 0..50 {
                ring.wait(Some(Duration::from_millis(20))).expect("wait");
                ring.drain_completions(&mut completions);
                for completion in &completions {
                    if let Some(id) = completion.buffer {
                        received += completion.result as usize;
                        held.push(id);
                    } else {
                        assert_eq!(completion.result, -libc::ENOBUFS, "round {round}: {completion:?}");
                        assert!(!completion.more, "ENOBUFS ends the multishot receive");
                        ended = true;
                    }
                }
                if ended {
                    break;
                }
            }
            assert!(ended, "round {round}: two 8-byte buffers cannot take what is left");
            assert_eq!(held.len(), 2, "round {round}: both buffers were used first");
            for id in held {
                ring.give_back(id);
            }
        }
        assert_eq!(received, 48, "16 bytes of buffer a round, three rounds; 8 bytes still wait in the socket");
    }
}
