//! Sequential request/reply latency through flit-client, for
//! `bench/client_latency.sh`: N requests one after another, each waiting for
//! its reply, timed on the requester's clock; prints the percentiles.
//!
//! The responder is, by default, a minimal one written here with `flit-wire`
//! on its own thread and socket (read, answer every request with its payload,
//! write), the same work the load generator's responder does, so the number
//! measures the client's request path and not a client-based responder.
//! `--responder client` answers with a blocking `flit_client::Client`
//! subscription instead (what `flit reply --echo` does).
//!
//! ```text
//! cargo run --release -p flit-client --example request_latency -- \
//!     [--server 127.0.0.1:4224] [--requests 20000] [--warmup 2000] [--payload 64] \
//!     [--mode blocking|async|async-mt|all] [--responder raw|client] [--subscribed]
//! ```
//!
//! `--mode async` runs the tokio client on a current-thread runtime,
//! `async-mt` on a two-worker multi-thread runtime. `--subscribed` gives the
//! requesting client a subscription (on which nothing arrives) as well, the
//! case of a service that both subscribes and sends requests.
//!
//! Output: one line per mode, `key=value` pairs, latencies in microseconds
//! (nearest-rank percentiles of every sample, no histogram rounding):
//! `client=blocking responder=raw subscribed=false requests=20000 payload=64 p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. mean_us=..`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flit_client::{AsyncClient, Client};
use flit_wire::{check, decode, Check, Encoder, Frame, Hello, Limits, Op, PROTOCOL_VERSION};

const SUBJECT: &str = "latency.echo";
const TIMEOUT: Duration = Duration::from_secs(5);

struct Arguments {
    server: String,
    requests: usize,
    warmup: usize,
    payload: usize,
    modes: Vec<String>,
    responder: String,
    subscribed: bool,
}

fn arguments() -> Arguments {
    let mut parsed = Arguments {
        server: "127.0.0.1:4224".to_owned(),
        requests: 20_000,
        warmup: 2_000,
        payload: 64,
        modes: vec!["blocking".to_owned()],
        responder: "raw".to_owned(),
        subscribed: false,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--server" => parsed.server = value(),
            "--requests" => parsed.requests = value().parse().unwrap_or_else(|_| usage("--requests N")),
            "--warmup" => parsed.warmup = value().parse().unwrap_or_else(|_| usage("--warmup N")),
            "--payload" => parsed.payload = value().parse().unwrap_or_else(|_| usage("--payload BYTES")),
            "--mode" => {
                parsed.modes = match value().as_str() {
                    "all" => vec!["blocking".to_owned(), "async".to_owned(), "async-mt".to_owned()],
                    mode @ ("blocking" | "async" | "async-mt") => vec![mode.to_owned()],
                    other => usage(&format!("unknown mode {other}")),
                }
            }
            "--responder" => {
                parsed.responder = value();
                if !matches!(parsed.responder.as_str(), "raw" | "client") {
                    usage("--responder raw|client");
                }
            }
            "--subscribed" => parsed.subscribed = true,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if parsed.requests == 0 {
        usage("--requests must be at least 1");
    }
    parsed
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "request_latency: {problem}\nusage: request_latency [--server ADDR] [--requests N] [--warmup N] \
         [--payload BYTES] [--mode blocking|async|async-mt|all] [--responder raw|client] [--subscribed]"
    );
    std::process::exit(2)
}

fn main() {
    let arguments = arguments();
    // Keeps the client-based responder's connection open until the end.
    let _responder = start_responder(&arguments);
    let payload = vec![b'x'; arguments.payload];
    for mode in &arguments.modes {
        let samples = match mode.as_str() {
            "blocking" => blocking(&arguments, &payload),
            "async" => asynchronous(&arguments, &payload, tokio::runtime::Builder::new_current_thread()),
            _ => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(2);
                asynchronous(&arguments, &payload, builder)
            }
        };
        report(mode, &arguments, samples);
    }
}

/// Round trips in nanoseconds, warm-up excluded.
fn blocking(arguments: &Arguments, payload: &[u8]) -> Vec<u64> {
    let client = Client::connect(arguments.server.as_str()).expect("connect");
    let _subscription = arguments.subscribed.then(|| client.subscribe("latency.idle.>").expect("subscribe"));
    client.flush().expect("flush");
    let mut samples = Vec::with_capacity(arguments.requests);
    for index in 0..arguments.warmup + arguments.requests {
        let started = Instant::now();
        let reply = client.request(SUBJECT, payload, TIMEOUT).expect("reply");
        let elapsed = started.elapsed();
        assert_eq!(reply.payload.len(), payload.len(), "the echo carries the payload");
        if index >= arguments.warmup {
            samples.push(elapsed.as_nanos() as u64);
        }
    }
    client.close().expect("close");
    samples
}

fn asynchronous(arguments: &Arguments, payload: &[u8], mut builder: tokio::runtime::Builder) -> Vec<u64> {
    let runtime = builder.enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = AsyncClient::connect(arguments.server.as_str()).await.expect("connect");
        let _subscription = match arguments.subscribed {
            true => Some(client.subscribe("latency.idle.>").await.expect("subscribe")),
            false => None,
        };
        client.flush().await.expect("flush");
        let mut samples = Vec::with_capacity(arguments.requests);
        for index in 0..arguments.warmup + arguments.requests {
            let started = Instant::now();
            let reply = client.request(SUBJECT, payload, TIMEOUT).await.expect("reply");
            let elapsed = started.elapsed();
            assert_eq!(reply.payload.len(), payload.len(), "the echo carries the payload");
            if index >= arguments.warmup {
                samples.push(elapsed.as_nanos() as u64);
            }
        }
        client.close().await.expect("close");
        samples
    })
}

fn report(mode: &str, arguments: &Arguments, mut samples: Vec<u64>) {
    samples.sort_unstable();
    let percentile = |per_mille: usize| {
        let rank = (samples.len() * per_mille).div_ceil(1000).max(1);
        samples[rank - 1] as f64 / 1000.0
    };
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1000.0;
    println!(
        "client={mode} responder={} subscribed={} requests={} payload={} p50_us={:.1} p90_us={:.1} p99_us={:.1} \
         p999_us={:.1} max_us={:.1} mean_us={mean:.1}",
        arguments.responder,
        arguments.subscribed,
        samples.len(),
        arguments.payload,
        percentile(500),
        percentile(900),
        percentile(990),
        percentile(999),
        samples[samples.len() - 1] as f64 / 1000.0,
    );
}

/// Starts the responder and returns once its subscription is in place.
fn start_responder(arguments: &Arguments) -> Option<Client> {
    if arguments.responder == "client" {
        let client = Client::connect(arguments.server.as_str()).expect("responder connect");
        let requests = client.subscribe(SUBJECT).expect("responder subscribe");
        client.flush().expect("responder flush");
        let answering = client.clone();
        std::thread::spawn(move || {
            for request in requests.iter() {
                if request.respond(&answering, &request.payload).is_err() {
                    return;
                }
            }
        });
        return Some(client);
    }
    let mut stream = TcpStream::connect(arguments.server.as_str()).expect("responder connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut encoder = Encoder::default();
    let mut output = BytesMut::new();
    let hello = Hello {
        version_min: PROTOCOL_VERSION,
        version_max: PROTOCOL_VERSION,
        client_name: Some("request_latency responder".to_owned()),
        auth_token: None,
        ack_mode: false,
    };
    encoder.hello(&mut output, &hello).expect("hello");
    encoder.subscribe(&mut output, SUBJECT.as_bytes(), None, 1).expect("subscribe");
    Encoder::bare(&mut output, Op::Ping);
    stream.write_all(&output).expect("responder write");
    let mut input = BytesMut::new();
    // Welcome, then the Pong that says the subscription is visible everywhere.
    let mut responder = RawResponder { stream, encoder, input: BytesMut::new(), limits: Limits::default() };
    loop {
        match responder.next_frame(&mut input) {
            Frame::Welcome(welcome) => {
                responder.limits = Limits { payload_bytes_max: welcome.payload_bytes_max as usize }
            }
            Frame::Pong => break,
            other => panic!("responder: unexpected {other:?} before its subscription was confirmed"),
        }
    }
    responder.input = input;
    std::thread::spawn(move || responder.serve());
    None
}

struct RawResponder {
    stream: TcpStream,
    encoder: Encoder,
    input: BytesMut,
    limits: Limits,
}

impl RawResponder {
    /// The next frame, reading as needed (panics if the connection ends).
    fn next_frame(&mut self, input: &mut BytesMut) -> Frame {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match check(input, self.limits.frame_bytes_max()) {
                Check::Complete(length) => {
                    return decode(input.split_to(length).freeze(), &self.limits).expect("frame decodes")
                }
                Check::Incomplete => {}
                Check::Invalid(error) => panic!("responder: invalid frame: {error}"),
            }
            let read = self.stream.read(&mut chunk).expect("responder read");
            assert!(read > 0, "responder: the server closed the connection");
            input.extend_from_slice(&chunk[..read]);
        }
    }

    /// Answers every request with its own payload, each batch read in one write.
    fn serve(mut self) {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut output = BytesMut::new();
        loop {
            loop {
                match check(&self.input, self.limits.frame_bytes_max()) {
                    Check::Complete(length) => {
                        let frame = self.input.split_to(length).freeze();
                        match decode(frame, &self.limits) {
                            Ok(Frame::Deliver(deliver)) => {
                                if let Some(reply) = &deliver.reply {
                                    self.encoder
                                        .publish(&mut output, reply, None, None, &deliver.payload)
                                        .expect("reply");
                                }
                            }
                            Ok(Frame::Ping) => Encoder::bare(&mut output, Op::Pong),
                            Ok(Frame::Error(_)) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                    Check::Incomplete => break,
                    Check::Invalid(_) => return,
                }
            }
            if !output.is_empty() {
                if self.stream.write_all(&output).is_err() {
                    return;
                }
                output.clear();
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(read) => self.input.extend_from_slice(&chunk[..read]),
            }
        }
    }
}
