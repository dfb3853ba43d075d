//! # The disk seam
//!
//! Every file operation of a stream's log goes through [`Disk`], so tests can
//! run the log over [`crate::fault_disk::FaultDisk`] and production over
//! [`FileDisk`]. The shard does the hot-path writes and fsyncs on its ring
//! instead (the log hands it [`crate::log`] requests naming a [`FileId`] and
//! offset); everything else (opening, listing, reading, truncating,
//! removing) goes through this trait.
//!
//! ## Invariants
//! - `write_at` may write less than asked (a short write); callers resume.
//! - Data written is durable only after `sync_data` on that file returned
//!   `Ok`; a file created or removed is durable only after `sync_directory`
//!   on its directory returned `Ok`.
//! - After `sync_data` returned an error, what reached the disk is unknown:
//!   callers must not retry and then trust the file (the log fails closed).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A handle to an open file, valid until [`Disk::close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u64);

/// What can go wrong with a file operation. ENOSPC and EIO are told apart
/// because the log answers them differently (refuse and recover, or fail
/// closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// The file system is full (ENOSPC or EDQUOT). Recoverable: nothing was
    /// acknowledged, and writes may succeed once space returns.
    #[error("disk full: {0}")]
    Full(String),
    /// The device failed (EIO and anything else unexpected). Not recoverable
    /// for the file concerned.
    #[error("disk I/O error: {0}")]
    Failed(String),
    /// The file or directory does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The handle is not open (a bug in the caller).
    #[error("unknown file handle {0:?}")]
    UnknownFile(FileId),
}

impl DiskError {
    /// Classifies an OS error the way the log needs: full, missing, or failed.
    pub fn from_io(error: io::Error, context: &str) -> DiskError {
        let text = format!("{context}: {error}");
        match error.raw_os_error() {
            Some(libc_enospc) if libc_enospc == ENOSPC || libc_enospc == EDQUOT => DiskError::Full(text),
            _ if error.kind() == io::ErrorKind::NotFound => DiskError::NotFound(text),
            _ => DiskError::Failed(text),
        }
    }

    /// Classifies a negative errno from an io_uring completion.
    pub fn from_errno(errno: i32, context: &str) -> DiskError {
        DiskError::from_io(io::Error::from_raw_os_error(errno), context)
    }
}

/// Linux errno values the classification needs (stable ABI numbers; this
/// crate has no libc dependency).
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// The file operations a stream's log needs. Synchronous: production calls
/// them off the hot path (startup, replay reads, segment rolls), and the hot
/// path's writes and fsyncs go through the shard's ring instead.
pub trait Disk {
    /// Creates `directory` and its parents if missing.
    fn create_directory(&mut self, directory: &Path) -> Result<(), DiskError>;
    /// The names (not paths) of the files directly in `directory`, any order.
    fn list(&mut self, directory: &Path) -> Result<Vec<String>, DiskError>;
    /// Opens `path` for reading and writing, creating it when `create`.
    fn open(&mut self, path: &Path, create: bool) -> Result<FileId, DiskError>;
    /// The file's length in bytes.
    fn length(&mut self, file: FileId) -> Result<u64, DiskError>;
    /// Reserves `length` bytes of space from offset 0 (fallocate), so later
    /// writes within it do not fail with ENOSPC and do not change the
    /// file's metadata. Reads of the reserved, unwritten part return zeros.
    fn allocate(&mut self, file: FileId, length: u64) -> Result<(), DiskError>;
    /// Reads up to `buffer.len()` bytes at `offset`; fewer at end of file.
    fn read_at(&mut self, file: FileId, offset: u64, buffer: &mut [u8]) -> Result<usize, DiskError>;
    /// Writes `data` at `offset`; may write fewer bytes (returns how many).
    fn write_at(&mut self, file: FileId, offset: u64, data: &[u8]) -> Result<usize, DiskError>;
    /// fdatasync: everything written to `file` so far becomes durable.
    fn sync_data(&mut self, file: FileId) -> Result<(), DiskError>;
    /// Cuts (or extends with zeros) the file to `length` bytes.
    fn truncate(&mut self, file: FileId, length: u64) -> Result<(), DiskError>;
    /// Closes the handle. Unsynced data stays in the page cache (for
    /// `FaultDisk`: stays unsynced).
    fn close(&mut self, file: FileId);
    /// Removes the file at `path`.
    fn remove(&mut self, path: &Path) -> Result<(), DiskError>;
    /// Makes creations and removals in `directory` durable.
    fn sync_directory(&mut self, directory: &Path) -> Result<(), DiskError>;
}

/// Plain files through `std::fs`.
#[derive(Debug, Default)]
pub struct FileDisk {
    files: HashMap<FileId, File>,
    next_id: u64,
}

impl FileDisk {
    pub fn new() -> FileDisk {
        FileDisk::default()
    }

    /// The open file behind `file`, for a caller that submits its own IO on
    /// the file descriptor (the shard's ring).
    pub fn file(&self, file: FileId) -> Option<&File> {
        self.files.get(&file)
    }

    fn get(&self, file: FileId) -> Result<&File, DiskError> {
        self.files.get(&file).ok_or(DiskError::UnknownFile(file))
    }
}

impl Disk for FileDisk {
    fn create_directory(&mut self, directory: &Path) -> Result<(), DiskError> {
        std::fs::create_dir_all(directory)
            .map_err(|error| DiskError::from_io(error, &format!("create {}", directory.display())))
    }

    fn list(&mut self, directory: &Path) -> Result<Vec<String>, DiskError> {
        let context = || format!("list {}", directory.display());
        let mut names = Vec::new();
        for entry in std::fs::read_dir(directory).map_err(|error| DiskError::from_io(error, &context()))? {
            let entry = entry.map_err(|error| DiskError::from_io(error, &context()))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn open(&mut self, path: &Path, create: bool) -> Result<FileId, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
            .map_err(|error| DiskError::from_io(error, &format!("open {}", path.display())))?;
        let id = FileId(self.next_id);
        self.next_id += 1;
        self.files.insert(id, file);
        Ok(id)
    }

    fn length(&mut self, file: FileId) -> Result<u64, DiskError> {
        let metadata = self.get(file)?.metadata().map_err(|error| DiskError::from_io(error, "stat"))?;
        Ok(metadata.len())
    }

    fn allocate(&mut self, file: FileId, length: u64) -> Result<(), DiskError> {
        // std has no fallocate; set_len makes a sparse file of that length,
        // which reads as zeros. The shard preallocates with fallocate on its
        // own (it has libc); this keeps the seam free of it.
        let handle = self.get(file)?;
        let current = handle.metadata().map_err(|error| DiskError::from_io(error, "stat"))?.len();
        if current < length {
            handle.set_len(length).map_err(|error| DiskError::from_io(error, "allocate"))?;
        }
        Ok(())
    }

    fn read_at(&mut self, file: FileId, offset: u64, buffer: &mut [u8]) -> Result<usize, DiskError> {
        self.get(file)?.read_at(buffer, offset).map_err(|error| DiskError::from_io(error, "read"))
    }

    fn write_at(&mut self, file: FileId, offset: u64, data: &[u8]) -> Result<usize, DiskError> {
        self.get(file)?.write_at(data, offset).map_err(|error| DiskError::from_io(error, "write"))
    }

    fn sync_data(&mut self, file: FileId) -> Result<(), DiskError> {
        self.get(file)?.sync_data().map_err(|error| DiskError::from_io(error, "fdatasync"))
    }

    fn truncate(&mut self, file: FileId, length: u64) -> Result<(), DiskError> {
        self.get(file)?.set_len(length).map_err(|error| DiskError::from_io(error, "truncate"))
    }

    fn close(&mut self, file: FileId) {
        self.files.remove(&file);
    }

    fn remove(&mut self, path: &Path) -> Result<(), DiskError> {
        std::fs::remove_file(path).map_err(|error| DiskError::from_io(error, &format!("remove {}", path.display())))
    }

    fn sync_directory(&mut self, directory: &Path) -> Result<(), DiskError> {
        let handle = File::open(directory)
            .map_err(|error| DiskError::from_io(error, &format!("open {}", directory.display())))?;
        handle.sync_all().map_err(|error| DiskError::from_io(error, &format!("fsync {}", directory.display())))
    }
}

/// `directory/name`, for callers that keep names from [`Disk::list`].
pub fn join(directory: &Path, name: &str) -> PathBuf {
    directory.join(name)
}
