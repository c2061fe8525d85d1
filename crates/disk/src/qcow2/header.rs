//! The qcow2 header and its extensions: parsing with bounds, and writing a fresh image.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::util::{be32, be64};
use crate::DiskError;

pub(crate) const MAGIC: &[u8; 4] = b"QFI\xfb";
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
const EXT_DATA_FILE: u32 = 0x4441_5441;
const EXT_ENCRYPTION: u32 = 0x0537_BE77;
/// Incompatible feature bits.
pub(crate) const INCOMPAT_DIRTY: u64 = 1 << 0;
pub(crate) const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Limits on tables read from a header (QEMU uses the same orders of magnitude).
const MAX_L1_BYTES: u64 = 32 << 20;
const MAX_RT_BYTES: u64 = 64 << 20;
/// The cluster size of images we create.
pub(crate) const CREATE_CLUSTER_BITS: u32 = 16;

/// A parsed qcow2 header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u64,
    pub l1_offset: u64,
    pub rt_offset: u64,
    pub rt_clusters: u64,
    pub nb_snapshots: u32,
    pub incompatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
}

fn corrupt(msg: impl Into<String>) -> DiskError {
    DiskError::Corrupt(msg.into())
}

impl Header {
    /// Reads and checks the header of `file`.
    pub(crate) fn read(file: &File) -> Result<Header, DiskError> {
        let file_len = file.metadata()?.len();
        let mut b = vec![0u8; 4096.min(file_len as usize)];
        file.read_exact_at(&mut b, 0)?;
        if b.len() < 72 || &b[0..4] != MAGIC {
            return Err(corrupt("the qcow2 header is missing or truncated"));
        }
        let version = be32(&b, 4);
        if version != 2 && version != 3 {
            return Err(DiskError::Unsupported(format!("qcow2 version {version}")));
        }
        let cluster_bits = be32(&b, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(corrupt(format!("the qcow2 cluster size 2^{cluster_bits} is invalid")));
        }
        let cs = 1u64 << cluster_bits;
        // The header, its extensions and the backing file name live in the first cluster.
        let mut b = vec![0u8; cs.min(file_len) as usize];
        file.read_exact_at(&mut b, 0)?;
        let crypt = be32(&b, 32);
        if crypt != 0 {
            return Err(DiskError::Unsupported("encrypted qcow2 images".into()));
        }
        let mut h = Header {
            version,
            cluster_bits,
            size: be64(&b, 24),
            l1_size: u64::from(be32(&b, 36)),
            l1_offset: be64(&b, 40),
            rt_offset: be64(&b, 48),
            rt_clusters: u64::from(be32(&b, 56)),
            nb_snapshots: be32(&b, 60),
            incompatible: 0,
            autoclear: 0,
            refcount_order: 4,
            backing_file: None,
            backing_format: None,
        };
        let mut ext_start = 72usize;
        let mut compression_type = 0u8;
        if version == 3 {
            if b.len() < 104 {
                return Err(corrupt("the qcow2 v3 header is truncated"));
            }
            h.incompatible = be64(&b, 72);
            h.autoclear = be64(&b, 88);
            h.refcount_order = be32(&b, 96);
            let header_length = be32(&b, 100) as usize;
            if header_length < 104 || header_length > b.len() {
                return Err(corrupt(format!("the qcow2 header length {header_length} is invalid")));
            }
            if header_length > 104 {
                compression_type = b[104];
            }
            ext_start = header_length;
        }
        let known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION;
        if h.incompatible & INCOMPAT_DATA_FILE != 0 {
            return Err(DiskError::Unsupported("qcow2 images with an external data file".into()));
        }
        if h.incompatible & INCOMPAT_EXTL2 != 0 {
            return Err(DiskError::Unsupported("qcow2 images with extended L2 entries (subclusters)".into()));
        }
        if h.incompatible & !known != 0 {
            return Err(DiskError::Unsupported(format!(
                "qcow2 incompatible feature bits {:#x}",
                h.incompatible & !known
            )));
        }
        if compression_type != 0 {
            return Err(DiskError::Unsupported("zstd-compressed qcow2 images".into()));
        }
        if h.refcount_order > 6 {
            return Err(corrupt(format!("the qcow2 refcount order {} is invalid", h.refcount_order)));
        }
        // Extensions: type, length, data padded to 8 bytes, until type 0.
        let mut at = ext_start;
        while at + 8 <= b.len() {
            let kind = be32(&b, at);
            let len = be32(&b, at + 4) as usize;
            at += 8;
            if kind == 0 {
                break;
            }
            let end = at
                .checked_add(len)
                .filter(|&e| e <= b.len())
                .ok_or_else(|| corrupt("a qcow2 header extension runs past the first cluster"))?;
            match kind {
                EXT_BACKING_FORMAT => {
                    h.backing_format = Some(String::from_utf8_lossy(&b[at..end]).into_owned());
                }
                EXT_DATA_FILE => {
                    return Err(DiskError::Unsupported("qcow2 images with an external data file".into()))
                }
                EXT_ENCRYPTION => return Err(DiskError::Unsupported("encrypted qcow2 images".into())),
                _ => {}
            }
            at = end.div_ceil(8) * 8;
        }
        let bf_offset = be64(&b, 8);
        let bf_size = u64::from(be32(&b, 16));
        if bf_offset != 0 && bf_size != 0 {
            if bf_size > 1023 || bf_offset.saturating_add(bf_size) > b.len() as u64 {
                return Err(corrupt("the qcow2 backing file name is too long or outside the first cluster"));
            }
            let name = &b[bf_offset as usize..(bf_offset + bf_size) as usize];
            h.backing_file = Some(
                String::from_utf8(name.to_vec())
                    .map_err(|_| corrupt("the qcow2 backing file name is not UTF-8"))?,
            );
        }
        // Table geometry.
        let l2_entries = cs / 8;
        let covered = u128::from(h.l1_size) * u128::from(l2_entries) * u128::from(cs);
        if h.size > (1 << 60) || u128::from(h.size) > covered {
            return Err(corrupt(format!(
                "the qcow2 L1 table ({} entries) cannot map the {}-byte disk",
                h.l1_size, h.size
            )));
        }
        if h.l1_size * 8 > MAX_L1_BYTES || h.rt_clusters * cs > MAX_RT_BYTES || h.rt_clusters == 0 {
            return Err(corrupt("the qcow2 L1 or refcount table size is out of bounds"));
        }
        if !h.l1_offset.is_multiple_of(cs) || !h.rt_offset.is_multiple_of(cs) || h.rt_offset == 0 {
            return Err(corrupt("a qcow2 table offset is not aligned to a cluster"));
        }
        Ok(h)
    }

    pub(crate) fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
}

/// Writes a new, empty qcow2 v3 image of `size` bytes into `file` (which must be empty), with
/// an optional backing file name and format.
pub(crate) fn create(file: &File, size: u64, backing: Option<(&str, &str)>) -> Result<(), DiskError> {
    let cluster_bits = CREATE_CLUSTER_BITS;
    let cs = 1u64 << cluster_bits;
    let l2_entries = cs / 8;
    let l1_size = size.div_ceil(cs * l2_entries).max(1);
    let l1_clusters = (l1_size * 8).div_ceil(cs);
    let total = 3 + l1_clusters;
    if l1_size * 8 > MAX_L1_BYTES || !size.is_multiple_of(crate::SECTOR_SIZE) {
        return Err(DiskError::Unsupported(format!("a qcow2 overlay of {size} bytes")));
    }
    let mut h = vec![0u8; cs as usize];
    let put32 = |h: &mut Vec<u8>, at: usize, v: u32| h[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let put64 = |h: &mut Vec<u8>, at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_be_bytes());
    h[0..4].copy_from_slice(MAGIC);
    put32(&mut h, 4, 3);
    put32(&mut h, 20, cluster_bits);
    put64(&mut h, 24, size);
    put32(&mut h, 36, l1_size as u32);
    put64(&mut h, 40, 3 * cs);
    put64(&mut h, 48, cs);
    put32(&mut h, 56, 1);
    put32(&mut h, 96, 4);
    put32(&mut h, 100, 112);
    let mut at = 112usize;
    if let Some((name, fmt)) = backing {
        if name.len() > 1023 || fmt.len() > 64 {
            return Err(DiskError::Unsupported("a backing file name longer than 1023 bytes".into()));
        }
        put32(&mut h, at, EXT_BACKING_FORMAT);
        put32(&mut h, at + 4, fmt.len() as u32);
        h[at + 8..at + 8 + fmt.len()].copy_from_slice(fmt.as_bytes());
        at += 8 + fmt.len().div_ceil(8) * 8;
        at += 8; // end of extensions
        put64(&mut h, 8, at as u64);
        put32(&mut h, 16, name.len() as u32);
        h[at..at + name.len()].copy_from_slice(name.as_bytes());
    }
    file.write_all_at(&h, 0)?;
    let mut rt = vec![0u8; cs as usize];
    rt[0..8].copy_from_slice(&(2 * cs).to_be_bytes());
    file.write_all_at(&rt, cs)?;
    let mut rb = vec![0u8; cs as usize];
    for i in 0..total as usize {
        rb[i * 2..i * 2 + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    file.write_all_at(&rb, 2 * cs)?;
    file.write_all_at(&vec![0u8; (l1_clusters * cs) as usize], 3 * cs)?;
    file.sync_all()?;
    Ok(())
}
