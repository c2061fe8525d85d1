//! `chr-vmm info`: what `qemu-img info --backing-chain` tells, as text or JSON.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::qcow2::{resolve_backing, Qcow2Image};
use crate::vdi::VdiImage;
use crate::vhdx::VhdxImage;
use crate::vmdk::VmdkImage;
use crate::{detect_format, BlockDevice, DiskError, Format, OpenOptions, RawImage, MAX_BACKING_DEPTH};

/// A description of one image and, through `backing`, of its backing chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The path as given.
    pub filename: PathBuf,
    /// The detected format.
    pub format: Format,
    /// The subformat (VMDK createType, VDI/VHDX "fixed" or "dynamic").
    pub subformat: Option<String>,
    /// The guest-visible size in bytes.
    pub virtual_size: u64,
    /// Bytes the image's files occupy on the host (what `qemu-img info` calls disk size).
    pub disk_size: u64,
    /// Bytes of guest data this layer maps (allocated clusters or grains; the whole disk for raw
    /// and flat images).
    pub allocated: u64,
    /// Cluster, grain or block size, where the format has one.
    pub cluster_size: Option<u64>,
    /// The backing file name as recorded in the image.
    pub backing_file: Option<String>,
    /// The backing format as recorded in the image.
    pub backing_format: Option<String>,
    /// The backing image, described the same way.
    pub backing: Option<Box<ImageInfo>>,
}

fn host_bytes(paths: &[PathBuf]) -> u64 {
    paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.blocks() * 512).sum()
}

/// Describes the image at `path` and its backing chain; the files are opened read-only and
/// without taking their locks, so a running VMM's image can be inspected.
pub fn info(path: &Path) -> Result<ImageInfo, DiskError> {
    info_depth(path, None, 0)
}

fn info_depth(path: &Path, format: Option<Format>, depth: usize) -> Result<ImageInfo, DiskError> {
    if depth > MAX_BACKING_DEPTH {
        return Err(DiskError::Corrupt(format!(
            "the backing chain is deeper than {MAX_BACKING_DEPTH} images at {}; it probably loops",
            path.display()
        )));
    }
    let format = match format {
        Some(f) => f,
        None => detect_format(path)?,
    };
    let opts =
        OpenOptions { read_only: true, force_share: true, format: Some(format), ..OpenOptions::default() };
    let own = vec![path.to_path_buf()];
    let mut i = ImageInfo {
        filename: path.to_path_buf(),
        format,
        subformat: None,
        virtual_size: 0,
        disk_size: host_bytes(&own),
        allocated: 0,
        cluster_size: None,
        backing_file: None,
        backing_format: None,
        backing: None,
    };
    match format {
        Format::Raw => {
            let img = RawImage::open(path, opts)?;
            i.virtual_size = img.size();
            i.allocated = i.disk_size.min(img.size());
        }
        Format::Vmdk => {
            let img = VmdkImage::open(path, opts)?;
            i.virtual_size = img.size();
            i.subformat = Some(img.subformat().to_string());
            i.disk_size = host_bytes(img.files());
            i.allocated = img.allocated_bytes()?;
            i.cluster_size = img.grain_bytes();
        }
        Format::Qcow2 => {
            let img = Qcow2Image::open_without_backing(path, opts)?;
            i.virtual_size = img.size();
            i.allocated = img.allocated_bytes()?;
            i.cluster_size = Some(img.cluster_size());
            i.subformat = Some(format!("compat {}", img.compat()));
            i.backing_file = img.backing_file().map(str::to_string);
            i.backing_format = img.backing_format().map(str::to_string);
            if let Some(name) = &i.backing_file {
                let bformat = match &i.backing_format {
                    Some(f) => Some(f.parse::<Format>()?),
                    None => None,
                };
                let b = info_depth(&resolve_backing(path, name), bformat, depth + 1)?;
                i.backing = Some(Box::new(b));
            }
        }
        Format::Vdi => {
            let img = VdiImage::open(path, opts)?;
            i.virtual_size = img.size();
            i.subformat = Some(img.subformat().to_string());
            i.allocated = img.allocated_bytes();
            i.cluster_size = Some(img.block_size());
        }
        Format::Vhdx => {
            let img = VhdxImage::open(path, opts)?;
            i.virtual_size = img.size();
            i.subformat = Some(img.subformat().to_string());
            i.allocated = img.allocated_bytes();
            i.cluster_size = Some(img.block_size());
        }
    }
    Ok(i)
}

/// Sizes the way `qemu-img` prints them: "1 GiB", "196 KiB", "1.5 MiB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s} {}", UNITS[u])
}

impl fmt::Display for ImageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "image: {}", self.filename.display())?;
        writeln!(f, "file format: {}", self.format)?;
        writeln!(f, "virtual size: {} ({} bytes)", human_size(self.virtual_size), self.virtual_size)?;
        writeln!(f, "disk size: {}", human_size(self.disk_size))?;
        writeln!(f, "allocated: {} ({} bytes)", human_size(self.allocated), self.allocated)?;
        if let Some(s) = &self.subformat {
            writeln!(f, "subformat: {s}")?;
        }
        if let Some(c) = self.cluster_size {
            writeln!(f, "cluster_size: {c}")?;
        }
        if let Some(b) = &self.backing_file {
            match &self.backing {
                Some(bi) => writeln!(f, "backing file: {b} (actual path: {})", bi.filename.display())?,
                None => writeln!(f, "backing file: {b}")?,
            }
        }
        if let Some(b) = &self.backing_format {
            writeln!(f, "backing file format: {b}")?;
        }
        if let Some(b) = &self.backing {
            writeln!(f)?;
            write!(f, "{b}")?;
        }
        Ok(())
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl ImageInfo {
    /// One JSON object with `qemu-img info --output=json` field names; the backing image is
    /// nested under "backing-image".
    pub fn to_json(&self) -> String {
        let mut fields = vec![
            format!("\"filename\": {}", json_str(&self.filename.to_string_lossy())),
            format!("\"format\": {}", json_str(self.format.name())),
            format!("\"virtual-size\": {}", self.virtual_size),
            format!("\"actual-size\": {}", self.disk_size),
            format!("\"allocated-size\": {}", self.allocated),
        ];
        if let Some(s) = &self.subformat {
            fields.push(format!("\"subformat\": {}", json_str(s)));
        }
        if let Some(c) = self.cluster_size {
            fields.push(format!("\"cluster-size\": {c}"));
        }
        if let Some(b) = &self.backing_file {
            fields.push(format!("\"backing-filename\": {}", json_str(b)));
        }
        if let Some(bi) = &self.backing {
            fields.push(format!("\"full-backing-filename\": {}", json_str(&bi.filename.to_string_lossy())));
        }
        if let Some(b) = &self.backing_format {
            fields.push(format!("\"backing-filename-format\": {}", json_str(b)));
        }
        if let Some(bi) = &self.backing {
            fields.push(format!("\"backing-image\": {}", bi.to_json()));
        }
        format!("{{{}}}", fields.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_qemu_img() {
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(human_size(196 * 1024), "196 KiB");
        assert_eq!(human_size(3 << 19), "1.5 MiB");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(json_str("a\"b\n"), "\"a\\\"b\\u000a\"");
    }
}
