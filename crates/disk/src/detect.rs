//! Format detection from a file's first bytes.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::str::FromStr;

use crate::DiskError;

/// The image formats this crate opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The file is the disk.
    Raw,
    /// VMware's format: a text descriptor and sparse or flat extents.
    Vmdk,
    /// QEMU's copy-on-write format.
    Qcow2,
    /// VirtualBox's format.
    Vdi,
    /// Hyper-V's format (read only).
    Vhdx,
}

impl Format {
    /// The name `qemu-img` uses for the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Vmdk => "vmdk",
            Format::Qcow2 => "qcow2",
            Format::Vdi => "vdi",
            Format::Vhdx => "vhdx",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = DiskError;

    fn from_str(s: &str) -> Result<Self, DiskError> {
        Ok(match s {
            "raw" => Format::Raw,
            "vmdk" => Format::Vmdk,
            "qcow2" => Format::Qcow2,
            "vdi" => Format::Vdi,
            "vhdx" => Format::Vhdx,
            other => return Err(DiskError::Unsupported(format!("the image format \"{other}\""))),
        })
    }
}

/// How much of the file detection looks at.
const PROBE_LEN: usize = 4096;
/// A separate VMDK descriptor is a small text file; larger files are disks.
const MAX_DESCRIPTOR_FILE: u64 = 64 * 1024;

/// Detects the format of the image at `path` from its content.
pub fn detect_format(path: &Path) -> Result<Format, DiskError> {
    let file = File::open(path).map_err(|source| DiskError::Open { path: path.to_path_buf(), source })?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; PROBE_LEN];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    head.truncate(got);
    let tail = if len >= 512 {
        let mut t = [0u8; 512];
        file.read_exact_at(&mut t, len - 512)?;
        Some(t)
    } else {
        None
    };
    detect_bytes(&head, tail.as_ref().map(|t| &t[..]), len)
}

/// Detects a format from the first bytes of a file, its last sector and its length.
pub(crate) fn detect_bytes(head: &[u8], tail: Option<&[u8]>, len: u64) -> Result<Format, DiskError> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"QFI\xfb") {
        return Ok(Format::Qcow2);
    }
    if starts(b"KDMV") {
        return Ok(Format::Vmdk);
    }
    if starts(b"vhdxfile") {
        return Ok(Format::Vhdx);
    }
    if head.len() >= 68 && head[64..68] == [0x7f, 0x10, 0xda, 0xbe] {
        return Ok(Format::Vdi);
    }
    if starts(b"COWD") {
        return Err(DiskError::Unsupported("VMDK version 3 (ESX COWD) sparse extents".into()));
    }
    if starts(b"QFI") {
        return Err(DiskError::Unsupported("qcow version 1 images".into()));
    }
    if starts(b"QED\0") {
        return Err(DiskError::Unsupported("QED images".into()));
    }
    if starts(b"LUKS\xba\xbe") {
        return Err(DiskError::Unsupported("LUKS-encrypted images".into()));
    }
    if starts(b"conectix") || tail.is_some_and(|t| t.starts_with(b"conectix")) {
        return Err(DiskError::Unsupported("VHD (Virtual PC) images; MikroTik's .vhdx is supported".into()));
    }
    if len <= MAX_DESCRIPTOR_FILE && looks_like_vmdk_descriptor(head) {
        return Ok(Format::Vmdk);
    }
    Ok(Format::Raw)
}

/// A VMDK descriptor is plain text with a `createType=` line.
fn looks_like_vmdk_descriptor(head: &[u8]) -> bool {
    let text_end = head.iter().position(|&b| b == 0).unwrap_or(head.len());
    let text = &head[..text_end];
    if text.iter().any(|&b| b >= 0x80 || (b < 0x20 && !b"\r\n\t".contains(&b))) {
        return false;
    }
    let Ok(s) = std::str::from_utf8(text) else {
        return false;
    };
    s.lines().any(|l| l.trim_start().starts_with("createType"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic_not_name() {
        assert_eq!(detect_bytes(b"QFI\xfb\0\0\0\x03", None, 1 << 20).ok(), Some(Format::Qcow2));
        assert_eq!(detect_bytes(b"KDMV", None, 1 << 20).ok(), Some(Format::Vmdk));
        assert_eq!(detect_bytes(b"vhdxfile", None, 1 << 20).ok(), Some(Format::Vhdx));
        let mut vdi = vec![0u8; 512];
        vdi[64..68].copy_from_slice(&0xbeda107fu32.to_le_bytes());
        assert_eq!(detect_bytes(&vdi, None, 1 << 20).ok(), Some(Format::Vdi));
        let desc = b"# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n";
        assert_eq!(detect_bytes(desc, None, 100).ok(), Some(Format::Vmdk));
        // The same text at the start of a big disk is just data.
        assert_eq!(detect_bytes(desc, None, 1 << 30).ok(), Some(Format::Raw));
        assert_eq!(detect_bytes(&[0u8; 512], None, 512).ok(), Some(Format::Raw));
        assert!(matches!(detect_bytes(b"conectix", None, 1 << 20), Err(DiskError::Unsupported(_))));
    }
}
