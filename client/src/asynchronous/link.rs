//! One tokio connection: who writes the socket, who reads it, and the tasks.
//!
//! # Writing
//! Callers encode frames under the core's std mutex. A latency-bound call (a
//! request, a flush, anything in ack mode, `respond_async`) then writes on
//! its own task ([`Link::write_now`]): it polls the write half once, with a
//! no-op waker, holding only a std mutex, so it never awaits and a cancelled
//! caller can never leave half a frame behind; whatever the socket does not
//! take at once stays in `Outbound::unsent`, and the writer task finishes it.
//! Publishes only wake the writer task (a `Notify`, whose stored permit
//! coalesces a burst into one write). Bytes leave in the order they were
//! encoded: they are taken from the encoder and written only under the
//! `outbound` lock, and a caller polls the socket only when nothing is left
//! over from earlier and the writer task is not waiting for the socket (it
//! would replace the writer task's waker with its no-op one).
//!
//! # Reading: the caller reads its own answer
//! A caller waiting for an answer polls the read half itself, on its own
//! task, and dispatches whatever it reads, until its answer is there. The
//! reader task reads only while no caller waits (deliveries, the server's
//! Pings, the end of the connection).
//!
//! The handoff relies on how tokio registers interest: a socket wakes only
//! the task that polled it last. A waiting caller polls the read half and
//! so takes the wake-up over from the reader task (which stays parked,
//! costing nothing); the reader task checks the caller count and polls the
//! socket in one critical section of `control`, so a caller that registers
//! afterwards also polls afterwards and its waker is the one kept. Whoever
//! stops waiting wakes the others (`Control::callers_wakers`) so that one of
//! them polls, and so holds the socket's waker, again. The last caller to
//! leave wakes the reader task if the connection has subscriptions (their
//! deliveries must not wait); without any, the reader task comes back by
//! itself [`READER_LINGER`] after the last caller left, so that a client that
//! only sends requests does not wake it per request (on a multi-thread
//! runtime that wake-up cost 15 µs of a 65 µs round trip). Nothing that
//! arrives meanwhile is urgent: Pongs and Oks have callers reading, and the
//! server's idle Ping allows 30 s.
//!
//! # Lock order
//! `control`, then `inbound`, then the core's locks and `outbound`. The
//! caller releases `control` before it takes `inbound`.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{oneshot, Notify};
use tokio::time::{Instant, Sleep};

use super::io::{Tokio, READ_CHUNK_BYTES};
use crate::connection::{dispatch_buffered, encode_owed_pongs, lock, Core};
use crate::error::ClientError;

/// How long the reader task stays away from the socket after the last
/// caller left, when the connection has no subscription (see the module header).
pub(crate) const READER_LINGER: Duration = Duration::from_millis(50);

/// The two directions of a connection, plain TCP or TLS.
pub(crate) type ReadSide = Box<dyn AsyncRead + Unpin + Send>;
pub(crate) type WriteSide = Box<dyn AsyncWrite + Unpin + Send>;

/// What the client handles and the two tasks share.
pub(crate) struct Link {
    pub(crate) core: Core<Tokio>,
    outbound: Mutex<Outbound>,
    inbound: Mutex<Inbound>,
    control: Mutex<Control>,
    /// Wakes the writer task.
    pub(crate) wake_writer: Notify,
    /// Notified after each drain of the buffer, for publishers waiting for room.
    pub(crate) drained: Notify,
}

struct Outbound {
    half: WriteSide,
    /// Bytes taken from the encoder and not yet written, in order.
    unsent: BytesMut,
    /// The writer task waits for the socket (its waker is registered).
    writer_waiting: bool,
}

struct Inbound {
    half: ReadSide,
    /// Bytes read and not yet dispatched: at most the start of one frame.
    buffer: BytesMut,
    chunk: Vec<u8>,
}

#[derive(Default)]
struct Control {
    /// Callers waiting for an answer (registered, whether polled yet or not).
    callers: usize,
    next_caller: u64,
    /// The waker of each waiting caller that polled, by caller id.
    callers_wakers: Vec<(u64, Waker)>,
    /// The reader task's waker, from its last poll.
    reader: Option<Waker>,
    /// When the caller count last dropped to zero.
    last_caller_left: Option<Instant>,
}

/// What one read of the socket gave.
enum Read {
    /// Bytes, dispatched.
    Data,
    /// Nothing now; the context's waker is registered.
    Pending,
    /// The connection ended (and was failed).
    Ended,
}

impl Link {
    pub(crate) fn new(core: Core<Tokio>, read_half: ReadSide, write_half: WriteSide, leftover: BytesMut) -> Link {
        Link {
            core,
            outbound: Mutex::new(Outbound { half: write_half, unsent: BytesMut::new(), writer_waiting: false }),
            inbound: Mutex::new(Inbound { half: read_half, buffer: leftover, chunk: vec![0u8; READ_CHUNK_BYTES] }),
            control: Mutex::new(Control::default()),
            wake_writer: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Dispatches what arrived with the Welcome, before anything is read.
    pub(crate) fn dispatch_leftover(&self) -> Result<(), ClientError> {
        let owed = dispatch_buffered(&mut lock(&self.inbound).buffer, &self.core.limits, &self.core.state)?;
        if owed {
            self.write_now();
        }
        Ok(())
    }

    /// Has the reader task look again (a subscription was added: it must not linger).
    pub(crate) fn wake_reader(&self) {
        if let Some(reader) = &lock(&self.control).reader {
            reader.wake_by_ref();
        }
    }

    /// Ends the connection (unless it already ended) and lets the writer
    /// task see it.
    pub(crate) fn fail(&self, error: ClientError) {
        self.core.fail(error);
        self.wake_writer.notify_one();
    }

    /// Writes what is buffered on the calling task, as far as the socket
    /// takes it without waiting; the writer task does the rest. See the
    /// module header.
    pub(crate) fn write_now(&self) {
        let mut outbound = lock(&self.outbound);
        if outbound.writer_waiting || !outbound.unsent.is_empty() {
            drop(outbound);
            self.wake_writer.notify_one();
            return;
        }
        self.take_encoded(&mut outbound);
        if outbound.unsent.is_empty() {
            return;
        }
        let mut context = Context::from_waker(Waker::noop());
        let written = outbound.poll_drain(&mut context);
        drop(outbound);
        match written {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => self.fail(error.into()),
            Poll::Pending => self.wake_writer.notify_one(),
        }
    }

    fn take_encoded(&self, outbound: &mut Outbound) {
        let mut writer = lock(&self.core.writer);
        encode_owed_pongs(&mut writer, &self.core.state);
        let bytes = writer.take();
        if outbound.unsent.is_empty() {
            outbound.unsent = bytes;
        } else {
            outbound.unsent.extend_from_slice(&bytes);
        }
    }

    /// The writer task's poll: writes until nothing is left (`Ready(Ok)`).
    fn poll_write_all(&self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut outbound = lock(&self.outbound);
        loop {
            if outbound.unsent.is_empty() {
                self.take_encoded(&mut outbound);
            }
            let had_bytes = !outbound.unsent.is_empty();
            match outbound.poll_drain(context) {
                Poll::Ready(Ok(())) if had_bytes => self.drained.notify_waiters(),
                Poll::Ready(result) => {
                    outbound.writer_waiting = false;
                    return Poll::Ready(result);
                }
                Poll::Pending => {
                    outbound.writer_waiting = true;
                    return Poll::Pending;
                }
            }
        }
    }

    /// Waits until `answer` comes (`Some`) or `deadline` passes (`None`),
    /// reading the socket meanwhile (see the module header).
    pub(crate) async fn wait<T>(
        &self,
        answer: oneshot::Receiver<Result<T, ClientError>>,
        deadline: tokio::time::Instant,
    ) -> Option<Result<T, ClientError>> {
        let caller = Caller::register(self);
        let mut answer = answer;
        let waiting = poll_fn(|context| loop {
            if let Poll::Ready(answered) = Pin::new(&mut answer).poll(context) {
                return Poll::Ready(answered);
            }
            caller.keep_waker(context.waker());
            match self.read_once(context) {
                Read::Data => continue,
                Read::Pending => return Pin::new(&mut answer).poll(context),
                // Failing the connection answered every waiter, this one included.
                Read::Ended => {
                    return match Pin::new(&mut answer).poll(context) {
                        Poll::Pending => Poll::Ready(Ok(Err(self.core.usable().err().unwrap_or(ClientError::Closed)))),
                        answered => answered,
                    }
                }
            }
        });
        match tokio::time::timeout_at(deadline, waiting).await {
            Ok(Ok(answered)) => Some(answered),
            // Dropped unanswered only while failing: report why the connection ended.
            Ok(Err(_closed)) => Some(Err(self.core.usable().err().unwrap_or(ClientError::Closed))),
            Err(_elapsed) => None,
        }
    }

    /// One read of the socket, then every whole frame is dispatched (and
    /// owed Pongs written).
    fn read_once(&self, context: &mut Context<'_>) -> Read {
        let mut inbound = lock(&self.inbound);
        let Inbound { half, buffer, chunk } = &mut *inbound;
        let mut read_buffer = ReadBuf::new(chunk);
        let error = match Pin::new(half).poll_read(context, &mut read_buffer) {
            Poll::Pending => return Read::Pending,
            Poll::Ready(Ok(())) if read_buffer.filled().is_empty() => ClientError::Disconnected,
            Poll::Ready(Ok(())) => {
                buffer.extend_from_slice(read_buffer.filled());
                match dispatch_buffered(buffer, &self.core.limits, &self.core.state) {
                    Ok(owed) => {
                        drop(inbound);
                        if owed {
                            // The server's idle check: answer at once.
                            self.write_now();
                        }
                        return Read::Data;
                    }
                    Err(error) => error,
                }
            }
            Poll::Ready(Err(error)) => error.into(),
        };
        drop(inbound);
        self.fail(error);
        Read::Ended
    }

    /// The reader task's poll: reads while no caller waits (see the module
    /// header); `linger` is its timer.
    fn poll_reader(&self, context: &mut Context<'_>, linger: &mut Pin<Box<Sleep>>) -> Poll<()> {
        loop {
            let mut control = lock(&self.control);
            if !control.reader.as_ref().is_some_and(|reader| reader.will_wake(context.waker())) {
                control.reader = Some(context.waker().clone());
            }
            if self.core.usable().is_err() {
                return Poll::Ready(());
            }
            let eager = self.core.has_subscriptions();
            let now = Instant::now();
            let come_back = match (control.callers, eager) {
                // The last caller to leave wakes this task.
                (1.., true) => None,
                (1.., false) => Some(now + READER_LINGER),
                (0, true) => None,
                (0, false) => control.last_caller_left.map(|left| left + READER_LINGER).filter(|until| *until > now),
            };
            if control.callers > 0 || come_back.is_some() {
                if let Some(until) = come_back {
                    if linger.deadline() != until {
                        linger.as_mut().reset(until);
                    }
                    if linger.as_mut().poll(context).is_ready() {
                        continue;
                    }
                }
                return Poll::Pending;
            }
            // Polled with `control` held: see the module header.
            match self.read_once(context) {
                Read::Data => continue,
                Read::Pending => return Poll::Pending,
                Read::Ended => return Poll::Ready(()),
            }
        }
    }
}

impl Outbound {
    /// Writes `unsent` out, then flushes (TLS keeps records until then).
    fn poll_drain(&mut self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent.is_empty() {
            match Pin::new(&mut self.half).poll_write(context, &self.unsent) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => self.unsent.advance(written),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut self.half).poll_flush(context)
    }
}

/// A registered waiting caller; dropping it (answered, timed out or
/// cancelled) unregisters and wakes whoever must poll the socket next.
struct Caller<'a> {
    link: &'a Link,
    id: u64,
}

impl<'a> Caller<'a> {
    fn register(link: &'a Link) -> Caller<'a> {
        let mut control = lock(&link.control);
        control.callers += 1;
        control.next_caller += 1;
        Caller { link, id: control.next_caller }
    }

    fn keep_waker(&self, waker: &Waker) {
        let mut control = lock(&self.link.control);
        match control.callers_wakers.iter_mut().find(|(id, _)| *id == self.id) {
            Some((_, kept)) if kept.will_wake(waker) => {}
            Some((_, kept)) => *kept = waker.clone(),
            None => control.callers_wakers.push((self.id, waker.clone())),
        }
    }
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        let mut control = lock(&self.link.control);
        control.callers -= 1;
        control.callers_wakers.retain(|(id, _)| *id != self.id);
        // This caller may have been the one the socket wakes: let the others
        // (or, with none left, the reader task) poll again.
        if control.callers == 0 {
            control.last_caller_left = Some(Instant::now());
            if let Some(reader) = control.reader.as_ref().filter(|_| self.link.core.has_subscriptions()) {
                reader.wake_by_ref();
            }
        } else {
            for (_, waker) in &control.callers_wakers {
                waker.wake_by_ref();
            }
        }
    }
}

/// The reader task's body. See the module header.
pub(crate) async fn run_reader(link: Arc<Link>) {
    let mut linger = Box::pin(tokio::time::sleep(Duration::ZERO));
    poll_fn(|context| link.poll_reader(context, &mut linger)).await;
    // Let the writer see the terminal state and close its half.
    link.wake_writer.notify_one();
}

/// The writer task's body: writes what publishes buffered, until the
/// connection ends; then shuts its half down.
pub(crate) async fn run_writer(link: Arc<Link>) {
    loop {
        link.wake_writer.notified().await;
        let written = poll_fn(|context| link.poll_write_all(context)).await;
        link.drained.notify_waiters();
        if let Err(error) = written {
            link.core.fail(error.into());
            break;
        }
        if link.core.usable().is_err() {
            break;
        }
    }
    let _ = poll_fn(|context| Pin::new(&mut lock(&link.outbound).half).poll_shutdown(context)).await;
}
