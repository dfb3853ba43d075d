//! NATS's monitoring endpoints on the metrics listener: `/varz`, `/connz`,
//! `/subsz` and `/healthz`, with the field names and JSON types nats-server
//! gives them (server/monitor.go), so NATS tooling (nats-top,
//! prometheus-nats-exporter, surveyor) can watch flit. Every value comes from
//! the router's live state: the shards' single-writer counters
//! (`flit_shard::metrics`), their per-connection snapshots
//! (`flit_shard::monitoring`), `/proc/self` for memory and CPU, and the
//! settings. A field flit has no meaning for is either left out or given its
//! honest zero, and docs/OPERATIONS.md ("NATS monitoring endpoints") lists
//! those.
//!
//! `/connz` asks every running shard for a fresh snapshot and waits for it
//! (a shard answers at its next timeout sweep, within 250 ms), at most
//! `SNAPSHOT_WAIT_MS`; a shard that does not answer in time (draining, or
//! stuck) contributes its last snapshot. So rows are at most one sweep older
//! than the request, and an unwatched router builds none.
//!
//! Invariants: answers are bounded (`CONNZ_LIMIT_MAX` rows, the snapshot's
//! subject cap per row); query strings are parsed in `nats_query`, bad ones
//! get a 400; nothing here takes a lock a shard takes on its message path.
//!
//! Shutdown: nothing to stop; the metrics threads serve these too.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use flit_shard::monitoring::{ConnectionMonitor, ConnectionSnapshot, ConnectionSummary};
use flit_shard::ShardMetrics;
use flit_wire::ErrorCode;
use serde::Serialize;

use crate::metrics_http::Observed;
use crate::nats_query::{self, ConnzQuery, QueryError, SortOrder};

/// Longest a `/connz` request waits for the shards' fresh snapshots: four
/// timeout sweeps, well inside the listener's request deadline.
pub const SNAPSHOT_WAIT_MS: u64 = 1_000;
/// How often the waiting request looks for them.
const SNAPSHOT_POLL_MS: u64 = 2;
/// Linux reports process CPU time in `/proc` in USER_HZ ticks, 100 a second
/// on every architecture flit runs on (x86-64, arm64).
const PROC_TICKS_PER_SECOND: f64 = 100.0;

/// The endpoints this module answers, in `http_req_stats` order.
const PATHS: [&str; 4] = ["/varz", "/connz", "/subsz", "/healthz"];

/// What `/varz` reports that is not a counter: fixed at startup.
#[derive(Debug)]
pub struct NatsFacts {
    /// Unique per process run (nats-server generates one too): the one the
    /// NATS listener's INFO carries.
    pub server_id: String,
    pub server_name: String,
    /// Where clients connect: the NATS listener if there is one, else the
    /// native listener (`/varz` `host` and `port`).
    pub client_address: SocketAddr,
    /// The metrics listener; filled by `metrics_http::serve` once bound.
    pub http_address: Option<SocketAddr>,
    pub connections_max: u64,
    pub payload_bytes_max: u64,
    pub pending_bytes_max: u64,
    pub handshake_timeout: Duration,
    pub started_at: SystemTime,
    /// Cores the process may run on, counted at startup (the metrics thread
    /// itself may be pinned to one).
    pub cores: usize,
}

/// The endpoints' own state: their request counts and the last CPU sample.
#[derive(Debug)]
pub struct NatsEndpoints {
    pub facts: NatsFacts,
    requests: [AtomicU64; PATHS.len()],
    /// (when, process CPU ticks) at the previous `/varz`, for its `cpu`.
    cpu_sample: Mutex<Option<(Instant, u64)>>,
}

impl NatsEndpoints {
    pub fn new(facts: NatsFacts) -> NatsEndpoints {
        NatsEndpoints { facts, requests: Default::default(), cpu_sample: Mutex::new(None) }
    }
}

/// The answer for a NATS monitoring path: None when `path` is not one;
/// otherwise the JSON body, or why the query was refused.
pub fn answer(path: &str, query: &str, observed: &Observed) -> Option<Result<String, QueryError>> {
    let index = PATHS.iter().position(|known| *known == path)?;
    let endpoints = &observed.nats;
    endpoints.requests[index].fetch_add(1, Ordering::Relaxed);
    let body = match path {
        "/varz" => Ok(json(&varz(observed))),
        "/connz" => nats_query::parse_connz(query).map(|query| connz(observed, &query)),
        "/subsz" => nats_query::parse_subsz(query).map(|query| json(&subsz(observed, query))),
        // One line, as nats-server writes it (the others are indented).
        _ => Ok(serde_json::to_string(&Healthz { status: "ok" }).unwrap_or_default()),
    };
    Some(body)
}

fn json(value: &impl Serialize) -> String {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_string())
}

/// RFC 3339 in UTC, as Go writes a `time.Time`.
fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// nats-server's `myUptime`: `45s`, `3m2s`, `1h0m0s`, `2d3h0m1s`, `1y2d0h0m0s`.
pub fn nats_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    let years = days / 365;
    if years > 0 {
        format!("{years}y{}d{}h{}m{}s", days % 365, hours % 24, minutes % 60, seconds % 60)
    } else if days > 0 {
        format!("{days}d{}h{}m{}s", hours % 24, minutes % 60, seconds % 60)
    } else if hours > 0 {
        format!("{hours}h{}m{}s", minutes % 60, seconds % 60)
    } else if minutes > 0 {
        format!("{minutes}m{}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

fn sum(shards: &[Arc<ShardMetrics>], read: impl Fn(&ShardMetrics) -> u64) -> u64 {
    shards.iter().map(|shard| read(shard)).fold(0, u64::wrapping_add)
}

#[derive(Serialize)]
struct Healthz {
    status: &'static str,
}

#[derive(Serialize)]
struct SlowConsumerStats {
    clients: u64,
    routes: u64,
    gateways: u64,
    leafs: u64,
}

/// The `/varz` fields flit fills (nats-server's `Varz`, same names and types).
#[derive(Serialize)]
struct Varz<'a> {
    server_id: &'a str,
    server_name: &'a str,
    version: &'static str,
    host: String,
    port: u16,
    max_connections: u64,
    http_host: String,
    http_port: u16,
    auth_timeout: f64,
    max_payload: u64,
    max_pending: u64,
    start: String,
    now: String,
    uptime: String,
    mem: u64,
    cores: usize,
    cpu: f64,
    connections: u64,
    total_connections: u64,
    routes: u64,
    remotes: u64,
    leafnodes: u64,
    in_msgs: u64,
    in_bytes: u64,
    in_client_msgs: u64,
    in_client_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
    out_client_msgs: u64,
    out_client_bytes: u64,
    slow_consumers: u64,
    stale_connections: u64,
    subscriptions: u64,
    http_req_stats: BTreeMap<&'static str, u64>,
    slow_consumer_stats: SlowConsumerStats,
}

fn varz(observed: &Observed) -> Varz<'_> {
    let endpoints = &observed.nats;
    let facts = &endpoints.facts;
    let shards = &observed.shards;
    let now = SystemTime::now();
    let (in_msgs, in_bytes) = (sum(shards, |m| m.messages_in.get()), sum(shards, |m| m.bytes_in.get()));
    let (out_msgs, out_bytes) = (sum(shards, |m| m.deliveries.get()), sum(shards, |m| m.bytes_out.get()));
    let slow_consumers = sum(shards, |m| m.slow_consumer_evictions.get());
    let http = facts.http_address;
    Varz {
        server_id: &facts.server_id,
        server_name: &facts.server_name,
        version: env!("CARGO_PKG_VERSION"),
        host: facts.client_address.ip().to_string(),
        port: facts.client_address.port(),
        max_connections: facts.connections_max,
        http_host: http.map_or_else(String::new, |address| address.ip().to_string()),
        http_port: http.map_or(0, |address| address.port()),
        auth_timeout: facts.handshake_timeout.as_secs_f64(),
        max_payload: facts.payload_bytes_max,
        max_pending: facts.pending_bytes_max,
        start: rfc3339(facts.started_at),
        now: rfc3339(now),
        uptime: nats_duration(now.duration_since(facts.started_at).unwrap_or_default()),
        mem: resident_bytes().unwrap_or(0),
        cores: facts.cores,
        cpu: cpu_percent(endpoints),
        connections: sum(shards, |m| m.connections.get()),
        total_connections: sum(shards, |m| m.connections_accepted.get()),
        routes: 0,
        remotes: 0,
        leafnodes: 0,
        in_msgs,
        in_bytes,
        // Every flit connection is a client: no routes, gateways or leaf nodes.
        in_client_msgs: in_msgs,
        in_client_bytes: in_bytes,
        out_msgs,
        out_bytes,
        out_client_msgs: out_msgs,
        out_client_bytes: out_bytes,
        slow_consumers,
        // nats-server's stale connections missed their pings; flit's closed
        // for idle_timeout did the same.
        stale_connections: sum(shards, |m| m.errors(ErrorCode::IdleTimeout)),
        subscriptions: sum(shards, |m| m.subscriptions.get()),
        http_req_stats: PATHS
            .iter()
            .zip(&endpoints.requests)
            .map(|(path, count)| (*path, count.load(Ordering::Relaxed)))
            .collect(),
        slow_consumer_stats: SlowConsumerStats { clients: slow_consumers, routes: 0, gateways: 0, leafs: 0 },
    }
}

/// Resident memory (VmRSS), as nats-server's `mem`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User and system CPU ticks of the process so far.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Percent of one core used since the previous `/varz` (since the start for
/// the first), like nats-server's periodic sample; 100 per busy core.
fn cpu_percent(endpoints: &NatsEndpoints) -> f64 {
    let Some(ticks) = cpu_ticks() else { return 0.0 };
    let now = Instant::now();
    let mut sample = endpoints.cpu_sample.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (elapsed, used) = match *sample {
        Some((at, before)) => (now.duration_since(at).as_secs_f64(), ticks.saturating_sub(before)),
        None => {
            let since_start = SystemTime::now().duration_since(endpoints.facts.started_at).unwrap_or_default();
            (since_start.as_secs_f64(), ticks)
        }
    };
    *sample = Some((now, ticks));
    if elapsed <= 0.0 {
        return 0.0;
    }
    let percent = used as f64 / PROC_TICKS_PER_SECOND / elapsed * 100.0;
    (percent * 10.0).round() / 10.0
}

/// Asks each running shard for a snapshot taken after now, and waits for
/// them (see the module header); returns whatever each has by then.
fn fresh_snapshots(observed: &Observed, with_subjects: bool) -> Vec<Arc<ConnectionSnapshot>> {
    let draining = observed.draining.load(Ordering::Relaxed);
    let tickets: Vec<_> = observed
        .shards
        .iter()
        .map(|shard| {
            let running = shard.up.get() == 1;
            // Draining shards run no sweeps, so they would not answer.
            (running && !draining).then(|| shard.connection_monitor.request(with_subjects))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(SNAPSHOT_WAIT_MS);
    loop {
        let snapshots: Vec<_> = observed.shards.iter().map(|shard| shard.connection_monitor.latest()).collect();
        let answered = snapshots
            .iter()
            .zip(&tickets)
            .all(|(snapshot, ticket)| ticket.is_none_or(|ticket| ConnectionMonitor::answers(snapshot, ticket)));
        if answered || Instant::now() >= deadline {
            // A stopped shard's connections are gone with it.
            return snapshots
                .into_iter()
                .zip(&observed.shards)
                .map(|(snapshot, shard)| if shard.up.get() == 1 { snapshot } else { Arc::default() })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(SNAPSHOT_POLL_MS));
    }
}

/// One `/connz` row (nats-server's `ConnInfo`, the fields flit fills).
#[derive(Serialize)]
struct ConnectionInfo<'a> {
    cid: u64,
    kind: &'static str,
    #[serde(rename = "type")]
    protocol: &'static str,
    ip: String,
    port: u16,
    start: String,
    last_activity: String,
    uptime: String,
    idle: String,
    pending_bytes: u64,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cipher_suite: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorized_user: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<&'a str>,
}

#[derive(Serialize)]
struct Connz<'a> {
    server_id: &'a str,
    now: String,
    num_connections: usize,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Vec<ConnectionInfo<'a>>,
}

/// Orders rows as nats-server does; ties go by cid, so pages are stable.
fn sort_rows(rows: &mut [&ConnectionSummary], order: SortOrder) {
    let by_cid = |row: &&ConnectionSummary| row.connection_id;
    rows.sort_unstable_by_key(by_cid);
    let descending =
        |key: fn(&ConnectionSummary) -> u64| move |a: &&ConnectionSummary, b: &&ConnectionSummary| key(b).cmp(&key(a));
    match order {
        SortOrder::ConnectionId | SortOrder::Start => {}
        SortOrder::Subscriptions => rows.sort_by(descending(|row| u64::from(row.subscriptions))),
        SortOrder::Pending => rows.sort_by(descending(|row| row.pending_bytes)),
        SortOrder::MessagesTo => rows.sort_by(descending(|row| row.activity.messages_sent)),
        SortOrder::MessagesFrom => rows.sort_by(descending(|row| row.activity.messages_received)),
        SortOrder::BytesTo => rows.sort_by(descending(|row| row.activity.bytes_sent)),
        SortOrder::BytesFrom => rows.sort_by(descending(|row| row.activity.bytes_received)),
        SortOrder::LastActivity => rows.sort_by(descending(|row| row.last_activity_nanos)),
        // Longest idle first: the oldest last activity.
        SortOrder::Idle => rows.sort_by_key(|row| row.last_activity_nanos),
        // Shortest uptime first (nats-server sorts uptime ascending): the latest start.
        SortOrder::Uptime => rows.sort_by(descending(|row| row.opened_at_nanos)),
    }
}

/// The `/connz` body (built here: its rows borrow from the snapshots).
fn connz(observed: &Observed, query: &ConnzQuery) -> String {
    let snapshots = fresh_snapshots(observed, query.subjects);
    let now = SystemTime::now();
    let now_nanos = observed.epoch.elapsed().as_nanos() as u64;
    // The wall-clock time of a shard timestamp (nanoseconds since the epoch).
    let wall = |nanos: u64| now - Duration::from_nanos(now_nanos.saturating_sub(nanos));
    let mut rows: Vec<&ConnectionSummary> = snapshots
        .iter()
        .flat_map(|snapshot| snapshot.connections.iter())
        .filter(|row| query.connection_id.is_none_or(|wanted| row.connection_id == wanted))
        .collect();
    sort_rows(&mut rows, query.sort);
    let total = rows.len();
    let first = query.offset.min(total);
    let last = first + query.limit.min(total - first);
    let connections: Vec<ConnectionInfo<'_>> = rows[first..last]
        .iter()
        .map(|row| ConnectionInfo {
            cid: row.connection_id,
            kind: "Client",
            protocol: if row.nats { "nats" } else { "flit" },
            ip: row.peer.map_or_else(String::new, |peer| peer.ip().to_string()),
            port: row.peer.map_or(0, |peer| peer.port()),
            start: rfc3339(wall(row.opened_at_nanos)),
            last_activity: rfc3339(wall(row.last_activity_nanos)),
            uptime: nats_duration(Duration::from_nanos(now_nanos.saturating_sub(row.opened_at_nanos))),
            idle: nats_duration(Duration::from_nanos(now_nanos.saturating_sub(row.last_activity_nanos))),
            pending_bytes: row.pending_bytes,
            in_msgs: row.activity.messages_received,
            out_msgs: row.activity.messages_sent,
            in_bytes: row.activity.bytes_received,
            out_bytes: row.activity.bytes_sent,
            subscriptions: row.subscriptions,
            name: row.client_name.as_deref(),
            lang: row.client_lang.as_deref(),
            version: row.client_version.as_deref(),
            tls_version: row.tls.as_ref().map(|tls| tls.version),
            tls_cipher_suite: row.tls.as_ref().map(|tls| tls.cipher_suite),
            authorized_user: if query.auth { row.identity.as_deref() } else { None },
            subscriptions_list: if query.subjects {
                row.subjects.iter().map(|subject| &**subject).collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    json(&Connz {
        server_id: &observed.nats.facts.server_id,
        now: rfc3339(now),
        num_connections: connections.len(),
        total,
        offset: query.offset,
        limit: query.limit,
        connections,
    })
}

/// `/subsz` (nats-server's `Subsz` with its `SublistStats`). flit's
/// subscription trie keeps no match cache and counts no inserts, removes,
/// matches or fan-out, so those are zero (documented as not applicable).
#[derive(Serialize)]
struct Subsz<'a> {
    server_id: &'a str,
    now: String,
    num_subscriptions: u64,
    num_cache: u64,
    num_inserts: u64,
    num_removes: u64,
    num_matches: u64,
    cache_hit_rate: f64,
    max_fanout: u64,
    avg_fanout: f64,
    total: usize,
    offset: usize,
    limit: usize,
}

fn subsz(observed: &Observed, query: nats_query::SubszQuery) -> Subsz<'_> {
    Subsz {
        server_id: &observed.nats.facts.server_id,
        now: rfc3339(SystemTime::now()),
        num_subscriptions: sum(&observed.shards, |m| m.subscriptions.get()),
        num_cache: 0,
        num_inserts: 0,
        num_removes: 0,
        num_matches: 0,
        cache_hit_rate: 0.0,
        max_fanout: 0,
        avg_fanout: 0.0,
        // No list is given (as nats-server without subs=1).
        total: 0,
        offset: query.offset,
        limit: query.limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_nats_writes_them() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (182, "3m2s"),
            (3600, "1h0m0s"),
            (2 * 86_400 + 3 * 3600 + 1, "2d3h0m1s"),
            (365 * 86_400 + 2 * 86_400, "1y2d0h0m0s"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(nats_duration(Duration::from_secs(seconds)), expected);
        }
    }

    #[test]
    fn process_numbers_are_read_from_proc() {
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
        assert!(cpu_ticks().is_some());
    }
}
