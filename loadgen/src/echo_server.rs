//! The latency floor: a raw TCP echo server that flit and nats-server are both
//! compared to.
//!
//! It does the least a server can do with a message, read the bytes and write
//! them back, so the round trip it gives the load generator is TCP over
//! loopback plus the cost of waiting, nothing else. A router's latency means
//! something only next to this number, measured in the same minutes: the floor
//! on the VMs we use moves between ~7.6 and ~11 us (docs in PLATFORM.md).
//!
//! How the server waits is most of the round trip on these machines, so there
//! are two floors, one for each kind of server:
//! - [`EchoIdle::Park`]: a thread per connection, blocked in `read`. Each message
//!   wakes a sleeping thread, across cores an inter-processor interrupt (about
//!   45 of a ~52 us round trip here). The floor for a server that sleeps.
//! - [`EchoIdle::Spin`]: one thread that never sleeps, polling a non-blocking
//!   listener and every connection's `read`. Nothing is woken, so this is the
//!   floor for a server that spins (~7.6 us here), such as flit's shards.
//!
//! # Invariants
//! - Each connection gets back exactly the bytes it sent, in order.
//! - Spin: a connection with unsent bytes is not read until they are sent, so
//!   at most `READ_BYTES_MAX` bytes wait per connection, and a client that does
//!   not read is held back by TCP instead of growing the server's memory.
//! - At most `CONNECTIONS_MAX` connections at once; others are closed on accept.
//!
//! # Shutdown
//! [`run`] serves until the process is killed. [`serve`] (for tests) returns
//! once its `stop` flag is set: spin checks it on every pass; park checks it
//! after each accept, so connect once to wake it. A park connection's thread
//! ends when its client closes.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;

/// The most bytes read (and so echoed) in one `read`.
const READ_BYTES_MAX: usize = 64 * 1024;
/// The most connections served at once.
const CONNECTIONS_MAX: usize = 1024;
/// Spin: passes over the connections between two non-blocking accepts while
/// some are open, so an idle listener costs a syscall every 64 passes rather
/// than on every one.
const ACCEPT_EVERY_PASSES: u32 = 64;
const _: () = assert!(ACCEPT_EVERY_PASSES > 0);

/// How the echo server waits for bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EchoIdle {
    /// A thread per connection, blocked in `read` (woken by the kernel).
    Park,
    /// One thread busy-polling every socket (never sleeps; burns its core).
    Spin,
}

/// Binds `listen`, prints `echo-server ready listen=IP:PORT` on stdout and
/// echoes until the process is killed. `cpu`: pin the serving threads there.
pub fn run(listen: SocketAddr, idle: EchoIdle, cpu: Option<usize>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("echo server: cannot listen on {listen}"))?;
    let local = listener.local_addr().context("echo server: no local address")?;
    // Pinning here too, so that a bad `cpu` fails before the ready line.
    pin(cpu)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "echo-server ready listen={local}")?;
    stdout.flush()?;
    drop(stdout);
    serve(listener, idle, cpu, Arc::new(AtomicBool::new(false)))
}

/// Echoes every connection `listener` accepts until `stop` is set (see the module's Shutdown).
fn serve(listener: TcpListener, idle: EchoIdle, cpu: Option<usize>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    pin(cpu)?;
    match idle {
        EchoIdle::Park => serve_parked(listener, cpu, &stop),
        EchoIdle::Spin => serve_spinning(listener, &stop),
    }
}

fn pin(cpu: Option<usize>) -> anyhow::Result<()> {
    if let Some(id) = cpu {
        anyhow::ensure!(core_affinity::set_for_current(core_affinity::CoreId { id }), "cannot pin to CPU {id}");
    }
    Ok(())
}

/// Errors after which a server goes on: the connection being accepted went away, or a signal interrupted.
fn is_transient(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted)
}

fn serve_parked(listener: TcpListener, cpu: Option<usize>, stop: &AtomicBool) -> anyhow::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) if is_transient(&error) => continue,
            Err(error) => return Err(error).context("echo server: accept failed"),
        };
        if open.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            continue; // Dropping the stream closes it.
        }
        open.fetch_add(1, Ordering::Relaxed);
        let open = Arc::clone(&open);
        std::thread::Builder::new()
            .name("echo-park".to_owned())
            .spawn(move || {
                // `serve` already pinned this process to `cpu`, so this cannot fail in a way worth reporting.
                let _ = pin(cpu);
                // A reset or failed connection only ends its own thread.
                let _ = echo_blocking(stream);
                open.fetch_sub(1, Ordering::Relaxed);
            })
            .context("echo server: cannot start a connection thread")?;
    }
    Ok(())
}

fn echo_blocking(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer = vec![0; READ_BYTES_MAX];
    loop {
        let length = match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(length) => length,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        stream.write_all(&buffer[..length])?;
    }
}

/// A spin-mode connection and what it has read but not yet written back.
struct Connection {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Connection {
    /// Sends what is pending, else reads once and echoes it; `false` once the connection is closed or broken.
    fn echo(&mut self, buffer: &mut [u8]) -> bool {
        debug_assert!(self.pending.len() <= READ_BYTES_MAX);
        if !self.pending.is_empty() {
            match write_some(&mut self.stream, &self.pending) {
                Ok(written) => drop(self.pending.drain(..written)),
                Err(_) => return false,
            }
            if !self.pending.is_empty() {
                return true; // The client is not reading: neither do we.
            }
        }
        let length = match self.stream.read(buffer) {
            Ok(0) => return false,
            Ok(length) => length,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return true,
            Err(_) => return false,
        };
        match write_some(&mut self.stream, &buffer[..length]) {
            Ok(written) => {
                self.pending.extend_from_slice(&buffer[written..length]);
                true
            }
            Err(_) => false,
        }
    }
}

/// Writes as much of `bytes` as the socket takes without blocking.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(length) => written += length,
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(written)
}

fn serve_spinning(listener: TcpListener, stop: &AtomicBool) -> anyhow::Result<()> {
    listener.set_nonblocking(true).context("echo server: cannot make the listener non-blocking")?;
    let mut connections: Vec<Connection> = Vec::with_capacity(CONNECTIONS_MAX);
    let mut buffer = vec![0; READ_BYTES_MAX];
    let mut passes_until_accept: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        if connections.is_empty() || passes_until_accept == 0 {
            accept_waiting(&listener, &mut connections)?;
            passes_until_accept = ACCEPT_EVERY_PASSES;
        }
        passes_until_accept -= 1;
        connections.retain_mut(|connection| connection.echo(&mut buffer));
    }
    Ok(())
}

/// Accepts every connection waiting on the non-blocking `listener`.
fn accept_waiting(listener: &TcpListener, connections: &mut Vec<Connection>) -> anyhow::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(error) if is_transient(&error) => continue,
            Err(error) => return Err(error).context("echo server: accept failed"),
        };
        let configured = stream.set_nonblocking(true).and_then(|()| stream.set_nodelay(true));
        // Over the limit, or a socket that cannot be configured: dropping it closes it.
        if connections.len() < CONNECTIONS_MAX && configured.is_ok() {
            connections.push(Connection { stream, pending: Vec::new() });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::*;

    /// A server on an ephemeral loopback port, stopped (and its thread joined) by `stop`.
    struct Server {
        address: SocketAddr,
        stop: Arc<AtomicBool>,
        thread: JoinHandle<anyhow::Result<()>>,
    }

    fn start(idle: EchoIdle, cpu: Option<usize>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || serve(listener, idle, cpu, flag));
        Server { address, stop, thread }
    }

    impl Server {
        fn stop(self) {
            self.stop.store(true, Ordering::Relaxed);
            // Wakes a parked accept; a spinning server may already be gone, so this may fail.
            let _ = TcpStream::connect(self.address);
            self.thread.join().unwrap().unwrap();
        }
    }

    fn connect(address: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    }

    fn echoes_three_messages(idle: EchoIdle, cpu: Option<usize>) {
        let server = start(idle, cpu);
        let mut client = connect(server.address);
        for message in [&b"one"[..], b"\r\n\0binary\xff", &[7u8; 1000]] {
            client.write_all(message).unwrap();
            let mut echoed = vec![0; message.len()];
            client.read_exact(&mut echoed).unwrap();
            assert_eq!(echoed, message);
        }
        drop(client);
        server.stop();
    }

    #[test]
    fn park_echoes_three_messages() {
        echoes_three_messages(EchoIdle::Park, None);
    }

    #[test]
    fn spin_echoes_three_messages() {
        echoes_three_messages(EchoIdle::Spin, None);
    }

    #[test]
    fn pinned_to_cpu_0_echoes_in_both_modes() {
        echoes_three_messages(EchoIdle::Park, Some(0));
        echoes_three_messages(EchoIdle::Spin, Some(0));
    }

    /// 8 MiB sent while the client does not read for a while fills both socket
    /// buffers, so the server's writes come up short and it must keep the rest pending.
    fn echoes_more_than_the_socket_buffers_hold(idle: EchoIdle) {
        let server = start(idle, None);
        let client = connect(server.address);
        let sent: Vec<u8> = (0..8 * 1024 * 1024).map(|index: u32| (index % 251) as u8).collect();
        let mut writer = client.try_clone().unwrap();
        let expected = sent.clone();
        let writing = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        std::thread::sleep(Duration::from_millis(200)); // Lets the buffers fill up.
        let mut reader = client;
        let mut echoed = vec![0; expected.len()];
        reader.read_exact(&mut echoed).unwrap();
        writing.join().unwrap();
        assert!(echoed == expected, "the echo differs from what was sent");
        drop(reader);
        server.stop();
    }

    #[test]
    fn park_echoes_more_than_the_socket_buffers_hold() {
        echoes_more_than_the_socket_buffers_hold(EchoIdle::Park);
    }

    #[test]
    fn spin_keeps_short_writes_pending_and_echoes_everything_in_order() {
        echoes_more_than_the_socket_buffers_hold(EchoIdle::Spin);
    }

    #[test]
    fn spin_serves_several_connections_at_once() {
        let server = start(EchoIdle::Spin, None);
        let mut clients: Vec<TcpStream> = (0..4).map(|_| connect(server.address)).collect();
        for round in 0..3u8 {
            for (index, client) in clients.iter_mut().enumerate() {
                client.write_all(&[round, index as u8]).unwrap();
            }
            for (index, client) in clients.iter_mut().enumerate() {
                let mut echoed = [0; 2];
                client.read_exact(&mut echoed).unwrap();
                assert_eq!(echoed, [round, index as u8]);
            }
        }
        drop(clients);
        server.stop();
    }
}
