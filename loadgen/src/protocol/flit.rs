//! flit's own protocol, through `flit-wire`: the same encoder and decoder the
//! router and the client use, so the load generator cannot disagree with them.

use bytes::BytesMut;
use flit_wire::{check, decode, Check, Encoder, Frame, Hello, Limits, Op, PROTOCOL_VERSION};

use super::{Inbound, Protocol, ProtocolError};

#[derive(Default)]
pub struct FlitProtocol {
    encoder: Encoder,
    limits: Limits,
    welcomed: bool,
}

fn error(message: impl Into<String>) -> ProtocolError {
    ProtocolError { target: "flit", message: message.into() }
}

impl Protocol for FlitProtocol {
    fn handshake(&mut self, output: &mut BytesMut) {
        let hello = Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            client_name: Some("flit-loadgen".to_owned()),
            auth_token: None,
            ack_mode: false,
        };
        self.encoder.hello(output, &hello).expect("a Hello always encodes");
    }

    fn handshake_done(&self) -> bool {
        self.welcomed
    }

    fn subscribe(&mut self, output: &mut BytesMut, subject: &str, queue: Option<&str>, subscription_id: u64) {
        self.encoder
            .subscribe(output, subject.as_bytes(), queue.map(str::as_bytes), subscription_id)
            .expect("scenario subjects are valid");
    }

    fn publish(&mut self, output: &mut BytesMut, subject: &str, reply: Option<&[u8]>, payload: &[u8]) {
        self.encoder.publish(output, subject.as_bytes(), reply, None, payload).expect("scenario subjects are valid");
    }

    fn ping(&mut self, output: &mut BytesMut) {
        Encoder::bare(output, Op::Ping);
    }

    fn parse(&mut self, input: &mut BytesMut, _output: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        loop {
            let length = match check(input, self.limits.frame_bytes_max()) {
                Check::Incomplete => return Ok(None),
                Check::Invalid(invalid) => return Err(error(invalid.to_string())),
                Check::Complete(length) => length,
            };
            let frame = decode(input.split_to(length).freeze(), &self.limits).map_err(|e| error(e.to_string()))?;
            match frame {
                Frame::Welcome(welcome) => {
                    self.limits.payload_bytes_max = welcome.payload_bytes_max as usize;
                    self.welcomed = true;
                }
                Frame::Deliver(deliver) => {
                    return Ok(Some(Inbound::Message {
                        subscription_id: deliver.subscription_id,
                        reply: deliver.reply,
                        payload: deliver.payload,
                    }))
                }
                Frame::Pong => return Ok(Some(Inbound::Pong)),
                Frame::Ok => {}
                Frame::Error(refused) => {
                    return Ok(Some(Inbound::Error(format!("error {}: {}", refused.code, refused.message))))
                }
                other => return Err(error(format!("unexpected frame from the server: {other:?}"))),
            }
        }
    }
}
