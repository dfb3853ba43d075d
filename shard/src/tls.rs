//! TLS on the listener, with rustls: the server's certificate and key from
//! PEM files, and optionally client certificates verified against a CA
//! (mutual TLS), each mapped to an identity by its SHA-256 fingerprint.
//!
//! The shard's loop stays readiness-driven: a TLS connection's socket is read
//! with `read_tls` and written with `write_tls`, both non-blocking, and the
//! plaintext goes through the same read and write buffers as a plain
//! connection. rustls buffers at most `TLS_BUFFER_BYTES_MAX` of plaintext
//! not yet encrypted per connection; the rest waits in the write buffer,
//! where `pending_bytes_max` counts it.
//!
//! A connection that does not speak TLS, or presents a certificate the CA
//! did not sign (or one that has expired), fails in `process_new_packets`:
//! the alert rustls queued is sent and the connection closed; the failure is
//! counted (`tls_failures`), and nothing reaches the flit protocol.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::Buf;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConnection};
use sha2::{Digest, Sha256};

use crate::connection::Connection;

/// Plaintext rustls may hold per connection before it is encrypted and sent.
pub const TLS_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// Builds the rustls server configuration; errors are one line naming the
/// file and what is wrong with it.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certificates| certificates.collect::<Result<_, _>>())
        .map_err(|error| format!("cannot read TLS certificate {}: {error}", cert_file.display()))?;
    if certificates.is_empty() {
        return Err(format!("TLS certificate file {} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| format!("cannot read TLS private key {}: {error}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS setup: {error}"))?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            let authorities = CertificateDer::pem_file_iter(ca_file)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|error| format!("cannot read client CA {}: {error}", ca_file.display()))?;
            for authority in authorities {
                roots.add(authority).map_err(|error| format!("client CA {}: {error}", ca_file.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| format!("client CA {}: {error}", ca_file.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certificates, key).map_err(|error| {
        format!("TLS certificate {} and key {} do not fit: {error}", cert_file.display(), key_file.display())
    })?;
    Ok(Arc::new(config))
}

/// A new server-side TLS session for an accepted connection.
pub fn session(config: &Arc<rustls::ServerConfig>) -> Result<Box<ServerConnection>, rustls::Error> {
    let mut session = ServerConnection::new(config.clone())?;
    session.set_buffer_limit(Some(TLS_BUFFER_BYTES_MAX));
    Ok(Box::new(session))
}

/// SHA-256 of the client's certificate (the end-entity one), once the
/// handshake has verified it.
pub fn peer_fingerprint(session: &ServerConnection) -> Option<[u8; 32]> {
    let certificate = session.peer_certificates()?.first()?;
    Some(Sha256::digest(certificate.as_ref()).into())
}

/// What one read from a TLS socket gave.
pub enum TlsRead {
    /// Socket bytes read (their plaintext, if any, is in the read buffer).
    Data {
        socket_bytes: usize,
    },
    WouldBlock,
    Closed,
    /// Not TLS, a refused certificate, a bad record: close.
    Failed(String),
}

/// Reads what the socket has, decrypts it into the connection's read buffer.
pub fn read(connection: &mut Connection, scratch: &mut [u8]) -> TlsRead {
    let Some(session) = connection.tls.as_mut() else { return TlsRead::Closed };
    let socket_bytes = match session.read_tls(&mut connection.stream) {
        Ok(0) => return TlsRead::Closed,
        Ok(read) => read,
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            return TlsRead::WouldBlock
        }
        Err(_) => return TlsRead::Closed,
    };
    if let Err(error) = session.process_new_packets() {
        return TlsRead::Failed(error.to_string());
    }
    loop {
        match session.reader().read(scratch) {
            Ok(0) => break,
            Ok(read) => connection.read_buffer.extend_from_slice(&scratch[..read]),
            // No more plaintext for now.
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return TlsRead::Closed,
        }
    }
    TlsRead::Data { socket_bytes }
}

/// Hands the write buffer's plaintext to rustls (as much as it takes) and
/// writes the TLS records to the socket. Returns socket bytes written.
pub fn write_out(connection: &mut Connection) -> std::io::Result<usize> {
    let Some(session) = connection.tls.as_mut() else { return Ok(0) };
    let mut written_total = 0;
    loop {
        if !connection.write_buffer.is_empty() && !session.is_handshaking() {
            let taken = session.writer().write(&connection.write_buffer)?;
            if taken > 0 {
                // NATS text is not tracked (Connection::frame_rest_after_write).
                connection.partial_frame_bytes = if connection.nats.is_some() {
                    0
                } else {
                    crate::connection::partial_frame_after_write(
                        std::slice::from_ref(&connection.write_buffer),
                        connection.partial_frame_bytes,
                        taken,
                    )
                };
                connection.write_buffer.advance(taken);
            }
        }
        if !session.wants_write() {
            return Ok(written_total);
        }
        match session.write_tls(&mut connection.stream) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => written_total += written,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(written_total),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}
