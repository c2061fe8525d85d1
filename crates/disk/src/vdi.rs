//! VirtualBox VDI images, fixed and dynamic: a header, a block map, and blocks allocated at the
//! end of the data area on first write.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::util::{bounded_vec, le32, le64, open_locked, pieces, read_exact, sync};
use crate::{check_range, BlockDevice, DiskError, OpenOptions, SECTOR_SIZE};

const SIGNATURE: u32 = 0xbeda_107f;
const TYPE_DYNAMIC: u32 = 1;
const TYPE_FIXED: u32 = 2;
const UNALLOCATED: u32 = 0xffff_ffff;
const DISCARDED: u32 = 0xffff_fffe;
/// At most 16 Mi blocks (16 TiB with the usual 1 MiB blocks).
const MAX_BLOCKS: u64 = 1 << 24;

struct State {
    file: File,
    bmap: Vec<u32>,
    allocated: u32,
    dirty_from: Option<usize>,
    dirty_to: usize,
    data_dirty: bool,
}

/// An open VDI image.
pub struct VdiImage {
    state: Mutex<State>,
    size: u64,
    read_only: bool,
    fixed: bool,
    block_size: u64,
    offset_bmap: u64,
    offset_data: u64,
}

fn corrupt(msg: impl Into<String>) -> DiskError {
    DiskError::Corrupt(msg.into())
}

impl VdiImage {
    /// Opens the VDI image at `path`.
    pub fn open(path: &Path, options: OpenOptions) -> Result<Self, DiskError> {
        let file = open_locked(path, options.read_only, options.force_share)?;
        let mut h = [0u8; 512];
        read_exact(&file, &mut h, 0, "the VDI header")?;
        if le32(&h, 64) != SIGNATURE {
            return Err(corrupt("the VDI signature is missing"));
        }
        let version = le32(&h, 68);
        if version >> 16 != 1 {
            return Err(DiskError::Unsupported(format!("VDI version {:#x}", version)));
        }
        let image_type = le32(&h, 76);
        if image_type != TYPE_DYNAMIC && image_type != TYPE_FIXED {
            return Err(DiskError::Unsupported(format!(
                "VDI image type {image_type} (differencing or undo disks)"
            )));
        }
        let offset_bmap = u64::from(le32(&h, 340));
        let offset_data = u64::from(le32(&h, 344));
        let sector_size = le32(&h, 360);
        let disk_size = le64(&h, 368);
        let block_size = u64::from(le32(&h, 376));
        let block_extra = le32(&h, 380);
        let blocks = u64::from(le32(&h, 384));
        let allocated = le32(&h, 388);
        if sector_size != 512 || block_extra != 0 {
            return Err(DiskError::Unsupported(
                "VDI images with non-512-byte sectors or block extra data".into(),
            ));
        }
        if !block_size.is_power_of_two() || !(SECTOR_SIZE..=(64 << 20)).contains(&block_size) {
            return Err(corrupt(format!("the VDI block size {block_size} is invalid")));
        }
        if u128::from(disk_size) > u128::from(blocks) * u128::from(block_size) || blocks > MAX_BLOCKS {
            return Err(corrupt(format!(
                "the VDI block map ({blocks} blocks) does not fit the {disk_size}-byte disk"
            )));
        }
        if offset_bmap < 512 || offset_bmap + blocks * 4 > offset_data || u64::from(allocated) > blocks {
            return Err(corrupt("the VDI block map and data area overlap"));
        }
        if offset_bmap + blocks * 4 > file.metadata()?.len() {
            return Err(corrupt("the VDI block map lies past the end of the file"));
        }
        let mut bytes = bounded_vec::<u8>(blocks * 4, MAX_BLOCKS * 4, "the VDI block map")?;
        read_exact(&file, &mut bytes, offset_bmap, "the VDI block map")?;
        let bmap: Vec<u32> = bytes.chunks_exact(4).map(|c| le32(c, 0)).collect();
        for (i, &e) in bmap.iter().enumerate() {
            if e < DISCARDED && u64::from(e) >= blocks {
                return Err(corrupt(format!(
                    "VDI block {i} maps to block {e}, past the {blocks} the image has"
                )));
            }
        }
        Ok(VdiImage {
            state: Mutex::new(State {
                file,
                bmap,
                allocated,
                dirty_from: None,
                dirty_to: 0,
                data_dirty: false,
            }),
            size: disk_size / SECTOR_SIZE * SECTOR_SIZE,
            read_only: options.read_only,
            fixed: image_type == TYPE_FIXED,
            block_size,
            offset_bmap,
            offset_data,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, DiskError> {
        self.state.lock().map_err(|_| corrupt("the VDI image's lock was poisoned by an earlier failure"))
    }

    /// "fixed" or "dynamic".
    pub fn subformat(&self) -> &'static str {
        if self.fixed {
            "fixed"
        } else {
            "dynamic"
        }
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Bytes of guest data in allocated blocks.
    pub fn allocated_bytes(&self) -> u64 {
        self.lock()
            .map(|s| s.bmap.iter().filter(|&&e| e < DISCARDED).count() as u64 * self.block_size)
            .unwrap_or(0)
            .min(self.size)
    }

    fn flush_state(&self, s: &mut State) -> Result<(), DiskError> {
        if self.read_only || (!s.data_dirty && s.dirty_from.is_none()) {
            return Ok(());
        }
        sync(&s.file)?;
        s.data_dirty = false;
        if let Some(from) = s.dirty_from.take() {
            // The block map entries, then the header's count, after the data they point to.
            let bytes: Vec<u8> = s.bmap[from..s.dirty_to].iter().flat_map(|e| e.to_le_bytes()).collect();
            s.file.write_all_at(&bytes, self.offset_bmap + from as u64 * 4)?;
            s.file.write_all_at(&s.allocated.to_le_bytes(), 388)?;
            sync(&s.file)?;
        }
        Ok(())
    }
}

impl BlockDevice for VdiImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        check_range(offset, buf.len(), self.size)?;
        let s = self.lock()?;
        for p in pieces(offset, buf.len(), self.block_size) {
            let out = &mut buf[p.buf];
            let e = s.bmap.get(p.unit as usize).copied().unwrap_or(UNALLOCATED);
            if e >= DISCARDED {
                out.fill(0);
            } else {
                let at = self.offset_data + u64::from(e) * self.block_size + p.within;
                read_exact(&s.file, out, at, "VDI data")?;
            }
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        let mut s = self.lock()?;
        for p in pieces(offset, buf.len(), self.block_size) {
            let data = &buf[p.buf];
            let i = p.unit as usize;
            let e =
                s.bmap.get(i).copied().ok_or_else(|| corrupt("a write reached past the VDI block map"))?;
            if e < DISCARDED {
                let at = self.offset_data + u64::from(e) * self.block_size + p.within;
                s.file.write_all_at(data, at)?;
            } else {
                let n = s.allocated;
                if n as usize >= s.bmap.len() {
                    return Err(corrupt("the VDI image has no free block left"));
                }
                let mut block = vec![0u8; self.block_size as usize];
                block[p.within as usize..p.within as usize + data.len()].copy_from_slice(data);
                s.file.write_all_at(&block, self.offset_data + u64::from(n) * self.block_size)?;
                s.bmap[i] = n;
                s.allocated = n + 1;
                s.dirty_from = Some(s.dirty_from.map_or(i, |f| f.min(i)));
                s.dirty_to = s.dirty_to.max(i + 1);
            }
            s.data_dirty = true;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        let mut s = self.lock()?;
        self.flush_state(&mut s)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn format(&self) -> &'static str {
        "vdi"
    }
}

impl Drop for VdiImage {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("flushing a VDI image on close failed: {e}");
        }
    }
}
