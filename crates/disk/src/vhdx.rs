//! Hyper-V VHDX images, read only: fixed and dynamic. Two checksummed headers (the newer valid
//! one wins), a region table locating the BAT and the metadata, and a BAT of payload blocks with
//! sector-bitmap entries interleaved every `chunk ratio` blocks.

use std::fs::File;
use std::path::Path;

use crate::util::{bounded_vec, crc32c, le16, le32, le64, open_locked, pieces, read_exact};
use crate::{check_range, BlockDevice, DiskError, OpenOptions, SECTOR_SIZE};

const MIB: u64 = 1 << 20;
const BAT_GUID: &str = "2DC27766-F623-4200-9D64-115E9BFD4A08";
const METADATA_GUID: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
const FILE_PARAMETERS: &str = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
const VIRTUAL_DISK_SIZE: &str = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
const LOGICAL_SECTOR_SIZE: &str = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";
const KNOWN_METADATA: [&str; 5] = [
    FILE_PARAMETERS,
    VIRTUAL_DISK_SIZE,
    LOGICAL_SECTOR_SIZE,
    "BECA12AB-B2E6-4523-93EF-C309E000C746", // virtual disk id
    "CDA348C7-445D-4471-9CC9-E9885251C556", // physical sector size
];
const PAYLOAD_FULLY_PRESENT: u64 = 6;
const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;
/// BATs larger than this (in entries) are refused as hostile.
const MAX_BAT_ENTRIES: u64 = 1 << 24;

fn corrupt(msg: impl Into<String>) -> DiskError {
    DiskError::Corrupt(msg.into())
}

/// The on-disk bytes of a GUID written in its usual text form (mixed-endian, as Windows stores it).
fn guid(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| (c as char).to_digit(16).unwrap_or(0) as u8)
        .collect();
    let mut b = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate().take(16) {
        b[i] = pair[0] << 4 | pair.get(1).copied().unwrap_or(0);
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// An open VHDX image.
pub struct VhdxImage {
    file: File,
    size: u64,
    block_size: u64,
    chunk_ratio: u64,
    bat: Vec<u64>,
    fixed: bool,
}

fn read_header(file: &File, at: u64) -> Result<Option<(u64, [u8; 4096])>, DiskError> {
    let mut h = [0u8; 4096];
    read_exact(file, &mut h, at, "a VHDX header")?;
    if &h[0..4] != b"head" {
        return Ok(None);
    }
    let sum = le32(&h, 4);
    h[4..8].fill(0);
    if crc32c(&h) != sum {
        return Ok(None);
    }
    Ok(Some((le64(&h, 8), h)))
}

impl VhdxImage {
    /// Opens the VHDX image at `path`; writing is not supported.
    pub fn open(path: &Path, options: OpenOptions) -> Result<Self, DiskError> {
        if !options.read_only {
            return Err(DiskError::Unsupported(
                "writing to VHDX images; use --snapshot or an overlay to run from one".into(),
            ));
        }
        let file = open_locked(path, true, options.force_share)?;
        let file_len = file.metadata()?.len();
        let mut ident = [0u8; 8];
        read_exact(&file, &mut ident, 0, "the VHDX file identifier")?;
        if &ident != b"vhdxfile" {
            return Err(corrupt("the VHDX file identifier is missing"));
        }
        let h1 = read_header(&file, 64 * 1024)?;
        let h2 = read_header(&file, 128 * 1024)?;
        let header = match (h1, h2) {
            (Some(a), Some(b)) => {
                if a.0 >= b.0 {
                    a.1
                } else {
                    b.1
                }
            }
            (Some(a), None) | (None, Some(a)) => a.1,
            (None, None) => return Err(corrupt("neither VHDX header is valid")),
        };
        if header[48..64].iter().any(|&b| b != 0) {
            return Err(corrupt(
                "the VHDX log holds updates that must be replayed first; open the image once with Hyper-V \
                 or run `qemu-img check -r all` on it",
            ));
        }
        if le16(&header, 66) != 1 {
            return Err(DiskError::Unsupported(format!("VHDX version {}", le16(&header, 66))));
        }
        // The region table: try the first copy, then the second.
        let mut regions = None;
        for at in [192 * 1024u64, 256 * 1024] {
            let mut r = vec![0u8; 64 * 1024];
            read_exact(&file, &mut r, at, "the VHDX region table")?;
            let sum = le32(&r, 4);
            r[4..8].fill(0);
            if &r[0..4] == b"regi" && crc32c(&r) == sum {
                regions = Some(r);
                break;
            }
        }
        let r = regions.ok_or_else(|| corrupt("neither VHDX region table is valid"))?;
        let count = le32(&r, 8) as usize;
        if count > 2047 {
            return Err(corrupt("the VHDX region table claims too many entries"));
        }
        let (mut bat_region, mut meta_region) = (None, None);
        for i in 0..count {
            let e = &r[16 + i * 32..16 + (i + 1) * 32];
            let offset = le64(e, 16);
            let len = u64::from(le32(e, 24));
            let required = le32(e, 28) & 1 != 0;
            if offset < MIB || !offset.is_multiple_of(MIB) || offset.saturating_add(len) > file_len {
                return Err(corrupt("a VHDX region lies outside the file"));
            }
            if e[0..16] == guid(BAT_GUID) {
                bat_region = Some((offset, len));
            } else if e[0..16] == guid(METADATA_GUID) {
                meta_region = Some((offset, len));
            } else if required {
                return Err(DiskError::Unsupported("a VHDX region this reader does not know".into()));
            }
        }
        let (bat_at, bat_len) = bat_region.ok_or_else(|| corrupt("the VHDX has no BAT region"))?;
        let (meta_at, meta_len) = meta_region.ok_or_else(|| corrupt("the VHDX has no metadata region"))?;
        if !(64 * 1024..=MIB).contains(&meta_len) {
            return Err(corrupt("the VHDX metadata region has an invalid size"));
        }
        let mut m = vec![0u8; meta_len as usize];
        read_exact(&file, &mut m, meta_at, "the VHDX metadata")?;
        if &m[0..8] != b"metadata" {
            return Err(corrupt("the VHDX metadata table signature is missing"));
        }
        let count = usize::from(le16(&m, 10));
        if count > 2047 {
            return Err(corrupt("the VHDX metadata table claims too many entries"));
        }
        let item = |id: &str, want: usize| -> Result<Option<&[u8]>, DiskError> {
            for i in 0..count {
                let e = &m[32 + i * 32..32 + (i + 1) * 32];
                if e[0..16] == guid(id) {
                    let off = le32(e, 16) as usize;
                    let len = le32(e, 20) as usize;
                    if len < want || off.saturating_add(len) > m.len() {
                        return Err(corrupt("a VHDX metadata item lies outside its region"));
                    }
                    return Ok(Some(&m[off..off + want]));
                }
            }
            Ok(None)
        };
        for i in 0..count {
            let e = &m[32 + i * 32..32 + (i + 1) * 32];
            let required = le32(e, 24) & 4 != 0;
            if required && !KNOWN_METADATA.iter().any(|k| e[0..16] == guid(k)) {
                return Err(DiskError::Unsupported(
                    "differencing VHDX images or other required metadata this reader does not know".into(),
                ));
            }
        }
        let params = item(FILE_PARAMETERS, 8)?.ok_or_else(|| corrupt("the VHDX has no file parameters"))?;
        let block_size = u64::from(le32(params, 0));
        let flags = le32(params, 4);
        if flags & 2 != 0 {
            return Err(DiskError::Unsupported("differencing VHDX images (with a parent)".into()));
        }
        let size = le64(item(VIRTUAL_DISK_SIZE, 8)?.ok_or_else(|| corrupt("the VHDX has no disk size"))?, 0);
        let sector = u64::from(le32(
            item(LOGICAL_SECTOR_SIZE, 4)?.ok_or_else(|| corrupt("the VHDX has no sector size"))?,
            0,
        ));
        if !block_size.is_power_of_two() || !(MIB..=256 * MIB).contains(&block_size) {
            return Err(corrupt(format!("the VHDX block size {block_size} is invalid")));
        }
        if sector != 512 && sector != 4096 {
            return Err(corrupt(format!("the VHDX logical sector size {sector} is invalid")));
        }
        if size > 64 << 40 || !size.is_multiple_of(sector) {
            return Err(corrupt(format!("the VHDX disk size {size} is invalid")));
        }
        let chunk_ratio = ((1u64 << 23) * sector) / block_size;
        let blocks = size.div_ceil(block_size);
        let entries = if blocks == 0 { 0 } else { blocks + (blocks - 1) / chunk_ratio };
        if entries * 8 > bat_len {
            return Err(corrupt("the VHDX BAT region is too small for the disk"));
        }
        let mut bytes = bounded_vec::<u8>(entries * 8, MAX_BAT_ENTRIES * 8, "the VHDX BAT")?;
        read_exact(&file, &mut bytes, bat_at, "the VHDX BAT")?;
        let bat = bytes.chunks_exact(8).map(|c| le64(c, 0)).collect();
        Ok(VhdxImage {
            file,
            size: size / SECTOR_SIZE * SECTOR_SIZE,
            block_size,
            chunk_ratio,
            bat,
            fixed: flags & 1 != 0,
        })
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

    fn entry(&self, block: u64) -> u64 {
        let i = block + block / self.chunk_ratio;
        self.bat.get(i as usize).copied().unwrap_or(0)
    }

    /// Bytes of guest data in present blocks.
    pub fn allocated_bytes(&self) -> u64 {
        let blocks = self.size.div_ceil(self.block_size);
        let present = (0..blocks).filter(|&b| self.entry(b) & 7 == PAYLOAD_FULLY_PRESENT).count() as u64;
        (present * self.block_size).min(self.size)
    }
}

impl BlockDevice for VhdxImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        check_range(offset, buf.len(), self.size)?;
        for p in pieces(offset, buf.len(), self.block_size) {
            let out = &mut buf[p.buf];
            let e = self.entry(p.unit);
            match e & 7 {
                PAYLOAD_FULLY_PRESENT => {
                    let at = (e >> 20) << 20;
                    if at < MIB {
                        return Err(corrupt(format!("VHDX block {} points into the header area", p.unit)));
                    }
                    read_exact(&self.file, out, at + p.within, "VHDX data")?;
                }
                PAYLOAD_PARTIALLY_PRESENT => {
                    return Err(DiskError::Unsupported("partially present VHDX blocks (differencing)".into()))
                }
                _ => out.fill(0),
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_mixed_endian() {
        let g = guid(BAT_GUID);
        assert_eq!(&g[0..4], &[0x66, 0x77, 0xC2, 0x2D]);
        assert_eq!(&g[8..10], &[0x9D, 0x64]);
    }
}
