//! What a connection's bytes travel over: plain TCP, or TLS (rustls) over
//! TCP, behind the same non-blocking `read` and `write` the engine uses, so
//! the cost of TLS is measured with everything else unchanged.
//!
//! For TLS, `write` hands plaintext to rustls and sends whatever records are
//! ready; `read` feeds socket bytes to rustls and returns plaintext. Records
//! the socket could not take yet go out at the next `write`, `read` or
//! `flush_pending`, which the engine calls on every writable event.

use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

pub enum Transport {
    Plain(TcpStream),
    Tls { stream: TcpStream, session: Box<ClientConnection> },
}

impl Transport {
    pub fn new(stream: TcpStream, tls: Option<(&Arc<rustls::ClientConfig>, &str)>) -> Result<Transport> {
        Ok(match tls {
            None => Transport::Plain(stream),
            Some((config, server_name)) => {
                let name = ServerName::try_from(server_name.to_owned()).context("TLS server name")?;
                let session = ClientConnection::new(config.clone(), name)?;
                Transport::Tls { stream, session: Box::new(session) }
            }
        })
    }

    pub fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let (stream, session) = match self {
            Transport::Plain(stream) => return stream.read(buffer),
            Transport::Tls { stream, session } => (stream, session),
        };
        loop {
            match session.reader().read(buffer) {
                Ok(read) => return Ok(read),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
            if session.read_tls(stream)? == 0 {
                return Ok(0);
            }
            session.process_new_packets().map_err(|error| io::Error::new(ErrorKind::InvalidData, error))?;
            send_records(stream, session)?;
        }
    }

    pub fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let (stream, session) = match self {
            Transport::Plain(stream) => return stream.write(buffer),
            Transport::Tls { stream, session } => (stream, session),
        };
        let taken = session.writer().write(buffer)?;
        send_records(stream, session)?;
        if taken == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Sends TLS records waiting for the socket (nothing for plain TCP).
    pub fn flush_pending(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls { stream, session } => send_records(stream, session),
        }
    }
}

fn send_records(stream: &mut TcpStream, session: &mut ClientConnection) -> io::Result<()> {
    while session.wants_write() {
        match session.write_tls(stream) {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
