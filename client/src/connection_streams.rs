//! `Core`'s durable-stream operations (protocol version 2), minus the IO:
//! the same shape as the core operations in `connection.rs` (writer lock,
//! then state lock; check the connection, register the waiter, encode, all
//! in one critical section), with the waiters matched by tag (see
//! `dispatch_streams.rs`).
//!
//! Every operation first checks that the connection agreed version 2;
//! on a version-1 connection it fails with
//! [`ClientError::StreamsUnsupported`] and sends nothing.

use flit_wire::stream::{Ack, AckKind, Fetch, StreamCommand, StreamRequest};

use crate::connection::{attributed, lock, Core};
use crate::dispatch::{Attributed, Channels};
use crate::error::ClientError;

/// The protocol version that brought durable streams.
pub(crate) const STREAMS_VERSION: u16 = 2;

impl<C: Channels> Core<C> {
    /// `Err(StreamsUnsupported)` unless this connection speaks version 2.
    pub(crate) fn streams_supported(&self) -> Result<(), ClientError> {
        let version = self.welcome.version;
        if version < STREAMS_VERSION {
            return Err(ClientError::StreamsUnsupported { version });
        }
        Ok(())
    }

    /// Registers `waiter` and encodes a durable Publish (its tag the ack id);
    /// returns the ack id for [`Core::cancel_durable_publish`]. A refusal of
    /// the Publish itself (401, 307) completes `waiter` with the error: the
    /// frame is attributed (see `dispatch`).
    pub(crate) fn durable_publish(
        &self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        waiter: C::Stored,
    ) -> Result<u64, ClientError> {
        self.streams_supported()?;
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        let tag = state.add_durable_publish(waiter);
        let encoded = attributed(&mut writer, &mut state, Attributed::DurablePublish(tag), |writer| {
            writer.durable_publish(tag, subject, headers, payload)
        });
        if let Err(error) = encoded {
            state.cancel_durable_publish(tag);
            return Err(error);
        }
        Ok(tag)
    }

    pub(crate) fn cancel_durable_publish(&self, tag: u64) {
        lock(&self.state).cancel_durable_publish(tag);
    }

    /// Registers `waiter` and encodes a StreamRequest; returns its request id.
    pub(crate) fn stream_request(&self, command: StreamCommand, waiter: C::Replied) -> Result<u64, ClientError> {
        self.streams_supported()?;
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        let request_id = state.add_stream_request(waiter);
        let request = StreamRequest { request_id, command };
        if let Err(error) = writer.stream_request(&request) {
            state.cancel_stream_request(request_id);
            return Err(error);
        }
        Ok(request_id)
    }

    /// Registers `done` and encodes a Fetch; returns its request id.
    pub(crate) fn fetch(
        &self,
        stream: &str,
        consumer: &str,
        batch: u32,
        wait_ms: u32,
        done: C::Fetched,
    ) -> Result<u64, ClientError> {
        self.streams_supported()?;
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        let request_id = state.add_fetch(batch, done);
        let fetch = Fetch { request_id, stream: stream.to_owned(), consumer: consumer.to_owned(), batch, wait_ms };
        if let Err(error) = writer.fetch(&fetch) {
            state.cancel_stream_request(request_id);
            return Err(error);
        }
        Ok(request_id)
    }

    /// Encodes an Ack. With `waiter` the server answers once the consumer's
    /// state that includes it is saved; without, nothing answers it.
    /// Returns the request id (0 without a waiter).
    pub(crate) fn ack(
        &self,
        stream: &str,
        consumer: &str,
        sequence: u64,
        kind: AckKind,
        waiter: Option<C::Replied>,
    ) -> Result<u64, ClientError> {
        self.streams_supported()?;
        let mut writer = lock(&self.writer);
        let mut state = lock(&self.state);
        state.usable()?;
        let request_id = waiter.map_or(0, |waiter| state.add_stream_request(waiter));
        let ack = Ack { request_id, stream: stream.to_owned(), consumer: consumer.to_owned(), sequence, kind };
        if let Err(error) = writer.ack(&ack) {
            if request_id != 0 {
                state.cancel_stream_request(request_id);
            }
            return Err(error);
        }
        Ok(request_id)
    }

    /// Forgets a stream request or fetch whose caller gave up.
    pub(crate) fn cancel_stream_request(&self, request_id: u64) {
        lock(&self.state).cancel_stream_request(request_id);
    }
}
