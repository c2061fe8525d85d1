//! Finding SeaBIOS.

use std::path::{Path, PathBuf};

/// The BIOS image chr-vmm boots.
pub const BIOS_NAME: &str = "bios-256k.bin";
/// The std-vga option ROM (SeaVGABIOS), from the same package.
pub const VGA_BIOS_NAME: &str = "vgabios-stdvga.bin";

/// Directories searched for firmware, in order, after $CHR_VMM_FIRMWARE_DIR.
const SEARCH_DIRS: &[&str] =
    &["/usr/share/chr-vmm", "/usr/share/seabios", "/usr/share/qemu", "/usr/local/share/qemu"];

/// Why no firmware could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// Nothing found on the search path.
    #[error(
        "cannot find the SeaBIOS firmware {name} in {searched}. Install it (Debian/Ubuntu: `apt-get install seabios`; Alpine: `apk add seabios-bin`) or pass --firmware PATH"
    )]
    NotFound { name: &'static str, searched: String },
    /// The file exists but cannot be read.
    #[error("cannot read the firmware {path}: {source}. Check the path given to --firmware")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Locates `name`: the explicit path if given, else the search path.
pub fn find(explicit: Option<&Path>, name: &'static str) -> Result<PathBuf, FirmwareError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("CHR_VMM_FIRMWARE_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir.join("firmware"));
    }
    dirs.extend(SEARCH_DIRS.iter().map(PathBuf::from));
    for d in &dirs {
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let searched = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(FirmwareError::NotFound { name, searched })
}

/// Locates `name` next to the `--firmware` image if one was given and it is there, else on the
/// search path (the VGA BIOS travels with SeaBIOS).
pub fn find_beside(bios: Option<&Path>, name: &'static str) -> Result<PathBuf, FirmwareError> {
    let sibling = bios.and_then(Path::parent).map(|d| d.join(name)).filter(|p| p.is_file());
    find(sibling.as_deref(), name)
}

/// Reads the firmware file at `path`.
pub fn load(path: &Path) -> Result<Vec<u8>, FirmwareError> {
    std::fs::read(path).map_err(|source| FirmwareError::Read { path: path.to_path_buf(), source })
}
