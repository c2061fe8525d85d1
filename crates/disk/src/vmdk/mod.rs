//! VMDK images: a text descriptor (embedded in a sparse file or a file of its own) listing
//! extents that are sparse, flat or zero.

mod descriptor;
mod sparse;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::util::{open_locked, read_exact};
use crate::{check_range, BlockDevice, DiskError, OpenOptions, SECTOR_SIZE};
use descriptor::{Descriptor, ExtentType};
use sparse::{Header, SparseExtent};

/// At most this many extents (a 2 TB twoGbMaxExtent disk has about 1000).
const MAX_EXTENTS: usize = 65536;

enum Backend {
    Flat { file: Arc<File>, offset: u64 },
    Zero,
    Sparse(Box<Mutex<SparseExtent>>),
}

struct Extent {
    start: u64,
    len: u64,
    read_only: bool,
    backend: Backend,
}

/// An open VMDK image.
pub struct VmdkImage {
    extents: Vec<Extent>,
    size: u64,
    read_only: bool,
    create_type: String,
    files: Vec<PathBuf>,
}

fn lock(m: &Mutex<SparseExtent>) -> Result<MutexGuard<'_, SparseExtent>, DiskError> {
    m.lock().map_err(|_| DiskError::Corrupt("a VMDK extent's lock was poisoned by an earlier failure".into()))
}

/// Reads the descriptor text: embedded in a sparse extent, or the whole (small) file.
fn read_descriptor(file: &File) -> Result<(Descriptor, Option<Header>), DiskError> {
    let len = file.metadata()?.len();
    let mut first = [0u8; 512];
    let header = if len >= 512 {
        read_exact(file, &mut first, 0, "the VMDK header")?;
        Header::parse(&first)
    } else {
        None
    };
    let (at, size) = match header {
        Some(h) if h.descriptor_offset != 0 && h.descriptor_size != 0 => {
            (h.descriptor_offset.saturating_mul(SECTOR_SIZE), h.descriptor_size.saturating_mul(SECTOR_SIZE))
        }
        Some(h) => {
            // A bare sparse extent: describe it as one.
            let d = Descriptor {
                create_type: "monolithicSparse".into(),
                extents: vec![descriptor::ExtentLine {
                    read_only: false,
                    sectors: h.capacity,
                    kind: ExtentType::Sparse,
                    file: String::new(),
                }],
            };
            return Ok((d, Some(h)));
        }
        None => (0, len),
    };
    if size > descriptor::MAX_DESCRIPTOR {
        return Err(DiskError::Corrupt(format!("the VMDK descriptor claims {size} bytes")));
    }
    let mut text = vec![0u8; size as usize];
    let got = file.read_at(&mut text, at)?;
    text.truncate(got);
    if let Some(end) = text.iter().position(|&b| b == 0) {
        text.truncate(end);
    }
    let text = String::from_utf8(text)
        .map_err(|_| DiskError::Corrupt("the VMDK descriptor is not UTF-8 text".into()))?;
    Ok((descriptor::parse(&text)?, header))
}

impl VmdkImage {
    /// Opens the VMDK whose descriptor (or sparse file with an embedded one) is at `path`.
    pub fn open(path: &Path, options: OpenOptions) -> Result<Self, DiskError> {
        let own = Arc::new(open_locked(path, options.read_only, options.force_share)?);
        let (desc, header) = read_descriptor(&own)?;
        // A descriptor embedded in a one-extent sparse file describes that very file, whatever
        // name it records: a renamed chr-7.x.vmdk must still open (as it does in QEMU).
        let is_itself = header.is_some() && desc.extents.len() == 1;
        if desc.extents.len() > MAX_EXTENTS {
            return Err(DiskError::Corrupt("the VMDK descriptor lists too many extents".into()));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let own_path =
            path.canonicalize().map_err(|source| DiskError::Open { path: path.to_path_buf(), source })?;
        let mut files: HashMap<PathBuf, Arc<File>> = HashMap::new();
        files.insert(own_path.clone(), own);
        let mut names = vec![own_path];
        let mut extents = Vec::with_capacity(desc.extents.len());
        let mut start = 0u64;
        for line in &desc.extents {
            let len = line
                .sectors
                .checked_mul(SECTOR_SIZE)
                .ok_or_else(|| DiskError::Corrupt("a VMDK extent size overflows".into()))?;
            let read_only = options.read_only || line.read_only;
            let mut file_for = |name: &str| -> Result<Arc<File>, DiskError> {
                let p = if name.is_empty() || is_itself { path.to_path_buf() } else { dir.join(name) };
                let canon = p.canonicalize().map_err(|source| DiskError::Open { path: p.clone(), source })?;
                if let Some(f) = files.get(&canon) {
                    return Ok(Arc::clone(f));
                }
                let f = Arc::new(open_locked(&canon, read_only, options.force_share)?);
                files.insert(canon.clone(), Arc::clone(&f));
                names.push(canon);
                Ok(f)
            };
            let backend = match line.kind {
                ExtentType::Zero => Backend::Zero,
                ExtentType::Flat { offset_sectors } => {
                    let file = file_for(&line.file)?;
                    let offset = offset_sectors
                        .checked_mul(SECTOR_SIZE)
                        .ok_or_else(|| DiskError::Corrupt("a VMDK flat extent offset overflows".into()))?;
                    let file_len = file.metadata()?.len();
                    if offset.checked_add(len).is_none_or(|end| end > file_len) {
                        return Err(DiskError::Corrupt(format!(
                            "the VMDK flat extent \"{}\" is shorter than the descriptor says",
                            line.file
                        )));
                    }
                    Backend::Flat { file, offset }
                }
                ExtentType::Sparse => {
                    let file = file_for(&line.file)?;
                    let extent = SparseExtent::open(file, read_only)?;
                    if extent.capacity() < len {
                        return Err(DiskError::Corrupt(format!(
                            "the VMDK sparse extent \"{}\" is smaller than the descriptor says",
                            line.file
                        )));
                    }
                    Backend::Sparse(Box::new(Mutex::new(extent)))
                }
            };
            extents.push(Extent { start, len, read_only, backend });
            start = start
                .checked_add(len)
                .ok_or_else(|| DiskError::Corrupt("the VMDK extents add up past 2^64 bytes".into()))?;
        }
        Ok(VmdkImage {
            extents,
            size: start / SECTOR_SIZE * SECTOR_SIZE,
            read_only: options.read_only,
            create_type: desc.create_type,
            files: names,
        })
    }

    /// The descriptor's `createType` (monolithicSparse, streamOptimized, ...).
    pub fn subformat(&self) -> &str {
        &self.create_type
    }

    /// Every file the image consists of (descriptor first).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The grain size of the first sparse extent.
    pub fn grain_bytes(&self) -> Option<u64> {
        self.extents.iter().find_map(|e| match &e.backend {
            Backend::Sparse(m) => lock(m).ok().map(|s| s.grain_bytes()),
            _ => None,
        })
    }

    /// Bytes of guest data that are allocated (flat extents count whole).
    pub fn allocated_bytes(&self) -> Result<u64, DiskError> {
        let mut n = 0;
        for e in &self.extents {
            n += match &e.backend {
                Backend::Flat { .. } => e.len,
                Backend::Zero => 0,
                Backend::Sparse(m) => {
                    let mut s = lock(m)?;
                    (s.allocated_grains()? * s.grain_bytes()).min(e.len)
                }
            };
        }
        Ok(n)
    }

    /// Runs `f` on each extent piece of `[offset, offset + len)`.
    fn each_extent(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(&Extent, u64, std::ops::Range<usize>) -> Result<(), DiskError>,
    ) -> Result<(), DiskError> {
        check_range(offset, len, self.size)?;
        let end = offset + len as u64;
        let first = self.extents.partition_point(|e| e.start + e.len <= offset);
        for e in &self.extents[first..] {
            if e.start >= end {
                break;
            }
            let from = offset.max(e.start);
            let to = end.min(e.start + e.len);
            if from < to {
                f(e, from - e.start, (from - offset) as usize..(to - offset) as usize)?;
            }
        }
        Ok(())
    }
}

impl BlockDevice for VmdkImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        self.each_extent(offset, buf.len(), |e, at, range| {
            let out = &mut buf[range];
            match &e.backend {
                Backend::Zero => out.fill(0),
                Backend::Flat { file, offset } => read_exact(file, out, offset + at, "VMDK flat data")?,
                Backend::Sparse(m) => lock(m)?.read(out, at)?,
            }
            Ok(())
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        // Refuse the whole request before any part of it lands.
        self.each_extent(offset, buf.len(), |e, _, _| match e.backend {
            _ if e.read_only => Err(DiskError::ReadOnly),
            Backend::Zero => Err(DiskError::Unsupported("writing to a VMDK ZERO extent".into())),
            _ => Ok(()),
        })?;
        self.each_extent(offset, buf.len(), |e, at, range| {
            let data = &buf[range];
            match &e.backend {
                Backend::Zero => Err(DiskError::Unsupported("writing to a VMDK ZERO extent".into())),
                Backend::Flat { file, offset } => Ok(file.write_all_at(data, offset + at)?),
                Backend::Sparse(m) => lock(m)?.write(data, at),
            }
        })
    }

    fn flush(&self) -> Result<(), DiskError> {
        if self.read_only {
            return Ok(());
        }
        for e in &self.extents {
            match &e.backend {
                Backend::Flat { file, .. } if !e.read_only => file.sync_data()?,
                Backend::Sparse(m) => lock(m)?.flush()?,
                _ => {}
            }
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn format(&self) -> &'static str {
        "vmdk"
    }
}
