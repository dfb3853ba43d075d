//! TLS for the clients (rustls, ring provider). The async client hands the
//! configuration to tokio-rustls; what follows is about the blocking one.
//!
//! The blocking client reads and writes on several threads (whichever thread
//! holds the read turn reads, see `blocking/shared.rs`; callers and the
//! flusher write), so one rustls session is shared under a mutex, and no
//! socket IO happens while it is held: the reader reads socket bytes first,
//! then decrypts them under the lock; a writer encrypts under the lock into a
//! buffer, then writes that buffer to the socket under the socket's own lock
//! (which orders records).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConnection;

use crate::connection::lock;
use crate::error::ClientError;

/// How to speak TLS to the server.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry.
    pub server_name: String,
}

impl TlsOptions {
    /// Trusts the CA certificate(s) in a PEM file; optionally presents a
    /// client certificate and key (mutual TLS).
    pub fn from_files(
        ca_file: &Path,
        client: Option<(&Path, &Path)>,
        server_name: &str,
    ) -> Result<TlsOptions, ClientError> {
        let tls_error = |what: String| ClientError::Tls(what);
        let mut roots = rustls::RootCertStore::empty();
        let authorities = CertificateDer::pem_file_iter(ca_file)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|error| tls_error(format!("cannot read CA file {}: {error}", ca_file.display())))?;
        for authority in authorities {
            roots.add(authority).map_err(|error| tls_error(format!("CA file {}: {error}", ca_file.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| tls_error(error.to_string()))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((certificate_file, key_file)) => {
                let chain = CertificateDer::pem_file_iter(certificate_file)
                    .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                    .map_err(|error| tls_error(format!("cannot read {}: {error}", certificate_file.display())))?;
                let key = PrivateKeyDer::from_pem_file(key_file)
                    .map_err(|error| tls_error(format!("cannot read {}: {error}", key_file.display())))?;
                builder.with_client_auth_cert(chain, key).map_err(|error| tls_error(error.to_string()))?
            }
        };
        Ok(TlsOptions { config: Arc::new(config), server_name: server_name.to_owned() })
    }
}

/// One connection's TLS session, shared by the readers and the writers.
pub(crate) struct TlsSession(Mutex<ClientConnection>);

impl TlsSession {
    /// Runs the TLS handshake on a blocking socket (its read timeout bounds it).
    pub(crate) fn handshake(options: &TlsOptions, stream: &mut TcpStream) -> Result<TlsSession, ClientError> {
        let name = ServerName::try_from(options.server_name.clone())
            .map_err(|error| ClientError::Tls(format!("server name {}: {error}", options.server_name)))?;
        let mut session =
            ClientConnection::new(options.config.clone(), name).map_err(|error| ClientError::Tls(error.to_string()))?;
        while session.is_handshaking() {
            session.complete_io(stream).map_err(|error| match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
                _ => ClientError::Tls(error.to_string()),
            })?;
        }
        Ok(TlsSession(Mutex::new(session)))
    }

    /// Decrypts socket bytes, appending the plaintext to `plaintext`.
    pub(crate) fn decrypt(&self, mut socket_bytes: &[u8], plaintext: &mut Vec<u8>) -> Result<(), ClientError> {
        let mut session = lock(&self.0);
        while !socket_bytes.is_empty() {
            session.read_tls(&mut socket_bytes)?;
            session.process_new_packets().map_err(|error| ClientError::Tls(error.to_string()))?;
            match session.reader().read_to_end(plaintext) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Encrypts `plaintext` into TLS records for the socket.
    pub(crate) fn encrypt(&self, mut plaintext: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut session = lock(&self.0);
        let mut records = Vec::with_capacity(plaintext.len() + 64);
        loop {
            let taken = session.writer().write(plaintext)?;
            plaintext = &plaintext[taken..];
            while session.wants_write() {
                session.write_tls(&mut records)?;
            }
            if plaintext.is_empty() {
                return Ok(records);
            }
        }
    }

    /// The records that say we are closing.
    pub(crate) fn close_notify(&self) -> Vec<u8> {
        let mut session = lock(&self.0);
        session.send_close_notify();
        let mut records = Vec::new();
        while session.wants_write() {
            if session.write_tls(&mut records).is_err() {
                break;
            }
        }
        records
    }
}

/// The plaintext side of a TLS session over a blocking socket, for the
/// Hello/Welcome exchange before the threads start.
pub(crate) struct PlaintextStream<'a> {
    pub(crate) session: &'a TlsSession,
    pub(crate) stream: &'a mut TcpStream,
    pub(crate) pending: Vec<u8>,
}

impl Read for PlaintextStream<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Ok(0);
            }
            self.session.decrypt(&chunk[..read], &mut self.pending).map_err(io::Error::other)?;
        }
        let count = buffer.len().min(self.pending.len());
        buffer[..count].copy_from_slice(&self.pending[..count]);
        self.pending.drain(..count);
        Ok(count)
    }
}

impl Write for PlaintextStream<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let records = self.session.encrypt(buffer).map_err(io::Error::other)?;
        self.stream.write_all(&records)?;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
