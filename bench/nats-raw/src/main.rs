//! The plainest NATS pub/sub throughput client, as a cross-check of
//! flit-loadgen's NATS figure: a publisher thread and a subscriber thread on
//! blocking sockets, the text protocol written and read by hand, a closed
//! loop with at most `--window` messages in flight. No latency, no clock per
//! message: only deliveries counted between the end of the warm-up and the
//! end of the measured period (sampled by the publisher), divided by its
//! length. The publisher writes whatever the window allows in one write and
//! yields the core while the window is full; the subscriber blocks in `read`.
//!
//! Usage: nats-raw --server 127.0.0.1:4222 [--window 4096] [--payload 64]
//!        [--duration 3s] [--warmup 1s] [--json PATH]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

const SUBJECT: &str = "raw.data";
const READ_BYTES: usize = 256 * 1024;

fn seconds(text: &str) -> Result<Duration, Error> {
    let (number, scale) = match (text.strip_suffix("ms"), text.strip_suffix('s')) {
        (Some(ms), _) => (ms, 1e-3),
        (None, Some(s)) => (s, 1.0),
        (None, None) => (text, 1.0),
    };
    Ok(Duration::from_secs_f64(number.parse::<f64>()? * scale))
}

/// Reads until `needle` has arrived (INFO's line end, a PONG), at most 64 KiB.
fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Result<(), Error> {
    let (mut seen, mut buffer) = (Vec::new(), [0u8; 4096]);
    while !seen.windows(needle.len()).any(|window| window == needle) {
        let read = stream.read(&mut buffer)?;
        if read == 0 || seen.len() > 64 * 1024 {
            return Err(format!("the server closed or never sent {:?}", String::from_utf8_lossy(needle)).into());
        }
        seen.extend_from_slice(&buffer[..read]);
    }
    Ok(())
}

fn connect(server: &str) -> Result<TcpStream, Error> {
    let mut stream = TcpStream::connect(server)?;
    stream.set_nodelay(true)?;
    read_until(&mut stream, b"\r\n")?;
    stream.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"nats-raw\"}\r\n")?;
    Ok(stream)
}

/// Counts whole MSG operations in `stream`, forever; publishes the count after each read.
fn subscribe_and_count(mut stream: TcpStream, received: &AtomicU64) {
    let mut buffer = vec![0u8; READ_BYTES];
    let mut pending: Vec<u8> = Vec::with_capacity(2 * READ_BYTES);
    let mut count = 0u64;
    loop {
        let read = match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        pending.extend_from_slice(&buffer[..read]);
        let mut position = 0;
        while let Some(line_feed) = pending[position..].iter().position(|&byte| byte == b'\n') {
            let line = &pending[position..position + line_feed];
            let mut end = position + line_feed + 1;
            if line.starts_with(b"MSG ") {
                let length_text = line.rsplit(|&byte| byte == b' ').next().unwrap_or_default();
                let length = std::str::from_utf8(length_text).ok().and_then(|text| text.trim().parse::<usize>().ok());
                let Some(length) = length else { return };
                end += length + 2;
                if end > pending.len() {
                    break;
                }
                count += 1;
            }
            position = end;
        }
        pending.drain(..position);
        received.store(count, Ordering::Release);
    }
}

fn main() -> Result<(), Error> {
    let (mut server, mut window, mut payload_bytes) = ("127.0.0.1:4222".to_string(), 4096u64, 64usize);
    let (mut duration, mut warmup, mut json) = (Duration::from_secs(3), Duration::from_secs(1), None);
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let value = arguments.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => server = value,
            "--window" => window = value.parse()?,
            "--payload" => payload_bytes = value.parse()?,
            "--duration" => duration = seconds(&value)?,
            "--warmup" => warmup = seconds(&value)?,
            "--json" => json = Some(value),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let mut subscriber = connect(&server)?;
    subscriber.write_all(format!("SUB {SUBJECT} 1\r\nPING\r\n").as_bytes())?;
    read_until(&mut subscriber, b"PONG\r\n")?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    std::thread::spawn(move || subscribe_and_count(subscriber, &counter));

    let mut publisher = connect(&server)?;
    let mut message = format!("PUB {SUBJECT} {payload_bytes}\r\n").into_bytes();
    message.extend(std::iter::repeat_n(b'x', payload_bytes));
    message.extend_from_slice(b"\r\n");
    let block = message.repeat(window as usize);
    let start = Instant::now();
    let (mut sent, mut at_warmup_end) = (0u64, None);
    let at_end = loop {
        let elapsed = start.elapsed();
        if at_warmup_end.is_none() && elapsed >= warmup {
            at_warmup_end = Some(received.load(Ordering::Acquire));
        }
        if elapsed >= warmup + duration {
            break received.load(Ordering::Acquire);
        }
        let in_flight = sent - received.load(Ordering::Acquire);
        if in_flight >= window {
            std::thread::yield_now();
            continue;
        }
        let count = window - in_flight;
        publisher.write_all(&block[..message.len() * count as usize])?;
        sent += count;
    };
    let delivered = at_end - at_warmup_end.unwrap_or(at_end);
    let rate = delivered as f64 / duration.as_secs_f64();
    println!("nats-raw pubsub nats://{server} window {window} payload {payload_bytes} B: {rate:.0} msg/s");
    if let Some(path) = json {
        // flit-loadgen's JSON keys that bench/summarize.py reads; no latency is measured.
        let report = format!(
            "{{\n  \"scenario\": \"pubsub\",\n  \"target\": \"nats://{server} (nats-raw)\",\n  \"payload_bytes\": {payload_bytes},\n  \
             \"rate\": 0,\n  \"window\": {window},\n  \"duration_s\": {},\n  \"warmup_s\": {},\n  \"sent\": null,\n  \
             \"received\": {delivered},\n  \"lost\": null,\n  \"errors\": 0,\n  \"throughput_msgs_per_s\": {rate},\n  \
             \"latency_us\": {{\"p50\": null, \"p90\": null, \"p99\": null, \"p999\": null, \"p9999\": null, \"max\": null, \
             \"mean\": null, \"count\": 0}},\n  \"server_cpu_s\": null,\n  \"idle\": \"park\"\n}}\n",
            duration.as_secs_f64(),
            warmup.as_secs_f64()
        );
        std::fs::write(path, report)?;
    }
    Ok(())
}
