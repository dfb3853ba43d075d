//! A provided-buffer ring: memory the kernel fills with received bytes.
//!
//! Multishot receives (`RECV` with `IORING_RECV_MULTISHOT` and buffer
//! selection) need no buffer per socket: when bytes arrive on any socket, the
//! kernel takes the next free buffer from this ring, copies into it, and
//! names it in the completion. The shard copies the bytes out into the
//! connection's read buffer at once and gives the buffer back, so a buffer is
//! lent to the kernel, or to the shard for the length of one copy, never to
//! routed messages (see docs/DESIGN.md for why the copy stays).
//!
//! Ownership, the whole safety argument:
//! - `entries` (the ring the kernel reads buffer addresses from) and `memory`
//!   (the buffers) are allocated here, page-aligned, and never move.
//! - A buffer is the kernel's from the moment its entry is published (the tail
//!   store with `Release`) until a completion names it; then it is ours until
//!   [`ProvidedBuffers::give_back`] publishes it again. Between the two the
//!   kernel neither reads nor writes it, so [`ProvidedBuffers::received`] may
//!   hand out a shared slice of it.
//! - The memory is freed only after the ring is unregistered (the kernel then
//!   selects nothing from it again), or never: when unregistering fails the
//!   memory is leaked on purpose rather than freed under the kernel.
//!
//! Invariants: `count` is a power of two; every buffer id is `< count`; each
//! id is published at most once between two completions that name it.
#![allow(unsafe_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Alignment the kernel requires for a user-allocated buffer ring.
const PAGE_BYTES: usize = 4096;

pub struct ProvidedBuffers {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    memory: NonNull<u8>,
    memory_layout: Layout,
    count: u16,
    buffer_bytes: u32,
    /// Our copy of the tail: entries published so far (wrapping).
    tail: u16,
    group: u16,
    /// Registered with a ring (and not yet unregistered).
    registered: bool,
}

impl std::fmt::Debug for ProvidedBuffers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProvidedBuffers")
            .field("count", &self.count)
            .field("buffer_bytes", &self.buffer_bytes)
            .field("group", &self.group)
            .finish()
    }
}

impl ProvidedBuffers {
    /// Allocates `count` buffers of `buffer_bytes` each and registers them
    /// with `ring` as buffer group `group`, every buffer published.
    pub fn register(ring: &IoUring, group: u16, count: u16, buffer_bytes: u32) -> io::Result<ProvidedBuffers> {
        assert!(count.is_power_of_two(), "the kernel wants a power of two");
        let invalid = |_| io::Error::from(io::ErrorKind::InvalidInput);
        let entries_layout =
            Layout::from_size_align(usize::from(count) * std::mem::size_of::<BufRingEntry>(), PAGE_BYTES)
                .map_err(invalid)?;
        let memory_layout =
            Layout::from_size_align(usize::from(count) * buffer_bytes as usize, PAGE_BYTES).map_err(invalid)?;
        // SAFETY: both layouts have a non-zero size (count >= 1, buffer_bytes
        // checked by the caller's constants) and a valid alignment.
        let (entries, memory) = unsafe { (alloc_zeroed(entries_layout), alloc_zeroed(memory_layout)) };
        let (Some(entries), Some(memory)) = (NonNull::new(entries.cast::<BufRingEntry>()), NonNull::new(memory)) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        // The kernel takes buffers in ring order, so traffic would touch
        // every page of them over time: touch them now, so the shard's
        // memory is fixed from startup instead of creeping up under load.
        // SAFETY: `memory` holds `memory_layout.size()` bytes, just allocated.
        unsafe { std::ptr::write_bytes(memory.as_ptr(), 0, memory_layout.size()) };
        let mut buffers = ProvidedBuffers {
            entries,
            entries_layout,
            memory,
            memory_layout,
            count,
            buffer_bytes,
            tail: 0,
            group,
            registered: false,
        };
        // SAFETY: `entries` is page-aligned, zeroed, holds `count` entries and
        // lives until after the ring is unregistered (Drop); the kernel reads
        // buffer addresses from it, which all point into `memory`.
        unsafe { ring.submitter().register_buf_ring_with_flags(entries.as_ptr() as u64, count, group, 0)? };
        buffers.registered = true;
        for id in 0..count {
            buffers.publish(id);
        }
        Ok(buffers)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// The `length` bytes the kernel received into buffer `id`, which a
    /// completion just named. Give the buffer back once they are copied.
    pub fn received(&self, id: u16, length: usize) -> &[u8] {
        assert!(id < self.count && length <= self.buffer_bytes as usize, "the kernel names its own buffers");
        // SAFETY: buffer `id` lies inside `memory` (checked above); a
        // completion named it, so the kernel is done writing it and will not
        // touch it before `give_back(id)`, which needs `&mut self` and so
        // cannot happen while this slice is borrowed.
        unsafe {
            let start = self.memory.as_ptr().add(usize::from(id) * self.buffer_bytes as usize);
            std::slice::from_raw_parts(start, length)
        }
    }

    /// Returns buffer `id` to the kernel.
    pub fn give_back(&mut self, id: u16) {
        assert!(id < self.count, "the kernel names its own buffers");
        self.publish(id);
    }

    fn publish(&mut self, id: u16) {
        let mask = self.count - 1;
        let slot = usize::from(self.tail & mask);
        let address = self.memory.as_ptr() as u64 + u64::from(id) * u64::from(self.buffer_bytes);
        // SAFETY: `slot < count`, so the entry lies inside `entries`. The
        // kernel reads an entry only once the tail has moved past it, and the
        // tail still excludes this slot: writing it races with nothing.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(address);
        entry.set_len(self.buffer_bytes);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the `resv` field of the first entry, a u16 the
        // kernel reads concurrently; an atomic store with Release makes the
        // entry written above visible before the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()).cast_mut();
            (*tail.cast::<AtomicU16>()).store(self.tail, Ordering::Release);
        }
    }

    /// Unregisters the buffers from `ring`; afterwards the kernel selects
    /// none of them again. Called by the ring before it is dropped.
    pub fn unregister(&mut self, ring: &IoUring) {
        if self.registered && ring.submitter().unregister_buf_ring(self.group).is_ok() {
            self.registered = false;
        }
    }
}

impl Drop for ProvidedBuffers {
    fn drop(&mut self) {
        if self.registered {
            // The kernel may still hold these addresses: leaking a few
            // megabytes at shutdown is safe, freeing them is not.
            return;
        }
        // SAFETY: allocated in `register` with these layouts, unregistered
        // (the kernel no longer reads or writes them), freed once.
        unsafe {
            dealloc(self.entries.as_ptr().cast::<u8>(), self.entries_layout);
            dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}
