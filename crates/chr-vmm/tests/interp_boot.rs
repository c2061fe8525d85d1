//! The interpreter (`--accel interp`) behind the same machine: SeaBIOS POSTs on it, boots our
//! MBR program from virtio-blk through INT 13h, and hands the test guest to SYSLINUX. Needs no
//! KVM, so it runs on every host.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{repo_root, skip, test_guest, Vmm};

#[test]
fn interpreter_runs_seabios_and_our_mbr_program() {
    let disk = std::env::temp_dir().join(format!("chr-vmm-interp-mbr-{}.img", std::process::id()));
    let out = Command::new(repo_root().join("firmware/mbr-checksum/make-disk.sh"))
        .arg(&disk)
        .arg("300")
        .output()
        .expect("run make-disk.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut vmm = Vmm::start(&["--accel", "interp", disk.to_str().unwrap()]);
    assert!(
        vmm.wait_for(&expected, Duration::from_secs(60)).is_some(),
        "expected {expected:?}\n{}",
        vmm.report()
    );
    let _ = std::fs::remove_file(disk);
}

#[test]
fn interpreter_boots_the_test_guest_into_syslinux() {
    const NAME: &str = "interpreter_boots_the_test_guest_into_syslinux";
    let guest = match test_guest() {
        Ok(g) => g,
        Err(e) => return skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    let disk = guest.join("guest.img");
    let mut vmm = Vmm::start(&["--accel", "interp", "--snapshot", disk.to_str().unwrap()]);
    assert!(vmm.wait_for("SYSLINUX 6", Duration::from_secs(60)).is_some(), "{}", vmm.report());
    vmm.signal(libc::SIGINT);
    assert!(vmm.wait_exit(Duration::from_secs(10)).is_some(), "no exit on SIGINT\n{}", vmm.report());
}
