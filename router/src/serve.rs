//! `flit serve`: layer the settings (defaults, file, environment, flags),
//! install the logger, start the shards and the metrics listener, print the
//! ready line, wait for a signal, drain, log each shard's counters, exit.
//!
//! Exit codes: 0 after a clean drain; 1 when a shard failed while running;
//! 2 when the router could not start (one line on stderr names cause and fix).

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flit_shard::{available_cores, Server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::cli::ServeArguments;
use crate::metrics_http::{self, Observed};
use crate::nats_monitoring::{NatsEndpoints, NatsFacts};
use crate::settings::{FileSettings, Settings};

/// The environment variable holding a log filter; `--log-level` wins over it.
pub const LOG_ENVIRONMENT_VARIABLE: &str = "FLIT_LOG";

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("flit: error: {message}");
    ExitCode::from(2)
}

/// Defaults, then the file, then FLIT_LOG, then the flags.
fn settings(arguments: &ServeArguments) -> Result<Settings, String> {
    let mut layered = match &arguments.config {
        Some(path) => FileSettings::load(path).map_err(|error| error.to_string())?,
        None => FileSettings::default(),
    };
    if let Ok(level) = std::env::var(LOG_ENVIRONMENT_VARIABLE) {
        layered.log.level = Some(level);
    }
    Settings::resolve(layered.overridden_by(arguments.as_layer()))
}

/// SIGHUP: read the identities file again and hand it to the shards. A
/// file that fails to load changes nothing.
fn reload_identities(server: &Server, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: no identities file configured, nothing to reload");
        return;
    };
    match crate::identities_file::load(path) {
        Ok(identities) => {
            let count = identities.len();
            server.set_identities(identities);
            tracing::info!(identities = count, file = %path.display(), "SIGHUP: identities reloaded");
        }
        Err(error) => tracing::error!(%error, "SIGHUP: identities not reloaded; the previous ones stay in force"),
    }
}

pub fn run(arguments: ServeArguments) -> ExitCode {
    let settings = match settings(&arguments) {
        Ok(settings) => settings,
        Err(message) => return fail(message),
    };
    if let Err(message) = crate::logging::init(settings.log_format, &settings.log_level) {
        return fail(message);
    }
    // Signals are caught from here on, so one arriving during startup is not lost.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(error) => return fail(format!("cannot install signal handlers: {error}")),
    };
    let metrics_listener = match settings.metrics_listen.map(metrics_http::bind).transpose() {
        Ok(listener) => listener,
        Err(message) => return fail(message),
    };
    let config = settings.server.clone();
    let started_at = std::time::SystemTime::now();
    let server = match Server::start(config.clone()) {
        Ok(server) => server,
        Err(error) => return fail(error),
    };
    let draining = Arc::new(AtomicBool::new(false));
    let shards = server.shard_count();
    let metrics_address = match metrics_listener {
        Some(listener) => {
            let observed = Observed {
                shards: server.metrics(),
                connections_per_shard_max: config.connections_per_shard_max as u64,
                draining: draining.clone(),
                epoch: server.epoch(),
                busy_idle_reported: Default::default(),
                shared: server.shared_state(),
                cluster: config
                    .cluster
                    .as_ref()
                    .zip(server.route_address())
                    .map(|(cluster, address)| (cluster.node_id, address)),
                data_directory: config.data_directory.clone(),
                nats: NatsEndpoints::new(NatsFacts {
                    // The id NATS clients see in INFO, so tools can match them.
                    server_id: server.server_id(),
                    server_name: config.server_name.clone(),
                    // NATS tools read host/port as where NATS clients connect.
                    client_address: server.nats_address().unwrap_or(server.local_address()),
                    http_address: None,
                    connections_max: config.connections_max as u64,
                    payload_bytes_max: config.payload_bytes_max as u64,
                    pending_bytes_max: config.pending_bytes_max as u64,
                    handshake_timeout: config.handshake_timeout,
                    started_at,
                    cores: available_cores().len().max(1),
                }),
            };
            // Shard i is pinned to the i-th allowed core; a core past them
            // keeps scrapes off the shards. Without one, the thread floats.
            let spare_core = config.pin_cores.then(|| available_cores().get(shards).copied()).flatten();
            if spare_core.is_none() {
                tracing::info!("no spare core for the metrics thread: scrapes share the shards' cores");
            }
            match metrics_http::serve(listener, observed, spare_core) {
                Ok(bound) => Some(bound),
                Err(message) => {
                    server.stop();
                    let _ = server.join();
                    return fail(message);
                }
            }
        }
        None => None,
    };
    let mut ready_line = format!("flit ready listen={} shards={shards}", server.local_address());
    if let Some(address) = metrics_address {
        ready_line.push_str(&format!(" metrics={address}"));
    }
    if let Some(address) = server.nats_address() {
        ready_line.push_str(&format!(" nats={address}"));
    }
    if let Some(address) = server.route_address() {
        ready_line.push_str(&format!(" cluster={address}"));
    }
    ready_line.push_str(&format!(" receive={}", server.receive_path()));
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{ready_line}");
    let _ = stdout.flush();
    drop(stdout);
    tracing::info!(
        listen = %server.local_address(),
        shards,
        idle = ?config.idle,
        receive = server.receive_path(),
        metrics = ?metrics_address,
        name = %config.server_name,
        "flit ready"
    );
    let stop = server.stopper();
    for signal in signals.forever() {
        if signal == SIGHUP {
            reload_identities(&server, settings.identities_file.as_deref());
            continue;
        }
        tracing::info!(signal, flush_timeout_ms = config.shutdown_flush_timeout.as_millis() as u64, "draining");
        break;
    }
    draining.store(true, Ordering::Relaxed);
    stop();
    let mut failed = false;
    for (shard, result) in server.join().into_iter().enumerate() {
        match result {
            Ok(stats) => tracing::info!(shard, %stats, "shard stopped"),
            Err(error) => {
                failed = true;
                tracing::error!(shard, %error, "shard failed");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
