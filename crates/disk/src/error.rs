//! Disk errors, each a sentence that says what went wrong and what to do.

use std::path::PathBuf;

/// What can go wrong with a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image file could not be opened.
    #[error("cannot open disk image {path}: {source}. Check the path and its permissions")]
    Open { path: PathBuf, source: std::io::Error },
    /// Another process holds the image's lock.
    #[error("disk image {0} is in use by another process (it holds a lock on it); stop that process or use --snapshot")]
    Locked(PathBuf),
    /// A request reaches past the end of the disk.
    #[error("a request of {len} bytes at offset {offset} passes the end of the {size}-byte disk")]
    OutOfRange { offset: u64, len: usize, size: u64 },
    /// A write reached a read-only image.
    #[error("the disk image is read-only")]
    ReadOnly,
    /// The host failed an I/O operation.
    #[error("disk I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The image is malformed.
    #[error("the disk image is damaged or not of the expected format: {0}")]
    Corrupt(String),
    /// The image uses a feature we do not implement.
    #[error(
        "the disk image uses {0}, which chr-vmm does not support; convert it with `qemu-img convert -O raw`"
    )]
    Unsupported(String),
}
