//! Whether this host's /dev/kvm can run an ordinary guest.

use std::path::Path;

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usability {
    /// KVM with a hardware vendor module (kvm_intel or kvm_amd).
    Usable(String),
    /// /dev/kvm exists but cannot run this guest, or is missing; the reason says which.
    Unusable(String),
}

/// Checks /dev/kvm and the loaded KVM vendor module.
///
/// A paravirtual `kvm-pvm` runs real-mode firmware but not an ordinary Linux guest, so it is
/// reported unusable; so is a /dev/kvm that cannot be opened.
pub fn probe() -> Usability {
    probe_at(Path::new("/dev/kvm"), Path::new("/sys/module"))
}

fn probe_at(dev: &Path, modules: &Path) -> Usability {
    if !dev.exists() {
        return Usability::Unusable(format!("{} does not exist", dev.display()));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Usability::Unusable(format!("{} cannot be opened: {e}", dev.display()));
    }
    if modules.join("kvm_pvm").exists() {
        return Usability::Unusable(
            "/dev/kvm is kvm-pvm, a paravirtual nested KVM that cannot run an ordinary guest".into(),
        );
    }
    for vendor in ["kvm_intel", "kvm_amd"] {
        if modules.join(vendor).exists() {
            return Usability::Usable(format!("/dev/kvm is backed by {vendor}"));
        }
    }
    Usability::Unusable("/dev/kvm has no hardware vendor module (kvm_intel or kvm_amd)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_and_missing_are_unusable() {
        let dir = std::env::temp_dir().join(format!("chr-vmm-probe-{}", std::process::id()));
        let modules = dir.join("module");
        std::fs::create_dir_all(modules.join("kvm")).unwrap();
        let dev = dir.join("kvm");
        assert!(matches!(probe_at(&dev, &modules), Usability::Unusable(r) if r.contains("does not exist")));
        std::fs::write(&dev, b"").unwrap();
        assert!(matches!(probe_at(&dev, &modules), Usability::Unusable(r) if r.contains("vendor")));
        std::fs::create_dir_all(modules.join("kvm_amd")).unwrap();
        assert!(matches!(probe_at(&dev, &modules), Usability::Usable(r) if r.contains("kvm_amd")));
        std::fs::create_dir_all(modules.join("kvm_pvm")).unwrap();
        assert!(matches!(probe_at(&dev, &modules), Usability::Unusable(r) if r.contains("kvm-pvm")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
