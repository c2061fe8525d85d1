//! SeaBIOS on KVM: POST, PCI enumeration and the serial console, with no bootable disk.
//! Runs on any host with /dev/kvm, including this machine's kvm-pvm (real-mode code works there).

mod common;

use std::time::Duration;

use common::{host_kvm, skip, HostKvm, Vmm};

#[test]
fn seabios_posts_and_reports_no_bootable_disk() {
    if host_kvm() == HostKvm::Missing {
        return skip("seabios_posts_and_reports_no_bootable_disk", "/dev/kvm is missing or cannot be opened");
    }
    let disk = std::env::temp_dir().join(format!("chr-vmm-blank-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let mut vmm = Vmm::start(&["--accel", "kvm", disk.to_str().unwrap()]);
    assert!(vmm.wait_for("SeaBIOS (version", Duration::from_secs(20)).is_some(), "{}", vmm.report());
    assert!(vmm.wait_for("No bootable device", Duration::from_secs(30)).is_some(), "{}", vmm.report());
    vmm.signal(libc::SIGINT);
    assert!(vmm.wait_exit(Duration::from_secs(10)).is_some(), "VMM did not stop on SIGINT\n{}", vmm.report());
    let _ = std::fs::remove_file(disk);
}
