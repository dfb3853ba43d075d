//! The blocking client's IO: connecting, the handshake, the reader thread,
//! the flusher thread, and the std channel types the dispatcher feeds.
//!
//! # Threads
//! - The reader thread owns a clone of the socket for reading. It exits when
//!   the socket ends or the connection becomes terminal, after failing the
//!   state so nobody waits forever.
//! - The flusher thread writes out publishes that callers only buffered. It
//!   sleeps on a channel of capacity one, so a burst of publishes costs one
//!   wake-up, and exits when the client is dropped (its channel disconnects).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(test)]
use std::sync::mpsc::TryRecvError;
use std::sync::mpsc::{channel, Receiver, RecvError, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flit_wire::{Limits, Welcome};

use crate::connection::{dispatch_buffered, encode_owed_pongs, lock, Core};
use crate::dispatch::{Channels, Completion, ConnectionState, MessageSink, Refused};
use crate::error::ClientError;
use crate::framing::{accept_welcome, closed_during_handshake, next_handshake_frame, FrameWriter};
use crate::message::Message;
use crate::options::Options;
use crate::tls::{PlaintextStream, TlsSession};

/// A byte stream both ways: plain TCP, or TLS plaintext during the handshake.
pub(crate) trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Bytes read from the socket per `read` call.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The std channel types of the blocking client.
pub(crate) struct Blocking;

impl Channels for Blocking {
    type Sink = MessageSender;
    type Done = SyncSender<Result<(), ClientError>>;
    type Response = SyncSender<Result<Message, ClientError>>;
}

/// The sending half of a subscription's queue: an unbounded std channel
/// plus a shared count of queued messages that enforces the capacity.
/// (A `sync_channel` would allocate all `capacity` slots up front: with
/// 65,536 slots that is megabytes per subscription, gigabytes for 10,000.)
pub(crate) struct MessageSender {
    sender: Sender<Message>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// The receiving half; every message taken frees one unit of capacity.
pub(crate) struct MessageReceiver {
    receiver: Receiver<Message>,
    queued: Arc<AtomicUsize>,
}

/// A subscription queue holding at most `capacity` messages.
pub(crate) fn message_channel(capacity: usize) -> (MessageSender, MessageReceiver) {
    let (sender, receiver) = channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (MessageSender { sender, queued: Arc::clone(&queued), capacity }, MessageReceiver { receiver, queued })
}

impl MessageSink for MessageSender {
    fn offer(&self, message: Message) -> Result<(), Refused> {
        if self.queued.load(Ordering::Acquire) >= self.capacity {
            return Err(Refused::Full);
        }
        // Counted before sending, so the receiver's decrement never underflows.
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.sender.send(message).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            Refused::Closed
        })
    }
}

impl MessageReceiver {
    fn taken(&self, message: Message) -> Message {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        message
    }

    pub(crate) fn recv(&self) -> Result<Message, RecvError> {
        self.receiver.recv().map(|message| self.taken(message))
    }

    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.receiver.recv_timeout(timeout).map(|message| self.taken(message))
    }

    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Result<Message, TryRecvError> {
        self.receiver.try_recv().map(|message| self.taken(message))
    }

    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = Message> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }
}

impl<T> Completion<T> for SyncSender<Result<T, ClientError>> {
    fn complete(self, result: Result<T, ClientError>) {
        // Capacity one and one answer per waiter: never full. A waiter that
        // timed out has dropped its receiver; ignoring that is the point.
        let _ = self.try_send(result);
    }
}

/// Connects to the first address that accepts within `timeout`.
pub(crate) fn connect_socket(addresses: impl ToSocketAddrs, timeout: Duration) -> Result<TcpStream, ClientError> {
    let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "the address resolved to nothing");
    for address in addresses.to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = error,
        }
    }
    Err(last_error.into())
}

/// Runs the TLS handshake if `options.tls` asks for it, then sends Hello and
/// reads the answer, all within `deadline`. Returns the Welcome, whatever the
/// server sent after it (which the reader must dispatch first), and the TLS
/// session.
pub(crate) fn handshake(
    stream: &mut TcpStream,
    options: &Options,
    deadline: Instant,
) -> Result<(Welcome, BytesMut, Option<Arc<TlsSession>>), ClientError> {
    stream.set_nodelay(true)?;
    let socket = stream.try_clone()?;
    let Some(tls) = &options.tls else {
        let (welcome, leftover) = exchange_hello(stream, &socket, options, deadline)?;
        return Ok((welcome, leftover, None));
    };
    socket.set_read_timeout(Some(time_left(deadline)?))?;
    let session = Arc::new(TlsSession::handshake(tls, stream)?);
    let mut plaintext = PlaintextStream { session: &session, stream, pending: Vec::new() };
    let (welcome, mut leftover) = exchange_hello(&mut plaintext, &socket, options, deadline)?;
    leftover.extend_from_slice(&plaintext.pending);
    Ok((welcome, leftover, Some(session)))
}

fn time_left(deadline: Instant) -> Result<Duration, ClientError> {
    deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()).ok_or(ClientError::Timeout)
}

/// Hello out, Welcome in, over plain TCP or TLS plaintext; `socket` carries
/// the read timeouts.
fn exchange_hello(
    stream: &mut impl ReadWrite,
    socket: &TcpStream,
    options: &Options,
    deadline: Instant,
) -> Result<(Welcome, BytesMut), ClientError> {
    let mut hello = FrameWriter::new(Limits::default());
    hello.hello(options)?;
    stream.write_all(&hello.take())?;
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        if let Some(frame) = next_handshake_frame(&mut buffer)? {
            let welcome = accept_welcome(frame)?;
            socket.set_read_timeout(None)?;
            return Ok((welcome, buffer));
        }
        socket.set_read_timeout(Some(time_left(deadline)?))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(closed_during_handshake(&buffer)),
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ClientError::Timeout)
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The reader thread's body. See the module header.
pub(crate) fn run_reader(
    mut stream: TcpStream,
    mut buffer: BytesMut,
    limits: Limits,
    state: Arc<Mutex<ConnectionState<Blocking>>>,
    wake_flusher: SyncSender<()>,
    tls: Option<Arc<TlsSession>>,
) {
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut plaintext = Vec::new();
    let error = loop {
        match dispatch_buffered(&mut buffer, &limits, &state) {
            Ok(true) => {
                let _ = wake_flusher.try_send(());
            }
            Ok(false) => {}
            Err(error) => break error,
        }
        match stream.read(&mut chunk) {
            Ok(0) => break ClientError::Disconnected,
            Ok(read) => match &tls {
                None => buffer.extend_from_slice(&chunk[..read]),
                Some(session) => {
                    plaintext.clear();
                    if let Err(error) = session.decrypt(&chunk[..read], &mut plaintext) {
                        break error;
                    }
                    buffer.extend_from_slice(&plaintext);
                }
            },
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => break error.into(),
        }
    };
    lock(&state).fail(error);
    // The server closes after an Error; if we stopped for another reason
    // (protocol violation), make sure the peer sees us go.
    let _ = stream.shutdown(Shutdown::Both);
}

/// What the client handles share: the core, the socket's write side, and the
/// flusher's wake-up channel.
pub(crate) struct Shared {
    pub(crate) core: Core<Blocking>,
    /// Held while writing, and taken while still holding the core's writer
    /// lock, so bytes reach the socket in the order they were encoded.
    pub(crate) stream: Mutex<TcpStream>,
    pub(crate) wake_flusher: SyncSender<()>,
    pub(crate) reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The TLS session, shared with the reader (see tls.rs).
    pub(crate) tls: Option<Arc<TlsSession>>,
}

impl Shared {
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
        if let Err(error) = written {
            self.core.fail(error.clone());
            let _ = stream.shutdown(Shutdown::Both);
            return Err(error);
        }
        Ok(())
    }

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
        if let Some(session) = &self.tls {
            let _ = lock(&self.stream).write_all(&session.close_notify());
        }
        self.core.fail(error);
        let _ = lock(&self.stream).shutdown(Shutdown::Both);
        let reader = lock(&self.reader).take();
        if let Some(reader) = reader {
            // Do not join ourselves (the last handle may be dropped on the reader thread).
            if reader.thread().id() != std::thread::current().id() {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shut_down(ClientError::Closed);
    }
}

/// The flusher thread's body. See the module header.
pub(crate) fn run_flusher(wake: Receiver<()>, shared: Weak<Shared>) {
    while wake.recv().is_ok() {
        let Some(shared) = shared.upgrade() else { return };
        if shared.write_out().is_err() {
            return;
        }
    }
}
