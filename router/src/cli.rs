//! Command-line flags. Defaults come from `flit-shard`'s named constants so
//! the help text, the docs and the code cannot disagree.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use flit_shard::config::{
    CONNECTIONS_MAX_DEFAULT, CONNECTIONS_PER_SHARD_MAX_DEFAULT, IDENTITY_SUBSCRIPTION_BYTES_MAX_DEFAULT,
    MESH_CHANNEL_DEPTH_DEFAULT, PENDING_BYTES_MAX_DEFAULT, SUBSCRIPTIONS_PER_CONNECTION_MAX_DEFAULT,
    SUBSCRIPTION_BYTES_MAX_DEFAULT,
};
use flit_wire::PAYLOAD_BYTES_MAX_DEFAULT;

use crate::rate_limit_settings::PolicySetting;
use crate::settings::{resolve_address, FileSettings, Idle, LogFormat, Receive, ShardCount, DEFAULT_ADDRESS};

#[derive(Debug, Parser)]
#[command(name = "flit", version, about = "flit: a low-latency message router")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router.
    Serve(Box<ServeArguments>),
    /// Publish a message.
    Pub(PublishArguments),
    /// Subscribe and print one line per message: `SUBJECT PAYLOAD`.
    Sub(SubscribeArguments),
    /// Send a request and print the reply.
    Req(RequestArguments),
    /// Answer requests on a subject.
    Reply(ReplyArguments),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show a live per-shard table from a router's metrics endpoint.
    Stats(StatsArguments),
    /// Clustering: `flit cluster ls` lists the nodes a node sees.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Authentication helpers.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Durable streams: add, list, describe, remove.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Read a stream through a consumer; one line per message: `SEQ SUBJECT PAYLOAD`.
    Consume(ConsumeArguments),
}

/// `flit serve` flags. Each one left out falls back to the config file, then
/// to the default named in its help (see `flit.example.toml`).
#[derive(Debug, Args)]
pub struct ServeArguments {
    /// TOML file holding any of the settings below (see flit.example.toml); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on, IP:PORT or HOST:PORT (a host name is resolved at startup; flit listens on the first address it resolves to); port 0 picks a free port (printed in the ready line). [default: 127.0.0.1:4224]
    #[arg(long, value_parser = resolve_address)]
    pub listen: Option<SocketAddr>,
    /// Number of shards (one pinned thread each), or `auto` for one per available core. [default: auto]
    #[arg(long)]
    pub shards: Option<ShardCount>,
    /// How an idle shard waits. [default: park]
    #[arg(long, value_enum)]
    pub idle: Option<Idle>,
    /// How plain connections move bytes: `ring` (multishot receives into provided buffers, sends as ring submissions) or `readiness` (poll, then recv and send calls). [default: ring]
    #[arg(long, value_enum)]
    pub receive: Option<Receive>,
    /// Park mode: microseconds an idle shard spins before it parks; 0 parks at once, submitting a pass's sends in the same system call (fewest system calls, a wake-up per message). [default: 50]
    #[arg(long = "spin-before-park-us")]
    pub spin_before_park_us: Option<u64>,
    /// A delivered payload of at least this many bytes is sent by reference in a vectored send instead of copied into the subscriber's write buffer (plain connections on the ring). [default: 32768]
    #[arg(long = "splice-payload-bytes-min")]
    pub splice_payload_bytes_min: Option<usize>,
    /// Directory where durable streams keep their logs (created with the first stream). [default: ./flit-data]
    #[arg(long = "data-dir")]
    pub data_dir: Option<std::path::PathBuf>,
    #[arg(long = "max-payload", help = format!("Largest message payload, in bytes [default: {PAYLOAD_BYTES_MAX_DEFAULT}]"))]
    pub payload_bytes_max: Option<usize>,
    #[arg(long = "pending-bytes-max", help = format!(
        "Outbound bytes queued per connection before it is evicted as a slow consumer [default: {PENDING_BYTES_MAX_DEFAULT}]"
    ))]
    pub pending_bytes_max: Option<usize>,
    #[arg(long = "subscriptions-max", help = format!(
        "Subscriptions one connection may hold [default: {SUBSCRIPTIONS_PER_CONNECTION_MAX_DEFAULT}]"
    ))]
    pub subscriptions_per_connection_max: Option<usize>,
    #[arg(long = "subscription-bytes-max", help = format!(
        "Subscription bytes one connection may hold: each subscription's pattern and queue group, plus 64 \
         [default: {SUBSCRIPTION_BYTES_MAX_DEFAULT}]"
    ))]
    pub subscription_bytes_max: Option<usize>,
    #[arg(long = "identity-subscription-bytes-max", help = format!(
        "Subscription bytes one identity may hold, all its connections on all shards together \
         [default: {IDENTITY_SUBSCRIPTION_BYTES_MAX_DEFAULT}]"
    ))]
    pub identity_subscription_bytes_max: Option<usize>,
    #[arg(long = "connections-per-shard-max", help = format!(
        "Connections one shard may hold [default: {CONNECTIONS_PER_SHARD_MAX_DEFAULT}]"
    ))]
    pub connections_per_shard_max: Option<usize>,
    #[arg(long = "mesh-depth", help = format!(
        "Depth of each cross-shard queue, in messages [default: {MESH_CHANNEL_DEPTH_DEFAULT}]"
    ))]
    pub mesh_channel_depth: Option<usize>,
    #[arg(long = "connections-max", help = format!(
        "Connections the whole server may hold [default: {CONNECTIONS_MAX_DEFAULT}]"
    ))]
    pub connections_max: Option<usize>,
    /// Milliseconds from connect to Hello before the connection is closed. [default: 5000]
    #[arg(long = "handshake-timeout-ms")]
    pub handshake_timeout_ms: Option<u64>,
    /// Milliseconds a started frame may take to arrive whole. [default: 10000]
    #[arg(long = "frame-timeout-ms")]
    pub frame_timeout_ms: Option<u64>,
    /// Milliseconds without any byte from a client before it is closed (pinged halfway); 0: never. [default: 60000]
    #[arg(long = "idle-timeout-ms")]
    pub idle_timeout_ms: Option<u64>,
    /// On SIGTERM, how long queued deliveries may take to be written, in milliseconds. [default: 5000]
    #[arg(long = "shutdown-flush-timeout-ms")]
    pub shutdown_flush_timeout_ms: Option<u64>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:8222; a host name like --listen), not the --listen port. [default: off]
    #[arg(long, value_parser = resolve_address)]
    pub metrics: Option<SocketAddr>,
    /// Also speak the NATS client protocol on this address, so NATS clients connect unchanged (NATS's default port: --nats-listen 127.0.0.1:4222). [default: off]
    #[arg(long = "nats-listen", value_parser = resolve_address)]
    pub nats_listen: Option<SocketAddr>,
    /// The cluster this node joins (every node of one cluster: the same name). [default: no cluster]
    #[arg(long = "cluster-name")]
    pub cluster_name: Option<String>,
    /// Where this node accepts routes from the other nodes (IP:PORT or HOST:PORT).
    #[arg(long = "cluster-listen", value_parser = resolve_address)]
    pub cluster_listen: Option<SocketAddr>,
    /// The route address the other nodes are told to dial (IP:PORT) [default: the bound --cluster-listen]; set it behind a wildcard listen (0.0.0.0), NAT or a proxy.
    #[arg(long = "cluster-advertise", value_parser = resolve_address)]
    pub cluster_advertise: Option<SocketAddr>,
    /// The other nodes' route addresses, comma-separated (this node's own may be listed).
    #[arg(long = "cluster-seeds", value_delimiter = ',')]
    pub cluster_seeds: Option<Vec<String>>,
    /// This node's id: unique in the cluster, stable across restarts.
    #[arg(long = "node-id")]
    pub node_id: Option<u32>,
    /// A file holding the cluster secret (at least 32 bytes; `openssl rand -hex 32 > FILE`).
    #[arg(long = "cluster-secret-file")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Log line format on stderr. [default: human]
    #[arg(long = "log-format", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter (`info`, `debug`, `flit_shard=debug,info`); wins over FLIT_LOG and the file. [default: info]
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Publish rate limit of each connection, messages per second; 0: none. [default: 0]
    #[arg(long = "rate-messages-per-second")]
    pub rate_messages_per_second: Option<u64>,
    /// Burst for --rate-messages-per-second; 0: one second's worth. [default: 0]
    #[arg(long = "rate-burst-messages")]
    pub rate_burst_messages: Option<u64>,
    /// Publish rate limit of each connection, bytes per second; 0: none. [default: 0]
    #[arg(long = "rate-bytes-per-second")]
    pub rate_bytes_per_second: Option<u64>,
    /// Over a rate limit: reject (drop, error 307) or slow-down (stop reading). [default: reject]
    #[arg(long = "rate-policy", value_enum)]
    pub rate_policy: Option<PolicySetting>,
    /// PEM certificate chain: turns TLS on for the listener (with --tls-key). [default: off]
    #[arg(long = "tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA(s) for client certificates: every client must present one (mutual TLS).
    #[arg(long = "tls-client-ca")]
    pub tls_client_ca: Option<PathBuf>,
    /// Identities file: turns authentication on (reloaded on SIGHUP). [default: off]
    #[arg(long)]
    pub identities: Option<PathBuf>,
}

impl ServeArguments {
    /// The flags given, as a settings layer to put over the file.
    pub fn as_layer(&self) -> FileSettings {
        let mut layer = FileSettings::default();
        layer.server.listen = self.listen;
        layer.server.shards = self.shards;
        layer.server.idle = self.idle;
        layer.server.receive = self.receive;
        layer.server.data_dir = self.data_dir.clone();
        layer.server.spin_before_park_us = self.spin_before_park_us;
        layer.server.splice_payload_bytes_min = self.splice_payload_bytes_min;
        layer.server.pin_cores = self.no_pin.then_some(false);
        layer.server.shutdown_flush_timeout_ms = self.shutdown_flush_timeout_ms;
        layer.limits.payload_bytes_max = self.payload_bytes_max;
        layer.limits.pending_bytes_max = self.pending_bytes_max;
        layer.limits.subscriptions_per_connection_max = self.subscriptions_per_connection_max;
        layer.limits.subscription_bytes_max = self.subscription_bytes_max;
        layer.limits.identity_subscription_bytes_max = self.identity_subscription_bytes_max;
        layer.limits.connections_per_shard_max = self.connections_per_shard_max;
        layer.limits.mesh_channel_depth = self.mesh_channel_depth;
        layer.limits.connections_max = self.connections_max;
        layer.limits.handshake_timeout_ms = self.handshake_timeout_ms;
        layer.limits.frame_timeout_ms = self.frame_timeout_ms;
        layer.limits.idle_timeout_ms = self.idle_timeout_ms;
        layer.metrics.listen = self.metrics;
        layer.nats.listen = self.nats_listen;
        layer.cluster.name = self.cluster_name.clone();
        layer.cluster.listen = self.cluster_listen;
        layer.cluster.advertise = self.cluster_advertise;
        layer.cluster.seeds = self.cluster_seeds.clone();
        layer.cluster.node_id = self.node_id;
        layer.cluster.secret_file = self.cluster_secret_file.clone();
        layer.log.format = self.log_format;
        layer.log.level = self.log_level.clone();
        layer.auth.identities_file = self.identities.clone();
        layer.tls.cert_file = self.tls_cert.clone();
        layer.tls.key_file = self.tls_key.clone();
        layer.tls.client_ca_file = self.tls_client_ca.clone();
        layer.rate_limit.messages_per_second = self.rate_messages_per_second;
        layer.rate_limit.burst_messages = self.rate_burst_messages;
        layer.rate_limit.bytes_per_second = self.rate_bytes_per_second;
        layer.rate_limit.policy = self.rate_policy;
        layer
    }
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// One line per node this node sees: `NODE_ID ADDR up|down RTT_US` (itself first).
    Ls(ClusterListArguments),
}

#[derive(Debug, Args)]
pub struct ClusterListArguments {
    /// The node's metrics address (its `--metrics` / `[metrics] listen`), as for `flit stats`.
    #[arg(long, default_value = "127.0.0.1:8222")]
    pub server: String,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Read a token on stdin, print its SHA-256 for the identities file.
    HashToken,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a config file without starting; exit 0 if it is usable.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct StatsArguments {
    /// The router's metrics address (its `--metrics` / `[metrics] listen`).
    #[arg(long, default_value = "127.0.0.1:8222")]
    pub server: String,
    /// Seconds between refreshes, from 0.1 to 3600.
    #[arg(long, default_value_t = 1.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Print one table (counters since start) and exit, instead of refreshing.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct ServerArgument {
    /// The router's address, or several of one cluster comma-separated
    /// (`a:4224,b:4224`): commands connect to the first that answers; `sub`
    /// and `reply` fail over to the others (re-subscribing) when it is lost.
    #[arg(long, default_value = DEFAULT_ADDRESS)]
    pub server: String,
    /// Speak TLS, trusting this CA (PEM) for the server's certificate.
    #[arg(long = "tls-ca")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry.
    #[arg(long = "tls-server-name", default_value = "localhost")]
    pub tls_server_name: String,
    /// Mutual TLS: this client's certificate and key (PEM).
    #[arg(long = "tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long = "tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Bearer token for a server with identities (visible in `ps`: prefer --token-file).
    #[arg(long, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file whose first line is the token.
    #[arg(long = "token-file")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PublishArguments {
    pub subject: String,
    #[arg(required_unless_present = "stdin")]
    pub payload: Option<String>,
    /// Publish the payload this many times.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Durable publish: wait until a stream has stored each message and print
    /// `STREAM SEQ` (with --stdin: `SEQ`); exit 1 if no stream captures the subject.
    #[arg(long)]
    pub ack: bool,
    /// Publish each line of stdin as one message (without its newline). With
    /// --ack the publishes are pipelined and one `SEQ` line per message is
    /// printed in publish order as each is acknowledged; at the first failure
    /// (a refusal, a lost connection) the command stops and exits 1.
    #[arg(long, conflicts_with_all = ["payload", "count"])]
    pub stdin: bool,
    /// With --ack: the message id header (`Flit-Msg-Id`) for the stream's
    /// deduplication window.
    #[arg(long = "msg-id", requires = "ack", conflicts_with = "stdin")]
    pub msg_id: Option<String>,
    #[command(flatten)]
    pub server: ServerArgument,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Create a stream capturing the given subjects (the same definition again is fine).
    Add(StreamAddArguments),
    /// List the streams: one line each.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        server: ServerArgument,
    },
    /// Show a stream's definition, counts and status.
    Info {
        name: String,
        /// Print one JSON object (name, subjects, durability, messages, bytes,
        /// first_seq, last_seq, consumers, status, limits).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgument,
    },
    /// Delete a stream with its messages and consumers.
    #[command(alias = "remove")]
    Rm {
        name: String,
        #[command(flatten)]
        server: ServerArgument,
    },
}

#[derive(Debug, Args)]
pub struct StreamAddArguments {
    pub name: String,
    /// A subject pattern the stream captures (`orders.>`); repeat for more.
    #[arg(long = "subjects", required = true)]
    pub subjects: Vec<String>,
    /// `always` (acknowledge after the fdatasync), `interval=10ms` (fdatasync
    /// at most that often, acknowledge at once) or `memory`. [default: always]
    #[arg(long, value_parser = parse_durability_argument)]
    pub durability: Option<String>,
    /// Most bytes kept (`10GiB`, `512MB`, `4096`). [default: unlimited]
    #[arg(long = "max-bytes", value_parser = parse_bytes_argument)]
    pub max_bytes: Option<u64>,
    /// Oldest message kept (`7d`, `12h`, `30m`, `10s`, `250ms`). [default: unlimited]
    #[arg(long = "max-age", value_parser = parse_duration_argument)]
    pub max_age: Option<std::time::Duration>,
    /// Most messages kept. [default: unlimited]
    #[arg(long = "max-msgs")]
    pub max_msgs: Option<u64>,
    /// Largest message, headers and payload (`1MiB`). [default: unlimited]
    #[arg(long = "max-msg-size", value_parser = parse_bytes_argument)]
    pub max_msg_size: Option<u64>,
    /// Window within which publishes with the same `Flit-Msg-Id` are stored once (`2m`). [default: off]
    #[arg(long = "dedup-window", value_parser = parse_duration_argument)]
    pub dedup_window: Option<std::time::Duration>,
    /// At a byte or message limit: `old` deletes the oldest, `new` refuses the new message. [default: old]
    #[arg(long, value_parser = parse_discard_argument)]
    pub discard: Option<String>,
    #[command(flatten)]
    pub server: ServerArgument,
}

/// `flit consume`. Without --count it stops when a fetch comes back empty
/// after --wait; with --count, after that many messages (waiting as long as
/// it takes).
#[derive(Debug, Args)]
pub struct ConsumeArguments {
    /// The stream.
    pub stream: String,
    /// Where a new consumer starts: `first`, `last`, `new` (only messages
    /// stored from now on), `seq=N`, or `time=RFC3339` (the first message
    /// stored at or after it). An existing --consumer keeps its position.
    #[arg(long, default_value = "first", value_parser = parse_start_position)]
    pub from: flit_client::stream::StartPosition,
    /// Exit after this many messages; without it, exit once a fetch finds
    /// nothing within --wait.
    #[arg(long)]
    pub count: Option<u64>,
    /// Read through this durable consumer (created if missing, explicit
    /// acks; its position survives restarts; clients sharing it share its
    /// messages). Without it an ephemeral consumer is used, with no acks
    /// unless --ack.
    #[arg(long)]
    pub consumer: Option<String>,
    /// Acknowledge each message once printed (otherwise an explicit-ack
    /// consumer delivers it again after its ack wait).
    #[arg(long)]
    pub ack: bool,
    /// Without --count: milliseconds a fetch waits for messages before the
    /// command decides the stream has nothing more and exits.
    #[arg(long = "wait", default_value_t = 1000, value_parser = parse_timeout_ms)]
    pub wait_ms: u64,
    /// Print payloads byte for byte (see `flit sub --raw`).
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub server: ServerArgument,
}

#[derive(Debug, Args)]
pub struct SubscribeArguments {
    pub subject: String,
    /// Join this queue group.
    #[arg(long)]
    pub queue: Option<String>,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Print payloads byte for byte; by default newlines, control characters
    /// (terminal escapes), backslashes and invalid UTF-8 are escaped (`\n`,
    /// `\u{1b}`, `\\`, `\xff`) so that each message is one line.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub server: ServerArgument,
}

#[derive(Debug, Args)]
pub struct RequestArguments {
    pub subject: String,
    pub payload: String,
    /// How long to wait for the reply, in milliseconds (at least 1).
    #[arg(long = "timeout", default_value_t = 2000, value_parser = parse_timeout_ms)]
    pub timeout_ms: u64,
    /// Print the reply's payload byte for byte, unescaped (see `flit sub --raw`).
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub server: ServerArgument,
}

#[derive(Debug, Args)]
pub struct ReplyArguments {
    pub subject: String,
    /// Answer with the request's own payload.
    #[arg(long, conflicts_with = "payload")]
    pub echo: bool,
    /// Answer with this payload.
    #[arg(long)]
    pub payload: Option<String>,
    /// Join this queue group (several responders share the requests).
    #[arg(long)]
    pub queue: Option<String>,
    /// Exit after answering this many requests.
    #[arg(long)]
    pub count: Option<u64>,
    #[command(flatten)]
    pub server: ServerArgument,
}

/// `--interval`: `Duration::from_secs_f64` panics on NaN, infinities and
/// negatives, and an interval of 0 would scrape in a busy loop, so the range
/// is checked here, as a usage error.
fn parse_interval(text: &str) -> Result<f64, String> {
    const RANGE: std::ops::RangeInclusive<f64> = 0.1..=3600.0;
    match text.parse::<f64>() {
        Ok(seconds) if RANGE.contains(&seconds) => Ok(seconds),
        _ => Err(format!("the interval must be a number of seconds from {} to {}", RANGE.start(), RANGE.end())),
    }
}

/// `flit req --timeout`: 0 would give up before any answer, even an
/// immediate "no responders", could arrive, so it is refused rather than
/// reported as a timeout that never had a chance.
fn parse_timeout_ms(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("the timeout must be at least 1 ms".to_string()),
        Ok(milliseconds) => Ok(milliseconds),
        Err(error) => Err(format!("the timeout must be a number of milliseconds: {error}")),
    }
}

fn parse_durability_argument(text: &str) -> Result<String, String> {
    flit_shard::streams::definition::parse_durability(text).map(|_| text.to_string()).map_err(|error| error.0)
}

fn parse_discard_argument(text: &str) -> Result<String, String> {
    flit_shard::streams::definition::parse_discard(text).map(|_| text.to_string()).map_err(|error| error.0)
}

fn parse_bytes_argument(text: &str) -> Result<u64, String> {
    flit_shard::streams::definition::parse_bytes(text).map_err(|error| error.0)
}

fn parse_duration_argument(text: &str) -> Result<std::time::Duration, String> {
    flit_shard::streams::definition::parse_duration(text).map_err(|error| error.0)
}

/// `flit consume --from`: `first`, `last`, `new`, `seq=N` (N >= 1) or
/// `time=RFC3339`.
fn parse_start_position(text: &str) -> Result<flit_client::stream::StartPosition, String> {
    use flit_client::stream::StartPosition;
    match text {
        "first" => return Ok(StartPosition::First),
        "last" => return Ok(StartPosition::Last),
        "new" => return Ok(StartPosition::New),
        _ => {}
    }
    if let Some(sequence) = text.strip_prefix("seq=") {
        return match sequence.parse::<u64>() {
            Ok(sequence) if sequence >= 1 => Ok(StartPosition::Sequence { sequence }),
            _ => Err(format!("seq= takes a sequence number from 1, not {sequence:?}")),
        };
    }
    if let Some(time) = text.strip_prefix("time=") {
        let parsed = chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|error| format!("time= takes an RFC 3339 time (2025-01-31T12:00:00Z): {error}"))?;
        let timestamp_ns = parsed
            .timestamp_nanos_opt()
            .and_then(|nanos| u64::try_from(nanos).ok())
            .ok_or_else(|| format!("time={time} is before 1970 or after 2262"))?;
        return Ok(StartPosition::Time { timestamp_ns });
    }
    Err(format!("--from takes first, last, new, seq=N or time=RFC3339, not {text:?}"))
}

/// Prints a usage error as one line and returns exit code 2; help and
/// version requests print as clap formats them and exit 0.
pub fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    eprintln!("flit: error: {}; run `flit --help` for usage", one_line(&error.render().to_string()));
    ExitCode::from(2)
}

/// clap's message on one line. Its first line can be only a heading
/// ("the following required arguments were not provided:") with the
/// arguments on the lines after it, so every line up to the usage block is kept.
fn one_line(rendered: &str) -> String {
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    match message.join(" ") {
        joined if joined.is_empty() => "invalid arguments".to_string(),
        joined => joined.trim_start_matches("error: ").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn usage_line(arguments: &[&str]) -> String {
        let error = Cli::try_parse_from(arguments).expect_err("a usage error");
        one_line(&error.render().to_string())
    }

    #[test]
    fn missing_arguments_are_named_on_the_one_line() {
        let line = usage_line(&["flit", "pub"]);
        assert!(line.contains("<SUBJECT>") && line.contains("<PAYLOAD>"), "{line}");
        assert!(line.starts_with("the following required arguments were not provided:"), "{line}");
    }

    #[test]
    fn intervals_and_timeouts_out_of_range_are_usage_errors() {
        for interval in ["nan", "inf", "-1", "0", "0.05", "3601", "x"] {
            let line = usage_line(&["flit", "stats", &format!("--interval={interval}")]);
            assert!(line.contains("interval must be a number of seconds from 0.1 to 3600"), "{interval}: {line}");
        }
        assert!(parse_interval("0.5").is_ok());
        let line = usage_line(&["flit", "req", "svc", "x", "--timeout", "0"]);
        assert!(line.contains("at least 1 ms"), "{line}");
        assert_eq!(parse_timeout_ms("1"), Ok(1));
    }

    #[test]
    fn start_positions_and_stream_limits_parse_or_are_usage_errors() {
        use flit_client::stream::StartPosition;
        assert_eq!(parse_start_position("first"), Ok(StartPosition::First));
        assert_eq!(parse_start_position("seq=7"), Ok(StartPosition::Sequence { sequence: 7 }));
        assert_eq!(
            parse_start_position("time=1970-01-01T00:00:01.5Z"),
            Ok(StartPosition::Time { timestamp_ns: 1_500_000_000 })
        );
        assert_eq!(
            parse_start_position("time=2025-01-31T13:00:00+01:00"),
            parse_start_position("time=2025-01-31T12:00:00Z")
        );
        for bad in ["seq=0", "seq=x", "time=yesterday", "oldest", ""] {
            assert!(parse_start_position(bad).is_err(), "{bad:?}");
        }
        let line = usage_line(&["flit", "stream", "add", "s", "--subjects", "a.>", "--durability", "sometimes"]);
        assert!(line.contains("durability"), "{line}");
        let line = usage_line(&["flit", "stream", "add", "s", "--subjects", "a.>", "--max-bytes", "10 GiB"]);
        assert!(line.contains("size"), "{line}");
        let line = usage_line(&["flit", "stream", "add", "s"]);
        assert!(line.contains("--subjects"), "{line}");
        let line = usage_line(&["flit", "pub", "a", "--stdin", "payload"]);
        assert!(line.contains("cannot be used with"), "{line}");
    }
}
