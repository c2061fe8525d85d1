//! Snapshot mode (a private, unlinked qcow2 overlay) and persistent qcow2 overlay files.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::qcow2::{self, Backing, Qcow2Image};
use crate::{detect_format, BlockDevice, DiskError, Format, OpenOptions};

static SNAPSHOT_SEQ: AtomicU32 = AtomicU32::new(0);

/// Puts a private overlay in `$TMPDIR` in front of `base`; the file is unlinked at once, so it
/// disappears when the device is dropped or the process dies. Its tables stay in memory and
/// guest flushes cost nothing: none of it has to survive a crash.
pub(crate) fn snapshot(base: Box<dyn BlockDevice>) -> Result<Box<dyn BlockDevice>, DiskError> {
    let path = std::env::temp_dir().join(format!(
        "chr-vmm-snapshot-{}-{}.qcow2",
        std::process::id(),
        SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let file = FsOpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| DiskError::Open { path: path.clone(), source })?;
    std::fs::remove_file(&path)?;
    qcow2::create(&file, base.size(), None)?;
    let image = Qcow2Image::from_file(file, &path, OpenOptions::default(), Backing::Device(base))?;
    image.set_volatile()?;
    Ok(Box::new(image))
}

/// Creates a qcow2 overlay at `overlay` whose backing file is `base` (recorded as an absolute
/// path, with its detected format), of the same virtual size. Fails if `overlay` exists.
pub fn create_overlay(base: &Path, overlay: &Path) -> Result<(), DiskError> {
    let format = detect_format(base)?;
    let base_dev = crate::open(
        base,
        OpenOptions { read_only: true, force_share: true, format: Some(format), ..OpenOptions::default() },
    )?;
    let size = base_dev.size();
    drop(base_dev);
    let abs = base.canonicalize().map_err(|source| DiskError::Open { path: base.to_path_buf(), source })?;
    let name =
        abs.to_str().ok_or_else(|| DiskError::Unsupported("a base image path that is not UTF-8".into()))?;
    let file: File = FsOpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(overlay)
        .map_err(|source| DiskError::Open { path: overlay.to_path_buf(), source })?;
    if let Err(e) = qcow2::create(&file, size, Some((name, format.name()))) {
        drop(file);
        let _ = std::fs::remove_file(overlay);
        return Err(e);
    }
    Ok(())
}

/// Opens `overlay` (a qcow2 file), first creating it over `base` if it does not exist yet. The
/// base is only ever opened read-only. `options.snapshot` and `options.format` are ignored.
pub fn open_with_overlay(
    base: &Path,
    overlay: &Path,
    options: OpenOptions,
) -> Result<Box<dyn BlockDevice>, DiskError> {
    if !overlay.exists() {
        create_overlay(base, overlay)?;
        log::info!("created overlay {} over {}", overlay.display(), base.display());
    } else if detect_format(overlay)? != Format::Qcow2 {
        return Err(DiskError::Unsupported(format!(
            "an overlay file ({}) that is not qcow2; remove it to have a new one created",
            overlay.display()
        )));
    }
    crate::open(overlay, OpenOptions { snapshot: false, format: Some(Format::Qcow2), ..options })
}
