//! A TCP proxy that injects network faults, for the cluster failure tests
//! (std threads only: one accept thread, then per connection one thread to
//! set it up, and per direction a reader and a writer).
//!
//! Put one in front of every node's route listener (the node advertises the
//! proxy's address with `--cluster-advertise`, seeds name proxies): every
//! lane *into* that node then passes through its proxy, so a proxy per node
//! controls both directions between any two nodes. Faults:
//!
//! - **forward** (the default), with an optional [`FaultProxy::delay`]
//!   before each chunk is passed on;
//! - **blackhole**: connections stay open, no byte moves either way, and
//!   neither end sees an EOF or a reset: a hung host, or a network dropping
//!   every packet. Bytes already read are held, not thrown away, and flow on
//!   in order after [`FaultProxy::heal`], as TCP retransmission would deliver
//!   them (discarding them would corrupt the stream, which no network does);
//!   an end closed meanwhile is seen closed after the heal. New connections
//!   are accepted and held the same way;
//! - **cut**: every current connection is shut down both ways (both ends see
//!   it end at once) and new ones are accepted and closed (refused), until
//!   the heal.
//!
//! A fault applies to every connection, or (`*_from`) only to connections
//! dialed by given nodes: a proxy made with [`FaultProxy::for_routes`] reads
//! the route Hello a dialer sends first and records its node id. So
//! partitioning {A} from {B, C} is: A's proxy blackholed, and B's and C's
//! proxies blackholed for connections from A.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Blackhole,
    Cut,
}

#[derive(Clone, Debug)]
struct Rules {
    fault: Fault,
    /// None: the fault applies to every connection; else to those dialed by
    /// these node ids.
    only_from: Option<Vec<u32>>,
    delay: Duration,
}

impl Rules {
    fn faulty(&self, from_node: Option<u32>) -> Fault {
        match &self.only_from {
            Some(nodes) if !from_node.is_some_and(|node| nodes.contains(&node)) => Fault::None,
            _ => self.fault,
        }
    }
}

/// A connection's two sockets (clones), so a cut can shut them down.
struct Link {
    from_node: Option<u32>,
    inbound: TcpStream,
    outbound: TcpStream,
}

impl Link {
    fn shut(&self) {
        let _ = self.inbound.shutdown(Shutdown::Both);
        let _ = self.outbound.shutdown(Shutdown::Both);
    }
}

struct Shared {
    target: Mutex<Option<SocketAddr>>,
    rules: Mutex<Rules>,
    /// Signalled whenever the rules change (held bytes may move on).
    changed: Condvar,
    links: Mutex<std::collections::HashMap<u64, Link>>,
    next_link: AtomicU64,
    accepted: AtomicUsize,
    route_aware: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fault-injecting TCP proxy on 127.0.0.1. Its threads live as long as the
/// test process (a test's proxies are few).
pub struct FaultProxy {
    pub address: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A plain TCP proxy (faults apply to every connection). Until
    /// [`FaultProxy::set_target`], connections wait (up to 10 s) for one.
    pub fn new() -> FaultProxy {
        FaultProxy::start(false)
    }

    /// A proxy for a node's route listener: it learns each connection's
    /// dialing node from its route Hello, for the `*_from` faults.
    pub fn for_routes() -> FaultProxy {
        FaultProxy::start(true)
    }

    fn start(route_aware: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target: Mutex::new(None),
            rules: Mutex::new(Rules { fault: Fault::None, only_from: None, delay: Duration::ZERO }),
            changed: Condvar::new(),
            links: Mutex::new(std::collections::HashMap::new()),
            next_link: AtomicU64::new(0),
            accepted: AtomicUsize::new(0),
            route_aware,
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                accepting.accepted.fetch_add(1, Ordering::Relaxed);
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || set_up(&shared, inbound));
            }
        });
        FaultProxy { address, shared }
    }

    /// Where connections go from now on (a restarted node's new port, say).
    pub fn set_target(&self, target: SocketAddr) {
        *lock(&self.shared.target) = Some(target);
    }

    /// Every connection goes silent both ways, open (see the module header).
    pub fn blackhole(&self) {
        self.set_fault(Fault::Blackhole, None);
    }

    /// Connections dialed by these nodes go silent both ways.
    pub fn blackhole_from(&self, nodes: &[u32]) {
        self.set_fault(Fault::Blackhole, Some(nodes.to_vec()));
    }

    /// Every connection is shut down, and new ones refused.
    pub fn cut(&self) {
        self.set_fault(Fault::Cut, None);
    }

    /// Connections dialed by these nodes are shut down, and new ones refused.
    pub fn cut_from(&self, nodes: &[u32]) {
        self.set_fault(Fault::Cut, Some(nodes.to_vec()));
    }

    /// Each chunk read from now on is passed on this long after it was read
    /// (both ways): one-way latency.
    pub fn delay(&self, delay: Duration) {
        lock(&self.shared.rules).delay = delay;
        self.shared.changed.notify_all();
    }

    /// Back to forwarding, without delay: held bytes flow on, and new
    /// connections are forwarded.
    pub fn heal(&self) {
        *lock(&self.shared.rules) = Rules { fault: Fault::None, only_from: None, delay: Duration::ZERO };
        self.shared.changed.notify_all();
    }

    /// Connections accepted since the proxy started (refused ones included).
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections currently forwarded (or held).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.links).len()
    }

    fn set_fault(&self, fault: Fault, only_from: Option<Vec<u32>>) {
        let rules = {
            let mut rules = lock(&self.shared.rules);
            rules.fault = fault;
            rules.only_from = only_from;
            rules.clone()
        };
        if fault == Fault::Cut {
            for link in lock(&self.shared.links).values() {
                if rules.faulty(link.from_node) == Fault::Cut {
                    link.shut();
                }
            }
        }
        self.shared.changed.notify_all();
    }
}

impl Default for FaultProxy {
    fn default() -> FaultProxy {
        FaultProxy::new()
    }
}

/// One accepted connection: learn its dialer (route proxies), connect to the
/// target, start both directions. Dropping `inbound` early refuses it.
fn set_up(shared: &Arc<Shared>, inbound: TcpStream) {
    let rules = lock(&shared.rules).clone();
    if rules.fault == Fault::Cut && rules.only_from.is_none() {
        return; // refused: closed at once
    }
    let (from_node, first_bytes) = if shared.route_aware { read_route_hello(&inbound) } else { (None, Vec::new()) };
    if lock(&shared.rules).faulty(from_node) == Fault::Cut {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let target = loop {
        if let Some(target) = *lock(&shared.target) {
            break target;
        }
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let Ok(outbound) = TcpStream::connect(target) else { return };
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    let clones = (inbound.try_clone(), outbound.try_clone(), inbound.try_clone(), outbound.try_clone());
    let (Ok(inbound_reader), Ok(outbound_writer), Ok(inbound_link), Ok(outbound_link)) = clones else { return };
    let id = shared.next_link.fetch_add(1, Ordering::Relaxed);
    lock(&shared.links).insert(id, Link { from_node, inbound: inbound_link, outbound: outbound_link });
    let backward = Arc::clone(shared);
    std::thread::spawn(move || pump(&backward, id, from_node, outbound, inbound, Vec::new()));
    pump(shared, id, from_node, inbound_reader, outbound_writer, first_bytes);
}

/// Reads the dialer's first frame (bounded: 2 s) and returns its node id if
/// it is a route Hello, with the bytes read (to be forwarded first).
fn read_route_hello(mut inbound: &TcpStream) -> (Option<u32>, Vec<u8>) {
    let limits = flit_wire::Limits::default();
    let mut buffer = Vec::new();
    let _ = inbound.set_read_timeout(Some(Duration::from_secs(2)));
    let mut chunk = [0u8; 4096];
    let node = loop {
        match flit_wire::route::check_route(&buffer, limits.frame_bytes_max()) {
            flit_wire::Check::Complete(length) => {
                let frame = bytes::Bytes::copy_from_slice(&buffer[..length]);
                break match flit_wire::route::decode_route(frame, &limits) {
                    Ok(flit_wire::route::RouteFrame::Hello(hello)) => Some(hello.node_id),
                    _ => None,
                };
            }
            flit_wire::Check::Invalid(_) => break None,
            flit_wire::Check::Incomplete => {}
        }
        match inbound.read(&mut chunk) {
            Ok(0) | Err(_) => break None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let _ = inbound.set_read_timeout(None);
    (node, buffer)
}

/// Copies `from` to `to` under the rules: what is read is held while
/// blackholed, dropped by a cut, else passed on `delay` after it was read
/// (by a writer thread, so a delay is latency, not a throughput limit). An
/// end (EOF, error) ends the whole connection once what was read is written.
fn pump(shared: &Shared, id: u64, from_node: Option<u32>, mut from: TcpStream, mut to: TcpStream, first: Vec<u8>) {
    let (sender, chunks) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (due, chunk) in chunks {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        // The other direction's reader sees the end, and ends the link.
        let _ = to.shutdown(Shutdown::Both);
    });
    let mut chunk = first;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if chunk.is_empty() {
            let read = from.read(&mut buffer).unwrap_or(0);
            chunk = buffer[..read].to_vec();
        }
        // Hold what was read (or the end) while blackholed.
        let delay = {
            let mut rules = lock(&shared.rules);
            while rules.faulty(from_node) == Fault::Blackhole {
                rules = shared.changed.wait(rules).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if rules.faulty(from_node) == Fault::Cut {
                break;
            }
            rules.delay
        };
        if chunk.is_empty() || sender.send((Instant::now() + delay, std::mem::take(&mut chunk))).is_err() {
            break;
        }
    }
    drop(sender);
    let _ = writer.join();
    if let Some(link) = lock(&shared.links).remove(&id) {
        link.shut();
    }
    let _ = from.shutdown(Shutdown::Both);
}
