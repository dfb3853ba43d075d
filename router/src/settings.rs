//! Every setting of `flit serve`, from three layers: the built-in defaults
//! (flit-shard's named constants), then the TOML file given with `--config`,
//! then command-line flags. A later layer wins key by key.
//!
//! The file is strict: an unknown key or section is an error naming it and
//! its line, so a typo (`pending_byte_max`) cannot silently fall back to a
//! default. `flit.example.toml` at the repository root holds every key with
//! its default; a test keeps it in step with [`FileSettings`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use flit_shard::{available_cores, IdleStrategy, ReceiveMode, ServerConfig};
use serde::{Deserialize, Serialize};

/// The address `flit serve` listens on and the clients connect to by default.
/// Not 4222: that is NATS's port, which the NATS listener takes
/// (`--nats-listen 127.0.0.1:4222`), so a NATS client with its default
/// settings reaches flit with that one flag.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:4224";

/// An address to listen on, `IP:PORT` or `HOST:PORT`, as `--listen`,
/// `--metrics` and the file's `listen` keys take it. A host name is resolved
/// once, here, to the first address the resolver returns: the one a client
/// given the same name (`flit pub --server HOST:PORT`) tries first.
pub fn resolve_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let mut addresses = text
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve `{text}` (expected IP:PORT or HOST:PORT): {error}"))?;
    addresses.next().ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// Deserializes an optional `listen` key through [`resolve_address`].
fn deserialize_address<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| resolve_address(&text).map_err(serde::de::Error::custom))
        .transpose()
}

/// Whether two listeners would fight over one port: the same port (not 0,
/// which picks a free one) on the same address, or on a wildcard address
/// that covers the other (`0.0.0.0` all IPv4 addresses, `[::]` both families).
fn addresses_collide(first: SocketAddr, second: SocketAddr) -> bool {
    if first.port() != second.port() || first.port() == 0 {
        return false;
    }
    let covers = |wide: SocketAddr, narrow: SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || wide.is_ipv4() == narrow.is_ipv4())
    };
    first.ip() == second.ip() || covers(first, second) || covers(second, first)
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line (for log shippers).
    Json,
}

/// `park` or `spin`, as written in the file and on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Idle {
    /// Sleep when idle (after a 50 us spin).
    Park,
    /// Busy-poll: lowest latency, one core at 100% per shard.
    Spin,
}

/// `ring` or `readiness`: how plain connections receive and send bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Receive {
    /// Multishot receives into provided buffers and sends as ring submissions (falls back to readiness when the kernel lacks buffer rings).
    Ring,
    /// Readiness through the ring, then one recv per socket.
    Readiness,
}

/// A shard count: a number, or `auto` for one shard per available core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardCount {
    Auto,
    Count(usize),
}

impl ShardCount {
    pub fn resolve(self) -> usize {
        match self {
            ShardCount::Auto => available_cores().len().max(1),
            ShardCount::Count(count) => count,
        }
    }
}

impl std::str::FromStr for ShardCount {
    type Err = String;
    fn from_str(text: &str) -> Result<ShardCount, String> {
        if text == "auto" {
            return Ok(ShardCount::Auto);
        }
        text.parse::<usize>()
            .map(ShardCount::Count)
            .map_err(|_| format!("shards must be a number or `auto`, got `{text}`"))
    }
}

impl Serialize for ShardCount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ShardCount::Auto => serializer.serialize_str("auto"),
            ShardCount::Count(count) => serializer.serialize_u64(*count as u64),
        }
    }
}

impl<'de> Deserialize<'de> for ShardCount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ShardCount, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(usize),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Count(count) => Ok(ShardCount::Count(count)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `[server]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default, deserialize_with = "deserialize_address")]
    pub listen: Option<SocketAddr>,
    pub shards: Option<ShardCount>,
    pub idle: Option<Idle>,
    pub receive: Option<Receive>,
    pub pin_cores: Option<bool>,
    pub name: Option<String>,
    pub shutdown_flush_timeout_ms: Option<u64>,
    /// Where durable streams keep their logs (`--data-dir`).
    pub data_dir: Option<std::path::PathBuf>,
    /// Park mode: microseconds an idle shard spins before parking.
    pub spin_before_park_us: Option<u64>,
    /// Payloads at least this long are sent by reference, not copied.
    pub splice_payload_bytes_min: Option<usize>,
}

/// `[limits]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub payload_bytes_max: Option<usize>,
    pub pending_bytes_max: Option<usize>,
    pub subscriptions_per_connection_max: Option<usize>,
    pub subscription_bytes_max: Option<usize>,
    pub identity_subscription_bytes_max: Option<usize>,
    pub connections_per_shard_max: Option<usize>,
    pub connections_max: Option<usize>,
    pub mesh_channel_depth: Option<usize>,
    pub handshake_timeout_ms: Option<u64>,
    pub frame_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

/// `[metrics]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; absent: off.
    #[serde(default, deserialize_with = "deserialize_address")]
    pub listen: Option<SocketAddr>,
}

/// `[nats]`: the NATS-protocol listener.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    /// Where NATS clients connect (NATS's own default is 4222); absent: off.
    #[serde(default, deserialize_with = "deserialize_address")]
    pub listen: Option<SocketAddr>,
}

/// `[cluster]`: this node in a cluster (docs/OPERATIONS.md, "Clustering").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub name: Option<String>,
    /// Where this node accepts routes from the other nodes.
    #[serde(default, deserialize_with = "deserialize_address")]
    pub listen: Option<SocketAddr>,
    /// The route address the other nodes are told to dial (default: the
    /// bound `listen` address); needed behind a wildcard listen or a proxy.
    #[serde(default, deserialize_with = "deserialize_address")]
    pub advertise: Option<SocketAddr>,
    /// The other nodes' route addresses (`IP:PORT` or `HOST:PORT`).
    pub seeds: Option<Vec<String>>,
    /// Stable across restarts; unique in the cluster.
    pub node_id: Option<u32>,
    /// A file holding the cluster secret (at least 32 bytes).
    pub secret_file: Option<std::path::PathBuf>,
}

/// `[auth]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Identities and their permissions (see identities_file.rs); absent:
    /// authentication off, every client unrestricted.
    pub identities_file: Option<std::path::PathBuf>,
}

/// `[tls]`: TLS on the listener; absent: plain TCP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM: the server's certificate chain, and its private key.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// PEM: CAs that sign client certificates; set, every client must present
    /// one (mutual TLS), mapped to an identity by `certificate_sha256`.
    pub client_ca_file: Option<std::path::PathBuf>,
}

/// `[log]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<LogFormat>,
    /// A `tracing` filter: `info`, `debug`, `flit_shard=debug,info`.
    pub level: Option<String>,
}

/// The file, as written: every key optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub nats: NatsSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub auth: AuthSection,
    /// Per-connection publish rate limit (identities add their own).
    #[serde(default)]
    pub rate_limit: crate::rate_limit_settings::RateLimitSection,
    #[serde(default)]
    pub tls: TlsSection,
    /// `[[stream]]` tables: streams created (or updated) at startup.
    #[serde(default, rename = "stream", skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<crate::stream_settings::StreamTable>,
}

/// Why a configuration file could not be used: one line, naming the file
/// and, where the parser knows it, the line.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}{location}: {message}")]
    Parse { path: String, location: String, message: String },
}

/// A TOML error as one line: (" line N" where the parser knows it, the message).
pub fn toml_error_parts(text: &str, error: &toml::de::Error) -> (String, String) {
    let location = match error.span() {
        Some(span) => format!(" line {}", text[..span.start.min(text.len())].matches('\n').count() + 1),
        None => String::new(),
    };
    (location, error.message().replace('\n', " ").trim().to_string())
}

impl FileSettings {
    /// Parses TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &str) -> Result<FileSettings, SettingsError> {
        toml::from_str(text).map_err(|error| {
            let (location, message) = toml_error_parts(text, &error);
            SettingsError::Parse { path: path.to_string(), location, message }
        })
    }

    pub fn load(path: &Path) -> Result<FileSettings, SettingsError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: shown.clone(), source })?;
        FileSettings::parse(&text, &shown)
    }

    /// Every key set to its built-in default (what `flit.example.toml` holds).
    pub fn defaults() -> FileSettings {
        let config = ServerConfig::new(DEFAULT_ADDRESS.parse().expect("a valid default address"), 1);
        FileSettings {
            server: ServerSection {
                listen: Some(config.listen),
                shards: Some(ShardCount::Auto),
                idle: Some(Idle::Park),
                receive: Some(Receive::Ring),
                pin_cores: Some(config.pin_cores),
                name: Some(config.server_name),
                shutdown_flush_timeout_ms: Some(config.shutdown_flush_timeout.as_millis() as u64),
                data_dir: Some(config.data_directory.clone()),
                spin_before_park_us: Some(config.spin_before_park.as_micros() as u64),
                splice_payload_bytes_min: Some(config.splice_payload_bytes_min),
            },
            limits: LimitsSection {
                payload_bytes_max: Some(config.payload_bytes_max),
                pending_bytes_max: Some(config.pending_bytes_max),
                subscriptions_per_connection_max: Some(config.subscriptions_per_connection_max),
                subscription_bytes_max: Some(config.subscription_bytes_max),
                identity_subscription_bytes_max: Some(config.identity_subscription_bytes_max),
                connections_per_shard_max: Some(config.connections_per_shard_max),
                connections_max: Some(config.connections_max),
                mesh_channel_depth: Some(config.mesh_channel_depth),
                handshake_timeout_ms: Some(config.handshake_timeout.as_millis() as u64),
                frame_timeout_ms: Some(config.frame_timeout.as_millis() as u64),
                idle_timeout_ms: Some(config.idle_timeout.as_millis() as u64),
            },
            metrics: MetricsSection { listen: None },
            nats: NatsSection { listen: None },
            cluster: ClusterSection::default(),
            log: LogSection { format: Some(LogFormat::Human), level: Some(DEFAULT_LOG_LEVEL.to_string()) },
            auth: AuthSection { identities_file: None },
            rate_limit: crate::rate_limit_settings::RateLimitSection::defaults(),
            tls: TlsSection::default(),
            streams: Vec::new(),
        }
    }

    /// `self` with every key that `overrides` sets replaced by its value.
    pub fn overridden_by(self, overrides: FileSettings) -> FileSettings {
        fn pick<T>(base: Option<T>, over: Option<T>) -> Option<T> {
            over.or(base)
        }
        let (base, over) = (self, overrides);
        FileSettings {
            server: ServerSection {
                listen: pick(base.server.listen, over.server.listen),
                shards: pick(base.server.shards, over.server.shards),
                idle: pick(base.server.idle, over.server.idle),
                receive: pick(base.server.receive, over.server.receive),
                pin_cores: pick(base.server.pin_cores, over.server.pin_cores),
                name: pick(base.server.name, over.server.name),
                shutdown_flush_timeout_ms: pick(
                    base.server.shutdown_flush_timeout_ms,
                    over.server.shutdown_flush_timeout_ms,
                ),
                data_dir: pick(base.server.data_dir, over.server.data_dir),
                spin_before_park_us: pick(base.server.spin_before_park_us, over.server.spin_before_park_us),
                splice_payload_bytes_min: pick(
                    base.server.splice_payload_bytes_min,
                    over.server.splice_payload_bytes_min,
                ),
            },
            limits: LimitsSection {
                payload_bytes_max: pick(base.limits.payload_bytes_max, over.limits.payload_bytes_max),
                pending_bytes_max: pick(base.limits.pending_bytes_max, over.limits.pending_bytes_max),
                subscriptions_per_connection_max: pick(
                    base.limits.subscriptions_per_connection_max,
                    over.limits.subscriptions_per_connection_max,
                ),
                subscription_bytes_max: pick(base.limits.subscription_bytes_max, over.limits.subscription_bytes_max),
                identity_subscription_bytes_max: pick(
                    base.limits.identity_subscription_bytes_max,
                    over.limits.identity_subscription_bytes_max,
                ),
                connections_per_shard_max: pick(
                    base.limits.connections_per_shard_max,
                    over.limits.connections_per_shard_max,
                ),
                connections_max: pick(base.limits.connections_max, over.limits.connections_max),
                mesh_channel_depth: pick(base.limits.mesh_channel_depth, over.limits.mesh_channel_depth),
                handshake_timeout_ms: pick(base.limits.handshake_timeout_ms, over.limits.handshake_timeout_ms),
                frame_timeout_ms: pick(base.limits.frame_timeout_ms, over.limits.frame_timeout_ms),
                idle_timeout_ms: pick(base.limits.idle_timeout_ms, over.limits.idle_timeout_ms),
            },
            metrics: MetricsSection { listen: pick(base.metrics.listen, over.metrics.listen) },
            nats: NatsSection { listen: pick(base.nats.listen, over.nats.listen) },
            cluster: ClusterSection {
                name: pick(base.cluster.name, over.cluster.name),
                listen: pick(base.cluster.listen, over.cluster.listen),
                advertise: pick(base.cluster.advertise, over.cluster.advertise),
                seeds: pick(base.cluster.seeds, over.cluster.seeds),
                node_id: pick(base.cluster.node_id, over.cluster.node_id),
                secret_file: pick(base.cluster.secret_file, over.cluster.secret_file),
            },
            log: LogSection {
                format: pick(base.log.format, over.log.format),
                level: pick(base.log.level, over.log.level),
            },
            auth: AuthSection { identities_file: pick(base.auth.identities_file, over.auth.identities_file) },
            rate_limit: base.rate_limit.overridden_by(over.rate_limit),
            tls: TlsSection {
                cert_file: pick(base.tls.cert_file, over.tls.cert_file),
                key_file: pick(base.tls.key_file, over.tls.key_file),
                client_ca_file: pick(base.tls.client_ca_file, over.tls.client_ca_file),
            },
            // Streams are not layered key by key: the file's tables, if any.
            streams: if over.streams.is_empty() { base.streams } else { over.streams },
        }
    }
}

/// `[cluster]` resolved: None when no cluster key is set; otherwise every
/// key but `seeds` is required, and the secret file must hold enough bytes.
fn cluster_config(section: &ClusterSection) -> Result<Option<flit_shard::config::ClusterConfig>, String> {
    if section == &ClusterSection::default() {
        return Ok(None);
    }
    let missing =
        |key: &str, flag: &str| format!("cluster.{key} ({flag}) is required when any cluster setting is given");
    let name = section.name.clone().ok_or_else(|| missing("name", "--cluster-name"))?;
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("cluster.name (--cluster-name) must be 1-128 printable ASCII characters without spaces".to_string());
    }
    let listen = section.listen.ok_or_else(|| missing("listen", "--cluster-listen"))?;
    let node_id = section.node_id.ok_or_else(|| missing("node_id", "--node-id"))?;
    let secret_path = section.secret_file.as_ref().ok_or_else(|| missing("secret_file", "--cluster-secret-file"))?;
    let secret = std::fs::read(secret_path)
        .map_err(|error| format!("cannot read cluster.secret_file {}: {error}", secret_path.display()))?;
    // A trailing newline (an editor's, `openssl rand -hex 32 > file`'s) is not part of the secret.
    let secret = secret.trim_ascii_end().to_vec();
    let minimum = flit_shard::config::CLUSTER_SECRET_BYTES_MIN;
    if secret.len() < minimum {
        return Err(format!(
            "cluster.secret_file {} holds {} bytes; at least {minimum} are needed (e.g. `openssl rand -hex 32 > FILE`)",
            secret_path.display(),
            secret.len()
        ));
    }
    let seeds = section
        .seeds
        .iter()
        .flatten()
        .map(|seed| resolve_address(seed).map_err(|error| format!("cluster.seeds (--cluster-seeds): {error}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(flit_shard::config::ClusterConfig {
        name,
        listen,
        advertise: section.advertise,
        seeds,
        node_id,
        secret: secret.into(),
    }))
}

/// The default `tracing` filter.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// What `flit serve` runs with, every layer applied.
#[derive(Clone, Debug)]
pub struct Settings {
    pub server: ServerConfig,
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Reloaded on SIGHUP.
    pub identities_file: Option<std::path::PathBuf>,
}

impl Settings {
    /// Resolves a fully layered [`FileSettings`] (defaults first) into what
    /// the server runs with, and checks the relations between limits.
    pub fn resolve(layered: FileSettings) -> Result<Settings, String> {
        let defaults = FileSettings::defaults();
        let merged = defaults.overridden_by(layered);
        // Every key is set now: defaults() sets them all (metrics.listen aside).
        let server_section = merged.server;
        let limits = merged.limits;
        let listen = server_section.listen.expect("defaulted");
        let shards = server_section.shards.expect("defaulted").resolve();
        let mut server = ServerConfig::new(listen, shards);
        server.idle = match server_section.idle.expect("defaulted") {
            Idle::Park => IdleStrategy::Park,
            Idle::Spin => IdleStrategy::Spin,
        };
        server.receive = match server_section.receive.expect("defaulted") {
            Receive::Ring => ReceiveMode::Ring,
            Receive::Readiness => ReceiveMode::Readiness,
        };
        server.pin_cores = server_section.pin_cores.expect("defaulted");
        server.server_name = server_section.name.expect("defaulted");
        server.shutdown_flush_timeout =
            Duration::from_millis(server_section.shutdown_flush_timeout_ms.expect("defaulted"));
        server.data_directory = server_section.data_dir.expect("defaulted");
        server.spin_before_park = Duration::from_micros(server_section.spin_before_park_us.expect("defaulted"));
        server.splice_payload_bytes_min = server_section.splice_payload_bytes_min.expect("defaulted");
        server.streams =
            merged.streams.iter().map(crate::stream_settings::StreamTable::definition).collect::<Result<_, _>>()?;
        server.payload_bytes_max = limits.payload_bytes_max.expect("defaulted");
        server.pending_bytes_max = limits.pending_bytes_max.expect("defaulted");
        server.subscriptions_per_connection_max = limits.subscriptions_per_connection_max.expect("defaulted");
        server.subscription_bytes_max = limits.subscription_bytes_max.expect("defaulted");
        server.identity_subscription_bytes_max = limits.identity_subscription_bytes_max.expect("defaulted");
        server.connections_per_shard_max = limits.connections_per_shard_max.expect("defaulted");
        server.connections_max = limits.connections_max.expect("defaulted");
        server.mesh_channel_depth = limits.mesh_channel_depth.expect("defaulted");
        server.handshake_timeout = Duration::from_millis(limits.handshake_timeout_ms.expect("defaulted"));
        server.frame_timeout = Duration::from_millis(limits.frame_timeout_ms.expect("defaulted"));
        server.idle_timeout = Duration::from_millis(limits.idle_timeout_ms.expect("defaulted"));
        server.validate().map_err(|error| error.to_string())?;
        // Checked here, not left to the second bind, whose "address in use"
        // would blame another process (and `flit config check` would pass).
        if let Some(metrics) = merged.metrics.listen.filter(|metrics| addresses_collide(listen, *metrics)) {
            return Err(format!(
                "metrics.listen (--metrics) {metrics} is the port clients connect to (server.listen, --listen \
                 {listen}): give the metrics endpoint a port of its own, e.g. {}:8222",
                metrics.ip()
            ));
        }
        if let Some(nats) = merged.nats.listen {
            let clash = if addresses_collide(listen, nats) {
                Some("server.listen (--listen)")
            } else if merged.metrics.listen.is_some_and(|metrics| addresses_collide(metrics, nats)) {
                Some("metrics.listen (--metrics)")
            } else {
                None
            };
            if let Some(other) = clash {
                return Err(format!(
                    "nats.listen (--nats-listen) {nats} is the port of {other}: give each listener a port of its own"
                ));
            }
        }
        server.nats_listen = merged.nats.listen;
        server.cluster = cluster_config(&merged.cluster)?;
        if let Some(cluster) = server.cluster.as_ref().filter(|cluster| addresses_collide(listen, cluster.listen)) {
            return Err(format!(
                "cluster.listen (--cluster-listen) {} is the port clients connect to (server.listen): give routes a port of their own",
                cluster.listen
            ));
        }
        let log_level = merged.log.level.expect("defaulted");
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(format!("log level `{log_level}` is not a valid filter: {error}"));
        }
        server.connection_rate_limits = merged.rate_limit.limits();
        server.tls = match (&merged.tls.cert_file, &merged.tls.key_file) {
            (Some(cert), Some(key)) => {
                Some(flit_shard::tls::server_config(cert, key, merged.tls.client_ca_file.as_deref())?)
            }
            (None, None) if merged.tls.client_ca_file.is_none() => None,
            _ => return Err("TLS needs both tls.cert_file (--tls-cert) and tls.key_file (--tls-key)".to_string()),
        };
        if let Some(path) = &merged.auth.identities_file {
            server.identities = std::sync::Arc::new(crate::identities_file::load(path)?);
        }
        Ok(Settings {
            identities_file: merged.auth.identities_file,
            server,
            metrics_listen: merged.metrics.listen,
            log_format: merged.log.format.expect("defaulted"),
            log_level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../flit.example.toml");

    fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(table) = value {
            for (key, child) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                if child.is_table() {
                    keys(child, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }

    #[test]
    fn the_example_file_holds_every_default() {
        let parsed = FileSettings::parse(EXAMPLE, "flit.example.toml").expect("the example parses");
        assert_eq!(parsed, FileSettings::defaults());
    }

    #[test]
    fn the_example_file_names_every_key() {
        // Every key the file format knows, from a fully populated value.
        let mut everything = FileSettings::defaults();
        everything.metrics.listen = Some("127.0.0.1:8222".parse().unwrap());
        everything.nats.listen = Some("127.0.0.1:4222".parse().unwrap());
        everything.cluster = ClusterSection {
            name: Some("prod".into()),
            listen: Some("127.0.0.1:7422".parse().unwrap()),
            advertise: Some("10.0.0.1:7422".parse().unwrap()),
            seeds: Some(vec!["10.0.0.2:7422".into()]),
            node_id: Some(1),
            secret_file: Some("/etc/flit/cluster.secret".into()),
        };
        let mut known = Vec::new();
        keys(&toml::Value::try_from(&everything).unwrap(), "", &mut known);
        let mut in_example = Vec::new();
        keys(&toml::Value::Table(toml::from_str(EXAMPLE).unwrap()), "", &mut in_example);
        // Off by default, so the example shows it commented out.
        let commented = [
            "metrics.listen",
            "nats.listen",
            "cluster.name",
            "cluster.listen",
            "cluster.advertise",
            "cluster.seeds",
            "cluster.node_id",
            "cluster.secret_file",
            "auth.identities_file",
            "tls.cert_file",
            "tls.key_file",
            "tls.client_ca_file",
        ];
        known.retain(|key| !commented.contains(&key.as_str()));
        for key in ["cert_file", "key_file", "client_ca_file"] {
            assert!(EXAMPLE.contains(&format!("\n# {key} = ")), "{key}");
        }
        assert!(EXAMPLE.contains("\n# identities_file = "));
        assert!(EXAMPLE.contains("\n# listen = \"127.0.0.1:8222\"\n"));
        assert!(EXAMPLE.contains("\n# listen = \"127.0.0.1:4222\"\n"));
        known.sort();
        in_example.sort();
        assert_eq!(in_example, known);
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it_and_its_line() {
        let text = "[server]\nshards = 2\n\n[limits]\npending_byte_max = 10\n";
        let error = FileSettings::parse(text, "x.toml").unwrap_err().to_string();
        assert!(error.contains("pending_byte_max"), "{error}");
        assert!(error.contains("x.toml line 5"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn an_unknown_section_is_an_error() {
        let error = FileSettings::parse("[storage]\nsegment_bytes = 1\n", "x.toml").unwrap_err().to_string();
        assert!(error.contains("storage"), "{error}");
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let file =
            FileSettings::parse("[server]\nshards = 3\nidle = \"spin\"\n[limits]\npending_bytes_max = 9999999\n", "f")
                .unwrap();
        let mut flags = FileSettings::default();
        flags.server.shards = Some(ShardCount::Count(2));
        let settings = Settings::resolve(file.overridden_by(flags)).unwrap();
        assert_eq!(settings.server.shards, 2, "the flag wins");
        assert_eq!(settings.server.idle, IdleStrategy::Spin, "the file wins over the default");
        assert_eq!(settings.server.pending_bytes_max, 9_999_999);
        assert_eq!(settings.server.mesh_channel_depth, flit_shard::config::MESH_CHANNEL_DEPTH_DEFAULT);
    }

    #[test]
    fn shards_accepts_a_number_or_auto_only() {
        assert_eq!(
            FileSettings::parse("[server]\nshards = \"auto\"", "f").unwrap().server.shards,
            Some(ShardCount::Auto)
        );
        assert!(FileSettings::parse("[server]\nshards = \"many\"", "f").is_err());
        assert!(FileSettings::parse("[server]\nshards = -1", "f").is_err());
    }

    #[test]
    fn listen_addresses_take_host_names_in_the_file_too() {
        let file =
            FileSettings::parse("[server]\nlisten = \"localhost:0\"\n[metrics]\nlisten = \"localhost:0\"\n", "f")
                .expect("a host name is resolved");
        let listen = file.server.listen.expect("set");
        assert!(listen.ip().is_loopback() && listen.port() == 0, "{listen}");
        assert!(file.metrics.listen.expect("set").ip().is_loopback());
        let error = FileSettings::parse("[server]\nlisten = \"localhost\"\n", "f").unwrap_err().to_string();
        assert!(error.contains("expected IP:PORT or HOST:PORT") && error.contains("f line 2"), "{error}");
        assert_eq!(resolve_address("10.1.2.3:4222"), Ok("10.1.2.3:4222".parse().unwrap()));
    }

    #[test]
    fn the_metrics_endpoint_may_not_take_the_client_port() {
        let clash = "[server]\nlisten = \"127.0.0.1:4222\"\n[metrics]\nlisten = \"127.0.0.1:4222\"\n";
        let error = Settings::resolve(FileSettings::parse(clash, "f").unwrap()).unwrap_err();
        assert!(error.contains("metrics.listen") && error.contains("a port of its own"), "{error}");
        assert!(!error.contains('\n'));
        let address = |text: &str| text.parse::<SocketAddr>().unwrap();
        for (first, second, collide) in [
            ("127.0.0.1:4222", "127.0.0.1:4222", true),
            ("0.0.0.0:4222", "127.0.0.1:4222", true),
            ("[::]:4222", "127.0.0.1:4222", true),
            ("127.0.0.1:4222", "[::]:4222", true),
            ("0.0.0.0:4222", "[::1]:4222", false),
            ("127.0.0.1:4222", "127.0.0.2:4222", false),
            ("127.0.0.1:4222", "127.0.0.1:8222", false),
            ("127.0.0.1:0", "127.0.0.1:0", false),
        ] {
            assert_eq!(addresses_collide(address(first), address(second)), collide, "{first} {second}");
        }
        let apart = "[server]\nlisten = \"127.0.0.1:4222\"\n[metrics]\nlisten = \"127.0.0.1:8222\"\n";
        assert!(Settings::resolve(FileSettings::parse(apart, "f").unwrap()).is_ok());
    }

    #[test]
    fn relations_between_limits_are_checked() {
        let file = FileSettings::parse("[limits]\npending_bytes_max = 10\n", "f").unwrap();
        let error = Settings::resolve(file).unwrap_err();
        assert!(error.contains("pending_bytes_max") && error.contains("--pending-bytes-max"), "{error}");
    }
}
