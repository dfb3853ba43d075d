//! `--target URL`: which server and which protocol; `--receiver-target URL`:
//! another server (a node of the same cluster) for the connections that
//! receive (subscribers, responders), so a message crosses nodes.

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

    /// `--receiver-target`: the server subscribers and responders connect to
    /// (`None`: the sender's). It must speak the sender's protocol, and an
    /// echo server has no one else to reach.
    pub fn receiver(url: Option<&str>, sender: &Target, allow_remote: bool) -> Result<Target> {
        let Some(url) = url else { return Ok(sender.clone()) };
        let receiver = Target::parse(url, allow_remote)?;
        if receiver.kind != sender.kind {
            bail!("--receiver-target `{url}` must use the scheme of --target ({:?})", sender.kind);
        }
        if receiver.kind == TargetKind::Echo && receiver.address != sender.address {
            bail!("an echo target answers its own connections only: no --receiver-target");
        }
        Ok(receiver)
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

/// Where a run's connections go: senders (publishers, requesters, idle
/// connections) to `sender`, receivers (subscribers, responders) to `receiver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub sender: SocketAddr,
    pub receiver: SocketAddr,
}

impl Addresses {
    /// Every connection to one server.
    #[cfg(test)]
    pub fn same(address: SocketAddr) -> Addresses {
        Addresses { sender: address, receiver: address }
    }

    /// Whether senders and receivers are on different servers (cluster nodes).
    pub fn split(&self) -> bool {
        self.sender != self.receiver
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

    #[test]
    fn a_receiver_target_defaults_to_the_sender_and_keeps_its_scheme() {
        let sender = Target::parse("flit://127.0.0.1:4224", false).expect("flit");
        let same = Target::receiver(None, &sender, false).expect("default");
        assert_eq!(same.address, sender.address);
        let other = Target::receiver(Some("flit://127.0.0.1:4225"), &sender, false).expect("another node");
        assert_eq!(other.address.port(), 4225);
        assert!(Addresses { sender: sender.address, receiver: other.address }.split());
        assert!(!Addresses::same(sender.address).split());
        assert!(Target::receiver(Some("nats://127.0.0.1:4222"), &sender, false).is_err(), "mixed protocols");
        assert!(Target::receiver(Some("flit://10.0.0.2:4224"), &sender, false).is_err(), "remote needs --allow-remote");
        let echo = Target::parse("echo://127.0.0.1:7", false).expect("echo");
        assert!(Target::receiver(Some("echo://127.0.0.1:8"), &echo, false).is_err());
    }
}
