//! The tokio client's IO: the handshake, the reader task, the writer task,
//! and the tokio channel types the dispatcher feeds.
//!
//! # Tasks
//! - The reader task owns the read half. It ends when the socket ends or the
//!   connection becomes terminal, after failing the state.
//! - The writer task owns the write half and is the only thing that writes,
//!   so bytes leave in the order they were encoded. Callers encode under a
//!   std mutex (never held across an await) and wake it with a `Notify`,
//!   whose stored permit coalesces a burst of publishes into one write. It
//!   ends, shutting the write half down, once the connection is terminal.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use flit_wire::{Limits, Welcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::connection::{dispatch_buffered, encode_owed_pongs, lock};
use crate::dispatch::{Channels, Completion, ConnectionState, MessageSink, Refused};
use crate::error::ClientError;
use crate::framing::{accept_welcome, closed_during_handshake, next_handshake_frame, FrameWriter};
use crate::message::Message;
use crate::options::Options;

/// Bytes reserved in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The tokio channel types of the async client.
pub(crate) struct Tokio;

impl Channels for Tokio {
    type Sink = mpsc::Sender<Message>;
    type Done = oneshot::Sender<Result<(), ClientError>>;
    type Response = oneshot::Sender<Result<Message, ClientError>>;
}

impl MessageSink for mpsc::Sender<Message> {
    fn offer(&self, message: Message) -> Result<(), Refused> {
        self.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => Refused::Full,
            mpsc::error::TrySendError::Closed(_) => Refused::Closed,
        })
    }
}

impl<T> Completion<T> for oneshot::Sender<Result<T, ClientError>> {
    fn complete(self, result: Result<T, ClientError>) {
        // A waiter that timed out dropped its receiver; ignoring that is the point.
        let _ = self.send(result);
    }
}

/// The two directions of a connection, plain TCP or TLS.
pub(crate) type ReadSide = Box<dyn AsyncRead + Unpin + Send>;
pub(crate) type WriteSide = Box<dyn AsyncWrite + Unpin + Send>;

/// Connects over plain TCP or TLS (per `options.tls`) and runs the flit
/// handshake; returns the two directions, the Welcome and what followed it.
pub(crate) async fn connect(
    stream: TcpStream,
    options: &Options,
) -> Result<(ReadSide, WriteSide, Welcome, BytesMut), ClientError> {
    stream.set_nodelay(true)?;
    match &options.tls {
        None => {
            let mut stream = stream;
            let (welcome, leftover) = handshake(&mut stream, options).await?;
            let (read_half, write_half) = stream.into_split();
            Ok((Box::new(read_half), Box::new(write_half), welcome, leftover))
        }
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                .map_err(|error| ClientError::Tls(format!("server name {}: {error}", tls.server_name)))?;
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let mut stream =
                connector.connect(name, stream).await.map_err(|error| ClientError::Tls(error.to_string()))?;
            let (welcome, leftover) = handshake(&mut stream, options).await?;
            let (read_half, write_half) = tokio::io::split(stream);
            Ok((Box::new(read_half), Box::new(write_half), welcome, leftover))
        }
    }
}

/// Sends Hello and reads the answer. The caller bounds it with a timeout.
/// Returns the Welcome and whatever the server sent after it.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    options: &Options,
) -> Result<(Welcome, BytesMut), ClientError> {
    let mut hello = FrameWriter::new(Limits::default());
    hello.hello(options)?;
    stream.write_all(&hello.take()).await?;
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        if let Some(frame) = next_handshake_frame(&mut buffer)? {
            return Ok((accept_welcome(frame)?, buffer));
        }
        if stream.read_buf(&mut buffer).await? == 0 {
            return Err(closed_during_handshake(&buffer));
        }
    }
}

/// The reader task's body. See the module header.
pub(crate) async fn run_reader(
    mut read_half: ReadSide,
    mut buffer: BytesMut,
    limits: Limits,
    state: Arc<Mutex<ConnectionState<Tokio>>>,
    wake_writer: Arc<Notify>,
) {
    let error = loop {
        match dispatch_buffered(&mut buffer, &limits, &state) {
            Ok(true) => wake_writer.notify_one(),
            Ok(false) => {}
            Err(error) => break error,
        }
        buffer.reserve(READ_CHUNK_BYTES);
        match read_half.read_buf(&mut buffer).await {
            Ok(0) => break ClientError::Disconnected,
            Ok(_) => {}
            Err(error) => break error.into(),
        }
    };
    lock(&state).fail(error);
    // Let the writer see the terminal state and close its half.
    wake_writer.notify_one();
}

/// The writer task's body. See the module header.
pub(crate) async fn run_writer(
    mut write_half: WriteSide,
    writer: Arc<Mutex<FrameWriter>>,
    state: Arc<Mutex<ConnectionState<Tokio>>>,
    wake: Arc<Notify>,
    drained: Arc<Notify>,
) {
    loop {
        wake.notified().await;
        loop {
            let bytes = {
                let mut writer = lock(&writer);
                encode_owed_pongs(&mut writer, &state);
                writer.take()
            };
            if bytes.is_empty() {
                break;
            }
            if let Err(error) = write_half.write_all(&bytes).await {
                lock(&state).fail(error.into());
                drained.notify_waiters();
                return;
            }
            drained.notify_waiters();
        }
        if lock(&state).usable().is_err() {
            drained.notify_waiters();
            let _ = write_half.shutdown().await;
            return;
        }
    }
}
