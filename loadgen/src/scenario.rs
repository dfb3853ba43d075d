//! Scenarios: which connections a run opens, what each one does, and how many
//! deliveries each sent message should produce. Receivers (subscribers,
//! responders) connect to `--receiver-target` when it is given, everything
//! else to `--target` ([`Role::receives`]): reqrep, pubsub, fanout and queue
//! then measure across cluster nodes.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::ValueEnum;

use crate::target::TargetKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScenarioKind {
    /// R requesters, K responders (optionally one queue group); round-trip latency.
    Reqrep,
    /// One publisher, one subscriber; one-way latency.
    Pubsub,
    /// One publisher, K subscribers on the same subject; each message K times.
    Fanout,
    /// One publisher, a queue group of K subscribers; each message once.
    Queue,
    /// C idle connections held open while one requester and one responder measure request/reply.
    Conns,
    /// P publishers, each with N acknowledged publishes in flight to a stream; publish -> ack latency.
    Durable,
    /// Read a stored stream (`--messages` of it) to one consumer; messages per second.
    Replay,
    /// Interest propagation: a subscriber subscribes to a fresh subject and flushes, then a publisher
    /// (on another node with --receiver-target) publishes at once and every --probe-interval-us until
    /// the subscriber gets one; flush -> first arrival latency, and first publishes lost.
    Propagation,
}

impl ScenarioKind {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Reqrep => "reqrep",
            ScenarioKind::Pubsub => "pubsub",
            ScenarioKind::Fanout => "fanout",
            ScenarioKind::Queue => "queue",
            ScenarioKind::Conns => "conns",
            ScenarioKind::Durable => "durable",
            ScenarioKind::Replay => "replay",
            ScenarioKind::Propagation => "propagation",
        }
    }
}

/// How the engine waits when there is nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Idle {
    /// Block in the poller (a parked client cannot see a spinning server's speed).
    Park,
    /// Busy-poll: one core at 100%.
    Spin,
}

/// Everything a run needs to know.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub scenario: ScenarioKind,
    /// Total messages per second over all senders; 0 = closed loop.
    pub rate: u64,
    pub duration: Duration,
    pub warmup: Duration,
    /// After the run, how long to wait for messages still in flight.
    pub drain: Duration,
    pub payload_bytes: usize,
    /// Closed loop: messages in flight per sender.
    pub window: usize,
    pub idle: Idle,
    pub requesters: usize,
    pub responders: usize,
    pub queue_responders: bool,
    pub subscribers: usize,
    /// Idle connections for the conns scenario.
    pub connections: usize,
    /// After the subscribe barrier, how long to wait before sending: the
    /// barrier covers the receivers' own server only, and interest reaches the
    /// other nodes of a cluster some time later (a closed loop would otherwise
    /// wait forever for the first messages, dropped for lack of interest).
    pub settle: Duration,
    pub progress: bool,
    /// TLS to the target (loaded by the flit client's own `TlsOptions`).
    pub tls: Option<flit_client::TlsOptions>,
}

/// Bytes at the front of every payload: intended send time (ns), sequence, sender.
pub const PAYLOAD_HEADER_BYTES: usize = crate::protocol::STAMP_BYTES;

/// What one connection does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Subscriber {
        queue: Option<String>,
    },
    /// Sends requests and receives the replies on its own inbox subject.
    Requester {
        inbox: String,
    },
    /// Echoes every request to its reply subject.
    Responder {
        queue: Option<String>,
    },
    /// Connected, handshaken, and otherwise silent.
    Idle,
}

impl Role {
    /// Whether this connection receives what others send (and so connects to
    /// `--receiver-target`). A requester receives only its own replies: it
    /// is a sender.
    pub fn receives(&self) -> bool {
        matches!(self, Role::Subscriber { .. } | Role::Responder { .. })
    }
}

/// The connections of a run and the subjects they use.
#[derive(Clone, Debug)]
pub struct Plan {
    pub roles: Vec<Role>,
    /// Subject senders publish to.
    pub subject: String,
    /// Deliveries one sent message should produce.
    pub copies_per_message: u64,
}

pub const DATA_SUBJECT: &str = "loadgen.data";
pub const REQUEST_SUBJECT: &str = "loadgen.request";
const QUEUE_GROUP: &str = "loadgen-group";

impl RunOptions {
    /// Builds the plan, refusing combinations the target cannot do.
    pub fn plan(&self, target: TargetKind) -> Result<Plan> {
        if self.payload_bytes < PAYLOAD_HEADER_BYTES {
            bail!("--payload must be at least {PAYLOAD_HEADER_BYTES} bytes (timestamp, sequence, sender)");
        }
        if target == TargetKind::Echo && !matches!(self.scenario, ScenarioKind::Reqrep | ScenarioKind::Conns) {
            bail!("an echo target has no subjects: only reqrep and conns measure it");
        }
        let queue = |enabled: bool| enabled.then(|| QUEUE_GROUP.to_owned());
        let requesters = |count: usize| -> Vec<Role> {
            (0..count).map(|index| Role::Requester { inbox: format!("loadgen.inbox.{index}") }).collect()
        };
        let responders = |count: usize, grouped: bool| -> Vec<Role> {
            let count = if target == TargetKind::Echo { 0 } else { count };
            (0..count).map(|_| Role::Responder { queue: queue(grouped) }).collect()
        };
        let (roles, subject, copies) = match self.scenario {
            ScenarioKind::Durable | ScenarioKind::Replay | ScenarioKind::Propagation => {
                bail!("{} has its own driver (crate::durable, crate::propagation)", self.scenario.name())
            }
            ScenarioKind::Reqrep => {
                let mut roles = responders(self.responders.max(1), self.queue_responders);
                roles.extend(requesters(self.requesters.max(1)));
                let copies =
                    if self.queue_responders || target == TargetKind::Echo { 1 } else { self.responders.max(1) as u64 };
                (roles, REQUEST_SUBJECT, copies)
            }
            ScenarioKind::Conns => {
                let mut roles = vec![Role::Idle; self.connections];
                roles.extend(responders(1, false));
                roles.extend(requesters(1));
                (roles, REQUEST_SUBJECT, 1)
            }
            ScenarioKind::Pubsub => (vec![Role::Subscriber { queue: None }, Role::Publisher], DATA_SUBJECT, 1),
            ScenarioKind::Fanout => {
                let count = self.subscribers.max(1);
                let mut roles = vec![Role::Subscriber { queue: None }; count];
                roles.push(Role::Publisher);
                (roles, DATA_SUBJECT, count as u64)
            }
            ScenarioKind::Queue => {
                let mut roles = vec![Role::Subscriber { queue: queue(true) }; self.subscribers.max(1)];
                roles.push(Role::Publisher);
                (roles, DATA_SUBJECT, 1)
            }
        };
        Ok(Plan { roles, subject: subject.to_owned(), copies_per_message: copies })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(scenario: ScenarioKind) -> RunOptions {
        RunOptions {
            scenario,
            rate: 0,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            drain: Duration::from_secs(1),
            payload_bytes: 64,
            window: 1,
            idle: Idle::Park,
            requesters: 1,
            responders: 1,
            queue_responders: false,
            subscribers: 3,
            connections: 0,
            settle: Duration::ZERO,
            progress: false,
            tls: None,
        }
    }

    /// What connects to --receiver-target: subscribers and responders, never
    /// a publisher, requester or idle connection.
    #[test]
    fn receivers_are_subscribers_and_responders() {
        let receivers = |scenario| {
            let plan = options(scenario).plan(TargetKind::Flit).expect("a plan");
            plan.roles.iter().map(Role::receives).collect::<Vec<_>>()
        };
        assert_eq!(receivers(ScenarioKind::Reqrep), [true, false]);
        assert_eq!(receivers(ScenarioKind::Pubsub), [true, false]);
        assert_eq!(receivers(ScenarioKind::Fanout), [true, true, true, false]);
        assert_eq!(receivers(ScenarioKind::Queue), [true, true, true, false]);
        assert!(!Role::Idle.receives());
        assert!(!Role::Requester { inbox: "i".into() }.receives());
    }

    #[test]
    fn own_drivers_have_no_plan() {
        for scenario in [ScenarioKind::Durable, ScenarioKind::Replay, ScenarioKind::Propagation] {
            assert!(options(scenario).plan(TargetKind::Nats).is_err());
        }
    }
}
