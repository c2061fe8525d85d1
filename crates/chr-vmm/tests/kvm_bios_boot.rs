//! BIOS boots on KVM that work even on this workplace's kvm-pvm (it runs real-mode code):
//! our MBR program reads sectors through SeaBIOS's INT 13h over virtio-blk and prints their
//! checksum, and the test guest reaches SYSLINUX, after which a kvm-pvm host must end with a
//! clear error rather than hang.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{host_kvm, repo_root, skip, test_guest, HostKvm, Vmm};

#[test]
fn mbr_program_reads_the_disk_through_int13() {
    const NAME: &str = "mbr_program_reads_the_disk_through_int13";
    if host_kvm() == HostKvm::Missing {
        return skip(NAME, "/dev/kvm is missing or cannot be opened");
    }
    let disk = std::env::temp_dir().join(format!("chr-vmm-mbr-{}.img", std::process::id()));
    let script = repo_root().join("firmware/mbr-checksum/make-disk.sh");
    let out = Command::new(&script).arg(&disk).arg("300").output().expect("run make-disk.sh");
    assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    let expected = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(expected.starts_with("MBR-CHECKSUM sectors=300 sum="), "{expected}");
    let mut vmm = Vmm::start(&["--accel", "kvm", disk.to_str().unwrap()]);
    let found = vmm.wait_for("MBR-CHECKSUM sectors=", Duration::from_secs(30)).is_some()
        && vmm.wait_for(&expected, Duration::from_secs(10)).is_some();
    assert!(found, "expected {expected:?}\n{}", vmm.report());
    let _ = std::fs::remove_file(disk);
}

#[test]
fn test_guest_reaches_syslinux_and_kvm_pvm_ends_with_an_error() {
    const NAME: &str = "test_guest_reaches_syslinux_and_kvm_pvm_ends_with_an_error";
    match host_kvm() {
        HostKvm::Missing => return skip(NAME, "/dev/kvm is missing or cannot be opened"),
        HostKvm::Real => {
            return skip(NAME, "this host's KVM is a real one; nested_kvm.rs covers the full boot")
        }
        HostKvm::Pvm => {}
    }
    let guest = match test_guest() {
        Ok(g) => g,
        Err(e) => return skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    let disk = guest.join("guest.img");
    let mut vmm = Vmm::start(&["--accel", "kvm", "--snapshot", disk.to_str().unwrap()]);
    assert!(vmm.wait_for("SYSLINUX", Duration::from_secs(30)).is_some(), "{}", vmm.report());
    let code = vmm.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(Some(1)), "the VMM must stop with an error, not hang\n{}", vmm.report());
    assert!(vmm.log().contains("cannot run this guest"), "{}", vmm.report());
}
