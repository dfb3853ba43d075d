//! The tokio client's IO pieces: the handshake and the tokio channel types
//! the dispatcher feeds. The socket halves, who polls them and the tasks are
//! in `link.rs`.

use bytes::BytesMut;
use flit_wire::{Limits, Welcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{Channels, Completion, MessageSink, Refused};
use crate::error::ClientError;
use crate::framing::{accept_welcome, closed_during_handshake, next_handshake_frame, FrameWriter};
use crate::message::Message;
use crate::options::Options;
use crate::stream::{PublishAcked, StreamMessage};
use flit_wire::stream::StreamReply;

/// Bytes read from the socket per read.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The tokio channel types of the async client.
pub(crate) struct Tokio;

impl Channels for Tokio {
    type Sink = mpsc::Sender<Message>;
    type Done = oneshot::Sender<Result<(), ClientError>>;
    type Response = oneshot::Sender<Result<Message, ClientError>>;
    type Stored = oneshot::Sender<Result<PublishAcked, ClientError>>;
    type Replied = oneshot::Sender<Result<StreamReply, ClientError>>;
    type Fetched = oneshot::Sender<Result<Vec<StreamMessage>, ClientError>>;
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

use super::link::{ReadSide, WriteSide};

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
