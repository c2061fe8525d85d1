//! A hosted sparse VMDK extent: a `KDMV` header, a grain directory (and its redundant copy) of
//! grain tables, and grains allocated at the end of the file on first write. Stream-optimized
//! extents (deflate-compressed grains behind markers, directory in a footer) are read here too.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::util::{bounded_vec, le16, le32, le64, pieces, read_exact, sync};
use crate::{DiskError, SECTOR_SIZE};

const MAGIC: &[u8; 4] = b"KDMV";
const FLAG_REDUNDANT_GT: u32 = 1 << 1;
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
const GD_AT_END: u64 = u64::MAX;
/// Grain directories larger than this (in entries) are refused as hostile.
const MAX_GD_ENTRIES: u64 = 1 << 22;
/// Clean grain tables kept in memory before the cache is emptied.
const MAX_CACHED_TABLES: usize = 4096;

/// The fields of a sparse extent header that we use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub version: u32,
    pub flags: u32,
    pub capacity: u64,
    pub grain_sectors: u64,
    pub descriptor_offset: u64,
    pub descriptor_size: u64,
    pub gtes_per_gt: u32,
    pub rgd_offset: u64,
    pub gd_offset: u64,
    pub overhead: u64,
    pub compress_algorithm: u16,
}

impl Header {
    /// Decodes the 512-byte header; `None` when the magic is missing.
    pub(crate) fn parse(b: &[u8; 512]) -> Option<Header> {
        if &b[0..4] != MAGIC {
            return None;
        }
        Some(Header {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le64(b, 12),
            grain_sectors: le64(b, 20),
            descriptor_offset: le64(b, 28),
            descriptor_size: le64(b, 36),
            gtes_per_gt: le32(b, 44),
            rgd_offset: le64(b, 48),
            gd_offset: le64(b, 56),
            overhead: le64(b, 64),
            compress_algorithm: le16(b, 77),
        })
    }

    /// Reads and decodes the header at the start of `file`.
    pub(crate) fn read(file: &File) -> Result<Header, DiskError> {
        let mut b = [0u8; 512];
        read_exact(file, &mut b, 0, "the VMDK header")?;
        Header::parse(&b).ok_or_else(|| DiskError::Corrupt("the VMDK sparse extent has no KDMV magic".into()))
    }
}

struct Table {
    entries: Vec<u32>,
    dirty: bool,
}

/// One open sparse extent.
pub(crate) struct SparseExtent {
    file: Arc<File>,
    read_only: bool,
    header: Header,
    grain_bytes: u64,
    gtes: u64,
    gt_sectors: u64,
    gd: Vec<u32>,
    rgd: Option<Vec<u32>>,
    compressed: bool,
    markers: bool,
    zero_grain: bool,
    tables: HashMap<usize, Table>,
    next_free: u64,
    gd_dirty: bool,
    data_dirty: bool,
    last_grain: Option<(u32, Vec<u8>)>,
}

fn corrupt(msg: String) -> DiskError {
    DiskError::Corrupt(msg)
}

impl SparseExtent {
    /// Opens the sparse extent in `file`.
    pub(crate) fn open(file: Arc<File>, read_only: bool) -> Result<Self, DiskError> {
        let file_len = file.metadata()?.len();
        let mut header = Header::read(&file)?;
        if header.gd_offset == GD_AT_END {
            // Stream-optimized: the real header is the footer, one sector before the end marker.
            if file_len < 1024 {
                return Err(corrupt("the stream-optimized VMDK has no footer".into()));
            }
            let mut b = [0u8; 512];
            read_exact(&file, &mut b, file_len - 1024, "the VMDK footer")?;
            header = Header::parse(&b)
                .ok_or_else(|| corrupt("the stream-optimized VMDK footer has no KDMV magic".into()))?;
            if header.gd_offset == GD_AT_END {
                return Err(corrupt("the VMDK footer does not say where the grain directory is".into()));
            }
        }
        if !(1..=3).contains(&header.version) {
            return Err(DiskError::Unsupported(format!("VMDK sparse extents of version {}", header.version)));
        }
        let compressed = header.flags & FLAG_COMPRESSED != 0 || header.compress_algorithm != 0;
        if header.compress_algorithm > 1 {
            return Err(DiskError::Unsupported(format!(
                "VMDK compression algorithm {}",
                header.compress_algorithm
            )));
        }
        if compressed && !read_only {
            return Err(DiskError::Unsupported(
                "writing to a stream-optimized (compressed) VMDK; open it read-only, with --snapshot, or with an overlay".into(),
            ));
        }
        let g = header.grain_sectors;
        if g == 0 || !g.is_power_of_two() || g > 1 << 16 {
            return Err(corrupt(format!("the VMDK grain size of {g} sectors is invalid")));
        }
        let gtes = u64::from(header.gtes_per_gt);
        if gtes == 0 || gtes > 4096 {
            return Err(corrupt(format!("the VMDK grain tables claim {gtes} entries each")));
        }
        let grains = header.capacity.div_ceil(g);
        let gd_len = grains.div_ceil(gtes);
        if header.capacity > (1 << 54) || gd_len > MAX_GD_ENTRIES {
            return Err(corrupt(format!("the VMDK extent claims {} sectors, too many", header.capacity)));
        }
        let read_dir = |offset: u64, what: &str| -> Result<Vec<u32>, DiskError> {
            let at =
                offset.checked_mul(SECTOR_SIZE).ok_or_else(|| corrupt(format!("{what} offset overflows")))?;
            if at.saturating_add(gd_len * 4) > file_len {
                return Err(corrupt(format!("{what} lies past the end of the file")));
            }
            let mut bytes = bounded_vec::<u8>(gd_len * 4, MAX_GD_ENTRIES * 4, what)?;
            read_exact(&file, &mut bytes, at, what)?;
            Ok(bytes.chunks_exact(4).map(|c| le32(c, 0)).collect())
        };
        let gd = read_dir(header.gd_offset, "the VMDK grain directory")?;
        let rgd = if header.flags & FLAG_REDUNDANT_GT != 0 && header.rgd_offset != 0 {
            Some(read_dir(header.rgd_offset, "the redundant VMDK grain directory")?)
        } else {
            None
        };
        let next_free = file_len.div_ceil(SECTOR_SIZE).max(header.overhead);
        Ok(SparseExtent {
            file,
            read_only,
            grain_bytes: g * SECTOR_SIZE,
            gtes,
            gt_sectors: (gtes * 4).div_ceil(SECTOR_SIZE),
            gd,
            rgd,
            compressed,
            markers: header.flags & FLAG_MARKERS != 0,
            zero_grain: header.flags & FLAG_ZERO_GRAIN != 0,
            header,
            tables: HashMap::new(),
            next_free,
            gd_dirty: false,
            data_dirty: false,
            last_grain: None,
        })
    }

    /// The extent's capacity in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.header.capacity * SECTOR_SIZE
    }

    /// The grain size in bytes.
    pub(crate) fn grain_bytes(&self) -> u64 {
        self.grain_bytes
    }

    fn table(&mut self, gdi: usize) -> Result<&mut Table, DiskError> {
        if !self.tables.contains_key(&gdi) {
            if self.tables.len() >= MAX_CACHED_TABLES {
                self.tables.retain(|_, t| t.dirty);
            }
            let sector = u64::from(self.gd[gdi]);
            let mut bytes = vec![0u8; (self.gtes * 4) as usize];
            if sector + self.gt_sectors > self.next_free {
                return Err(corrupt(format!("VMDK grain table {gdi} lies past the end of the file")));
            }
            read_exact(&self.file, &mut bytes, sector * SECTOR_SIZE, "a VMDK grain table")?;
            let entries = bytes.chunks_exact(4).map(|c| le32(c, 0)).collect();
            self.tables.insert(gdi, Table { entries, dirty: false });
        }
        self.tables.get_mut(&gdi).ok_or_else(|| corrupt("VMDK grain table cache lost an entry".into()))
    }

    /// The grain table entry of grain `grain`, 0 when its table is absent.
    fn entry(&mut self, grain: u64) -> Result<u32, DiskError> {
        let gdi = (grain / self.gtes) as usize;
        if gdi >= self.gd.len() || self.gd[gdi] == 0 {
            return Ok(0);
        }
        let idx = (grain % self.gtes) as usize;
        Ok(self.table(gdi)?.entries[idx])
    }

    fn is_zero_entry(&self, e: u32) -> bool {
        e == 0 || (e == 1 && (self.zero_grain || self.header.version >= 2))
    }

    /// Reads `buf` from byte `offset` of the extent (already range-checked).
    pub(crate) fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        for p in pieces(offset, buf.len(), self.grain_bytes) {
            let e = self.entry(p.unit)?;
            let out = &mut buf[p.buf];
            if self.is_zero_entry(e) {
                out.fill(0);
            } else if self.compressed {
                let grain = self.compressed_grain(e)?;
                out.copy_from_slice(&grain[p.within as usize..p.within as usize + out.len()]);
            } else {
                let at = u64::from(e) * SECTOR_SIZE + p.within;
                read_exact(&self.file, out, at, "a VMDK grain")?;
            }
        }
        Ok(())
    }

    /// Decompresses the grain whose marker is at sector `e`, caching the last one.
    fn compressed_grain(&mut self, e: u32) -> Result<&[u8], DiskError> {
        if self.last_grain.as_ref().is_none_or(|(k, _)| *k != e) {
            let at = u64::from(e) * SECTOR_SIZE;
            let limit = self.grain_bytes * 2 + 4096;
            let (data_at, len) = if self.markers {
                let mut m = [0u8; 12];
                read_exact(&self.file, &mut m, at, "a VMDK grain marker")?;
                let size = u64::from(le32(&m, 8));
                if size == 0 || size > limit {
                    return Err(corrupt(format!(
                        "the compressed VMDK grain at sector {e} claims {size} bytes"
                    )));
                }
                (at + 12, size)
            } else {
                (at, limit)
            };
            let file_len = self.file.metadata()?.len();
            let len = len.min(file_len.saturating_sub(data_at));
            let mut packed = vec![0u8; len as usize];
            read_exact(&self.file, &mut packed, data_at, "a compressed VMDK grain")?;
            let mut grain = Vec::with_capacity(self.grain_bytes as usize);
            flate2::read::ZlibDecoder::new(&packed[..])
                .take(self.grain_bytes + 1)
                .read_to_end(&mut grain)
                .map_err(|_| corrupt(format!("the compressed VMDK grain at sector {e} does not inflate")))?;
            if grain.len() as u64 > self.grain_bytes {
                return Err(corrupt(format!(
                    "the compressed VMDK grain at sector {e} inflates past a grain"
                )));
            }
            grain.resize(self.grain_bytes as usize, 0);
            self.last_grain = Some((e, grain));
        }
        match &self.last_grain {
            Some((_, g)) => Ok(g),
            None => Err(corrupt("VMDK grain cache lost its grain".into())),
        }
    }

    /// Takes `sectors` sectors at the end of the file.
    fn allocate(&mut self, sectors: u64) -> Result<u32, DiskError> {
        let at = self.next_free;
        let end = at + sectors;
        let at32 = u32::try_from(at).map_err(|_| {
            DiskError::Unsupported("a sparse VMDK extent larger than 2 TiB of allocated data".into())
        })?;
        if u32::try_from(end).is_err() {
            return Err(DiskError::Unsupported(
                "a sparse VMDK extent larger than 2 TiB of allocated data".into(),
            ));
        }
        self.next_free = end;
        Ok(at32)
    }

    /// Writes `buf` at byte `offset` of the extent (already range-checked), allocating grains.
    pub(crate) fn write(&mut self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        for p in pieces(offset, buf.len(), self.grain_bytes) {
            let data = &buf[p.buf];
            let gdi = (p.unit / self.gtes) as usize;
            let idx = (p.unit % self.gtes) as usize;
            if gdi >= self.gd.len() {
                return Err(corrupt("a write reached past the VMDK grain directory".into()));
            }
            if self.gd[gdi] == 0 {
                self.new_table(gdi)?;
            }
            let e = self.table(gdi)?.entries[idx];
            if self.is_zero_entry(e) {
                let mut grain = vec![0u8; self.grain_bytes as usize];
                grain[p.within as usize..p.within as usize + data.len()].copy_from_slice(data);
                let at = self.allocate(self.grain_bytes / SECTOR_SIZE)?;
                self.file.write_all_at(&grain, u64::from(at) * SECTOR_SIZE)?;
                let t = self.table(gdi)?;
                t.entries[idx] = at;
                t.dirty = true;
            } else {
                let start = u64::from(e);
                if start < self.header.overhead.max(1)
                    || start + self.grain_bytes / SECTOR_SIZE > self.next_free
                {
                    return Err(corrupt(format!(
                        "VMDK grain {} points to sector {start}, outside the data area",
                        p.unit
                    )));
                }
                self.file.write_all_at(data, start * SECTOR_SIZE + p.within)?;
            }
            self.data_dirty = true;
        }
        Ok(())
    }

    /// Allocates an empty grain table (and its redundant copy) for directory entry `gdi`.
    fn new_table(&mut self, gdi: usize) -> Result<(), DiskError> {
        let at = self.allocate(self.gt_sectors)?;
        let zeros = vec![0u8; (self.gt_sectors * SECTOR_SIZE) as usize];
        self.file.write_all_at(&zeros, u64::from(at) * SECTOR_SIZE)?;
        self.gd[gdi] = at;
        if self.rgd.is_some() {
            let rat = self.allocate(self.gt_sectors)?;
            self.file.write_all_at(&zeros, u64::from(rat) * SECTOR_SIZE)?;
            if let Some(rgd) = self.rgd.as_mut() {
                rgd[gdi] = rat;
            }
        }
        self.tables.insert(gdi, Table { entries: vec![0; self.gtes as usize], dirty: true });
        self.gd_dirty = true;
        Ok(())
    }

    /// Makes written data durable, then the grain tables, then the directories.
    pub(crate) fn flush(&mut self) -> Result<(), DiskError> {
        if self.read_only {
            return Ok(());
        }
        let dirty_tables = self.tables.values().any(|t| t.dirty);
        if !self.data_dirty && !dirty_tables && !self.gd_dirty {
            return Ok(());
        }
        sync(&self.file)?;
        self.data_dirty = false;
        let mut order: Vec<usize> = self.tables.iter().filter(|(_, t)| t.dirty).map(|(k, _)| *k).collect();
        order.sort_unstable();
        for gdi in order {
            let Some(t) = self.tables.get(&gdi) else { continue };
            let bytes: Vec<u8> = t.entries.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.file.write_all_at(&bytes, u64::from(self.gd[gdi]) * SECTOR_SIZE)?;
            if let Some(rgd) = &self.rgd {
                self.file.write_all_at(&bytes, u64::from(rgd[gdi]) * SECTOR_SIZE)?;
            }
            if let Some(t) = self.tables.get_mut(&gdi) {
                t.dirty = false;
            }
        }
        if dirty_tables {
            sync(&self.file)?;
        }
        if self.gd_dirty {
            let bytes: Vec<u8> = self.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.file.write_all_at(&bytes, self.header.gd_offset * SECTOR_SIZE)?;
            if let Some(rgd) = &self.rgd {
                let bytes: Vec<u8> = rgd.iter().flat_map(|e| e.to_le_bytes()).collect();
                self.file.write_all_at(&bytes, self.header.rgd_offset * SECTOR_SIZE)?;
            }
            sync(&self.file)?;
            self.gd_dirty = false;
        }
        Ok(())
    }

    /// Bytes of guest data allocated in this extent (grains with a table entry).
    pub(crate) fn allocated_grains(&mut self) -> Result<u64, DiskError> {
        let mut n = 0;
        for gdi in 0..self.gd.len() {
            if self.gd[gdi] == 0 {
                continue;
            }
            let zero_grain = self.zero_grain || self.header.version >= 2;
            n +=
                self.table(gdi)?.entries.iter().filter(|&&e| e > 1 || (e == 1 && !zero_grain)).count() as u64;
        }
        Ok(n)
    }
}

impl Drop for SparseExtent {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("flushing a VMDK extent on close failed: {e}");
        }
    }
}
