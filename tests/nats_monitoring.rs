//! NATS's monitoring endpoints on flit's metrics listener (`/varz`, `/connz`,
//! `/subsz`, `/healthz`) give the fields NATS tooling reads with the same
//! names and JSON types a real nats-server gives them, and the values are
//! flit's own: the connected clients, their subscriptions, the messages they
//! sent and received; `/connz` pages and sorts as NATS documents.
//!
//! The reference is a nats-server started here (`nats-server` on PATH). Where
//! it is missing the comparison is skipped with a note, unless
//! FLIT_REQUIRE_NATS_SERVER=1 (as CI should set); flit's own checks always run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_get as get, next_message, FlitServer};
use flit_client::{Client, Options};
use serde_json::Value;

/// A JSON type, as the tools see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    String,
    Bool,
    Array,
    Object,
}

fn kind_of(value: &Value) -> Option<Kind> {
    match value {
        Value::Number(_) => Some(Kind::Number),
        Value::String(_) => Some(Kind::String),
        Value::Bool(_) => Some(Kind::Bool),
        Value::Array(_) => Some(Kind::Array),
        Value::Object(_) => Some(Kind::Object),
        Value::Null => None,
    }
}

use Kind::{Array, Number, Object, String as Text};

/// Every field flit claims to support, per endpoint (a `/connz` row is
/// `connz.connections[]`). docs/OPERATIONS.md lists the same ones, and those
/// flit leaves out or fills with a not-applicable zero.
const SUPPORTED: &[(&str, &[(&str, Kind)])] = &[
    (
        "/varz",
        &[
            ("server_id", Text),
            ("server_name", Text),
            ("version", Text),
            ("host", Text),
            ("port", Number),
            ("max_connections", Number),
            ("http_host", Text),
            ("http_port", Number),
            ("auth_timeout", Number),
            ("max_payload", Number),
            ("max_pending", Number),
            ("start", Text),
            ("now", Text),
            ("uptime", Text),
            ("mem", Number),
            ("cores", Number),
            ("cpu", Number),
            ("connections", Number),
            ("total_connections", Number),
            ("routes", Number),
            ("remotes", Number),
            ("leafnodes", Number),
            ("in_msgs", Number),
            ("in_bytes", Number),
            ("in_client_msgs", Number),
            ("in_client_bytes", Number),
            ("out_msgs", Number),
            ("out_bytes", Number),
            ("out_client_msgs", Number),
            ("out_client_bytes", Number),
            ("slow_consumers", Number),
            ("stale_connections", Number),
            ("subscriptions", Number),
            ("http_req_stats", Object),
            ("slow_consumer_stats", Object),
        ],
    ),
    (
        "/connz?subs=1",
        &[
            ("server_id", Text),
            ("now", Text),
            ("num_connections", Number),
            ("total", Number),
            ("offset", Number),
            ("limit", Number),
            ("connections", Array),
        ],
    ),
    (
        "connz row",
        &[
            ("cid", Number),
            ("kind", Text),
            ("type", Text),
            ("ip", Text),
            ("port", Number),
            ("start", Text),
            ("last_activity", Text),
            ("uptime", Text),
            ("idle", Text),
            ("pending_bytes", Number),
            ("in_msgs", Number),
            ("out_msgs", Number),
            ("in_bytes", Number),
            ("out_bytes", Number),
            ("subscriptions", Number),
            ("name", Text),
            ("subscriptions_list", Array),
        ],
    ),
    (
        "/subsz",
        &[
            ("server_id", Text),
            ("now", Text),
            ("num_subscriptions", Number),
            ("num_cache", Number),
            ("num_inserts", Number),
            ("num_removes", Number),
            ("num_matches", Number),
            ("cache_hit_rate", Number),
            ("max_fanout", Number),
            ("avg_fanout", Number),
            ("total", Number),
            ("offset", Number),
            ("limit", Number),
        ],
    ),
    ("/healthz", &[("status", Text)]),
];

fn fields_of(endpoint: &str) -> &'static [(&'static str, Kind)] {
    SUPPORTED.iter().find(|(name, _)| *name == endpoint).map(|(_, fields)| *fields).expect("listed")
}

fn get_json(address: SocketAddr, path: &str) -> Value {
    let (status, body) = get(address, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: not JSON ({error}): {body}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// A nats-server on free ports, killed on drop.
struct NatsServer {
    child: Child,
    client: SocketAddr,
    monitoring: SocketAddr,
}

impl NatsServer {
    /// None when nats-server is not installed (and not required).
    fn start() -> Option<NatsServer> {
        let (client_port, monitoring_port) = (free_port(), free_port());
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &client_port.to_string(), "-m", &monitoring_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if std::env::var("FLIT_REQUIRE_NATS_SERVER").as_deref() != Ok("1") => {
                eprintln!("note: nats-server not started ({error}); the comparison with it is SKIPPED");
                return None;
            }
            Err(error) => panic!("nats-server is required (FLIT_REQUIRE_NATS_SERVER=1): {error}"),
        };
        let server = NatsServer {
            child,
            client: SocketAddr::from(([127, 0, 0, 1], client_port)),
            monitoring: SocketAddr::from(([127, 0, 0, 1], monitoring_port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(server.monitoring).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not open its monitoring port");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// A raw NATS client that said who it is and subscribed to `a`; kept open.
    fn subscribed_client(&self) -> TcpStream {
        let stream = TcpStream::connect(self.client).expect("connect to nats-server");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let connect = r#"CONNECT {"verbose":false,"name":"probe","lang":"raw","version":"0"}"#;
        write!(writer, "{connect}\r\nSUB a 1\r\nPING\r\n").expect("send");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        while !line.starts_with("PONG") {
            line.clear();
            assert!(reader.read_line(&mut line).expect("read from nats-server") > 0, "nats-server closed");
        }
        stream
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts each listed field is in `flit` and `nats` with the listed type.
fn assert_same_fields(endpoint: &str, flit: &Value, nats: &Value) {
    for (field, kind) in fields_of(endpoint) {
        assert_eq!(nats.get(field).and_then(kind_of), Some(*kind), "nats-server {endpoint} field {field}: {nats:#}");
        assert_eq!(flit.get(field).and_then(kind_of), Some(*kind), "flit {endpoint} field {field}: {flit:#}");
    }
}

fn client_named(server: &FlitServer, name: &str) -> Client {
    let options = Options { name: Some(name.to_string()), ..Options::default() };
    Client::connect_with(server.address, options).expect("connect")
}

fn rows(connz: &Value) -> &Vec<Value> {
    connz["connections"].as_array().expect("connections is an array")
}

fn row_named<'a>(connz: &'a Value, name: &str) -> &'a Value {
    rows(connz).iter().find(|row| row["name"] == name).unwrap_or_else(|| panic!("no row named {name}: {connz:#}"))
}

#[test]
fn fields_have_the_names_and_types_nats_server_gives_them() {
    let server = FlitServer::start(1, &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("metrics address");
    let subscriber = client_named(&server, "subscriber");
    let _subscription = subscriber.subscribe("a").expect("subscribe");
    subscriber.flush().expect("flush");
    let Some(nats) = NatsServer::start() else { return };
    let _nats_client = nats.subscribed_client();
    for endpoint in ["/varz", "/connz?subs=1", "/subsz", "/healthz"] {
        assert_same_fields(endpoint, &get_json(metrics, endpoint), &get_json(nats.monitoring, endpoint));
    }
    assert_eq!(get(metrics, "/healthz"), get(nats.monitoring, "/healthz"), "byte for byte");
    let flit_connz = get_json(metrics, "/connz?subs=1");
    let nats_connz = get_json(nats.monitoring, "/connz?subs=1");
    let nats_row = rows(&nats_connz).first().expect("nats-server lists its client");
    assert_same_fields("connz row", row_named(&flit_connz, "subscriber"), nats_row);
    // What the NATS client told nats-server, flit's NATS clients will tell it.
    for field in ["lang", "version"] {
        assert_eq!(nats_row.get(field).and_then(kind_of), Some(Kind::String), "{field}");
    }
    for object in ["http_req_stats", "slow_consumer_stats"] {
        let flit_varz = get_json(metrics, "/varz");
        for (key, value) in flit_varz[object].as_object().expect("an object") {
            assert!(value.is_u64(), "{object}.{key} is a count");
        }
    }
}

#[test]
fn connz_lists_the_clients_with_their_live_counts() {
    let server = FlitServer::start(1, &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("metrics address");
    let subscriber = client_named(&server, "subscriber");
    let subscription = subscriber.subscribe("a").expect("subscribe");
    subscriber.flush().expect("flush");
    let publisher = client_named(&server, "publisher");
    for _ in 0..3 {
        publisher.publish("a", b"12345").expect("publish");
    }
    publisher.flush().expect("flush");
    for _ in 0..3 {
        next_message(&subscription);
    }
    let connz = get_json(metrics, "/connz");
    assert_eq!((connz["total"].as_u64(), connz["num_connections"].as_u64()), (Some(2), Some(2)), "{connz:#}");
    let subscriber_row = row_named(&connz, "subscriber");
    assert_eq!(subscriber_row["subscriptions"], 1);
    assert_eq!((subscriber_row["out_msgs"].as_u64(), subscriber_row["out_bytes"].as_u64()), (Some(3), Some(15)));
    assert_eq!(subscriber_row["type"], "flit");
    assert_eq!(subscriber_row["ip"], "127.0.0.1");
    let publisher_row = row_named(&connz, "publisher");
    assert_eq!((publisher_row["in_msgs"].as_u64(), publisher_row["in_bytes"].as_u64()), (Some(3), Some(15)));
    assert_eq!(publisher_row["subscriptions"], 0);

    // More traffic shows at once: each request gets a fresh snapshot.
    publisher.publish("a", b"67").expect("publish");
    publisher.flush().expect("flush");
    next_message(&subscription);
    let connz = get_json(metrics, "/connz");
    assert_eq!(row_named(&connz, "publisher")["in_msgs"], 4);
    assert_eq!(row_named(&connz, "subscriber")["out_msgs"], 4);
    let listed = get_json(metrics, "/connz?subs=1");
    assert_eq!(row_named(&listed, "subscriber")["subscriptions_list"], serde_json::json!(["a"]));
    assert!(row_named(&listed, "publisher").get("subscriptions_list").is_none(), "empty lists are left out");

    let varz = get_json(metrics, "/varz");
    assert_eq!((varz["connections"].as_u64(), varz["subscriptions"].as_u64()), (Some(2), Some(1)));
    assert!(varz["in_msgs"].as_u64() >= Some(4) && varz["out_msgs"].as_u64() >= Some(4), "{varz:#}");
    assert!(varz["total_connections"].as_u64() >= Some(2) && varz["mem"].as_u64() > Some(0));
    assert_eq!(varz["http_port"].as_u64(), Some(u64::from(metrics.port())));
    assert_eq!(varz["http_req_stats"]["/connz"], 3);
    assert_eq!(get_json(metrics, "/subsz")["num_subscriptions"], 1);
    assert_eq!(get_json(metrics, "/healthz")["status"], "ok");
}

#[test]
fn connz_pages_and_sorts_as_nats_documents() {
    let server = FlitServer::start(1, &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("metrics address");
    let quiet = client_named(&server, "quiet");
    let busy = client_named(&server, "busy");
    let subscriber = client_named(&server, "subscriber");
    let subscription = subscriber.subscribe("s").expect("subscribe");
    subscriber.flush().expect("flush");
    quiet.publish("s", b"1").expect("publish");
    quiet.flush().expect("flush");
    for _ in 0..5 {
        busy.publish("s", b"1").expect("publish");
    }
    busy.flush().expect("flush");
    for _ in 0..6 {
        next_message(&subscription);
    }
    let names = |connz: &Value| -> Vec<String> {
        rows(connz).iter().map(|row| row["name"].as_str().unwrap_or_default().to_string()).collect()
    };
    let by_cid = get_json(metrics, "/connz?sort=cid");
    assert_eq!(names(&by_cid), ["quiet", "busy", "subscriber"], "accept order");
    let cids: Vec<u64> = rows(&by_cid).iter().map(|row| row["cid"].as_u64().expect("cid")).collect();
    assert!(cids.windows(2).all(|pair| pair[0] < pair[1]), "{cids:?}");
    assert_eq!(names(&get_json(metrics, "/connz?sort=msgs_from")), ["busy", "quiet", "subscriber"]);
    assert_eq!(names(&get_json(metrics, "/connz?sort=msgs_to"))[0], "subscriber");
    assert_eq!(names(&get_json(metrics, "/connz?sort=subs"))[0], "subscriber");
    assert_eq!(names(&get_json(metrics, "/connz?sort=uptime"))[0], "subscriber", "shortest uptime first");

    let page = get_json(metrics, "/connz?sort=msgs_from&offset=1&limit=1");
    assert_eq!(names(&page), ["quiet"]);
    let paging: Vec<_> =
        ["num_connections", "total", "offset", "limit"].iter().map(|field| page[field].clone()).collect();
    assert_eq!(paging, [1, 3, 1, 1]);
    assert_eq!(rows(&get_json(metrics, "/connz?offset=10")).len(), 0);
    let one = get_json(metrics, &format!("/connz?cid={}", cids[1]));
    assert_eq!(names(&one), ["busy"]);

    for bad in
        ["/connz?limit=abc", "/connz?sort=bogus", "/connz?offset=1.5", "/connz?subs=maybe", "/connz?state=closed"]
    {
        let (status, body) = get(metrics, bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(get(metrics, "/subsz?subs=1").0, 400);
}

#[test]
fn connection_ids_are_unique_across_shards() {
    let server = FlitServer::start(2, &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("metrics address");
    let _clients: Vec<Client> =
        (0..2).flat_map(|shard| [server.client_on_shard(shard), server.client_on_shard(shard)]).collect();
    let connz = get_json(metrics, "/connz");
    let mut cids: Vec<u64> = rows(&connz).iter().map(|row| row["cid"].as_u64().expect("cid")).collect();
    assert!(cids.len() >= 4, "{connz:#}");
    let count = cids.len();
    cids.dedup();
    assert_eq!(cids.len(), count, "sorted by cid and unique");
}
