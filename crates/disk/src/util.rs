//! Little helpers shared by the format drivers: field decoding, request splitting, file reads.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use crate::DiskError;

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_le_bytes(a)
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_be_bytes(a)
}

pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// One piece of a request that falls inside a single allocation unit.
pub(crate) struct Piece {
    /// Index of the unit (grain, cluster, block).
    pub unit: u64,
    /// Byte offset inside the unit.
    pub within: u64,
    /// The part of the caller's buffer this piece covers.
    pub buf: Range<usize>,
}

/// Splits `[offset, offset + len)` at multiples of `unit` (a non-zero size).
pub(crate) fn pieces(offset: u64, len: usize, unit: u64) -> impl Iterator<Item = Piece> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let pos = offset + done as u64;
        let within = pos % unit;
        let take = ((unit - within) as usize).min(len - done);
        let piece = Piece { unit: pos / unit, within, buf: done..done + take };
        done += take;
        Some(piece)
    })
}

/// Reads exactly `buf.len()` bytes at `offset` or fails with a message naming `what`.
pub(crate) fn read_exact(file: &File, buf: &mut [u8], offset: u64, what: &str) -> Result<(), DiskError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DiskError::Corrupt(format!("{what} at byte {offset} lies past the end of the file"))
        } else {
            DiskError::Io(e)
        }
    })
}

/// Allocates a zeroed buffer of `len` bytes after checking it against `limit`.
pub(crate) fn bounded_vec<T: Clone + Default>(len: u64, limit: u64, what: &str) -> Result<Vec<T>, DiskError> {
    if len > limit {
        return Err(DiskError::Corrupt(format!(
            "{what} claims {len} entries, more than the {limit} this reader accepts"
        )));
    }
    Ok(vec![T::default(); len as usize])
}

/// Opens `path` for reading (and writing unless `read_only`) and takes its advisory lock
/// (unless `force_share`).
pub(crate) fn open_locked(
    path: &std::path::Path,
    read_only: bool,
    force_share: bool,
) -> Result<File, DiskError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|source| DiskError::Open { path: path.to_path_buf(), source })?;
    if !force_share {
        crate::raw::lock_file(&file, path, !read_only)?;
    }
    Ok(file)
}

/// `fdatasync` on a file.
pub(crate) fn sync(file: &File) -> Result<(), DiskError> {
    file.sync_data()?;
    Ok(())
}

/// CRC-32C (Castagnoli), as VHDX uses for its headers and tables.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_units() {
        let v: Vec<_> = pieces(1000, 2000, 1024).map(|p| (p.unit, p.within, p.buf)).collect();
        assert_eq!(v, vec![(0, 1000, 0..24), (1, 0, 24..1048), (2, 0, 1048..2000)]);
    }

    #[test]
    fn crc32c_known_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
