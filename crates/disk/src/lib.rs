//! Disk images behind one block trait.
//!
//! virtio-blk sees only [`BlockDevice`]: byte-addressed reads and writes of whole sectors, a
//! flush that returns once data and metadata are durable, and the image's virtual size. The
//! format is detected from the file's content by [`open`], never from its name.

mod error;
mod raw;

pub use error::DiskError;
pub use raw::RawImage;

use std::path::Path;

/// The sector size every request is expressed in.
pub const SECTOR_SIZE: u64 = 512;

/// A disk image as the guest's block device sees it.
///
/// Methods take `&self` so that several requests can be in flight; formats lock internally.
pub trait BlockDevice: Send + Sync {
    /// The virtual size in bytes (a multiple of [`SECTOR_SIZE`]).
    fn size(&self) -> u64;
    /// Fills `buf` from virtual byte `offset`. Fails when the range passes the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError>;
    /// Writes `buf` at virtual byte `offset`. Fails on a read-only image or past the end.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError>;
    /// Returns once every completed write is durable (data before the metadata pointing to it).
    fn flush(&self) -> Result<(), DiskError>;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// A short format name for logs and `chr-vmm info` ("raw", "vmdk", ...).
    fn format(&self) -> &'static str;
}

/// How to open an image.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Refuse guest writes and open the file read-only.
    pub read_only: bool,
}

/// Checks that `[offset, offset + len)` lies inside a device of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<(), DiskError> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DiskError::OutOfRange { offset, len, size }),
    }
}

/// Opens the image at `path`, detecting its format from its content.
pub fn open(path: &Path, options: OpenOptions) -> Result<Box<dyn BlockDevice>, DiskError> {
    Ok(Box::new(RawImage::open(path, options)?))
}
