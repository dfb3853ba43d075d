//! Command-line flags. Defaults come from `flit-shard`'s named constants so
//! the help text, the docs and the code cannot disagree.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use flit_shard::config::{
    CONNECTIONS_PER_SHARD_MAX_DEFAULT, MESH_CHANNEL_DEPTH_DEFAULT, PENDING_BYTES_MAX_DEFAULT,
    SUBSCRIPTIONS_PER_CONNECTION_MAX_DEFAULT,
};
use flit_wire::PAYLOAD_BYTES_MAX_DEFAULT;

/// The address `flit serve` listens on and the clients connect to by default.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:4222";

#[derive(Debug, Parser)]
#[command(name = "flit", version, about = "flit: a low-latency message router")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router.
    Serve(ServeArguments),
    /// Publish a message.
    Pub(PublishArguments),
    /// Subscribe and print one line per message: `SUBJECT PAYLOAD`.
    Sub(SubscribeArguments),
    /// Send a request and print the reply.
    Req(RequestArguments),
    /// Answer requests on a subject.
    Reply(ReplyArguments),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Idle {
    /// Sleep when idle (after a 50 us spin).
    Park,
    /// Busy-poll: lowest latency, one core at 100% per shard.
    Spin,
}

#[derive(Debug, Args)]
pub struct ServeArguments {
    /// Address to listen on; port 0 picks a free port (printed in the ready line).
    #[arg(long, default_value = DEFAULT_ADDRESS)]
    pub listen: SocketAddr,
    /// Number of shards (one pinned thread each), or `auto` for one per available core.
    #[arg(long, default_value = "auto")]
    pub shards: String,
    #[arg(long, value_enum, default_value_t = Idle::Park)]
    pub idle: Idle,
    /// Largest message payload, in bytes.
    #[arg(long = "max-payload", default_value_t = PAYLOAD_BYTES_MAX_DEFAULT)]
    pub payload_bytes_max: usize,
    /// Outbound bytes queued per connection before it is evicted as a slow consumer.
    #[arg(long = "pending-bytes-max", default_value_t = PENDING_BYTES_MAX_DEFAULT)]
    pub pending_bytes_max: usize,
    /// Subscriptions one connection may hold.
    #[arg(long = "subscriptions-max", default_value_t = SUBSCRIPTIONS_PER_CONNECTION_MAX_DEFAULT)]
    pub subscriptions_per_connection_max: usize,
    /// Connections one shard may hold.
    #[arg(long = "connections-per-shard-max", default_value_t = CONNECTIONS_PER_SHARD_MAX_DEFAULT)]
    pub connections_per_shard_max: usize,
    /// Depth of each cross-shard queue, in messages.
    #[arg(long = "mesh-depth", default_value_t = MESH_CHANNEL_DEPTH_DEFAULT)]
    pub mesh_channel_depth: usize,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
}

#[derive(Debug, Args)]
pub struct ServerArgument {
    /// The router's address.
    #[arg(long, default_value = DEFAULT_ADDRESS)]
    pub server: String,
}

#[derive(Debug, Args)]
pub struct PublishArguments {
    pub subject: String,
    pub payload: String,
    /// Publish the payload this many times.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
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
    #[command(flatten)]
    pub server: ServerArgument,
}

#[derive(Debug, Args)]
pub struct RequestArguments {
    pub subject: String,
    pub payload: String,
    /// How long to wait for the reply, in milliseconds.
    #[arg(long = "timeout", default_value_t = 2000)]
    pub timeout_ms: u64,
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

/// Prints a usage error as one line and returns exit code 2; help and
/// version requests print as clap formats them and exit 0.
pub fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let rendered = error.render().to_string();
    let first_line = rendered.lines().find(|line| !line.trim().is_empty()).unwrap_or("invalid arguments");
    let first_line = first_line.trim_start_matches("error: ");
    eprintln!("flit: error: {first_line}; run `flit --help` for usage");
    ExitCode::from(2)
}
