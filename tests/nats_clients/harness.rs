//! Shared by the real-NATS-client suites (`tests/nats_async_client.rs`,
//! `tests/nats_python_client.rs`, `tests/nats_js_client.rs`): starts the
//! server a suite talks to, in one of four setups (open, token, users with
//! permissions, TLS), and runs a client program with bounded time.
//!
//! # Which server
//! By default the server is flit (`flit serve --nats-listen 127.0.0.1:0`,
//! two shards, so clients also meet cross-shard delivery). With
//! `FLIT_NATS_SERVER=nats-server` (or a path to one, e.g.
//! `/usr/sbin/nats-server`) the same suites run against a real nats-server
//! with an equivalent generated config file instead. That mode is how the
//! expectations were made NATS's own and how a reader re-validates them: a
//! scenario that fails against nats-server is a wrong test, not a flit bug.
//!
//! # The setups
//! Every setup sets `max_payload` to [`MAX_PAYLOAD_BYTES`], so the payload
//! limit scenario knows the number the client reads from INFO.
//! - [`Setup::Open`]: no authentication.
//! - [`Setup::Token`]: one token, [`TOKEN`], with every permission.
//! - [`Setup::Users`]: user + password identities: [`ORDERS_USER`] may
//!   publish and subscribe to `orders.>` and `_INBOX.>` except
//!   `orders.secret.>`; [`ADMIN_USER`] may do anything. (nats-server cannot
//!   combine a token with a users list, hence two setups.)
//! - [`Setup::Tls`]: TLS with a certificate for 127.0.0.1 signed by a CA
//!   made at test time; the CA's PEM is in [`NatsServer::ca_file`].
//!
//! Every wait is bounded: a server that does not become ready, and a client
//! program that does not finish, fail the test instead of hanging it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::FlitServer;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// `max_payload` in every setup: small enough that "exactly the limit" is a
/// cheap message, and not nats-server's or flit's default, so a server that
/// ignores its configuration is caught.
pub const MAX_PAYLOAD_BYTES: usize = 65536;
pub const TOKEN: &str = "nats-client-token-5e1c9a7f3b";
pub const ORDERS_USER: &str = "orders";
pub const ORDERS_PASSWORD: &str = "orders-password-2b8d4f6a";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-9c3e7a1d";

/// How long a client program may run before it is killed and the test fails.
pub const CLIENT_PROGRAM_TIMEOUT: Duration = Duration::from_secs(90);
/// How long nats-server may take to say it is listening.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    Open,
    Token,
    Users,
    Tls,
}

/// A running server for one test: flit or nats-server, removed on drop
/// together with its files.
pub struct NatsServer {
    /// `nats://127.0.0.1:PORT`, or `tls://...` in [`Setup::Tls`].
    pub url: String,
    /// The CA certificate (PEM) that signed the server's certificate, in
    /// [`Setup::Tls`].
    pub ca_file: Option<PathBuf>,
    /// Which server this is, for failure messages.
    pub description: String,
    process: Process,
    files: Files,
}

enum Process {
    Flit(FlitServer),
    NatsServer { child: Child, log: Arc<Mutex<String>> },
}

impl NatsServer {
    /// Starts the server `FLIT_NATS_SERVER` names (unset: flit) in `setup`.
    pub fn start(setup: Setup) -> NatsServer {
        let files = Files::new(&format!("{setup:?}").to_lowercase());
        let tls = (setup == Setup::Tls).then(|| write_certificates(&files));
        match std::env::var("FLIT_NATS_SERVER") {
            Ok(program) if !program.is_empty() => start_nats_server(&program, setup, files, tls),
            _ => start_flit(setup, files, tls),
        }
    }

    /// The environment a client program reads its settings from. The names
    /// are the contract with `tests/nats_clients/python` and `.../js`.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let mut environment = vec![
            ("NATS_URL", self.url.clone()),
            ("NATS_MAX_PAYLOAD", MAX_PAYLOAD_BYTES.to_string()),
            ("NATS_TOKEN", TOKEN.to_string()),
            ("NATS_ORDERS_USER", ORDERS_USER.to_string()),
            ("NATS_ORDERS_PASSWORD", ORDERS_PASSWORD.to_string()),
            ("NATS_ADMIN_USER", ADMIN_USER.to_string()),
            ("NATS_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
        ];
        if let Some(ca_file) = &self.ca_file {
            environment.push(("NATS_CA_FILE", ca_file.to_string_lossy().into_owned()));
        }
        environment
    }

    /// What nats-server has logged so far (empty for flit, whose log is
    /// read only when it stops).
    pub fn log(&self) -> String {
        match &self.process {
            Process::Flit(_) => String::new(),
            Process::NatsServer { log, .. } => log.lock().expect("log lock").clone(),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Process::NatsServer { child, .. } = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// flit with its NATS listener, configured like the nats-server config
/// [`nats_server_config`] writes.
fn start_flit(setup: Setup, files: Files, tls: Option<Certificates>) -> NatsServer {
    let max_payload = MAX_PAYLOAD_BYTES.to_string();
    let mut arguments: Vec<String> =
        ["--nats-listen", "127.0.0.1:0", "--max-payload", &max_payload].map(str::to_owned).to_vec();
    match setup {
        Setup::Open => {}
        Setup::Token | Setup::Users => {
            let path = files.write("identities.toml", &flit_identities(setup));
            arguments.extend(["--identities".to_owned(), path]);
        }
        Setup::Tls => {
            let certificates = tls.as_ref().expect("TLS setup has certificates");
            arguments.extend(["--tls-cert".to_owned(), path_text(&certificates.certificate)]);
            arguments.extend(["--tls-key".to_owned(), path_text(&certificates.key)]);
        }
    }
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let server = FlitServer::start(2, &arguments);
    let address = server.nats_address.expect("flit's ready line has no nats= field: is --nats-listen implemented?");
    let scheme = if setup == Setup::Tls { "tls" } else { "nats" };
    NatsServer {
        url: format!("{scheme}://{address}"),
        ca_file: tls.map(|certificates| certificates.authority),
        description: "flit (2 shards)".to_owned(),
        process: Process::Flit(server),
        files,
    }
}

/// flit's identities file for `setup`: the token, or the two users with
/// the same permissions [`nats_server_config`] gives them.
fn flit_identities(setup: Setup) -> String {
    match setup {
        Setup::Token => format!("[[identity]]\nname = \"token-holder\"\ntoken_sha256 = \"{}\"\n", sha256_hex(TOKEN)),
        Setup::Users => format!(
            r#"
[[identity]]
name = "{ORDERS_USER}"
password_sha256 = "{}"
publish = {{ allow = ["orders.>", "_INBOX.>"], deny = ["orders.secret.>"] }}
subscribe = {{ allow = ["orders.>", "_INBOX.>"], deny = ["orders.secret.>"] }}

[[identity]]
name = "{ADMIN_USER}"
password_sha256 = "{}"
"#,
            sha256_hex(ORDERS_PASSWORD),
            sha256_hex(ADMIN_PASSWORD)
        ),
        Setup::Open | Setup::Tls => unreachable!("no identities in {setup:?}"),
    }
}

fn sha256_hex(secret: &str) -> String {
    flit_shard::auth::token_sha256(secret).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A nats-server config equivalent to what [`start_flit`] gives flit. Port
/// -1 lets nats-server pick a free port, read back from its log.
fn nats_server_config(setup: Setup, tls: Option<&Certificates>) -> String {
    let mut config = format!("listen: \"127.0.0.1:-1\"\nmax_payload: {MAX_PAYLOAD_BYTES}\n");
    match setup {
        Setup::Open => {}
        Setup::Token => config.push_str(&format!("authorization {{\n  token: \"{TOKEN}\"\n}}\n")),
        Setup::Users => config.push_str(&format!(
            r#"authorization {{
  users: [
    {{
      user: "{ORDERS_USER}"
      password: "{ORDERS_PASSWORD}"
      permissions: {{
        publish: {{ allow: ["orders.>", "_INBOX.>"], deny: ["orders.secret.>"] }}
        subscribe: {{ allow: ["orders.>", "_INBOX.>"], deny: ["orders.secret.>"] }}
      }}
    }}
    {{ user: "{ADMIN_USER}", password: "{ADMIN_PASSWORD}" }}
  ]
}}
"#
        )),
        Setup::Tls => {
            let certificates = tls.expect("TLS setup has certificates");
            config.push_str(&format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 5\n}}\n",
                path_text(&certificates.certificate),
                path_text(&certificates.key)
            ));
        }
    }
    config
}

fn start_nats_server(program: &str, setup: Setup, files: Files, tls: Option<Certificates>) -> NatsServer {
    let config = files.write("nats-server.conf", &nats_server_config(setup, tls.as_ref()));
    let mut child = Command::new(program)
        .args(["--config", &config])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {program} (FLIT_NATS_SERVER): {error}"));
    // nats-server logs to stderr; a thread keeps reading it (a full pipe
    // would stall the server) and hands over the port once it is printed.
    let log = Arc::new(Mutex::new(String::new()));
    let (port_sender, port_receiver) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let thread_log = Arc::clone(&log);
    std::thread::spawn(move || {
        let marker = "Listening for client connections on ";
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.split(marker).nth(1) {
                let _ = port_sender.send(address.trim().to_owned());
            }
            let mut log = thread_log.lock().expect("log lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let address = match port_receiver.recv_timeout(SERVER_READY_TIMEOUT) {
        Ok(address) => address,
        Err(_) => {
            let _ = child.kill();
            panic!("{program} did not start listening within {SERVER_READY_TIMEOUT:?}:\n{}", log.lock().unwrap());
        }
    };
    let scheme = if setup == Setup::Tls { "tls" } else { "nats" };
    NatsServer {
        url: format!("{scheme}://{address}"),
        ca_file: tls.map(|certificates| certificates.authority),
        description: format!("{program} (FLIT_NATS_SERVER)"),
        process: Process::NatsServer { child, log },
        files,
    }
}

/// PEM files of a CA and a server certificate it signed, for 127.0.0.1.
struct Certificates {
    authority: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

fn write_certificates(files: &Files) -> Certificates {
    let mut authority_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    authority_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority_params.distinguished_name.push(DnType::CommonName, "flit NATS client tests CA");
    let authority_key = KeyPair::generate().expect("CA key");
    let authority_certificate = authority_params.self_signed(&authority_key).expect("CA certificate");
    let issuer = Issuer::new(authority_params, authority_key);
    // The clients connect to tls://127.0.0.1:PORT and check the name against
    // an IP address entry ("127.0.0.1" becomes one), and "localhost" too.
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("server params");
    server_params.distinguished_name.push(DnType::CommonName, "localhost");
    let server_key = KeyPair::generate().expect("server key");
    let server_certificate = server_params.signed_by(&server_key, &issuer).expect("server certificate");
    Certificates {
        authority: PathBuf::from(files.write("ca.pem", &authority_certificate.pem())),
        certificate: PathBuf::from(files.write("server.pem", &server_certificate.pem())),
        key: PathBuf::from(files.write("server-key.pem", &server_key.serialize_pem())),
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("temporary paths are UTF-8").to_owned()
}

/// A temporary directory, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(name: &str) -> Files {
        static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory =
            std::env::temp_dir().join(format!("flit-nats-clients-{name}-{}-{sequence}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("temporary directory");
        Files(directory)
    }

    /// Writes `contents` to `name`; returns the path.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path_text(&path)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` with `server`'s environment, killing it after
/// [`CLIENT_PROGRAM_TIMEOUT`]; panics with its whole output (and the
/// server's log) unless it exits with status 0.
pub fn run_client_program(mut command: Command, server: &NatsServer, what: &str) {
    command.envs(server.environment()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|error| panic!("start {what}: {error}"));
    let stdout = read_in_background(child.stdout.take().expect("stdout"));
    let stderr = read_in_background(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + CLIENT_PROGRAM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client program") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = format!(
        "--- stdout\n{}--- stderr\n{}",
        stdout.join().expect("stdout reader"),
        stderr.join().expect("stderr reader")
    );
    match status {
        Some(status) if status.success() => {}
        Some(status) => {
            panic!("{what} against {} failed ({status}):\n{output}--- server log\n{}", server.description, server.log())
        }
        None => panic!(
            "{what} against {} did not finish within {CLIENT_PROGRAM_TIMEOUT:?} (killed):\n{output}",
            server.description
        ),
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// One `#[test]` per scenario, the same names and setups for every client
/// suite: `nats_client_scenarios!(run)` with `run(Setup, scenario)`.
#[macro_export]
macro_rules! nats_client_scenarios {
    ($run:ident) => {
        #[test]
        fn connect_reads_info() {
            $run(Setup::Open, "connect");
        }
        #[test]
        fn wildcards_match_as_in_nats() {
            $run(Setup::Open, "wildcards");
        }
        #[test]
        fn queue_group_members_share_messages_without_duplicates() {
            $run(Setup::Open, "queue_groups");
        }
        #[test]
        fn request_reply() {
            $run(Setup::Open, "request_reply");
        }
        #[test]
        fn no_responders_fails_the_request_at_once() {
            $run(Setup::Open, "no_responders");
        }
        #[test]
        fn headers_reach_subscribers_and_responders() {
            $run(Setup::Open, "headers");
        }
        #[test]
        fn unsubscribe_with_a_maximum_stops_after_it() {
            $run(Setup::Open, "unsubscribe_max");
        }
        #[test]
        fn max_payload_is_accepted_and_one_byte_more_is_refused() {
            $run(Setup::Open, "max_payload");
        }
        #[test]
        fn flush_is_a_round_trip() {
            $run(Setup::Open, "flush");
        }
        #[test]
        fn drain_delivers_pending_messages_then_closes() {
            $run(Setup::Open, "drain");
        }
        #[test]
        fn token_authentication() {
            $run(Setup::Token, "token");
        }
        #[test]
        fn user_password_authentication() {
            $run(Setup::Users, "user_password");
        }
        #[test]
        fn permission_violations_are_reported_and_the_connection_stays() {
            $run(Setup::Users, "permissions");
        }
        #[test]
        fn tls_upgrade_with_a_trusted_ca() {
            $run(Setup::Tls, "tls");
        }
    };
}
