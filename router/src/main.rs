//! # flit: the router binary
//!
//! `flit serve` starts the router (the shards live in `flit-shard`; this file
//! only turns flags into a [`flit_shard::ServerConfig`], prints the ready line,
//! and waits for SIGINT/SIGTERM). `flit pub|sub|req|reply` are small clients
//! built on `flit-client`, in the spirit of the `nats` command.
//!
//! Exit codes: 0 success; 1 a client command failed (no responders, timeout,
//! connection refused); 2 bad usage or the router could not start. Every
//! failure prints one line on stderr naming the cause and the fix.
#![forbid(unsafe_code)]

mod cli;
mod client_commands;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let command = match cli::Cli::try_parse() {
        Ok(cli) => cli.command,
        Err(error) => return cli::usage_error(error),
    };
    match command {
        cli::Command::Serve(arguments) => serve::run(arguments),
        cli::Command::Pub(arguments) => client_commands::exit(client_commands::publish(arguments)),
        cli::Command::Sub(arguments) => client_commands::exit(client_commands::subscribe(arguments)),
        cli::Command::Req(arguments) => client_commands::exit(client_commands::request(arguments)),
        cli::Command::Reply(arguments) => client_commands::exit(client_commands::reply(arguments)),
    }
}
