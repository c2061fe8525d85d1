//! Hyper-V VHDX images, read only: fixed and dynamic.

use std::path::Path;

use crate::{BlockDevice, DiskError, OpenOptions};

/// An open VHDX image.
pub struct VhdxImage {
    size: u64,
    block_size: u64,
    fixed: bool,
}

impl VhdxImage {
    /// Opens the VHDX image at `path`.
    pub fn open(_path: &Path, _options: OpenOptions) -> Result<Self, DiskError> {
        Err(DiskError::Unsupported("VHDX images (not yet)".into()))
    }

    /// "fixed" or "dynamic".
    pub fn subformat(&self) -> &'static str {
        if self.fixed {
            "fixed"
        } else {
            "dynamic"
        }
    }

    /// The payload block size.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Bytes of guest data in present blocks.
    pub fn allocated_bytes(&self) -> u64 {
        0
    }
}

impl BlockDevice for VhdxImage {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> Result<(), DiskError> {
        Err(DiskError::Unsupported("VHDX images (not yet)".into()))
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<(), DiskError> {
        Err(DiskError::ReadOnly)
    }
    fn flush(&self) -> Result<(), DiskError> {
        Ok(())
    }
    fn read_only(&self) -> bool {
        true
    }
    fn format(&self) -> &'static str {
        "vhdx"
    }
}
