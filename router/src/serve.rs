//! `flit serve`: start the shards, print the ready line, wait for a signal,
//! drain, print each shard's counters, exit.

use std::io::Write;
use std::process::ExitCode;

use flit_shard::{available_cores, IdleStrategy, Server, ServerConfig};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cli::{Idle, ServeArguments};

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("flit: error: {message}");
    ExitCode::from(2)
}

fn shard_count(requested: &str) -> Result<usize, String> {
    if requested == "auto" {
        return Ok(available_cores().len().max(1));
    }
    requested
        .parse::<usize>()
        .map_err(|_| format!("--shards must be a number or `auto`, got `{requested}`; e.g. --shards 2"))
}

pub fn run(arguments: ServeArguments) -> ExitCode {
    let shards = match shard_count(&arguments.shards) {
        Ok(shards) => shards,
        Err(message) => return fail(message),
    };
    let mut config = ServerConfig::new(arguments.listen, shards);
    config.idle = match arguments.idle {
        Idle::Park => IdleStrategy::Park,
        Idle::Spin => IdleStrategy::Spin,
    };
    config.pin_cores = !arguments.no_pin;
    config.payload_bytes_max = arguments.payload_bytes_max;
    config.pending_bytes_max = arguments.pending_bytes_max;
    config.subscriptions_per_connection_max = arguments.subscriptions_per_connection_max;
    config.connections_per_shard_max = arguments.connections_per_shard_max;
    config.mesh_channel_depth = arguments.mesh_channel_depth;
    // Signals are caught from here on, so one arriving during startup is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => return fail(format!("cannot install signal handlers: {error}")),
    };
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(error) => return fail(error),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "flit ready listen={} shards={shards}", server.local_address());
    let _ = stdout.flush();
    drop(stdout);
    let stop = server.stopper();
    if let Some(signal) = signals.forever().next() {
        eprintln!("flit: signal {signal}: draining");
    }
    stop();
    let mut failed = false;
    for (shard, result) in server.join().into_iter().enumerate() {
        match result {
            Ok(stats) => eprintln!("flit: shard {shard} stopped: {stats}"),
            Err(error) => {
                failed = true;
                eprintln!("flit: error: {error}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
