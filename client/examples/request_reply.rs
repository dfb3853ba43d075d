//! Blocking request/reply: a responder thread on its own connection answers
//! `demo.echo`; the requester sends 1000 requests one after another and
//! prints the round-trip time percentiles.
//!
//! Usage: `cargo run --release -p flit-client --example request_reply [ADDRESS]`.

use std::time::{Duration, Instant};

use flit_client::{Client, ClientError};

const REQUESTS: usize = 1000;

fn main() -> Result<(), ClientError> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4224".to_owned());
    let responder = Client::connect(address.as_str())?;
    let requests = responder.subscribe("demo.echo")?;
    responder.flush()?;
    let responder_thread = std::thread::spawn(move || {
        for request in requests.iter() {
            if request.respond(&responder, &request.payload).is_err() {
                break;
            }
        }
    });

    let requester = Client::connect(address.as_str())?;
    let mut round_trips = Vec::with_capacity(REQUESTS);
    for index in 0..REQUESTS {
        let payload = index.to_le_bytes();
        let started = Instant::now();
        let answer = requester.request("demo.echo", &payload, Duration::from_secs(2))?;
        round_trips.push(started.elapsed());
        assert_eq!(&answer.payload[..], &payload[..], "the echo carries the request's payload");
    }
    round_trips.sort_unstable();
    println!(
        "{REQUESTS} requests: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&round_trips, 50),
        percentile(&round_trips, 99),
        round_trips[round_trips.len() - 1]
    );
    requester.close()?;
    // The responder thread owns the responder's client; it ends with it.
    drop(responder_thread);
    Ok(())
}

/// The `percent`-th percentile of sorted, non-empty `samples` (nearest rank).
fn percentile(samples: &[Duration], percent: usize) -> Duration {
    let rank = (samples.len() * percent).div_ceil(100).max(1);
    samples[rank - 1]
}
