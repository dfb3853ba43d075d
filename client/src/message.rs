//! A received message.
//!
//! Built once from a decoded Deliver frame by the dispatcher. The payload is a
//! `Bytes` slice of the frame as read from the socket, so it is never copied.

use bytes::Bytes;
use flit_wire::Deliver;

use crate::error::ClientError;

/// A message delivered to a subscription (or the answer to a request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    /// Where an answer should be published, if the publisher asked for one.
    pub reply: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
    /// 0 for an ordinary message; [`flit_wire::STATUS_NO_RESPONDERS`] when the
    /// server answers a request that nobody could receive.
    pub status: u16,
}

impl Message {
    /// Converts a decoded Deliver. `decode` has already verified the
    /// flatbuffer (so strings are UTF-8) and the nested header block, so a
    /// failure here means the server and this client disagree on the protocol.
    pub(crate) fn from_deliver(deliver: Deliver) -> Result<Message, ClientError> {
        let subject = utf8(deliver.subject)?;
        let reply = deliver.reply.map(utf8).transpose()?;
        let headers = match &deliver.headers {
            Some(block) => flit_wire::decode_headers(block)
                .map_err(|error| ClientError::Protocol(format!("Deliver headers: {error}")))?,
            None => Vec::new(),
        };
        Ok(Message { subject, reply, headers, payload: deliver.payload, status: deliver.status })
    }

    /// The first value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }

    /// Publishes `payload` to this message's reply subject on `client`, and
    /// writes it to the socket at once (a requester is waiting for it),
    /// rather than leaving it to the flusher thread as `publish` does.
    pub fn respond(&self, client: &crate::Client, payload: &[u8]) -> Result<(), ClientError> {
        let reply = self.reply.as_deref().ok_or(ClientError::NoReplySubject)?;
        client.publish_now(reply, payload)
    }

    /// Like [`Message::respond`], on an [`AsyncClient`](crate::AsyncClient):
    /// written at once, on the calling task, rather than by the writer task.
    pub async fn respond_async(&self, client: &crate::AsyncClient, payload: &[u8]) -> Result<(), ClientError> {
        let reply = self.reply.as_deref().ok_or(ClientError::NoReplySubject)?;
        client.publish_now(reply, payload).await
    }
}

fn utf8(bytes: Bytes) -> Result<String, ClientError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ClientError::Protocol("subject is not UTF-8".to_owned()))
}
