//! What the two cluster clients ([`ClusterClient`](crate::ClusterClient) and
//! [`AsyncClusterClient`](crate::AsyncClusterClient)) decide the same way,
//! with no IO: which servers they know ([`ServerList`]: the user's first,
//! then those the servers named in Welcome), which one to try next and how
//! long to wait before it ([`Attempts`], [`backoff`]), and the bounded buffer
//! of publishes made while no server is connected ([`PublishBuffer`]).
//! Each client keeps only its IO: threads and a condvar, or tasks and a
//! `Notify`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use flit_wire::Welcome;
use rand::Rng;

use crate::error::ClientError;
use crate::framing::check_subject;
use crate::options::Options;

/// How often a supervisor looks at the connection. Detection of a lost
/// connection is this late at most (the connection itself notices EOF at once).
pub(crate) const HEALTH_CHECK: Duration = Duration::from_millis(10);

/// Most servers a cluster client knows: the ones it was given, then up to
/// this many in all that the servers named (Welcome's `cluster_urls`).
pub const KNOWN_SERVERS_MAX: usize = 32;

/// Bytes counted per buffered publish on top of its strings and payload.
const BUFFERED_OVERHEAD_BYTES: usize = 64;

/// The servers a cluster client tries, round robin: the `given` ones in the
/// user's order, then the ones learned from Welcomes (unless
/// `Options::ignore_discovered_servers`), deduplicated, at most
/// [`KNOWN_SERVERS_MAX`] in all (the given ones are always kept).
#[derive(Clone, Debug)]
pub(crate) struct ServerList {
    servers: Vec<String>,
    given: usize,
    learning: bool,
}

impl ServerList {
    pub(crate) fn new(given: Vec<String>, options: &Options) -> ServerList {
        let mut servers: Vec<String> = Vec::with_capacity(given.len());
        for server in given {
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
        let given = servers.len();
        ServerList { servers, given, learning: !options.ignore_discovered_servers }
    }

    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }

    pub(crate) fn get(&self, index: usize) -> &str {
        &self.servers[index % self.servers.len()]
    }

    pub(crate) fn index_of(&self, server: &str) -> Option<usize> {
        self.servers.iter().position(|known| known == server)
    }

    pub(crate) fn to_vec(&self) -> Vec<String> {
        self.servers.clone()
    }

    /// Merges what the server `connected` (one of the list) named in its
    /// Welcome. The learned part becomes: `connected` (when it is a learned
    /// one, so it is never dropped while in use), then `named`, then what was
    /// learned before; cut at the bound, so a name the newest Welcome repeats
    /// outlives one no server names any more.
    pub(crate) fn learn(&mut self, connected: &str, named: &[String]) {
        if !self.learning {
            return;
        }
        let (given, learned_before) = self.servers.split_at(self.given);
        let mut learned: Vec<String> = Vec::new();
        let candidates = std::iter::once(connected).chain(named.iter().map(String::as_str));
        for candidate in candidates.chain(learned_before.iter().map(String::as_str)) {
            if given.len() + learned.len() >= KNOWN_SERVERS_MAX {
                break;
            }
            if !candidate.is_empty()
                && !given.iter().any(|known| known == candidate)
                && !learned.iter().any(|known| known == candidate)
            {
                learned.push(candidate.to_owned());
            }
        }
        self.servers.truncate(self.given);
        self.servers.extend(learned);
    }
}

/// The reconnect attempts after a loss: which server is next, and how long
/// to wait after a failure (the first attempt after a loss is immediate).
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    failures: u32,
    /// The server to try next after a failed attempt.
    next: Option<usize>,
}

impl Attempts {
    /// The server to try now, the connection to `from` being lost: the one
    /// after it, or after the last failed attempt.
    pub(crate) fn target(&self, from: usize, servers: usize) -> usize {
        match self.next {
            Some(index) => index % servers,
            None => (from + 1) % servers,
        }
    }

    pub(crate) fn succeeded(&mut self) {
        *self = Attempts::default();
    }

    /// After the attempt at `index`: how long to wait before the next look
    /// (`HEALTH_CHECK` after a success, the backoff after a failure).
    pub(crate) fn settle(&mut self, index: usize, servers: usize, succeeded: bool, options: &Options) -> Duration {
        if succeeded {
            self.succeeded();
            return HEALTH_CHECK;
        }
        self.failed(index, servers, options)
    }

    /// The attempt at `index` failed: the next one goes to the server after
    /// it, once the returned backoff has passed.
    pub(crate) fn failed(&mut self, index: usize, servers: usize, options: &Options) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.next = Some((index + 1) % servers);
        backoff(options, self.failures)
    }
}

/// The full-jitter backoff after `failures` failed attempts in a row: drawn
/// uniformly from zero to `reconnect_delay_min` doubled per failure, at most
/// `reconnect_delay_max`.
pub(crate) fn backoff(options: &Options, failures: u32) -> Duration {
    let ceiling = options.reconnect_delay_min.saturating_mul(1 << failures.min(20)).min(options.reconnect_delay_max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// One publish held while no server is connected.
pub(crate) struct BufferedPublish {
    pub(crate) subject: String,
    pub(crate) reply: Option<String>,
    headers: Vec<(String, String)>,
    pub(crate) payload: Vec<u8>,
}

impl BufferedPublish {
    fn bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.len() + value.len()).sum();
        BUFFERED_OVERHEAD_BYTES
            + self.subject.len()
            + self.reply.as_ref().map_or(0, String::len)
            + headers
            + self.payload.len()
    }

    pub(crate) fn headers(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect()
    }
}

/// Publishes held while no server is connected, in order, at most
/// `Options::reconnect_buffer_bytes_max` bytes (counted by [`BufferedPublish`]).
#[derive(Default)]
pub(crate) struct PublishBuffer {
    queue: VecDeque<BufferedPublish>,
    bytes: usize,
}

impl PublishBuffer {
    /// Holds a publish, or refuses it (nothing held) with
    /// [`ClientError::ReconnectBufferFull`] when it would pass `limit_bytes`.
    pub(crate) fn push(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        headers: &[(&str, &str)],
        payload: &[u8],
        limit_bytes: usize,
    ) -> Result<(), ClientError> {
        check_subject(subject)?;
        let publish = BufferedPublish {
            subject: subject.to_owned(),
            reply: reply.map(str::to_owned),
            headers: headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect(),
            payload: payload.to_vec(),
        };
        let bytes = publish.bytes();
        if self.bytes + bytes > limit_bytes {
            return Err(ClientError::ReconnectBufferFull { buffered_bytes: self.bytes, limit_bytes });
        }
        self.bytes += bytes;
        self.queue.push_back(publish);
        debug_assert!(self.bytes <= limit_bytes);
        Ok(())
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn front(&self) -> Option<&BufferedPublish> {
        self.queue.front()
    }

    pub(crate) fn pop_front(&mut self) {
        if let Some(publish) = self.queue.pop_front() {
            self.bytes -= publish.bytes();
        }
        debug_assert!(!self.queue.is_empty() || self.bytes == 0);
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    /// Hands each held publish, in order, to `send`, which encodes it on a new
    /// connection. A publish the new server refuses for itself (too large for
    /// its limits) is dropped; a fatal error stops and leaves the rest held.
    pub(crate) fn send_all(
        &mut self,
        mut send: impl FnMut(&BufferedPublish) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        while let Some(publish) = self.front() {
            match send(publish) {
                Err(error) if error.is_fatal() => return Err(error),
                Ok(()) | Err(_) => {}
            }
            self.pop_front();
        }
        Ok(())
    }
}

/// What a cluster client needs of one connection (a [`Client`](crate::Client)
/// or an [`AsyncClient`](crate::AsyncClient)).
pub(crate) trait Connected: Clone {
    /// `Err` with the error that ended the connection, if one did.
    fn usable(&self) -> Result<(), ClientError>;
    /// Whether the server sent a Draining notice.
    fn draining(&self) -> bool;
    fn welcome(&self) -> &Welcome;
}

/// A cluster client's current connection and what waits for the next one,
/// under its `link` lock.
pub(crate) struct Link<C> {
    /// `None` while reconnecting.
    pub(crate) client: Option<C>,
    /// The given servers, then the ones the servers named.
    pub(crate) servers: ServerList,
    /// Which of `servers` the client is (or was last) connected to.
    server_index: usize,
    /// Bumped per connection attempt; a subscription records the one it is on.
    pub(crate) generation: u64,
    /// Successful reconnects so far (the first connection not counted).
    pub(crate) reconnects: u64,
    pub(crate) buffer: PublishBuffer,
    pub(crate) closed: bool,
}

/// What a supervisor found.
pub(crate) enum Health<C> {
    Healthy,
    Closed,
    /// The connection ended or is draining (it is taken out: `lost`, to be
    /// dropped once the lock is released); reconnect starting after `from`.
    Lost {
        from: usize,
        lost: Option<C>,
    },
}

/// The servers given to a cluster client's `connect`, checked.
pub(crate) fn given_servers<A: std::fmt::Display>(servers: &[A], options: &Options) -> Result<ServerList, ClientError> {
    assert!(options.reconnect_delay_min <= options.reconnect_delay_max);
    if servers.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "no server given").into());
    }
    Ok(ServerList::new(servers.iter().map(ToString::to_string).collect(), options))
}

impl<C: Connected> Link<C> {
    /// The first connection, to `servers[index]`.
    pub(crate) fn first(client: C, mut servers: ServerList, index: usize) -> Link<C> {
        let server = servers.get(index).to_owned();
        servers.learn(&server, &client.welcome().cluster_urls);
        Link {
            server_index: servers.index_of(&server).unwrap_or(index),
            client: Some(client),
            servers,
            generation: 1,
            reconnects: 0,
            buffer: PublishBuffer::default(),
            closed: false,
        }
    }

    /// The server connected now, if the connection is up.
    pub(crate) fn connected_server(&self) -> Option<String> {
        let client = self.client.as_ref().filter(|client| client.usable().is_ok());
        client.map(|_| self.servers.get(self.server_index).to_owned())
    }

    /// The connection, if it is up; `Err(Closed)` once the client closed.
    pub(crate) fn usable_client(&self) -> Result<Option<C>, ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        // A connection that ended is about to be replaced: `None` until then.
        Ok(self.client.as_ref().filter(|client| client.usable().is_ok()).cloned())
    }

    /// Takes out a connection that ended or drains. No flush: a draining
    /// server no longer reads (a flush would wait for its timeout), and one
    /// that ended cannot answer.
    pub(crate) fn health(&mut self) -> Health<C> {
        if self.closed {
            return Health::Closed;
        }
        let from = self.server_index;
        let Some(client) = &self.client else { return Health::Lost { from, lost: None } };
        if client.usable().is_ok() && !client.draining() {
            return Health::Healthy;
        }
        Health::Lost { from, lost: self.client.take() }
    }

    /// A new generation for a connection attempt. Per attempt, not per
    /// installed connection: an attempt that failed after subscribing must
    /// not make the next one skip a subscription. No connection is installed
    /// meanwhile, so nothing compares a subscription's generation with it.
    pub(crate) fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Installs the connection an attempt to `server` (`servers[index]`)
    /// made, and learns the servers its Welcome names.
    pub(crate) fn install(&mut self, client: C, server: &str, index: usize, generation: u64) {
        self.servers.learn(server, &client.welcome().cluster_urls);
        self.server_index = self.servers.index_of(server).unwrap_or(index);
        self.client = Some(client);
        self.generation = generation;
        self.reconnects += 1;
    }

    /// Closes the client: no more reconnects, the buffer dropped; returns
    /// the connection to close.
    pub(crate) fn close(&mut self) -> Option<C> {
        self.closed = true;
        self.buffer.clear();
        self.client.take()
    }

    /// The connection to release `inner` (`(generation, server-side id)`) on,
    /// if it is still the one the subscription is on.
    pub(crate) fn holding(&self, inner: Option<(u64, u64)>) -> Option<(&C, u64)> {
        let (generation, inner_id) = inner?;
        self.client.as_ref().filter(|_| generation == self.generation).map(|client| (client, inner_id))
    }
}

/// What [`Subscriptions::resubscribe`] subscribed: `(id, server-side id,
/// the caller's value)` per subscription.
pub(crate) type Resubscribed<T> = Vec<(u64, u64, T)>;

/// A cluster client's subscriptions: what it re-subscribes on each new
/// connection. `S` is the sender of the user's queue, which outlives every
/// connection.
pub(crate) struct Subscriptions<S> {
    next_id: u64,
    entries: BTreeMap<u64, Entry<S>>,
}

impl<S> Default for Subscriptions<S> {
    fn default() -> Self {
        Subscriptions { next_id: 0, entries: BTreeMap::new() }
    }
}

struct Entry<S> {
    pattern: String,
    queue: Option<String>,
    sink: S,
    /// `(generation, server-side id)` of the connection it is subscribed on.
    inner: Option<(u64, u64)>,
}

impl<S: Clone> Subscriptions<S> {
    /// Records a subscription (`inner`: where it is subscribed already); its id.
    pub(crate) fn add(&mut self, pattern: &str, queue: Option<&str>, sink: S, inner: Option<(u64, u64)>) -> u64 {
        self.next_id += 1;
        let entry = Entry { pattern: pattern.to_owned(), queue: queue.map(str::to_owned), sink, inner };
        self.entries.insert(self.next_id, entry);
        self.next_id
    }

    /// Forgets subscription `id`; where it was subscribed, if anywhere.
    pub(crate) fn remove(&mut self, id: u64) -> Option<(u64, u64)> {
        self.entries.remove(&id).and_then(|entry| entry.inner)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Subscribes every subscription not yet on `generation` with
    /// `subscribe` (pattern, queue, sink; the server-side id and whatever
    /// the caller wants back per subscription); returns `(id, server-side
    /// id, that)` for each. A fatal error stops; a refusal (permission, in ack
    /// mode) leaves the subscription open without interest there, as on a
    /// plain client, and the next connection tries again.
    pub(crate) fn resubscribe<T>(
        &mut self,
        generation: u64,
        mut subscribe: impl FnMut(&str, Option<&str>, S) -> Result<(u64, T), ClientError>,
    ) -> Result<Resubscribed<T>, ClientError> {
        let mut subscribed = Vec::new();
        for (id, entry) in &mut self.entries {
            if entry.inner.is_some_and(|(on, _)| on == generation) {
                continue;
            }
            match subscribe(&entry.pattern, entry.queue.as_deref(), entry.sink.clone()) {
                Ok((inner_id, extra)) => {
                    entry.inner = Some((generation, inner_id));
                    subscribed.push((*id, inner_id, extra));
                }
                Err(error) if error.is_fatal() => return Err(error),
                Err(_) => entry.inner = None,
            }
        }
        Ok(subscribed)
    }

    /// The server-side ids among `subscribed` whose subscriptions were
    /// closed since, to release on the new connection.
    pub(crate) fn closed_since<T>(&self, subscribed: &[(u64, u64, T)]) -> Vec<u64> {
        subscribed.iter().filter(|(id, ..)| !self.entries.contains_key(id)).map(|(_, inner_id, _)| *inner_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(given: &[&str]) -> ServerList {
        ServerList::new(given.iter().map(|server| (*server).to_owned()).collect(), &Options::default())
    }

    fn names(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|url| (*url).to_owned()).collect()
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let options = Options::default();
        for failures in 0..40 {
            let ceiling =
                options.reconnect_delay_min.saturating_mul(1 << failures.min(20)).min(options.reconnect_delay_max);
            for _ in 0..20 {
                assert!(backoff(&options, failures) <= ceiling);
            }
        }
        assert!((0..50).any(|_| backoff(&options, 10) > Duration::from_millis(50)), "the ceiling grows");
    }

    #[test]
    fn learned_servers_come_after_the_given_ones_once_each() {
        let mut servers = list(&["a:1", "b:1", "a:1"]);
        assert_eq!(servers.to_vec(), names(&["a:1", "b:1"]), "the given list, deduplicated");
        servers.learn("a:1", &names(&["b:1", "c:1", "d:1", "c:1"]));
        assert_eq!(servers.to_vec(), names(&["a:1", "b:1", "c:1", "d:1"]));
        // Connected to a learned one whose Welcome names others: it stays.
        servers.learn("d:1", &names(&["a:1", "e:1"]));
        assert_eq!(servers.to_vec(), names(&["a:1", "b:1", "d:1", "e:1", "c:1"]));
        servers.learn("a:1", &[]);
        assert_eq!(servers.to_vec(), names(&["a:1", "b:1", "d:1", "e:1", "c:1"]), "an empty Welcome forgets nothing");
    }

    #[test]
    fn the_list_is_bounded_and_keeps_the_newest_names() {
        let mut servers = list(&["given:1"]);
        let old: Vec<String> = (0..40).map(|index| format!("old-{index}:1")).collect();
        servers.learn("given:1", &old);
        assert_eq!(servers.len(), KNOWN_SERVERS_MAX);
        servers.learn("old-3:1", &names(&["new:1"]));
        let known = servers.to_vec();
        assert_eq!(known.len(), KNOWN_SERVERS_MAX);
        assert_eq!(&known[..3], &names(&["given:1", "old-3:1", "new:1"])[..], "the one in use and the newest first");
        // More given servers than the bound: all kept, nothing learned.
        let many: Vec<String> = (0..40).map(|index| format!("given-{index}:1")).collect();
        let mut servers = ServerList::new(many.clone(), &Options::default());
        servers.learn("given-0:1", &names(&["other:1"]));
        assert_eq!(servers.to_vec(), many);
    }

    #[test]
    fn ignoring_discovered_servers_keeps_the_given_list() {
        let options = Options { ignore_discovered_servers: true, ..Options::default() };
        let mut servers = ServerList::new(names(&["a:1"]), &options);
        servers.learn("a:1", &names(&["b:1"]));
        assert_eq!(servers.to_vec(), names(&["a:1"]));
    }

    #[test]
    fn attempts_go_round_robin_and_back_off_after_failures() {
        let options = Options::default();
        let mut attempts = Attempts::default();
        assert_eq!(attempts.target(2, 3), 0, "the one after the lost server, at once");
        let wait = attempts.failed(0, 3, &options);
        assert!(wait <= options.reconnect_delay_min * 2);
        assert_eq!(attempts.target(2, 3), 1, "then the one after the failed attempt");
        attempts.succeeded();
        assert_eq!(attempts.target(1, 3), 2);
    }

    /// A connection for [`Link`]'s tests: its Welcome, and whether it is up or drains.
    #[derive(Clone)]
    struct Fake {
        welcome: Welcome,
        up: bool,
        draining: bool,
    }

    impl Fake {
        fn naming(urls: &[&str]) -> Fake {
            let welcome = Welcome {
                version: 2,
                server_name: "fake".to_owned(),
                shard: 0,
                shards: 1,
                payload_bytes_max: 1024,
                meta_bytes_max: 1024,
                pending_bytes_max: 1024,
                subscriptions_max: 16,
                cluster_urls: names(urls),
            };
            Fake { welcome, up: true, draining: false }
        }
    }

    impl Connected for Fake {
        fn usable(&self) -> Result<(), ClientError> {
            if self.up {
                Ok(())
            } else {
                Err(ClientError::Disconnected)
            }
        }

        fn draining(&self) -> bool {
            self.draining
        }

        fn welcome(&self) -> &Welcome {
            &self.welcome
        }
    }

    #[test]
    fn a_link_learns_from_each_welcome_and_names_the_server_it_is_on() {
        let mut link = Link::first(Fake::naming(&["b:1"]), list(&["a:1"]), 0);
        assert_eq!(link.servers.to_vec(), names(&["a:1", "b:1"]));
        assert_eq!(link.connected_server().as_deref(), Some("a:1"));
        link.client.as_mut().expect("connected").draining = true;
        let Health::Lost { from: 0, lost: Some(_) } = link.health() else { panic!("a draining server is left") };
        assert_eq!(link.connected_server(), None);
        let generation = link.next_generation();
        link.install(Fake::naming(&["a:1", "c:1"]), "b:1", 1, generation);
        assert_eq!(link.servers.to_vec(), names(&["a:1", "b:1", "c:1"]));
        assert_eq!(link.connected_server().as_deref(), Some("b:1"), "the index follows the server");
        assert_eq!(link.reconnects, 1);
        link.client.as_mut().expect("connected").up = false;
        assert!(matches!(link.health(), Health::Lost { from: 1, lost: Some(_) }));
        assert!(link.close().is_none());
        assert!(matches!(link.health(), Health::Closed));
        assert!(matches!(link.usable_client(), Err(ClientError::Closed)));
    }

    #[test]
    fn an_attempt_that_failed_after_subscribing_does_not_make_the_next_skip_it() {
        let mut link = Link::first(Fake::naming(&[]), list(&["a:1"]), 0);
        let mut subscriptions = Subscriptions::default();
        let id = subscriptions.add("orders.>", None, (), Some((link.generation, 7)));
        assert_eq!(link.holding(Some((link.generation, 7))).map(|(_, inner)| inner), Some(7));
        let _ = link.health();
        link.client = None; // lost
        let failed = link.next_generation();
        let first = subscriptions.resubscribe(failed, |_, _, ()| Ok((8, ()))).expect("subscribed");
        assert_eq!(first.iter().map(|(id, inner, _)| (*id, *inner)).collect::<Vec<_>>(), vec![(id, 8)]);
        // That attempt's flush failed; the next one must subscribe again.
        let next = link.next_generation();
        let again = subscriptions.resubscribe(next, |_, _, ()| Ok((9, ()))).expect("subscribed");
        assert_eq!(again.len(), 1, "subscribed on the next connection too");
        assert!(subscriptions.resubscribe(next, |_, _, ()| Ok((10, ()))).expect("none").is_empty(), "once per attempt");
        assert_eq!(subscriptions.remove(id), Some((next, 9)));
        assert!(subscriptions.closed_since(&again).contains(&9), "released once closed");
    }

    #[test]
    fn the_publish_buffer_is_bounded_and_ordered() {
        let mut buffer = PublishBuffer::default();
        buffer.push("a", None, &[("k", "v")], &[1; 100], 400).expect("room");
        buffer.push("b", Some("r"), &[], &[2; 100], 400).expect("room");
        let held = buffer.bytes();
        let error = buffer.push("c", None, &[], &[3; 200], 400).expect_err("past the bound");
        assert!(matches!(error, ClientError::ReconnectBufferFull { limit_bytes: 400, .. }));
        assert_eq!(buffer.bytes(), held, "nothing held for a refused publish");
        assert!(buffer.push("bad subject", None, &[], b"", 400).is_err());
        let mut sent = Vec::new();
        buffer
            .send_all(|publish| {
                sent.push((publish.subject.clone(), publish.headers().len()));
                Ok(())
            })
            .expect("sent");
        assert_eq!(sent, vec![("a".to_owned(), 1), ("b".to_owned(), 0)]);
        assert_eq!(buffer.bytes(), 0);
    }
}
