//! Shared by the targets: the input becomes an image file; open it (with `format` forced or
//! detected), read a few places, describe it. Errors are fine; panics, OOM and hangs are not.

use std::path::PathBuf;

use disk::{Format, OpenOptions};

pub fn exercise(data: &[u8], format: Option<Format>) {
    let dir = std::env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let path = dir.join(format!("chr-vmm-fuzz-{}.img", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let options = OpenOptions { read_only: true, force_share: true, format, ..Default::default() };
    if let Ok(d) = disk::open(&path, options) {
        let mut buf = vec![0u8; 128 * 1024];
        let size = d.size();
        for at in [0, size / 3, size.saturating_sub(buf.len() as u64)] {
            let n = (buf.len() as u64).min(size.saturating_sub(at)) as usize;
            let _ = d.read_at(&mut buf[..n], at);
        }
    }
    if format.is_none() {
        let _ = disk::info(&path).map(|i| i.to_json());
    }
    let _ = std::fs::remove_file(&path);
}
