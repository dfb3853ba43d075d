//! One blocking connection: who writes the socket, who reads it, and the
//! background threads.
//!
//! # Writing
//! Callers encode frames into the core's buffer. A latency-bound call (a
//! request, a flush, anything in ack mode, a reply sent with
//! [`Message::respond`](crate::Message::respond)) then writes the buffer out
//! itself ([`Connection::write_out`]); a plain publish leaves it to the
//! flusher thread, which sleeps on a channel of capacity one, so a burst of
//! publishes costs one wake-up and leaves in few writes.
//!
//! # Reading: the caller reads its own answer
//! A thread that waits for an answer (a reply, a Pong, an Ok) does not wait
//! for another thread to read it: it reads the socket itself and dispatches
//! every frame it reads (deliveries to their subscriptions' queues, other
//! callers' answers to their slots, Pongs to their flushes) until its own
//! answer is there. One thread reads at a time, the one that set
//! `Control::reading`; callers that find it set queue up and park, and the
//! reader, when it stops (its answer came, or its deadline passed), unparks
//! the front of the queue, which takes over unless its own answer came
//! meanwhile (then it passes the turn on as it leaves). A sequential
//! request therefore costs its thread one write and the reads of its answer,
//! and no other thread's wake-up.
//!
//! # The background thread reads only when no caller waits
//! Someone must read when nobody waits: deliveries to subscriptions, the
//! server's Pings (the idle check, answered with a Pong), a Draining notice,
//! an Error frame or the end of the connection. The background thread does,
//! but it never blocks in `read` while holding the read side, which would
//! leave a caller to wait for it (a wake-up per request again). It waits with
//! a blocking `peek` (the socket's readiness, consuming nothing) and holding
//! nothing; when bytes are there it takes the read side only if no caller is
//! registered and no read happened since its peek began (`reads`), so its
//! read never blocks, reads once, dispatches, and releases. While callers are
//! registered it parks. When the last caller leaves, it is unparked at once
//! if the connection has subscriptions (their deliveries must not wait);
//! without any it lingers parked for [`BACKGROUND_LINGER`] after the last
//! caller left, so a client that only sends requests does not wake it per
//! request (nothing arriving meanwhile is urgent: Pongs and Oks have their
//! callers reading, and the server's idle Ping allows 30 s).
//!
//! A caller registers after it wrote its frame: a write blocked by TCP
//! backpressure must not keep the background thread from reading.
//!
//! # Lock order
//! `control` and `read_side` are never held together by a thread that then
//! takes the other in reverse: `read_side` is only locked by the thread that
//! holds the read turn (or by the background thread under `control` while
//! nobody holds it), and a thread holding `read_side` never locks `control`.
//! Dispatching takes the core's state lock under `read_side`; the core never
//! takes `read_side`. Answering a slot unparks its thread under the state
//! lock, which takes no lock of ours.
//!
//! # TLS
//! One rustls session, shared (see tls.rs): the reader decrypts the bytes it
//! read under the session's lock, writers encrypt under it into a buffer and
//! write that buffer under `stream`'s lock. No socket IO under the session's
//! lock.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::io::{Blocking, Slot, READ_CHUNK_BYTES};
use crate::connection::{dispatch_buffered, encode_owed_pongs, lock, Core};
use crate::error::ClientError;
use crate::tls::TlsSession;

/// How long the background thread stays parked after the last caller left,
/// when the connection has no subscription (see the module header).
pub(crate) const BACKGROUND_LINGER: Duration = Duration::from_millis(50);

/// The longest a reader blocks in one `read`: it then checks its deadline.
const READ_SLICE: Duration = Duration::from_millis(128);

/// The connection itself, shared by the client handles, the background
/// thread and the flusher thread.
pub(crate) struct Connection {
    pub(crate) core: Core<Blocking>,
    /// The write side. Locked while writing, and taken while still holding
    /// the core's writer lock, so bytes reach the socket in the order they
    /// were encoded.
    stream: Mutex<TcpStream>,
    /// The TLS session, shared by readers and writers (see tls.rs).
    tls: Option<Arc<TlsSession>>,
    /// Who reads, who waits (see the module header).
    control: Mutex<Control>,
    /// The read side; locked only by the thread holding the read turn.
    read_side: Mutex<ReadSide>,
    /// Reads of the socket so far, by anyone: the background thread reads
    /// only if none happened since its peek began.
    reads: AtomicU64,
    /// The background thread's handle on the socket (it peeks; closing
    /// shuts the socket down through it).
    watch: TcpStream,
    /// The background thread, to unpark it.
    background: OnceLock<Thread>,
}

struct Control {
    /// A thread holds the read turn.
    reading: bool,
    /// Callers between [`Connection::enter`] and the end of their wait.
    callers: usize,
    /// Callers parked until the read turn is free; the front is unparked
    /// when it is.
    queue: VecDeque<Thread>,
    /// When the caller count last dropped to zero.
    last_caller_left: Instant,
}

struct ReadSide {
    stream: TcpStream,
    /// Bytes read and not yet dispatched: at most the start of one frame
    /// between reads.
    buffer: BytesMut,
    chunk: Vec<u8>,
    plaintext: Vec<u8>,
    /// What the socket's read timeout (shared by every handle) is set to.
    timeout: Option<Duration>,
}

impl ReadSide {
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.timeout != timeout {
            self.stream.set_read_timeout(timeout)?;
            self.timeout = timeout;
        }
        Ok(())
    }

    /// Makes sure a read does not block past `left` (never zero).
    fn bound_by(&mut self, left: Duration) -> io::Result<()> {
        match read_timeout_for(self.timeout, left) {
            None => Ok(()),
            Some(timeout) => self.set_timeout(Some(timeout)),
        }
    }
}

/// The socket read timeout for a read that must not block past `left`
/// (never zero), given the one set now; `None`: keep that one. It changes
/// only when the current value would overshoot `left` or is much shorter
/// than needed: values are powers of two of milliseconds (at most
/// [`READ_SLICE`]), so a run of requests with the same timeout sets it once.
fn read_timeout_for(current: Option<Duration>, left: Duration) -> Option<Duration> {
    let capped = left.min(READ_SLICE);
    let target = match u64::try_from(capped.as_millis()).unwrap_or(u64::MAX) {
        0 => capped.max(Duration::from_micros(1)),
        millis => Duration::from_millis(1 << (63 - millis.leading_zeros())),
    };
    match current {
        Some(timeout) if timeout <= left && timeout * 2 > target => None,
        _ => Some(target),
    }
}

/// A caller registered as waiting: the background thread leaves the socket
/// to it. Dropping it unregisters.
pub(crate) struct Caller<'a> {
    connection: &'a Connection,
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        self.connection.leave();
    }
}

impl Connection {
    /// `leftover`: what the server sent after the Welcome, already read.
    pub(crate) fn new(
        core: Core<Blocking>,
        stream: TcpStream,
        tls: Option<Arc<TlsSession>>,
        leftover: BytesMut,
    ) -> io::Result<Connection> {
        let read_side = ReadSide {
            stream: stream.try_clone()?,
            buffer: leftover,
            chunk: vec![0u8; READ_CHUNK_BYTES],
            plaintext: Vec::new(),
            timeout: None,
        };
        let watch = stream.try_clone()?;
        Ok(Connection {
            core,
            stream: Mutex::new(stream),
            tls,
            control: Mutex::new(Control {
                reading: false,
                callers: 0,
                queue: VecDeque::new(),
                last_caller_left: Instant::now(),
            }),
            read_side: Mutex::new(read_side),
            reads: AtomicU64::new(0),
            watch,
            background: OnceLock::new(),
        })
    }

    /// Dispatches what arrived with the Welcome, before anything is read.
    pub(crate) fn dispatch_leftover(&self) -> Result<(), ClientError> {
        let owed = {
            let mut side = lock(&self.read_side);
            dispatch_buffered(&mut side.buffer, &self.core.limits, &self.core.state)?
        };
        if owed {
            self.write_out()?;
        }
        Ok(())
    }

    pub(crate) fn set_background(&self, thread: Thread) {
        let _ = self.background.set(thread);
    }

    pub(crate) fn wake_background(&self) {
        if let Some(thread) = self.background.get() {
            thread.unpark();
        }
    }

    /// Writes every buffered byte to the socket now.
    pub(crate) fn write_out(&self) -> Result<(), ClientError> {
        let mut writer = lock(&self.core.writer);
        encode_owed_pongs(&mut writer, &self.core.state);
        if writer.buffered_bytes() == 0 {
            return Ok(());
        }
        let mut stream = lock(&self.stream);
        let bytes = writer.take();
        drop(writer);
        let written = match &self.tls {
            None => stream.write_all(&bytes).map_err(ClientError::from),
            Some(session) => session.encrypt(&bytes).and_then(|records| Ok(stream.write_all(&records)?)),
        };
        drop(stream);
        if let Err(error) = written {
            self.fail(error.clone());
            return Err(error);
        }
        Ok(())
    }

    /// Writes the records that tell a TLS server we are closing.
    pub(crate) fn close_notify(&self) {
        if let Some(session) = &self.tls {
            let _ = lock(&self.stream).write_all(&session.close_notify());
        }
    }

    /// Ends the connection with `error` (unless it already ended): answers
    /// every waiter, shuts the socket down so that every blocked read and
    /// peek returns, and wakes the background thread so it exits.
    pub(crate) fn fail(&self, error: ClientError) {
        self.core.fail(error);
        let _ = self.watch.shutdown(Shutdown::Both);
        self.wake_background();
    }

    /// Registers the calling thread as waiting for an answer. Call it after
    /// writing the frame the answer is for (see the module header).
    pub(crate) fn enter(&self) -> Caller<'_> {
        lock(&self.control).callers += 1;
        Caller { connection: self }
    }

    fn leave(&self) {
        let mut control = lock(&self.control);
        control.callers -= 1;
        if !control.reading {
            // The turn is free: whoever is first in line takes it (it may
            // have parked for it while this caller read).
            if let Some(next) = control.queue.front() {
                next.unpark();
                return;
            }
        }
        if control.callers > 0 {
            return;
        }
        control.last_caller_left = Instant::now();
        drop(control);
        // Deliveries must not wait for the linger (see the module header).
        if self.core.has_subscriptions() {
            self.wake_background();
        }
    }

    /// Waits until `slot` is answered (`Some`) or `deadline` passes
    /// (`None`), reading the socket whenever no other thread does.
    pub(crate) fn wait<T>(
        &self,
        _caller: &Caller<'_>,
        slot: &Slot<T>,
        deadline: Instant,
    ) -> Option<Result<T, ClientError>> {
        let mut queued = false;
        let answer = loop {
            if let Some(answer) = slot.take() {
                break Some(answer);
            }
            let Some(left) = time_left(deadline) else { break None };
            let mut control = lock(&self.control);
            if !control.reading {
                control.reading = true;
                if queued {
                    dequeue(&mut control.queue);
                    queued = false;
                }
                drop(control);
                self.read_until(slot, deadline);
                self.release_read_turn();
                continue;
            }
            if !queued {
                control.queue.push_back(std::thread::current());
                queued = true;
            }
            drop(control);
            std::thread::park_timeout(left);
        };
        if queued {
            dequeue(&mut lock(&self.control).queue);
        }
        answer
    }

    /// With the read turn: reads and dispatches until `slot` is answered or
    /// `deadline` passes (or the connection ends, which answers every slot).
    fn read_until<T>(&self, slot: &Slot<T>, deadline: Instant) {
        let mut side = lock(&self.read_side);
        while !slot.is_answered() {
            let Some(left) = time_left(deadline) else { return };
            let outcome = match side.bound_by(left) {
                Ok(()) => self.read_once(&mut side),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = outcome {
                drop(side);
                self.fail(error);
                return;
            }
        }
    }

    fn release_read_turn(&self) {
        let mut control = lock(&self.control);
        control.reading = false;
        if let Some(next) = control.queue.front() {
            next.unpark();
        }
    }

    /// One `read` of the socket, then every whole frame is dispatched (and
    /// owed Pongs written). A read that timed out is not an error. `Err`:
    /// the connection must end.
    fn read_once(&self, side: &mut ReadSide) -> Result<(), ClientError> {
        let ReadSide { stream, buffer, chunk, plaintext, .. } = side;
        let read = stream.read(chunk);
        self.reads.fetch_add(1, Ordering::AcqRel);
        match read {
            Ok(0) => return Err(ClientError::Disconnected),
            Ok(read) => match &self.tls {
                None => buffer.extend_from_slice(&chunk[..read]),
                Some(session) => {
                    plaintext.clear();
                    session.decrypt(&chunk[..read], plaintext)?;
                    buffer.extend_from_slice(plaintext);
                }
            },
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(error) => return Err(error.into()),
        }
        if dispatch_buffered(buffer, &self.core.limits, &self.core.state)? {
            // The server's idle check: answer at once.
            self.write_out()?;
        }
        Ok(())
    }

    /// The background thread's wait for its turn to watch the socket:
    /// `None` after parking (look again), `Some(reads)` when it may peek.
    fn background_turn(&self) -> Option<u64> {
        let eager = self.core.has_subscriptions();
        let control = lock(&self.control);
        if control.reading || control.callers > 0 {
            drop(control);
            std::thread::park_timeout(BACKGROUND_LINGER);
            return None;
        }
        let since = control.last_caller_left.elapsed();
        if !eager && since < BACKGROUND_LINGER {
            drop(control);
            std::thread::park_timeout(BACKGROUND_LINGER - since);
            return None;
        }
        // Nobody holds the read turn, so the read side is free; the peek
        // must wait without the timeout a caller may have left on the socket.
        let mut side = lock(&self.read_side);
        if let Err(error) = side.set_timeout(None) {
            drop(side);
            drop(control);
            self.fail(error.into());
            return None;
        }
        Some(self.reads.load(Ordering::Acquire))
    }

    /// After a peek saw bytes: the read turn, if no caller is registered and
    /// nothing was read since the peek began (so a read will not block).
    fn claim_for_background(&self, seen: u64) -> bool {
        let mut control = lock(&self.control);
        if control.reading || control.callers > 0 || self.reads.load(Ordering::Acquire) != seen {
            return false;
        }
        control.reading = true;
        true
    }
}

/// The time until `deadline`, if any is left.
fn time_left(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())
}

fn dequeue(queue: &mut VecDeque<Thread>) {
    let me = std::thread::current().id();
    if let Some(position) = queue.iter().position(|thread| thread.id() == me) {
        queue.remove(position);
    }
}

/// The background thread's body. See the module header.
pub(crate) fn run_background(connection: Arc<Connection>) {
    let mut peeked = [0u8; 1];
    while connection.core.usable().is_ok() {
        let Some(seen) = connection.background_turn() else { continue };
        match connection.watch.peek(&mut peeked) {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            // A peek consumes the socket's error: report it now, as the read would have.
            Err(error) => {
                connection.fail(error.into());
                break;
            }
        }
        if !connection.claim_for_background(seen) {
            continue;
        }
        let outcome = connection.read_once(&mut lock(&connection.read_side));
        if let Err(error) = outcome {
            connection.fail(error);
        }
        connection.release_read_turn();
    }
}

/// The flusher thread's body: writes out what publishes buffered, until the
/// client handles are gone (the channel disconnects) or writing fails.
pub(crate) fn run_flusher(wake: Receiver<()>, connection: Arc<Connection>) {
    while wake.recv().is_ok() {
        if connection.write_out().is_err() {
            return;
        }
    }
}

/// What the client handles and subscriptions share; dropping the last one
/// ends the connection.
pub(crate) struct Shared {
    pub(crate) connection: Arc<Connection>,
    pub(crate) wake_flusher: SyncSender<()>,
    pub(crate) background: Mutex<Option<JoinHandle<()>>>,
}

impl std::ops::Deref for Shared {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl Shared {
    /// After a frame was buffered: write at once if the buffer is over its
    /// bound (the caller waits for the socket: backpressure), else let the
    /// flusher thread pick the bytes up.
    pub(crate) fn buffered(&self) -> Result<(), ClientError> {
        if self.core.buffered_bytes() > self.core.options.write_buffer_bytes_max {
            return self.write_out();
        }
        // Full means a wake-up is already pending, which is all we need.
        let _ = self.wake_flusher.try_send(());
        Ok(())
    }

    /// Ends the connection: nothing more is sent or received.
    pub(crate) fn shut_down(&self, error: ClientError) {
        let _ = self.write_out();
        self.close_notify();
        self.fail(error);
        let background = lock(&self.background).take();
        if let Some(background) = background {
            // Never join ourselves.
            if background.thread().id() != std::thread::current().id() {
                let _ = background.join();
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shut_down(ClientError::Closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_timeout_never_overshoots_and_rarely_changes() {
        let ms = Duration::from_millis;
        assert_eq!(read_timeout_for(None, Duration::from_secs(5)), Some(ms(128)));
        assert_eq!(read_timeout_for(Some(ms(128)), ms(4_999)), None, "a run of requests sets it once");
        assert_eq!(read_timeout_for(Some(Duration::from_micros(1)), ms(5_000)), Some(ms(128)), "not too short");
        assert_eq!(read_timeout_for(Some(ms(128)), ms(50)), Some(ms(32)), "never past the deadline");
        assert_eq!(read_timeout_for(Some(ms(32)), ms(49)), None);
        assert_eq!(read_timeout_for(Some(ms(32)), ms(20)), Some(ms(16)));
        assert_eq!(read_timeout_for(None, Duration::from_micros(500)), Some(Duration::from_micros(500)));
        assert_eq!(read_timeout_for(None, Duration::from_nanos(1)), Some(Duration::from_micros(1)));
        for micros in [1u64, 999, 1_000, 1_001, 77_777, 128_000, 10_000_000] {
            let left = Duration::from_micros(micros);
            let timeout = read_timeout_for(None, left).expect("set");
            assert!(
                !timeout.is_zero() && (timeout <= left || left < Duration::from_micros(1)),
                "{left:?}: {timeout:?}"
            );
        }
    }
}
