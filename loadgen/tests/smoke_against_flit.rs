//! The `flit-loadgen` binary end to end: every scenario against a real `flit
//! serve` on 127.0.0.1, checking what a script relies on (exit status, the
//! JSON report's documented keys, the `.hgrm` header) and the counts a
//! healthy router must produce (nothing lost, no errors); and the cross-node
//! scenarios (`--receiver-target`, propagation) against a two-node cluster.
//! No timing is asserted: this is a smoke test, not a benchmark.
//!
//! The router binary is built into the same target directory and profile as
//! the load generator (a no-op when it is fresh), so the test never runs a
//! stale router. Every child process is waited for with a deadline and
//! killed past it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_flit-loadgen");
/// Building the router from scratch on a small machine takes minutes.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// One run: setup, 0.2 s warm-up, 2 s measured, at most 2 s drain, with room.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const SUBSCRIBERS: u64 = 3;

/// Waits for `child` until `timeout`, then kills it and fails.
fn wait_within(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh directory for this test's files.
fn scratch_directory(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("flit-loadgen-smoke-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("create scratch directory");
    directory
}

/// The `flit` binary next to the load generator, built (or found fresh) by
/// cargo in the same target directory and profile.
fn router_binary() -> PathBuf {
    let loadgen = Path::new(LOADGEN);
    let profile_directory = loadgen.parent().expect("the binary has a directory");
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "-p", "flit-router", "--bin", "flit"]);
    if LOADGEN.contains("/release/") {
        build.arg("--release");
    }
    // target/debug/flit-loadgen: build into the same target directory, however
    // cargo was told about it (environment or --target-dir).
    if let Some(target_directory) = profile_directory.parent() {
        build.arg("--target-dir").arg(target_directory);
    }
    let mut child = build.spawn().expect("run cargo build");
    let status = wait_within(&mut child, BUILD_TIMEOUT, "cargo build -p flit-router");
    assert!(status.success(), "cargo build -p flit-router --bin flit failed: {status}");
    let router = profile_directory.join("flit");
    assert!(router.is_file(), "{} is missing after the build", router.display());
    router
}

/// A running `flit serve`; stopped with SIGTERM when dropped (on a failed
/// assertion too), or by [`Router::stop`], which also checks its exit.
struct Router {
    child: Child,
    address: String,
    /// The route listener (`cluster=ADDR` in the ready line), for a cluster node.
    cluster_address: Option<String>,
}

impl Router {
    fn start(stderr_path: &Path) -> Router {
        Router::start_with(stderr_path, &[])
    }

    /// A router with two shards and `extra` flags (the cluster's).
    fn start_with(stderr_path: &Path, extra: &[&str]) -> Router {
        let stderr = File::create(stderr_path).expect("create the router's stderr file");
        let mut child = Command::new(router_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", "2", "--no-pin"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start flit serve");
        // The ready line is read on a thread so that waiting for it has a deadline.
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let cluster_address =
            line.split_whitespace().find_map(|field| field.strip_prefix("cluster=")).map(str::to_owned);
        let mut router = Router { child, address: String::new(), cluster_address };
        // `flit ready listen=ADDR shards=2 ...`: later fields (receive=...) may follow.
        let address = line
            .trim()
            .strip_prefix("flit ready listen=")
            .and_then(|rest| rest.split_once(' '))
            .filter(|(_, fields)| fields.split(' ').any(|field| field == "shards=2"))
            .map(|(address, _)| address);
        let Some(address) = address else {
            let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
            panic!("no ready line from flit serve within {READY_TIMEOUT:?}: got {line:?}; stderr:\n{log}");
        };
        router.address = address.to_owned();
        assert!(router.address.starts_with("127.0.0.1:"), "listening on {}", router.address);
        router
    }

    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_within(&mut self.child, STOP_TIMEOUT, "flit serve after SIGTERM")
    }

    /// SIGTERM, then the exit: a router that drains cleanly exits 0.
    fn stop(mut self) {
        // Drop sees the exit and does nothing more.
        let status = self.terminate();
        assert!(status.success(), "flit serve exited with {status} after SIGTERM");
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.terminate();
        }
    }
}

/// One `flit-loadgen` run whose files are in `directory`.
struct Run {
    label: String,
    status: ExitStatus,
    json: PathBuf,
    hgrm: PathBuf,
    output: String,
}

fn run_loadgen(directory: &Path, label: &str, arguments: &[&str]) -> Run {
    let json = directory.join(format!("{label}.json"));
    let hgrm = directory.join(format!("{label}.hgrm"));
    let output_path = directory.join(format!("{label}.out"));
    let output = File::create(&output_path).expect("create the output file");
    let mut child = Command::new(LOADGEN)
        .args(arguments)
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("clone the output file"))
        .stderr(output)
        .spawn()
        .expect("start flit-loadgen");
    let status = wait_within(&mut child, RUN_TIMEOUT, &format!("flit-loadgen {label}"));
    let output = std::fs::read_to_string(&output_path).unwrap_or_default();
    Run { label: label.to_owned(), status, json, hgrm, output }
}

fn number(report: &Value, pointer: &str, label: &str) -> f64 {
    report.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{label}: {pointer} is not a number"))
}

fn count(report: &Value, key: &str, label: &str) -> u64 {
    report[key].as_u64().unwrap_or_else(|| panic!("{label}: {key} is not an unsigned integer"))
}

/// Checks one run: status, report keys and counts, histogram header.
/// `copies` is the deliveries each sent message should produce.
fn check_run(run: &Run, scenario: &str, target: &str, copies: u64) {
    let label = &run.label;
    assert!(run.status.success(), "{label}: exit {}; output:\n{}", run.status, run.output);
    let text = std::fs::read_to_string(&run.json).unwrap_or_else(|error| panic!("{label}: read report: {error}"));
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{label}: report: {error}"));
    for key in [
        "scenario",
        "target",
        "payload_bytes",
        "rate",
        "duration_s",
        "sent",
        "received",
        "lost",
        "errors",
        "throughput_msgs_per_s",
    ] {
        assert!(report.get(key).is_some(), "{label}: key {key} missing from\n{text}");
    }
    assert_eq!(report["scenario"], scenario, "{label}");
    assert_eq!(report["target"], target, "{label}");
    let (sent, received) = (count(&report, "sent", label), count(&report, "received", label));
    assert_eq!(count(&report, "lost", label), 0, "{label}: lost; output:\n{}", run.output);
    assert_eq!(count(&report, "errors", label), 0, "{label}: errors; output:\n{}", run.output);
    assert!(sent > 0 && received > 0, "{label}: sent {sent}, received {received}");
    assert_eq!(received, copies * sent, "{label}: {copies} deliveries per message");
    assert!(number(&report, "/throughput_msgs_per_s", label) > 0.0, "{label}");
    let percentiles = ["p50", "p90", "p99", "p999", "p9999", "max"];
    let latency: Vec<f64> =
        percentiles.iter().map(|key| number(&report, &format!("/latency_us/{key}"), label)).collect();
    assert!(latency[0] > 0.0, "{label}: p50 is {}", latency[0]);
    assert!(latency.windows(2).all(|pair| pair[0] <= pair[1]), "{label}: percentiles not monotonic: {latency:?}");

    let hgrm = std::fs::read_to_string(&run.hgrm).unwrap_or_else(|error| panic!("{label}: read .hgrm: {error}"));
    let mut lines = hgrm.lines();
    assert_eq!(lines.next(), Some("       Value     Percentile TotalCount 1/(1-Percentile)"), "{label}: .hgrm header");
    assert_eq!(lines.next(), Some(""), "{label}: .hgrm header is followed by a blank line");
    assert!(hgrm.lines().any(|line| line.starts_with("#[Buckets = ")), "{label}: .hgrm footer");
}

#[test]
fn every_scenario_runs_clean_against_flit() {
    let directory = scratch_directory("scenarios");
    let router = Router::start(&directory.join("flit.stderr"));
    let target = format!("flit://{}", router.address);
    let subscribers = SUBSCRIBERS.to_string();
    // (label, scenario, extra arguments, deliveries per message)
    let runs: [(&str, &str, &[&str], u64); 6] = [
        ("reqrep", "reqrep", &[], 1),
        ("pubsub", "pubsub", &[], 1),
        ("pubsub-open-loop", "pubsub", &["--rate", "20000"], 1),
        ("fanout", "fanout", &["--subscribers", &subscribers], SUBSCRIBERS),
        ("queue", "queue", &["--subscribers", &subscribers], 1),
        ("conns", "conns", &["--connections", "50", "--rate", "500"], 1),
    ];
    for (label, scenario, extra, copies) in runs {
        let mut arguments =
            vec!["--target", &target, "--scenario", scenario, "--duration", "2s", "--warmup", "0.2s", "--quiet"];
        arguments.extend_from_slice(extra);
        let run = run_loadgen(&directory, label, &arguments);
        check_run(&run, scenario, &target, copies);
    }
    router.stop();
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn a_remote_target_is_refused_without_allow_remote() {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a real host, and the refusal
    // comes before any connection is tried.
    let directory = scratch_directory("remote");
    let run = run_loadgen(&directory, "remote", &["--target", "flit://192.0.2.1:4222", "--scenario", "reqrep"]);
    assert_eq!(run.status.code(), Some(2), "exit status; output:\n{}", run.output);
    assert!(run.output.contains("--allow-remote"), "the refusal names the flag:\n{}", run.output);
    assert!(!run.json.exists(), "no report for a refused run");
    let _ = std::fs::remove_dir_all(&directory);
}

/// A cluster of two nodes: receivers on node 2, senders on node 1, so every
/// message crosses the route. Nothing may be lost once the interest has
/// settled; the propagation scenario reports its counts under `propagation`
/// (on one node a flush is a barrier: no first publish is lost there).
#[test]
fn cross_node_scenarios_run_clean_against_a_two_node_cluster() {
    let directory = scratch_directory("cluster");
    let secret = directory.join("cluster.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef0123456789abcdef").expect("write the secret");
    let secret = secret.to_str().expect("a UTF-8 path");
    let node = |id: &'static str| ["--cluster-name", "smoke", "--cluster-listen", "127.0.0.1:0", "--node-id", id];
    let mut first_flags = node("1").to_vec();
    first_flags.extend(["--cluster-secret-file", secret]);
    let first = Router::start_with(&directory.join("node1.stderr"), &first_flags);
    let seed = first.cluster_address.clone().expect("node 1's ready line names its route listener");
    let mut second_flags = node("2").to_vec();
    second_flags.extend(["--cluster-secret-file", secret, "--cluster-seeds", &seed]);
    let second = Router::start_with(&directory.join("node2.stderr"), &second_flags);
    // The route is dialled at start; on loopback it is up well within this.
    std::thread::sleep(Duration::from_secs(1));
    let (sender, receiver) = (format!("flit://{}", first.address), format!("flit://{}", second.address));
    let subscribers = SUBSCRIBERS.to_string();
    let runs: [(&str, &str, &[&str], u64); 3] = [
        ("reqrep-cross", "reqrep", &[], 1),
        ("pubsub-cross", "pubsub", &[], 1),
        ("fanout-cross", "fanout", &["--subscribers", &subscribers], SUBSCRIBERS),
    ];
    for (label, scenario, extra, copies) in runs {
        let mut arguments = vec!["--target", &sender, "--receiver-target", &receiver, "--scenario", scenario];
        arguments.extend_from_slice(&["--duration", "1s", "--warmup", "0.2s", "--quiet"]);
        arguments.extend_from_slice(extra);
        let run = run_loadgen(&directory, label, &arguments);
        check_run(&run, scenario, &sender, copies);
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&run.json).expect("read")).expect("JSON");
        assert_eq!(report["receiver_target"], receiver.as_str(), "{label}");
    }
    for (label, receivers) in [("propagation-cross", &receiver), ("propagation-same", &sender)] {
        let arguments =
            ["--target", &sender, "--receiver-target", receivers, "--scenario", "propagation", "--iterations", "50"];
        let run = run_loadgen(&directory, label, &[&arguments[..], &["--warmup", "0s", "--quiet"]].concat());
        assert!(run.status.success(), "{label}: exit {}; output:\n{}", run.status, run.output);
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&run.json).expect("read")).expect("JSON");
        let counts = &report["propagation"];
        assert_eq!(report["scenario"], "propagation", "{label}");
        assert_eq!(counts["iterations"], 50, "{label}: {counts}");
        assert_eq!(counts["timeouts"], 0, "{label}: every subscription reached node 1 within 1 s");
        assert_eq!((count(&report, "sent", label), count(&report, "received", label)), (50, 50), "{label}");
        assert_eq!(count(&report, "errors", label), 0, "{label}");
        assert!(number(&report, "/latency_us/p50", label) > 0.0, "{label}");
        if label == "propagation-same" {
            assert_eq!(count(&report, "lost", label), 0, "{label}: a flush is a barrier on its own node");
            assert!(report.get("receiver_target").is_none(), "{label}: one server, no receiver_target");
        }
    }
    second.stop();
    first.stop();
    let _ = std::fs::remove_dir_all(&directory);
}
