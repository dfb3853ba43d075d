//! A client that half-closes its connection (sends its requests, then
//! `shutdown(Write)`, as `nc` or a script does) still gets every reply and
//! delivery queued for it, then a clean end of stream.

mod common;

use std::net::Shutdown;

use bytes::BytesMut;
use common::{FlitServer, RawConnection, SHARD_COUNTS};
use flit_wire::{Encoder, Frame, Op};

#[test]
fn replies_queued_before_a_half_close_are_delivered() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let mut connection = RawConnection::connect(server.address);
        let mut frames = BytesMut::new();
        let mut encoder = Encoder::default();
        encoder.subscribe(&mut frames, b"half.closed", None, 7).expect("subscribe");
        encoder.publish(&mut frames, b"half.closed", None, None, b"to myself").expect("publish");
        Encoder::bare(&mut frames, Op::Ping);
        connection.send(&frames);
        connection.stream.shutdown(Shutdown::Write).expect("half-close");
        let mut received = Vec::new();
        while let Some(frame) = connection.read_frame() {
            received.push(frame);
        }
        assert!(
            matches!(received.as_slice(), [Frame::Deliver(deliver), Frame::Pong]
                if deliver.subscription_id == 7 && &deliver.payload[..] == b"to myself"),
            "shards={shards}: expected the delivery and the pong, then end of stream; got {received:?}"
        );
    }
}
