//! Raw images: the file is the disk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::{check_range, BlockDevice, DiskError, OpenOptions};

/// A raw image file.
pub struct RawImage {
    file: File,
    size: u64,
    read_only: bool,
}

/// How long a lock held by someone else is waited for before the image counts as in use.
///
/// A lock belongs to the open file, and a process that forks (to start a helper) lends a copy of
/// every descriptor to its child until the child's exec closes it. A disk closed and opened
/// again at once (a guest reset, a test) can thus find its own lock still held for a moment;
/// another VMM holding the image keeps it far longer than this.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Takes an advisory lock on `file` (shared for readers, exclusive for writers), like QEMU.
pub(crate) fn lock_file(file: &File, path: &Path, exclusive: bool) -> Result<(), DiskError> {
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a file descriptor we own; it touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(DiskError::Io(err));
        }
        if std::time::Instant::now() >= deadline {
            return Err(DiskError::Locked(path.to_path_buf()));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl RawImage {
    /// Opens `path` as a raw image and locks it.
    pub fn open(path: &Path, options: OpenOptions) -> Result<Self, DiskError> {
        let file = crate::util::open_locked(path, options.read_only, options.force_share)?;
        let size = file.metadata()?.len() / crate::SECTOR_SIZE * crate::SECTOR_SIZE;
        Ok(Self { file, size, read_only: options.read_only })
    }
}

impl BlockDevice for RawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        check_range(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        self.file.write_all_at(buf, offset)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn format(&self) -> &'static str {
        "raw"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_image(bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("chr-vmm-raw-{}-{}", std::process::id(), bytes.len()));
        let mut f = File::create(&path).unwrap();
        f.write_all(bytes).unwrap();
        path
    }

    #[test]
    fn reads_writes_and_refuses_past_end() {
        let path = temp_image(&[7u8; 1024]);
        let img = RawImage::open(&path, OpenOptions::default()).unwrap();
        assert_eq!(img.size(), 1024);
        img.write_at(&[1; 512], 512).unwrap();
        let mut buf = [0u8; 1024];
        img.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..512], &[7; 512]);
        assert_eq!(&buf[512..], &[1; 512]);
        assert!(matches!(img.read_at(&mut buf, 512), Err(DiskError::OutOfRange { .. })));
        assert!(matches!(img.read_at(&mut buf, u64::MAX), Err(DiskError::OutOfRange { .. })));
        // A second writer is refused by the lock.
        assert!(matches!(RawImage::open(&path, OpenOptions::default()), Err(DiskError::Locked(_))));
        drop(img);
        let ro = RawImage::open(&path, OpenOptions { read_only: true, ..OpenOptions::default() }).unwrap();
        assert!(matches!(ro.write_at(&[0; 512], 0), Err(DiskError::ReadOnly)));
        std::fs::remove_file(path).unwrap();
    }
}
