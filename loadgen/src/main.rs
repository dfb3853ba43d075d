//! # flit-loadgen
//!
//! Measures flit, NATS and a raw TCP echo (the floor) with the same code, the
//! same clock and the same histograms. `flit-loadgen --target URL --scenario
//! NAME ...` runs one measurement; `flit-loadgen echo-server` is the floor's
//! server; `flit-loadgen plot` overlays the percentile curves of several runs.
//! docs/BENCHMARKS.md explains the method and the JSON it writes.
//!
//! ## Layout
//! - `engine`: the single-threaded poll loop, open and closed loop, recording.
//! - `scenario`: which connections a run opens and what each does.
//! - `protocol`: flit (through `flit-wire`), the NATS text protocol, raw echo.
//! - `report`, `plot`: summary table, JSON, `.hgrm`, SVG.
//! - `durable`: acknowledged publishing and replay against flit streams and
//!   NATS JetStream (its own driver; `cli_durable` turns a run into a report).
//! - `propagation`: interest propagation across cluster nodes (subscribe +
//!   flush on one node, publish on another; its own driver).
//! - `echo_server`, `system`, `target`, `cli`.
//!
//! `--receiver-target URL` connects subscribers and responders to another
//! node of a cluster than publishers and requesters (`target::Addresses`).
#![forbid(unsafe_code)]

mod cli;
mod cli_durable;
mod durable;
mod echo_server;
mod engine;
mod plot;
mod propagation;
mod protocol;
mod report;
mod scenario;
mod system;
mod target;
mod transport;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    let result = match arguments.command {
        Some(cli::Command::EchoServer(echo)) => cli::echo_server(echo),
        Some(cli::Command::Plot(plot)) => cli::plot(plot),
        None => cli::run(arguments.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flit-loadgen: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
