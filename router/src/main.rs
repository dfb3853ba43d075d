//! # flit: the router binary
//!
//! `flit serve` starts the router (the shards live in `flit-shard`; this
//! crate layers the settings, installs logging, serves metrics, prints the
//! ready line and waits for SIGINT/SIGTERM). `flit config check` validates a
//! config file; `flit stats` shows a live per-shard table from the metrics
//! endpoint; `flit pub|sub|req|reply` are small clients built on
//! `flit-client`, in the spirit of the `nats` command, and `flit stream
//! add|ls|info|rm` and `flit consume` work with durable streams.
//!
//! Exit codes: 0 success; 1 a client command failed (no responders, timeout,
//! connection refused, a publish or subscribe the server refused) or a shard
//! failed while running; 2 bad usage, a bad
//! config, or the router could not start. Every failure prints one line on
//! stderr naming the cause and the fix.
#![forbid(unsafe_code)]

mod cli;
mod client_commands;
mod identities_file;
mod logging;
mod metrics_cluster;
mod metrics_http;
mod nats_monitoring;
mod nats_query;
mod rate_limit_settings;
mod serve;
mod settings;
mod stats_command;
mod stream_commands;
mod stream_settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let command = match cli::Cli::try_parse() {
        Ok(cli) => cli.command,
        Err(error) => return cli::usage_error(error),
    };
    match command {
        cli::Command::Serve(arguments) => serve::run(*arguments),
        cli::Command::Config(cli::ConfigCommand::Check { file }) => config_check(&file),
        cli::Command::Stats(arguments) => client_commands::exit(stats_command::run(arguments)),
        cli::Command::Cluster(cli::ClusterCommand::Ls(arguments)) => {
            client_commands::exit(stats_command::print_path(&arguments.server, "/cluster"))
        }
        cli::Command::Auth(cli::AuthCommand::HashToken) => {
            client_commands::exit(identities_file::hash_token_from_stdin())
        }
        cli::Command::Pub(arguments) => client_commands::exit(client_commands::publish(arguments)),
        cli::Command::Sub(arguments) => client_commands::exit(client_commands::subscribe(arguments)),
        cli::Command::Req(arguments) => client_commands::exit(client_commands::request(arguments)),
        cli::Command::Reply(arguments) => client_commands::exit(client_commands::reply(arguments)),
        cli::Command::Stream(command) => client_commands::exit(stream_commands::stream(command)),
        cli::Command::Consume(arguments) => client_commands::exit(stream_commands::consume(arguments)),
    }
}

/// `flit config check FILE`: exit 0 and one summary line if `flit serve
/// --config FILE` would start with it, else exit 2 and the reason.
fn config_check(file: &std::path::Path) -> ExitCode {
    let resolved =
        settings::FileSettings::load(file).map_err(|error| error.to_string()).and_then(settings::Settings::resolve);
    match resolved {
        Ok(settings) => {
            let server = &settings.server;
            println!(
                "flit: config {} is valid: listen={} shards={} idle={:?} metrics={}",
                file.display(),
                server.listen,
                server.shards,
                server.idle,
                settings.metrics_listen.map_or("off".to_string(), |address| address.to_string())
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("flit: error: {message}");
            ExitCode::from(2)
        }
    }
}
