//! `--target URL`: which server and which protocol.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

use crate::protocol::echo::EchoProtocol;
use crate::protocol::flit::FlitProtocol;
use crate::protocol::nats::NatsProtocol;
use crate::protocol::Protocol;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Flit,
    Nats,
    /// A raw TCP echo server: the floor.
    Echo,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub kind: TargetKind,
    pub address: SocketAddr,
}

impl Target {
    /// Parses `flit://IP:PORT`, `nats://IP:PORT` or `echo://IP:PORT`. Only
    /// loopback addresses are accepted unless `allow_remote` is set: a load
    /// test aimed at the wrong host is an attack on it.
    pub fn parse(url: &str, allow_remote: bool) -> Result<Target> {
        let (scheme, rest) = url.split_once("://").with_context(|| format!("`{url}` is not scheme://host:port"))?;
        let kind = match scheme {
            "flit" => TargetKind::Flit,
            "nats" => TargetKind::Nats,
            "echo" => TargetKind::Echo,
            other => bail!("unknown target scheme `{other}`: use flit://, nats:// or echo://"),
        };
        let address = rest
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve `{rest}`"))?
            .next()
            .with_context(|| format!("`{rest}` resolves to no address"))?;
        if !address.ip().is_loopback() && !allow_remote {
            bail!("{address} is not a loopback address; pass --allow-remote to load another host");
        }
        Ok(Target { kind, address })
    }

    /// A fresh protocol state for one connection.
    pub fn protocol(&self, payload_bytes: usize, auth_token: Option<String>) -> Box<dyn Protocol> {
        match self.kind {
            TargetKind::Flit => Box::new(FlitProtocol::with_token(auth_token)),
            TargetKind::Nats => Box::new(NatsProtocol::new()),
            TargetKind::Echo => Box::new(EchoProtocol::new(payload_bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_loopback_rule() {
        assert_eq!(Target::parse("flit://127.0.0.1:4222", false).expect("flit").kind, TargetKind::Flit);
        assert_eq!(Target::parse("nats://127.0.0.1:4222", false).expect("nats").kind, TargetKind::Nats);
        assert_eq!(Target::parse("echo://[::1]:7", false).expect("echo").kind, TargetKind::Echo);
        assert!(Target::parse("http://127.0.0.1:80", false).is_err());
        assert!(Target::parse("flit://10.1.2.3:4222", false).is_err(), "remote needs --allow-remote");
        assert!(Target::parse("127.0.0.1:4222", false).is_err());
    }
}
