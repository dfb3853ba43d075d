//! The deploy files are built on metrics that exist: every `flit_*` name in
//! the alert rules, the Grafana dashboard and deploy/check.sh's list is
//! served by a live router's /metrics (histograms by their `_bucket`,
//! `_sum`, `_count` series), and every alert links to a section of
//! docs/OPERATIONS.md that exists. (promtool's syntax check runs in CI via
//! deploy/check.sh.) The container image and the Kubernetes StatefulSet pass
//! `flit serve` only flags it has (deploy/check.sh checks the rest of them).

mod common;

use std::collections::BTreeSet;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Every `flit_...` identifier in `text`.
fn flit_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(offset) = text[start..].find("flit_") {
        let begin = start + offset;
        let boundary = begin == 0 || !(bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_');
        let end = begin
            + text[begin..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len() - begin);
        if boundary {
            names.insert(text[begin..end].to_string());
        }
        start = end;
    }
    names
}

/// Series names a live router serves (with one stream, so the per-stream
/// series exist, and one peer node, so the per-node route series exist).
fn served_names() -> BTreeSet<String> {
    let data = std::env::temp_dir().join(format!("flit-deploy-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("data dir");
    let config = data.join("flit.toml");
    std::fs::write(&config, "[[stream]]\nname = \"DEPLOY\"\nsubjects = [\"deploy.>\"]\n").expect("config");
    let data_argument = data.to_str().expect("utf-8").to_string();
    let config_argument = config.to_str().expect("utf-8").to_string();
    let secret = data.join("cluster.secret");
    std::fs::write(&secret, "5f0e7d6c5b4a39281706f5e4d3c2b1a0ffeeddccbbaa9988").expect("secret");
    let secret_argument = secret.to_str().expect("utf-8").to_string();
    let cluster = |node_id: &'static str| {
        ["--cluster-name", "deploy", "--cluster-listen", "127.0.0.1:0", "--node-id", node_id, "--cluster-secret-file"]
    };
    let mut arguments = vec!["--metrics", "127.0.0.1:0", "--data-dir", &data_argument, "--config", &config_argument];
    arguments.extend(cluster("1"));
    arguments.push(&secret_argument);
    let server = common::FlitServer::start(2, &arguments);
    let seed = server.cluster_address.expect("route listener").to_string();
    let peer_data = data.join("peer");
    std::fs::create_dir_all(&peer_data).expect("peer data dir");
    let peer_data_argument = peer_data.to_str().expect("utf-8").to_string();
    let mut peer_arguments = vec!["--data-dir", &peer_data_argument, "--cluster-seeds", &seed];
    peer_arguments.extend(cluster("2"));
    peer_arguments.push(&secret_argument);
    let peer = common::FlitServer::start(1, &peer_arguments);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !common::http_get(server.metrics_address.expect("metrics"), "/metrics").1.contains("flit_route_node_up{") {
        assert!(std::time::Instant::now() < deadline, "the peer node never meshed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // One durable consumer, so the per-consumer series exist too (the owner
    // publishes a consumer's numbers when it adds it, before it answers).
    let client = server.client();
    let consumer = flit_client::stream::ConsumerConfigSpec { name: Some("watch".into()), ..Default::default() };
    client.consumer_add("DEPLOY", consumer).expect("consumer");
    let (status, body) = common::http_get(server.metrics_address.expect("metrics"), "/metrics");
    assert_eq!(status, 200);
    let mut names = BTreeSet::new();
    for line in body.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
        let name = line.split(['{', ' ']).next().expect("a name");
        names.insert(name.to_string());
        // A histogram may be named by its base name in prose and legends.
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                names.insert(base.to_string());
            }
        }
    }
    drop(server);
    drop(peer);
    let _ = std::fs::remove_dir_all(&data);
    names
}

#[test]
fn alerts_dashboard_and_check_list_use_only_served_metrics() {
    let served = served_names();
    for path in ["deploy/prometheus/alerts.yml", "deploy/grafana/flit.json", "deploy/check.sh"] {
        let used = flit_names(&read(path));
        // Names that are not metrics: the dashboard's uid and the like.
        let unknown: Vec<&String> = used
            .iter()
            .filter(|name| !served.contains(*name) && !name.ends_with('_') && !name.starts_with("flit_router"))
            .collect();
        assert!(unknown.is_empty(), "{path} uses metrics the router does not serve: {unknown:?}\nserved: {served:?}");
    }
}

#[test]
fn every_alert_has_a_runbook_section() {
    let operations = read("docs/OPERATIONS.md").to_lowercase();
    let alerts = read("deploy/prometheus/alerts.yml");
    let names: Vec<&str> =
        alerts.lines().filter_map(|line| line.trim().strip_prefix("- alert: ")).map(str::trim).collect();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        let heading = format!("### {}", name.to_lowercase());
        assert!(operations.contains(&heading), "docs/OPERATIONS.md has no `### {name}` section");
    }
}

#[test]
fn the_three_node_cluster_example_configs_pass_config_check() {
    // Their secret_file is relative ("cluster.secret", made by start.sh):
    // run where one exists.
    let directory = std::env::temp_dir().join(format!("flit-cluster-configs-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temporary directory");
    std::fs::write(directory.join("cluster.secret"), "5f".repeat(32)).expect("write secret");
    for node in 1..=3 {
        let config = format!("{ROOT}/deploy/cluster/node{node}.toml");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
            .args(["config", "check", &config])
            .current_dir(&directory)
            .output()
            .expect("run flit config check");
        assert!(output.status.success(), "node{node}.toml: {}", String::from_utf8_lossy(&output.stderr));
    }
    std::fs::remove_dir_all(&directory).ok();
}

/// The long flags `flit serve --help` lists.
fn serve_flags() -> BTreeSet<String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["serve", "--help"])
        .output()
        .expect("run flit serve --help");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8");
    help.lines()
        .filter_map(|line| line.trim_start().strip_prefix("--"))
        .map(|rest| rest.split([' ', '=']).next().unwrap_or_default().to_string())
        .collect()
}

/// Every `--flag` word in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '[' || c == ']')
        .filter_map(|word| word.strip_prefix("--"))
        .filter(|flag| !flag.is_empty())
        .map(|flag| flag.split('=').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn container_and_kubernetes_files_use_only_real_serve_flags() {
    let known = serve_flags();
    assert!(known.contains("cluster-advertise") && known.contains("node-id"), "parsed --help: {known:?}");
    // The StatefulSet: everything but comments (which name kubelet flags).
    let statefulset: String = read("deploy/kubernetes/statefulset.yaml")
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    // The Containerfile: its CMD, the arguments of `flit` (the ENTRYPOINT).
    let containerfile = read("deploy/container/Containerfile");
    let command_start = containerfile.find("\nCMD [\"serve\"").expect("a CMD [\"serve\", ...]");
    let command_end = containerfile[command_start..].find("]\n").expect("the end of CMD") + command_start;
    let command = &containerfile[command_start..command_end];
    for (path, text, required) in [
        (
            "deploy/kubernetes/statefulset.yaml",
            statefulset.as_str(),
            &["node-id", "cluster-advertise", "cluster-seeds", "cluster-secret-file", "metrics", "shards"][..],
        ),
        ("deploy/container/Containerfile (CMD)", command, &["listen", "nats-listen", "metrics"][..]),
    ] {
        let used = long_flags(text);
        let unknown: Vec<&String> = used.difference(&known).collect();
        assert!(unknown.is_empty(), "{path} passes flags `flit serve` does not have: {unknown:?}");
        for flag in required {
            assert!(used.contains(*flag), "{path} does not pass --{flag}: {used:?}");
        }
    }
}
