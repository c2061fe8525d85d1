//! qcow2 images, read and write, with a backing image of any format this crate opens.
//!
//! Why our own code and not the `imago` crate (0.2.6, checked 2026-11-28): imago has a
//! synchronous mode and builds for aarch64, but (1) a qcow2 backing image must be an imago format
//! driver, and imago's VMDK driver reads only flat extents, so the containerlab layout (qcow2 over
//! a sparse `chr.vmdk`) would need our VMDK re-implemented behind imago's mapping-based driver
//! trait; here the backing is any [`BlockDevice`]; (2) imago's `sync` and `async` features are
//! mutually exclusive (a `compile_error!`), so any other crate in the build enabling imago's
//! default features would break ours through feature unification.
//!
//! Writes allocate clusters at the end of the file. Data goes to disk at once; refcount blocks,
//! the refcount table, L2 tables and the L1 table are written at flush, in that order, each
//! layer synced before the next, so a crash leaves leaked clusters at most.

mod header;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::util::{be64, open_locked, pieces, read_exact, sync};
use crate::{check_range, BlockDevice, DiskError, Format, OpenOptions};
pub(crate) use header::create;
use header::{Header, INCOMPAT_CORRUPT, INCOMPAT_DIRTY};

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;
/// Clean L2 tables kept before the cache is emptied.
const MAX_CACHED_L2: usize = 512;

fn corrupt(msg: impl Into<String>) -> DiskError {
    DiskError::Corrupt(msg.into())
}

/// Where one guest cluster's data lives.
enum Map {
    Unallocated,
    Zero,
    Data { offset: u64, copied: bool },
    Compressed { offset: u64, len: u64 },
}

struct L2 {
    entries: Vec<u64>,
    dirty: bool,
}

struct RefBlock {
    counts: Vec<u16>,
    dirty: bool,
}

struct State {
    file: File,
    read_only: bool,
    version: u32,
    cluster_bits: u32,
    cs: u64,
    l2_entries: u64,
    l1: Vec<u64>,
    l1_offset: u64,
    l1_dirty: bool,
    l2: HashMap<u64, L2>,
    rt: Vec<u64>,
    rt_offset: u64,
    rt_dirty: bool,
    /// The refcount table moved: the header must point to it (after it is written).
    rt_moved: bool,
    /// Host clusters of an old refcount table, freed once the header no longer points to them.
    rt_retired: Option<(u64, u64)>,
    refblocks: HashMap<u64, RefBlock>,
    refs_per_block: u64,
    /// Host clusters holding metadata: guest data must never be written there.
    metadata: HashSet<u64>,
    next_free: u64,
    data_dirty: bool,
    backing: Option<Box<dyn BlockDevice>>,
    last_compressed: Option<(u64, Vec<u8>)>,
    /// A private snapshot overlay: nothing needs to survive, so flushes do nothing and the
    /// tables live in memory only.
    volatile: bool,
}

/// An open qcow2 image.
pub struct Qcow2Image {
    state: Mutex<State>,
    size: u64,
    read_only: bool,
    cluster_size: u64,
    backing_file: Option<String>,
    backing_format: Option<String>,
    version: u32,
}

/// Where the backing image comes from.
pub(crate) enum Backing {
    /// Whatever the header names, opened read-only.
    FromHeader { depth: usize },
    /// This device, whatever the header says.
    Device(Box<dyn BlockDevice>),
    /// No backing image at all.
    None,
}

impl Qcow2Image {
    /// Opens the qcow2 image at `path` and its backing chain (`depth` links below the top).
    pub fn open(path: &Path, options: OpenOptions, depth: usize) -> Result<Self, DiskError> {
        let file = open_locked(path, options.read_only, options.force_share)?;
        Self::from_file(file, path, options, Backing::FromHeader { depth })
    }

    /// Opens the image alone, without its backing chain (reads of unallocated clusters give
    /// zeros): for inspection.
    pub fn open_without_backing(path: &Path, options: OpenOptions) -> Result<Self, DiskError> {
        let file = open_locked(path, true, options.force_share)?;
        let options = OpenOptions { read_only: true, ..options };
        Self::from_file(file, path, options, Backing::None)
    }

    pub(crate) fn from_file(
        file: File,
        path: &Path,
        options: OpenOptions,
        backing: Backing,
    ) -> Result<Self, DiskError> {
        let h = Header::read(&file)?;
        let read_only = options.read_only;
        if !read_only {
            if h.incompatible & INCOMPAT_CORRUPT != 0 {
                return Err(corrupt("the qcow2 image is marked corrupt; run `qemu-img check -r all` on it"));
            }
            if h.incompatible & INCOMPAT_DIRTY != 0 {
                return Err(DiskError::Unsupported(
                    "a qcow2 image left dirty with lazy refcounts; run `qemu-img check -r all` on it first"
                        .into(),
                ));
            }
            if h.nb_snapshots != 0 {
                return Err(DiskError::Unsupported(
                    "writing to a qcow2 image with internal snapshots; use --snapshot or an overlay".into(),
                ));
            }
            if h.refcount_order != 4 {
                return Err(DiskError::Unsupported(format!(
                    "writing to a qcow2 image with {}-bit refcounts",
                    1u32 << h.refcount_order
                )));
            }
        }
        let cs = h.cluster_size();
        let file_len = file.metadata()?.len();
        // Tables must lie inside the file before we allocate memory for them.
        if h.l1_offset.saturating_add(h.l1_size * 8) > file_len
            || h.rt_offset.saturating_add(h.rt_clusters * cs) > file_len
        {
            return Err(corrupt("the qcow2 L1 or refcount table lies past the end of the file"));
        }
        let mut l1_bytes = vec![0u8; (h.l1_size * 8) as usize];
        read_exact(&file, &mut l1_bytes, h.l1_offset, "the qcow2 L1 table")?;
        let l1: Vec<u64> = l1_bytes.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let mut rt_bytes = vec![0u8; (h.rt_clusters * cs) as usize];
        read_exact(&file, &mut rt_bytes, h.rt_offset, "the qcow2 refcount table")?;
        let rt: Vec<u64> = rt_bytes.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let mut metadata: HashSet<u64> = HashSet::new();
        metadata.insert(0);
        for c in 0..(h.l1_size * 8).div_ceil(cs) {
            metadata.insert(h.l1_offset / cs + c);
        }
        for c in 0..h.rt_clusters {
            metadata.insert(h.rt_offset / cs + c);
        }
        for e in l1.iter().chain(rt.iter()) {
            if e & OFFSET_MASK != 0 {
                metadata.insert((e & OFFSET_MASK) / cs);
            }
        }
        let backing_dev = match backing {
            Backing::Device(d) => Some(d),
            Backing::None => None,
            Backing::FromHeader { depth } => match &h.backing_file {
                None => None,
                Some(name) => {
                    let bpath = resolve_backing(path, name);
                    let format = match &h.backing_format {
                        Some(f) => Some(f.parse::<Format>()?),
                        None => None,
                    };
                    let opts = OpenOptions {
                        read_only: true,
                        snapshot: false,
                        format,
                        force_share: options.force_share,
                    };
                    Some(crate::open_depth(&bpath, opts, depth + 1)?)
                }
            },
        };
        if !read_only && h.autoclear != 0 {
            // Bitmaps and other autoclear extensions go stale once we write: drop them.
            file.write_all_at(&0u64.to_be_bytes(), 88)?;
            file.sync_data()?;
        }
        let state = State {
            file,
            read_only,
            version: h.version,
            cluster_bits: h.cluster_bits,
            cs,
            l2_entries: cs / 8,
            l1,
            l1_offset: h.l1_offset,
            l1_dirty: false,
            l2: HashMap::new(),
            rt,
            rt_offset: h.rt_offset,
            rt_dirty: false,
            rt_moved: false,
            rt_retired: None,
            refblocks: HashMap::new(),
            refs_per_block: (cs * 8) >> h.refcount_order,
            metadata,
            next_free: file_len.div_ceil(cs),
            data_dirty: false,
            backing: backing_dev,
            last_compressed: None,
            volatile: false,
        };
        Ok(Qcow2Image {
            state: Mutex::new(state),
            size: h.size / crate::SECTOR_SIZE * crate::SECTOR_SIZE,
            read_only,
            cluster_size: cs,
            backing_file: h.backing_file,
            backing_format: h.backing_format,
            version: h.version,
        })
    }

    /// Marks the image as a throw-away overlay whose flushes need not reach the disk.
    pub(crate) fn set_volatile(&self) -> Result<(), DiskError> {
        self.lock()?.volatile = true;
        Ok(())
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, DiskError> {
        self.state.lock().map_err(|_| corrupt("the qcow2 image's lock was poisoned by an earlier failure"))
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        self.cluster_size
    }

    /// The backing file name as written in the header.
    pub fn backing_file(&self) -> Option<&str> {
        self.backing_file.as_deref()
    }

    /// The backing format as written in the header.
    pub fn backing_format(&self) -> Option<&str> {
        self.backing_format.as_deref()
    }

    /// "0.10" for version 2, "1.1" for version 3, as `qemu-img info` calls them.
    pub fn compat(&self) -> &'static str {
        if self.version == 2 {
            "0.10"
        } else {
            "1.1"
        }
    }

    /// Bytes of guest data allocated in this layer (walks the L1 and L2 tables).
    pub fn allocated_bytes(&self) -> Result<u64, DiskError> {
        let mut s = self.lock()?;
        let mut clusters = 0u64;
        for l1i in 0..s.l1.len() {
            let l2_off = s.l1[l1i] & OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            let zero_flag = s.version >= 3;
            let t = s.l2_table(l2_off)?;
            clusters += t
                .entries
                .iter()
                .filter(|&&e| e & COMPRESSED != 0 || (e & OFFSET_MASK != 0 && !(zero_flag && e & ZERO != 0)))
                .count() as u64;
        }
        Ok((clusters * s.cs).min(self.size))
    }
}

/// A backing file name is relative to the directory of the image that names it.
pub(crate) fn resolve_backing(image: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        image.parent().unwrap_or(Path::new(".")).join(p)
    }
}

impl State {
    fn end(&self) -> u64 {
        self.next_free * self.cs
    }

    fn check_cluster(&self, offset: u64, what: &str) -> Result<(), DiskError> {
        if !offset.is_multiple_of(self.cs) || offset < self.cs || offset + self.cs > self.end() {
            return Err(corrupt(format!(
                "a qcow2 {what} at byte {offset} is misaligned or outside the file"
            )));
        }
        Ok(())
    }

    fn l2_table(&mut self, offset: u64) -> Result<&mut L2, DiskError> {
        if !self.l2.contains_key(&offset) {
            self.check_cluster(offset, "L2 table")?;
            if self.l2.len() >= MAX_CACHED_L2 {
                self.l2.retain(|_, t| t.dirty);
            }
            let mut bytes = vec![0u8; self.cs as usize];
            read_exact(&self.file, &mut bytes, offset, "a qcow2 L2 table")?;
            let entries = bytes.chunks_exact(8).map(|c| be64(c, 0)).collect();
            self.l2.insert(offset, L2 { entries, dirty: false });
        }
        self.l2.get_mut(&offset).ok_or_else(|| corrupt("the qcow2 L2 cache lost a table"))
    }

    fn map(&mut self, cluster: u64) -> Result<Map, DiskError> {
        let l1i = (cluster / self.l2_entries) as usize;
        let l2i = (cluster % self.l2_entries) as usize;
        let Some(&l1e) = self.l1.get(l1i) else {
            return Ok(Map::Unallocated);
        };
        let l2_off = l1e & OFFSET_MASK;
        if l2_off == 0 {
            return Ok(Map::Unallocated);
        }
        let e = self.l2_table(l2_off)?.entries[l2i];
        if e & COMPRESSED != 0 {
            let x = 62 - (self.cluster_bits - 8);
            let offset = e & ((1u64 << x) - 1);
            let sectors = ((e >> x) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
            let len = sectors * 512 - (offset & 511);
            return Ok(Map::Compressed { offset, len });
        }
        let offset = e & OFFSET_MASK;
        if self.version >= 3 && e & ZERO != 0 {
            return Ok(Map::Zero);
        }
        if offset == 0 {
            return Ok(Map::Unallocated);
        }
        if !offset.is_multiple_of(self.cs) {
            return Err(corrupt(format!("qcow2 cluster {cluster} maps to the misaligned offset {offset}")));
        }
        Ok(Map::Data { offset, copied: e & COPIED != 0 })
    }

    fn compressed(&mut self, offset: u64, len: u64) -> Result<&[u8], DiskError> {
        if self.last_compressed.as_ref().is_none_or(|(k, _)| *k != offset) {
            let file_len = self.file.metadata()?.len();
            let len = len.min(file_len.saturating_sub(offset)).min(self.cs * 2);
            let mut packed = vec![0u8; len as usize];
            read_exact(&self.file, &mut packed, offset, "a compressed qcow2 cluster")?;
            let mut out = Vec::with_capacity(self.cs as usize);
            flate2::read::DeflateDecoder::new(&packed[..])
                .take(self.cs)
                .read_to_end(&mut out)
                .map_err(|_| corrupt(format!("the compressed qcow2 cluster at {offset} does not inflate")))?;
            out.resize(self.cs as usize, 0);
            self.last_compressed = Some((offset, out));
        }
        match &self.last_compressed {
            Some((_, d)) => Ok(d),
            None => Err(corrupt("the qcow2 cluster cache lost its cluster")),
        }
    }

    /// Reads one piece of a cluster.
    fn read_piece(&mut self, out: &mut [u8], cluster: u64, within: u64) -> Result<(), DiskError> {
        match self.map(cluster)? {
            Map::Zero => out.fill(0),
            Map::Data { offset, .. } => read_exact(&self.file, out, offset + within, "qcow2 data")?,
            Map::Compressed { offset, len } => {
                let d = self.compressed(offset, len)?;
                out.copy_from_slice(&d[within as usize..within as usize + out.len()]);
            }
            Map::Unallocated => {
                let pos = cluster * self.cs + within;
                match &self.backing {
                    Some(b) if pos < b.size() => {
                        let n = ((b.size() - pos) as usize).min(out.len());
                        b.read_at(&mut out[..n], pos)?;
                        out[n..].fill(0);
                    }
                    _ => out.fill(0),
                }
            }
        }
        Ok(())
    }

    fn refblock(&mut self, block: u64) -> Result<&mut RefBlock, DiskError> {
        if !self.refblocks.contains_key(&block) {
            if block as usize >= self.rt.len() {
                self.grow_refcount_table(block)?;
                // Growing made the block (in the cache); do not read it back over itself.
                return self
                    .refblocks
                    .get_mut(&block)
                    .ok_or_else(|| corrupt("the qcow2 refcount table did not grow far enough"));
            }
            let Some(&rte) = self.rt.get(block as usize) else {
                return Err(corrupt("the qcow2 refcount table did not grow far enough"));
            };
            let off = rte & OFFSET_MASK;
            let counts = if off == 0 {
                // A new refcount block at the end of the file; it counts itself if it can.
                let c = self.next_free;
                self.next_free += 1;
                self.file.write_all_at(&vec![0u8; self.cs as usize], c * self.cs)?;
                self.rt[block as usize] = c * self.cs;
                self.rt_dirty = true;
                self.metadata.insert(c);
                let mut counts = vec![0u16; self.refs_per_block as usize];
                if c / self.refs_per_block == block {
                    counts[(c % self.refs_per_block) as usize] = 1;
                    self.refblocks.insert(block, RefBlock { counts, dirty: true });
                } else {
                    self.refblocks.insert(block, RefBlock { counts, dirty: true });
                    self.set_refcount(c, 1)?;
                }
                return self
                    .refblocks
                    .get_mut(&block)
                    .ok_or_else(|| corrupt("the qcow2 refcount cache lost a block"));
            } else {
                self.check_cluster(off, "refcount block")?;
                let mut bytes = vec![0u8; self.cs as usize];
                read_exact(&self.file, &mut bytes, off, "a qcow2 refcount block")?;
                bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
            };
            self.refblocks.insert(block, RefBlock { counts, dirty: false });
        }
        self.refblocks.get_mut(&block).ok_or_else(|| corrupt("the qcow2 refcount cache lost a block"))
    }

    /// Moves the refcount table to the end of the file, large enough for refcount block `block`
    /// and for itself, with new refcount blocks right after it covering the new clusters.
    fn grow_refcount_table(&mut self, block: u64) -> Result<(), DiskError> {
        let per = self.refs_per_block;
        let entries_per_cluster = self.cs / 8;
        let old_len = self.rt.len() as u64;
        let start = self.next_free;
        let (mut table, mut blocks) = (1u64, 0u64);
        loop {
            let end = start + table + blocks;
            let needed = end.div_ceil(per).max(block + 1);
            let want_table = needed.div_ceil(entries_per_cluster) + 1;
            let want_blocks = needed.saturating_sub(old_len);
            if want_table <= table && want_blocks <= blocks {
                break;
            }
            table = table.max(want_table);
            blocks = blocks.max(want_blocks);
        }
        if table * self.cs > 64 << 20 {
            return Err(DiskError::Unsupported("a qcow2 refcount table larger than 64 MiB".into()));
        }
        let zero = vec![0u8; self.cs as usize];
        self.rt.resize((table * entries_per_cluster) as usize, 0);
        for i in 0..blocks {
            let c = start + table + i;
            self.file.write_all_at(&zero, c * self.cs)?;
            self.rt[(old_len + i) as usize] = c * self.cs;
            self.metadata.insert(c);
            let counts = vec![0u16; per as usize];
            self.refblocks.insert(old_len + i, RefBlock { counts, dirty: true });
        }
        for c in start..start + table {
            self.file.write_all_at(&zero, c * self.cs)?;
            self.metadata.insert(c);
        }
        let old =
            (self.rt_offset / self.cs, self.rt_offset / self.cs + old_len.div_ceil(entries_per_cluster));
        self.next_free = start + table + blocks;
        for c in start..self.next_free {
            self.set_refcount(c, 1)?;
        }
        self.rt_offset = start * self.cs;
        self.rt_dirty = true;
        self.rt_moved = true;
        // Freed after the header switch; if a retired table is still pending, keep the older one
        // leaked rather than risk freeing something the header still names.
        if self.rt_retired.is_none() {
            self.rt_retired = Some(old);
        }
        Ok(())
    }

    fn refcount(&mut self, cluster: u64) -> Result<u16, DiskError> {
        let per = self.refs_per_block;
        Ok(self.refblock(cluster / per)?.counts[(cluster % per) as usize])
    }

    fn set_refcount(&mut self, cluster: u64, value: u16) -> Result<(), DiskError> {
        let per = self.refs_per_block;
        let b = self.refblock(cluster / per)?;
        b.counts[(cluster % per) as usize] = value;
        b.dirty = true;
        Ok(())
    }

    fn alloc_cluster(&mut self) -> Result<u64, DiskError> {
        let c = self.next_free;
        self.next_free += 1;
        self.set_refcount(c, 1)?;
        Ok(c)
    }

    fn release(&mut self, first: u64, last: u64) -> Result<(), DiskError> {
        for c in first..=last {
            let r = self.refcount(c)?;
            if r > 0 {
                self.set_refcount(c, r - 1)?;
            }
        }
        Ok(())
    }

    /// The L2 table offset for L1 entry `l1i`, allocating an empty table when there is none.
    fn ensure_l2(&mut self, l1i: usize) -> Result<u64, DiskError> {
        let l1e = *self.l1.get(l1i).ok_or_else(|| corrupt("a write reached past the qcow2 L1 table"))?;
        let off = l1e & OFFSET_MASK;
        if off != 0 {
            return Ok(off);
        }
        let c = self.alloc_cluster()?;
        let off = c * self.cs;
        self.file.write_all_at(&vec![0u8; self.cs as usize], off)?;
        self.metadata.insert(c);
        self.l2.insert(off, L2 { entries: vec![0; self.l2_entries as usize], dirty: true });
        self.l1[l1i] = off | COPIED;
        self.l1_dirty = true;
        Ok(off)
    }

    fn write_piece(&mut self, data: &[u8], cluster: u64, within: u64) -> Result<(), DiskError> {
        let l1i = (cluster / self.l2_entries) as usize;
        let l2i = (cluster % self.l2_entries) as usize;
        let old = self.map(cluster)?;
        if let Map::Data { offset, copied: true } = old {
            if self.metadata.contains(&(offset / self.cs)) {
                return Err(corrupt(format!("qcow2 cluster {cluster} points into the image's metadata")));
            }
            self.file.write_all_at(data, offset + within)?;
            self.data_dirty = true;
            return Ok(());
        }
        let cs = self.cs as usize;
        let mut buf = vec![0u8; cs];
        if data.len() != cs {
            self.read_piece(&mut buf, cluster, 0)?;
        }
        buf[within as usize..within as usize + data.len()].copy_from_slice(data);
        let l2_off = self.ensure_l2(l1i)?;
        let c = self.alloc_cluster()?;
        self.file.write_all_at(&buf, c * self.cs)?;
        self.data_dirty = true;
        let entry = (c * self.cs) | COPIED;
        let t = self.l2_table(l2_off)?;
        t.entries[l2i] = entry;
        t.dirty = true;
        match old {
            Map::Compressed { offset, len } => {
                let first = offset / self.cs;
                let last = (offset + len.max(1) - 1) / self.cs;
                self.release(first, last)?;
                self.last_compressed = None;
            }
            Map::Data { offset, .. } => self.release(offset / self.cs, offset / self.cs)?,
            Map::Zero | Map::Unallocated => {}
        }
        Ok(())
    }

    /// Writes the dirty refcount blocks and syncs.
    fn write_refblocks(&mut self) -> Result<(), DiskError> {
        for (&block, b) in self.refblocks.iter_mut().filter(|(_, b)| b.dirty) {
            let off = self.rt.get(block as usize).copied().unwrap_or(0) & OFFSET_MASK;
            if off == 0 {
                return Err(corrupt("a dirty qcow2 refcount block has no place in the file"));
            }
            let bytes: Vec<u8> = b.counts.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.file.write_all_at(&bytes, off)?;
            b.dirty = false;
        }
        sync(&self.file)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if self.read_only || self.volatile {
            return Ok(());
        }
        let rb_dirty = self.refblocks.values().any(|b| b.dirty);
        let l2_dirty = self.l2.values().any(|t| t.dirty);
        if !(self.data_dirty
            || rb_dirty
            || self.rt_dirty
            || l2_dirty
            || self.l1_dirty
            || self.rt_retired.is_some())
        {
            return Ok(());
        }
        sync(&self.file)?;
        self.data_dirty = false;
        if rb_dirty {
            self.write_refblocks()?;
        }
        if self.rt_dirty {
            let bytes: Vec<u8> = self.rt.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.file.write_all_at(&bytes, self.rt_offset)?;
            sync(&self.file)?;
            self.rt_dirty = false;
            if self.rt_moved {
                // rt_offset and rt_clusters are adjacent header fields: one write switches both.
                let mut h = [0u8; 12];
                h[..8].copy_from_slice(&self.rt_offset.to_be_bytes());
                h[8..].copy_from_slice(&((self.rt.len() as u64 * 8 / self.cs) as u32).to_be_bytes());
                self.file.write_all_at(&h, 48)?;
                sync(&self.file)?;
                self.rt_moved = false;
            }
        }
        if !self.rt_moved {
            if let Some((first, end)) = self.rt_retired.take() {
                for c in first..end {
                    self.metadata.remove(&c);
                }
                self.release(first, end - 1)?;
                self.write_refblocks()?;
            }
        }
        if l2_dirty {
            for (&off, t) in self.l2.iter_mut().filter(|(_, t)| t.dirty) {
                let bytes: Vec<u8> = t.entries.iter().flat_map(|c| c.to_be_bytes()).collect();
                self.file.write_all_at(&bytes, off)?;
                t.dirty = false;
            }
            sync(&self.file)?;
        }
        if self.l1_dirty {
            let bytes: Vec<u8> = self.l1.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.file.write_all_at(&bytes, self.l1_offset)?;
            sync(&self.file)?;
            self.l1_dirty = false;
        }
        Ok(())
    }
}

impl BlockDevice for Qcow2Image {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        check_range(offset, buf.len(), self.size)?;
        let mut s = self.lock()?;
        let cs = s.cs;
        for p in pieces(offset, buf.len(), cs) {
            s.read_piece(&mut buf[p.buf], p.unit, p.within)?;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        let mut s = self.lock()?;
        let cs = s.cs;
        for p in pieces(offset, buf.len(), cs) {
            s.write_piece(&buf[p.buf], p.unit, p.within)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        self.lock()?.flush()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn format(&self) -> &'static str {
        "qcow2"
    }
}

impl Drop for Qcow2Image {
    fn drop(&mut self) {
        if let Ok(s) = self.state.get_mut() {
            if let Err(e) = s.flush() {
                log::error!("flushing a qcow2 image on close failed: {e}");
            }
        }
    }
}
