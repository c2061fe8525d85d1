//! Disk images behind one block trait.
//!
//! virtio-blk sees only [`BlockDevice`]: byte-addressed reads and writes of whole sectors, a
//! flush that returns once data and metadata are durable, and the image's virtual size. The
//! format is detected from the file's content by [`open`], never from its name.
//!
//! Formats: raw, VMDK (sparse, stream-optimized, flat; embedded or separate descriptor), qcow2
//! (with a backing file of any of these formats), VDI and VHDX. [`OpenOptions::snapshot`] puts a
//! private overlay in front of a read-only base; [`open_with_overlay`] keeps writes in a qcow2
//! overlay file that it creates on first use. [`info()`] describes an image like `qemu-img info`.
//!
//! Crash safety: sparse formats write new data first and the tables that point to it only at
//! [`BlockDevice::flush`] (or on drop), each layer synced before the next, so a killed VMM leaves
//! an image with leaked space at most.
//!
//! What the binary calls:
//! - `chr-vmm run DISK`: `open(path, OpenOptions::default())`;
//!   `--snapshot`: `open(path, OpenOptions { snapshot: true, ..Default::default() })`;
//!   `--overlay FILE`: `open_with_overlay(base, overlay, OpenOptions::default())`.
//! - `chr-vmm info [--json] DISK`: `info(path)?`, printed with `Display` or `to_json()`.
//!
//! Detection trusts the file's first bytes. A guest that owns a raw disk can write a qcow2 header
//! into it; whoever opens such a disk again should pass [`OpenOptions::format`]
//! (`Some(Format::Raw)`), as QEMU users pass `format=raw`.

mod detect;
mod error;
mod info;
mod overlay;
pub mod qcow2;
mod raw;
mod util;
mod vdi;
mod vhdx;
mod vmdk;

pub use detect::{detect_format, Format};
pub use error::DiskError;
pub use info::{info, ImageInfo};
pub use overlay::{create_overlay, open_with_overlay};
pub use raw::RawImage;

use std::path::Path;

/// The sector size every request is expressed in.
pub const SECTOR_SIZE: u64 = 512;

/// How deep a chain of backing files may go before we call it a loop.
pub const MAX_BACKING_DEPTH: usize = 16;

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
    /// Open the image read-only and send writes to a private temporary overlay (an unlinked
    /// qcow2 file in `$TMPDIR`) that disappears when the device is dropped; the image stays
    /// byte-identical. Ignored together with `read_only`.
    pub snapshot: bool,
    /// Skip content detection and open the image as this format (for images whose first sector
    /// the guest controls, where detection could be fooled).
    pub format: Option<Format>,
    /// Take no advisory lock (like `qemu-img -U`): for inspecting an image another process uses.
    /// Only sensible together with `read_only`.
    pub force_share: bool,
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
    if options.snapshot && !options.read_only {
        let base = open(
            path,
            OpenOptions {
                read_only: true,
                snapshot: false,
                format: options.format,
                force_share: options.force_share,
            },
        )?;
        return overlay::snapshot(base);
    }
    open_depth(path, options, 0)
}

/// Opens `path` as one link of a backing chain `depth` links below the top.
pub(crate) fn open_depth(
    path: &Path,
    options: OpenOptions,
    depth: usize,
) -> Result<Box<dyn BlockDevice>, DiskError> {
    if depth > MAX_BACKING_DEPTH {
        return Err(DiskError::Corrupt(format!(
            "the backing chain is deeper than {MAX_BACKING_DEPTH} images at {}; it probably loops",
            path.display()
        )));
    }
    let format = match options.format {
        Some(f) => f,
        None => detect_format(path)?,
    };
    Ok(match format {
        Format::Raw => Box::new(RawImage::open(path, options)?),
        Format::Vmdk => Box::new(vmdk::VmdkImage::open(path, options)?),
        Format::Qcow2 => Box::new(qcow2::Qcow2Image::open(path, options, depth)?),
        Format::Vdi => Box::new(vdi::VdiImage::open(path, options)?),
        Format::Vhdx => Box::new(vhdx::VhdxImage::open(path, options)?),
    })
}
