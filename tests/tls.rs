//! TLS on the listener, with certificates made at test time (rcgen): the
//! handshake and pub/sub over TLS; a plain client against the TLS port fails
//! cleanly (an error, no hang, the server unharmed); with mutual TLS a client
//! certificate from the trusted CA connects and maps to its identity, while
//! an untrusted or expired certificate is refused; an unreadable certificate
//! file is a one-line startup error.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::{FlitServer, SHARD_COUNTS};
use flit_wire::{check, decode, Check, Encoder, Frame, Hello, Limits, Op, PROTOCOL_VERSION};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A CA that signs certificates.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

fn authority(name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let certificate = params.self_signed(&key).expect("self-signed");
    Authority { pem: certificate.pem(), der: certificate.der().clone(), issuer: Issuer::new(params, key) }
}

/// A leaf certificate signed by `authority`: (certificate PEM, key PEM, DER).
fn leaf(authority: &Authority, name: &str, expired: bool) -> (String, String, CertificateDer<'static>) {
    let mut params = CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("key");
    let certificate = params.signed_by(&key, &authority.issuer).expect("signed");
    (certificate.pem(), key.serialize_pem(), certificate.der().clone())
}

/// Files in a temporary directory, removed at the end.
struct Files(PathBuf);

impl Files {
    fn new(name: &str) -> Files {
        let directory = std::env::temp_dir().join(format!("flit-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("temp dir");
        Files(directory)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A blocking TLS client that speaks raw flit frames.
struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buffer: BytesMut,
}

impl TlsClient {
    fn connect(
        address: SocketAddr,
        server_ca: &CertificateDer<'static>,
        client: Option<(&str, &str)>,
    ) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server_ca.clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((certificate_pem, key_pem)) => {
                let chain = vec![CertificateDer::from_pem_slice(certificate_pem.as_bytes()).expect("pem")];
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key pem");
                builder.with_client_auth_cert(chain, key).expect("client auth")
            }
        };
        let connection =
            rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").expect("name"))
                .expect("client connection");
        let socket = TcpStream::connect(address).expect("connect");
        socket.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut client = TlsClient { stream: rustls::StreamOwned::new(connection, socket), buffer: BytesMut::new() };
        client.hello(None)?;
        Ok(client)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).and_then(|()| self.stream.flush()).map_err(|error| error.to_string())
    }

    fn hello(&mut self, token: Option<&str>) -> Result<(), String> {
        let mut frame = BytesMut::new();
        let hello = Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            client_name: Some("tls-test".into()),
            auth_token: token.map(str::to_owned),
            ack_mode: false,
        };
        Encoder::default().hello(&mut frame, &hello).expect("hello");
        self.send(&frame)?;
        match self.read_frame()? {
            Frame::Welcome(_) => Ok(()),
            other => Err(format!("expected Welcome, got {other:?}")),
        }
    }

    fn read_frame(&mut self) -> Result<Frame, String> {
        let limits = Limits::default();
        loop {
            if let Check::Complete(length) = check(&self.buffer, limits.frame_bytes_max()) {
                return decode(self.buffer.split_to(length).freeze(), &limits).map_err(|error| error.to_string());
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("closed".to_string()),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error) => return Err(error.to_string()),
            }
        }
    }
}

/// The SHA-256 of a certificate, as an identities file names it.
fn fingerprint(certificate: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(certificate.as_ref()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A server with TLS, a client CA (mutual TLS) and `identities`.
fn start_mutual(pki: &Pki, shards: usize, identities: &str) -> FlitServer {
    let arguments =
        ["--tls-cert", &pki.cert, "--tls-key", &pki.key, "--tls-client-ca", &pki.client_ca, "--identities", identities];
    FlitServer::start(shards, &arguments)
}

struct Pki {
    files: Files,
    server_authority: Authority,
    client_authority: Authority,
    cert: String,
    key: String,
    client_ca: String,
}

fn pki(name: &str) -> Pki {
    let files = Files::new(name);
    let server_authority = authority("flit test server CA");
    let client_authority = authority("flit test client CA");
    let (cert_pem, key_pem, _) = leaf(&server_authority, "localhost", false);
    let cert = files.write("server.crt", &cert_pem);
    let key = files.write("server.key", &key_pem);
    let client_ca = files.write("clients-ca.crt", &client_authority.pem);
    Pki { files, server_authority, client_authority, cert, key, client_ca }
}

/// Subscribes to `tls.>`, publishes over the other client, receives, unsubscribes.
fn subscribe_publish_receive(subscriber: &mut TlsClient, publisher: &mut TlsClient) -> Result<(), String> {
    let mut encoder = Encoder::default();
    let mut frames = BytesMut::new();
    encoder.subscribe(&mut frames, b"tls.>", None, 1).expect("subscribe");
    Encoder::bare(&mut frames, Op::Ping);
    subscriber.send(&frames)?;
    assert_eq!(subscriber.read_frame()?, Frame::Pong);
    let mut frames = BytesMut::new();
    encoder.publish(&mut frames, b"tls.hello", None, None, b"over tls").expect("publish");
    publisher.send(&frames)?;
    match subscriber.read_frame()? {
        Frame::Deliver(deliver) => {
            assert_eq!(&deliver.payload[..], b"over tls");
            let mut frames = BytesMut::new();
            let unsubscribe = flit_wire::Unsubscribe { subscription_id: 1, after_messages: 0 };
            encoder.unsubscribe(&mut frames, unsubscribe).expect("unsubscribe");
            Encoder::bare(&mut frames, Op::Ping);
            subscriber.send(&frames)?;
            assert_eq!(subscriber.read_frame()?, Frame::Pong);
            Ok(())
        }
        other => Err(format!("expected Deliver, got {other:?}")),
    }
}

#[test]
fn pub_sub_over_tls_and_a_plain_client_fails_cleanly() {
    let pki = pki("plain");
    for shards in SHARD_COUNTS {
        let server =
            FlitServer::start(shards, &["--metrics", "127.0.0.1:0", "--tls-cert", &pki.cert, "--tls-key", &pki.key]);
        let mut subscriber = TlsClient::connect(server.address, &pki.server_authority.der, None).expect("tls");
        let mut publisher = TlsClient::connect(server.address, &pki.server_authority.der, None).expect("tls");
        subscribe_publish_receive(&mut subscriber, &mut publisher).expect("pub/sub over TLS");

        // A plain flit client: it gets an error, not a hang.
        let started = std::time::Instant::now();
        let plain = flit_client::Client::connect(server.address);
        assert!(plain.is_err(), "shards={shards}: a plain client must not get through");
        assert!(started.elapsed() < Duration::from_secs(5), "shards={shards}: failed fast");
        let metrics = common::scrape(server.metrics_address.expect("metrics"));
        assert!(common::metric_sum(&metrics, "flit_shard_tls_failures_total", &[]) >= 1.0);
        // And the TLS clients are unharmed.
        subscribe_publish_receive(&mut subscriber, &mut publisher).expect("still fine");
    }
}

#[test]
fn mutual_tls_admits_the_trusted_certificate_and_refuses_untrusted_and_expired_ones() {
    let pki = pki("mutual");
    let (client_pem, client_key, client_der) = leaf(&pki.client_authority, "orders", false);
    let stranger = authority("someone else's CA");
    let (untrusted_pem, untrusted_key, _) = leaf(&stranger, "orders", false);
    let (expired_pem, expired_key, _) = leaf(&pki.client_authority, "orders", true);
    let fingerprint = fingerprint(&client_der);
    let identities = pki.files.write(
        "identities.toml",
        &format!(
            "[[identity]]\nname = \"orders\"\ncertificate_sha256 = \"{fingerprint}\"\n\
             publish = {{ allow = [\"tls.>\"] }}\nsubscribe = {{ allow = [\"tls.>\"] }}\n"
        ),
    );
    for shards in SHARD_COUNTS {
        let server = start_mutual(&pki, shards, &identities);
        let ca = &pki.server_authority.der;
        let mut subscriber = TlsClient::connect(server.address, ca, Some((&client_pem, &client_key)))
            .expect("the trusted certificate is the identity: no token needed");
        let mut publisher = TlsClient::connect(server.address, ca, Some((&client_pem, &client_key))).expect("trusted");
        subscribe_publish_receive(&mut subscriber, &mut publisher).expect("pub/sub as orders");
        // The identity's permissions apply: orders may not publish outside tls.>.
        let mut frames = BytesMut::new();
        Encoder::default().publish(&mut frames, b"billing.x", None, None, b"x").expect("publish");
        publisher.send(&frames).expect("send");
        match publisher.read_frame().expect("a refusal") {
            Frame::Error(error) => assert_eq!(error.code, flit_wire::ErrorCode::PermissionDenied.as_u16()),
            other => panic!("expected permission_denied, got {other:?}"),
        }
        for (what, pem, key) in [("untrusted", &untrusted_pem, &untrusted_key), ("expired", &expired_pem, &expired_key)]
        {
            let refused = TlsClient::connect(server.address, ca, Some((pem, key)));
            assert!(refused.is_err(), "shards={shards}: the {what} certificate must be refused");
        }
        assert!(TlsClient::connect(server.address, ca, None).is_err(), "shards={shards}: no certificate, no entry");
    }
}

#[test]
fn an_unreadable_certificate_is_a_one_line_startup_error() {
    let pki = pki("unreadable");
    let missing = Path::new(&pki.cert).with_file_name("missing.crt");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shards", "1", "--tls-cert"])
        .arg(&missing)
        .args(["--tls-key", &pki.key])
        .output()
        .expect("run flit");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read TLS certificate") && stderr.contains("missing.crt"), "{stderr}");
}

#[test]
fn the_blocking_client_and_the_cli_speak_tls_and_mutual_tls() {
    let pki = pki("client");
    let (client_pem, client_key, client_der) = leaf(&pki.client_authority, "orders", false);
    let ca_file = pki.files.write("server-ca.crt", &pki.server_authority.pem);
    let client_cert = pki.files.write("client.crt", &client_pem);
    let client_key_file = pki.files.write("client.key", &client_key);
    let fingerprint = fingerprint(&client_der);
    let identities = pki.files.write(
        "identities.toml",
        &format!("[[identity]]\nname = \"orders\"\ncertificate_sha256 = \"{fingerprint}\"\n"),
    );
    let server = start_mutual(&pki, 1, &identities);
    let tls = flit_client::TlsOptions::from_files(
        Path::new(&ca_file),
        Some((Path::new(&client_cert), Path::new(&client_key_file))),
        "localhost",
    )
    .expect("TLS options");
    let options = flit_client::Options { tls: Some(tls), ..flit_client::Options::default() };
    let subscriber = flit_client::Client::connect_with(server.address, options.clone()).expect("TLS client");
    let subscription = subscriber.subscribe("cli.>").expect("subscribe");
    subscriber.flush().expect("flush");
    // A large payload crosses several TLS records both ways.
    let big = vec![b'z'; 200_000];
    let publisher = flit_client::Client::connect_with(server.address, options).expect("TLS client");
    publisher.publish("cli.big", &big).expect("publish");
    publisher.flush().expect("flush");
    assert_eq!(common::next_message(&subscription).payload.len(), big.len());

    // The command-line client, with its certificate.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flit"))
        .args(["pub", "cli.hello", "from the cli", "--server", &server.address.to_string()])
        .args(["--tls-ca", &ca_file, "--tls-cert", &client_cert, "--tls-key", &client_key_file])
        .output()
        .expect("flit pub");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(&common::next_message(&subscription).payload[..], b"from the cli");

    // Without TLS options the blocking client fails with an error, not a hang.
    let plain = flit_client::Client::connect(server.address).expect_err("plain against TLS");
    assert!(plain.is_fatal(), "{plain:?}");
}

#[test]
fn the_async_client_speaks_tls() {
    let pki = pki("async");
    let ca_file = pki.files.write("server-ca.crt", &pki.server_authority.pem);
    let server = FlitServer::start(2, &["--tls-cert", &pki.cert, "--tls-key", &pki.key]);
    let tls = flit_client::TlsOptions::from_files(Path::new(&ca_file), None, "localhost").expect("TLS options");
    let options = flit_client::Options { tls: Some(tls), ..flit_client::Options::default() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let subscriber = flit_client::AsyncClient::connect_with(server.address, options.clone()).await.expect("TLS");
        let mut subscription = subscriber.subscribe("async.>").await.expect("subscribe");
        subscriber.flush().await.expect("flush");
        let publisher = flit_client::AsyncClient::connect_with(server.address, options).await.expect("TLS");
        let big = vec![b'a'; 100_000];
        publisher.publish("async.big", &big).await.expect("publish");
        publisher.flush().await.expect("flush");
        let message = subscription.next_timeout(Duration::from_secs(5)).await.expect("open").expect("a message");
        assert_eq!(message.payload.len(), big.len());
    });
}
