//! The blocking client's IO pieces: connecting, the handshake, and the
//! channel types the dispatcher feeds: subscription queues, and the
//! one-answer [`Slot`] a waiting caller parks on. The threads and the socket
//! handoff are in `connection.rs`.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
#[cfg(test)]
use std::sync::mpsc::TryRecvError;
use std::sync::mpsc::{channel, Receiver, RecvError, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flit_wire::{Limits, Welcome};

use crate::connection::lock;
use crate::dispatch::{Channels, Completion, MessageSink, Refused};
use crate::error::ClientError;
use crate::framing::{accept_welcome, closed_during_handshake, next_handshake_frame, FrameWriter};
use crate::message::Message;
use crate::options::Options;
use crate::stream::{PublishAcked, StreamMessage};
use crate::tls::{PlaintextStream, TlsSession};
use flit_wire::stream::StreamReply;

/// A byte stream both ways: plain TCP, or TLS plaintext during the handshake.
pub(crate) trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Bytes read from the socket per `read` call.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The std channel types of the blocking client.
pub(crate) struct Blocking;

impl Channels for Blocking {
    type Sink = MessageSender;
    type Done = Answer<()>;
    type Response = Answer<Message>;
    type Stored = Answer<PublishAcked>;
    type Replied = Answer<StreamReply>;
    type Fetched = Answer<Vec<StreamMessage>>;
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

impl Clone for MessageSender {
    /// Another handle on the same queue and the same count: a cluster client
    /// hands a clone to each connection it subscribes on (see `cluster.rs`).
    fn clone(&self) -> Self {
        MessageSender { sender: self.sender.clone(), queued: Arc::clone(&self.queued), capacity: self.capacity }
    }
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

/// Where the answer a thread waits for lands: one value, and the thread to
/// unpark when it does. The thread that creates it is the one that waits,
/// unless another thread takes the wait over ([`Slot::rebind`]: a pipelined
/// durable publish's handle waited on elsewhere).
pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    answer: Option<Result<T, ClientError>>,
    waiter: Thread,
}

/// The completing half of a [`Slot`], handed to the dispatcher.
pub(crate) struct Answer<T>(Arc<Slot<T>>);

/// A slot for the calling thread, and its completing half.
pub(crate) fn slot<T>() -> (Answer<T>, Arc<Slot<T>>) {
    let slot = Arc::new(Slot { state: Mutex::new(SlotState { answer: None, waiter: std::thread::current() }) });
    (Answer(Arc::clone(&slot)), slot)
}

impl<T> Slot<T> {
    /// The answer, once it came (taken: a second call returns `None`).
    pub(crate) fn take(&self) -> Option<Result<T, ClientError>> {
        lock(&self.state).answer.take()
    }

    pub(crate) fn is_answered(&self) -> bool {
        lock(&self.state).answer.is_some()
    }

    /// Makes the calling thread the one an answer unparks (it is about to
    /// wait for it); an answer already there stays for [`Slot::take`].
    pub(crate) fn rebind(&self) {
        let current = std::thread::current();
        let mut state = lock(&self.state);
        if state.waiter.id() != current.id() {
            state.waiter = current;
        }
    }
}

impl<T> Completion<T> for Answer<T> {
    fn complete(self, result: Result<T, ClientError>) {
        let mut state = lock(&self.0.state);
        state.answer = Some(result);
        // The waiter may be the thread dispatching (it read its own answer):
        // it looks at its slot before it parks, so it needs no token.
        if state.waiter.id() != std::thread::current().id() {
            state.waiter.unpark();
        }
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
/// server sent after it (to be dispatched before anything read later), and
/// the TLS session.
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
