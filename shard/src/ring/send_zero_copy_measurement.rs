//! A measurement, not a check: `SEND_ZC` against `SEND` over loopback TCP, on
//! a ring built like the shard's, at several sizes (issue 10: "`SEND_ZC` for
//! large payloads only if measured faster above some size"). Run with
//!
//!   cargo test -p flit-shard --release --lib -- --ignored send_zero_copy --nocapture
//!
//! It prints one line per size and variant: throughput and the sending
//! thread's CPU time per byte. The result and the decision are in
//! docs/DESIGN.md ("Zero-copy sends").
//!
//! Both variants keep one send in flight (as a shard does per connection);
//! a zero-copy send's buffer is only reused read-only (the same `Bytes` for
//! every send), and every notification is drained before the buffer goes.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::{cqueue, opcode, types, IoUring};

const BYTES_PER_RUN: usize = 1 << 30;

fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0, "clock_gettime");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Sends BYTES_PER_RUN in sends of `size`; returns (GB/s, sender CPU ns per KiB).
fn run(size: usize, zero_copy: bool) -> (f64, f64) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sender = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (mut receiver, _) = listener.accept().expect("accept");
    let reader = std::thread::spawn(move || {
        let mut chunk = vec![0u8; 1 << 20];
        let mut total = 0;
        while total < BYTES_PER_RUN {
            match receiver.read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => total += read,
                Err(error) => panic!("read: {error}"),
            }
        }
        total
    });
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(64)
        .expect("io_uring");
    let data = Bytes::from(vec![0x5au8; size]);
    let mut sent = 0usize;
    let mut notifications_owed = 0usize;
    let started = Instant::now();
    let cpu_started = thread_cpu_time();
    while sent < BYTES_PER_RUN {
        let length = size.min(BYTES_PER_RUN - sent) as u32;
        let entry = if zero_copy {
            opcode::SendZc::new(types::Fd(sender.as_raw_fd()), data.as_ptr(), length).build()
        } else {
            opcode::Send::new(types::Fd(sender.as_raw_fd()), data.as_ptr(), length).build()
        };
        // SAFETY: the entry points into `data`, which lives until after the
        // loop below has drained every completion and notification.
        unsafe { ring.submission().push(&entry.user_data(1)).expect("room") };
        ring.submit_and_wait(1).expect("submit");
        let mut completed = false;
        while !completed {
            for entry in ring.completion() {
                let flags = entry.flags();
                if cqueue::notif(flags) {
                    notifications_owed -= 1;
                    continue;
                }
                assert!(entry.result() > 0, "send failed: {}", entry.result());
                sent += entry.result() as usize;
                if zero_copy && cqueue::more(flags) {
                    notifications_owed += 1;
                }
                completed = true;
            }
            if !completed {
                ring.submit_and_wait(1).expect("wait");
            }
        }
    }
    while notifications_owed > 0 {
        ring.submit_and_wait(1).expect("wait for notifications");
        for entry in ring.completion() {
            if cqueue::notif(entry.flags()) {
                notifications_owed -= 1;
            }
        }
    }
    let cpu = thread_cpu_time() - cpu_started;
    drop(sender);
    let received = reader.join().expect("reader");
    let elapsed = started.elapsed();
    assert_eq!(received, BYTES_PER_RUN);
    let gigabytes_per_second = BYTES_PER_RUN as f64 / elapsed.as_secs_f64() / 1e9;
    let cpu_nanos_per_kib = cpu.as_nanos() as f64 / (BYTES_PER_RUN as f64 / 1024.0);
    (gigabytes_per_second, cpu_nanos_per_kib)
}

#[test]
#[ignore = "a measurement: run it by name with --ignored --nocapture, in release"]
fn send_zero_copy_against_send_over_loopback() {
    println!("size B | variant | GB/s | sender cpu ns / KiB");
    for size in [4096, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024] {
        for _round in 0..3 {
            for zero_copy in [false, true] {
                let (rate, cpu) = run(size, zero_copy);
                let variant = if zero_copy { "SEND_ZC" } else { "SEND" };
                println!("{size} | {variant} | {rate:.2} | {cpu:.0}");
            }
        }
    }
}
