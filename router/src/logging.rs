//! Log output: `tracing` events to stderr, one line each, human-readable or
//! JSON (`--log-format json`). Records made through the `log` crate by any
//! dependency are bridged into the same output (tracing-subscriber's
//! `tracing-log` bridge), so nothing prints around the filter.
//!
//! Events a client can cause (protocol errors, evictions, limits) are
//! rate-limited where they are made, in the shards (`flit_shard::log_limit`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Installs the global subscriber. `filter` was validated with the settings.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|error| format!("log level `{filter}`: {error}"))?;
    let colours = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(colours && format == LogFormat::Human);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    installed.map_err(|error| format!("cannot install the logger: {error}"))
}
