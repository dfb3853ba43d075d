//! # A fault-injecting, in-memory disk for tests
//!
//! [`FaultDisk`] implements [`Disk`] the way a power loss sees a real one:
//! every file has a **durable** image and a **current** (page cache) image.
//! Writes, truncations and allocations change the current image and are
//! remembered as pending operations; `sync_data` makes them durable. File
//! creations and removals change the current namespace only; they become
//! durable with `sync_directory`.
//!
//! [`FaultDisk::crash`] simulates a power loss, deterministically from a
//! seed: either every pending operation is dropped, or a random subset of
//! them reaches the disk (in order, any of them possibly skipped, as page
//! writeback is unordered) with the last kept write torn at a random byte.
//! Afterwards every handle is closed and the current images are the
//! durable ones.
//!
//! Injection: the next write, sync or allocation fails with `Full` or
//! `Failed` ([`FaultDisk::inject`]); a capacity in bytes after which writes
//! are short and then `Full` and allocations `Full`; random short writes;
//! [`FaultDisk::flip_bit`] in durable data (a media error).
//!
//! ## Invariants
//! - Only `sync_data` and `crash` change a durable image; only
//!   `sync_directory` and `crash` change the durable namespace.
//! - The same seed and the same calls give the same results.
//!
//! ## Shutdown
//! Dropping it drops everything; there is nothing to flush.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskError, FileId};

/// A small deterministic generator (SplitMix64), so the crate needs no
/// random-number dependency and a seed reproduces a run everywhere.
#[derive(Clone, Debug)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// Which operation an injected fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Write,
    Sync,
    Allocate,
}

/// Which error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// ENOSPC.
    Full,
    /// EIO.
    Failed,
}

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLength(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
}

/// What a crash did, for test messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashSummary {
    pub operations_kept: usize,
    pub operations_dropped: usize,
    pub torn: bool,
}

/// The in-memory disk. See the module header.
#[derive(Debug)]
pub struct FaultDisk {
    inodes: HashMap<u64, Inode>,
    current_names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    handles: HashMap<FileId, u64>,
    next_inode: u64,
    next_handle: u64,
    injected: HashMap<Operation, Fault>,
    capacity_bytes: Option<u64>,
    short_writes: bool,
    random: SeededRandom,
    /// Counters for tests: calls that reached the disk.
    pub writes: u64,
    pub syncs: u64,
}

impl FaultDisk {
    pub fn new(seed: u64) -> FaultDisk {
        FaultDisk {
            inodes: HashMap::new(),
            current_names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            handles: HashMap::new(),
            next_inode: 0,
            next_handle: 0,
            injected: HashMap::new(),
            capacity_bytes: None,
            short_writes: false,
            random: SeededRandom::new(seed),
            writes: 0,
            syncs: 0,
        }
    }

    /// The next `operation` fails with `fault` (once).
    pub fn inject(&mut self, operation: Operation, fault: Fault) {
        self.injected.insert(operation, fault);
    }

    /// Removes a pending injection.
    pub fn clear_injection(&mut self, operation: Operation) {
        self.injected.remove(&operation);
    }

    /// Total bytes files may hold; `None`: unlimited.
    pub fn set_capacity_bytes(&mut self, capacity_bytes: Option<u64>) {
        self.capacity_bytes = capacity_bytes;
    }

    /// When on, a quarter of the writes write a random shorter prefix.
    pub fn set_short_writes(&mut self, enabled: bool) {
        self.short_writes = enabled;
    }

    /// Bytes held by the files in the current namespace.
    pub fn used_bytes(&self) -> u64 {
        let mut live: Vec<u64> = self.current_names.values().copied().collect();
        live.sort_unstable();
        live.dedup();
        live.iter().map(|inode| self.inodes.get(inode).map_or(0, |node| node.current.len() as u64)).sum()
    }

    /// The durable bytes of `path` (None when the durable namespace lacks it).
    pub fn durable_contents(&self, path: &Path) -> Option<&[u8]> {
        let inode = self.durable_names.get(path)?;
        self.inodes.get(inode).map(|node| node.durable.as_slice())
    }

    /// Paths in the durable namespace.
    pub fn durable_paths(&self) -> Vec<PathBuf> {
        self.durable_names.keys().cloned().collect()
    }

    /// Flips one bit of durable (and current) data: a media error.
    pub fn flip_bit(&mut self, path: &Path, offset: u64, bit: u8) -> Result<(), DiskError> {
        let inode = *self.durable_names.get(path).ok_or_else(|| DiskError::NotFound(path.display().to_string()))?;
        let node = self.inodes.get_mut(&inode).ok_or_else(|| DiskError::NotFound(path.display().to_string()))?;
        let at = offset as usize;
        let mask = 1u8 << (bit % 8);
        let byte = node.durable.get_mut(at).ok_or_else(|| DiskError::Failed(format!("offset {offset} past end")))?;
        *byte ^= mask;
        if let Some(byte) = node.current.get_mut(at) {
            *byte ^= mask;
        }
        Ok(())
    }

    /// Power loss. Unsynced operations are dropped, or (half of the time)
    /// a random subset of them is kept with the last kept write torn.
    pub fn crash(&mut self) -> CrashSummary {
        let mut summary = CrashSummary::default();
        let keep_some = self.random.chance(1, 2);
        let mut inode_ids: Vec<u64> = self.inodes.keys().copied().collect();
        inode_ids.sort_unstable();
        for id in inode_ids {
            let Some(mut node) = self.inodes.remove(&id) else { continue };
            let pending = std::mem::take(&mut node.pending);
            let kept: Vec<bool> = pending.iter().map(|_| keep_some && self.random.chance(1, 2)).collect();
            let last_kept_write = pending
                .iter()
                .zip(&kept)
                .rposition(|(operation, keep)| *keep && matches!(operation, Pending::Write { .. }));
            for (index, operation) in pending.into_iter().enumerate() {
                if !kept[index] {
                    summary.operations_dropped += 1;
                    continue;
                }
                summary.operations_kept += 1;
                match operation {
                    Pending::Write { offset, mut data } => {
                        if Some(index) == last_kept_write && !data.is_empty() {
                            let length = self.random.below(data.len() as u64 + 1) as usize;
                            summary.torn = length < data.len();
                            data.truncate(length);
                        }
                        apply_write(&mut node.durable, offset, &data);
                    }
                    Pending::SetLength(length) => node.durable.resize(length as usize, 0),
                }
            }
            node.current = node.durable.clone();
            self.inodes.insert(id, node);
        }
        self.current_names = self.durable_names.clone();
        self.handles.clear();
        let live: std::collections::HashSet<u64> = self.current_names.values().copied().collect();
        self.inodes.retain(|id, _| live.contains(id));
        self.injected.clear();
        summary
    }

    fn take_fault(&mut self, operation: Operation, context: &str) -> Result<(), DiskError> {
        match self.injected.remove(&operation) {
            Some(Fault::Full) => Err(DiskError::Full(format!("injected: {context}"))),
            Some(Fault::Failed) => Err(DiskError::Failed(format!("injected: {context}"))),
            None => Ok(()),
        }
    }

    fn node(&mut self, file: FileId) -> Result<&mut Inode, DiskError> {
        let inode = *self.handles.get(&file).ok_or(DiskError::UnknownFile(file))?;
        self.inodes.get_mut(&inode).ok_or(DiskError::UnknownFile(file))
    }

    /// Bytes the capacity still allows (u64::MAX when unlimited).
    fn space_left(&self) -> u64 {
        match self.capacity_bytes {
            Some(capacity) => capacity.saturating_sub(self.used_bytes()),
            None => u64::MAX,
        }
    }
}

fn apply_write(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

impl Disk for FaultDisk {
    fn create_directory(&mut self, _directory: &Path) -> Result<(), DiskError> {
        // Directories are not modelled: they always exist and are durable.
        Ok(())
    }

    fn list(&mut self, directory: &Path) -> Result<Vec<String>, DiskError> {
        let names = self
            .current_names
            .keys()
            .filter(|path| path.parent() == Some(directory))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
            .collect();
        Ok(names)
    }

    fn open(&mut self, path: &Path, create: bool) -> Result<FileId, DiskError> {
        let inode = match self.current_names.get(path) {
            Some(inode) => *inode,
            None if create => {
                let inode = self.next_inode;
                self.next_inode += 1;
                self.inodes.insert(inode, Inode::default());
                self.current_names.insert(path.to_path_buf(), inode);
                inode
            }
            None => return Err(DiskError::NotFound(path.display().to_string())),
        };
        let handle = FileId(self.next_handle);
        self.next_handle += 1;
        self.handles.insert(handle, inode);
        Ok(handle)
    }

    fn length(&mut self, file: FileId) -> Result<u64, DiskError> {
        Ok(self.node(file)?.current.len() as u64)
    }

    fn allocate(&mut self, file: FileId, length: u64) -> Result<(), DiskError> {
        self.take_fault(Operation::Allocate, "allocate")?;
        let current = self.node(file)?.current.len() as u64;
        if length <= current {
            return Ok(());
        }
        if length - current > self.space_left() {
            return Err(DiskError::Full("capacity reached (allocate)".to_string()));
        }
        let node = self.node(file)?;
        node.current.resize(length as usize, 0);
        node.pending.push(Pending::SetLength(length));
        Ok(())
    }

    fn read_at(&mut self, file: FileId, offset: u64, buffer: &mut [u8]) -> Result<usize, DiskError> {
        let node = self.node(file)?;
        let start = (offset as usize).min(node.current.len());
        let count = buffer.len().min(node.current.len() - start);
        buffer[..count].copy_from_slice(&node.current[start..start + count]);
        Ok(count)
    }

    fn write_at(&mut self, file: FileId, offset: u64, data: &[u8]) -> Result<usize, DiskError> {
        self.take_fault(Operation::Write, "write")?;
        let mut count = data.len();
        if self.short_writes && count > 1 && self.random.chance(1, 4) {
            count = 1 + self.random.below(count as u64 - 1) as usize;
        }
        let current = self.node(file)?.current.len() as u64;
        let growth = (offset + count as u64).saturating_sub(current);
        let space = self.space_left();
        if growth > space {
            // Like a real ENOSPC: a short write first, then the error.
            let fits = (current + space).saturating_sub(offset) as usize;
            if fits == 0 {
                return Err(DiskError::Full("capacity reached (write)".to_string()));
            }
            count = count.min(fits);
        }
        self.writes += 1;
        let node = self.node(file)?;
        apply_write(&mut node.current, offset, &data[..count]);
        node.pending.push(Pending::Write { offset, data: data[..count].to_vec() });
        Ok(count)
    }

    fn sync_data(&mut self, file: FileId) -> Result<(), DiskError> {
        self.take_fault(Operation::Sync, "fdatasync")?;
        self.syncs += 1;
        let node = self.node(file)?;
        for operation in std::mem::take(&mut node.pending) {
            match operation {
                Pending::Write { offset, data } => apply_write(&mut node.durable, offset, &data),
                Pending::SetLength(length) => node.durable.resize(length as usize, 0),
            }
        }
        debug_assert_eq!(node.durable, node.current);
        Ok(())
    }

    fn truncate(&mut self, file: FileId, length: u64) -> Result<(), DiskError> {
        let node = self.node(file)?;
        node.current.resize(length as usize, 0);
        node.pending.push(Pending::SetLength(length));
        Ok(())
    }

    fn close(&mut self, file: FileId) {
        self.handles.remove(&file);
    }

    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        self.current_names.remove(path).map(|_| ()).ok_or_else(|| DiskError::NotFound(path.display().to_string()))
    }

    fn sync_directory(&mut self, directory: &Path) -> Result<(), DiskError> {
        self.durable_names.retain(|path, _| path.parent() != Some(directory));
        for (path, inode) in &self.current_names {
            if path.parent() == Some(directory) {
                self.durable_names.insert(path.clone(), *inode);
            }
        }
        Ok(())
    }
}
