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

/// SYSLINUX's second banner appears once ldlinux.sys has been read from the FAT partition,
/// so it proves real reads through each image format.
const SYSLINUX_LOADED: &str = "SYSLINUX 6.04 20210613";

#[test]
fn the_guest_boots_from_every_format_mikrotik_ships() {
    const NAME: &str = "the_guest_boots_from_every_format_mikrotik_ships";
    let guest = match test_guest() {
        Ok(g) => g,
        Err(e) => return skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    for file in ["guest.img", "guest.vmdk", "guest-stream.vmdk", "guest.vdi", "guest.vhdx", "guest.qcow2"] {
        let disk = guest.join(file);
        let mut vmm = Vmm::start(&["--accel", "interp", "--snapshot", disk.to_str().unwrap()]);
        assert!(vmm.wait_for(SYSLINUX_LOADED, Duration::from_secs(60)).is_some(), "{file}\n{}", vmm.report());
    }
}

#[test]
fn an_overlay_takes_the_writes_and_leaves_the_base_alone() {
    const NAME: &str = "an_overlay_takes_the_writes_and_leaves_the_base_alone";
    let guest = match test_guest() {
        Ok(g) => g,
        Err(e) => return skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    let dir = std::env::temp_dir().join(format!("chr-vmm-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("chr.vmdk");
    std::fs::copy(guest.join("guest.vmdk"), &base).unwrap();
    let before = std::fs::read(&base).unwrap();
    let overlay = dir.join("state.qcow2");
    let mut vmm =
        Vmm::start(&["--accel", "interp", "--overlay", overlay.to_str().unwrap(), base.to_str().unwrap()]);
    assert!(vmm.wait_for(SYSLINUX_LOADED, Duration::from_secs(60)).is_some(), "{}", vmm.report());
    vmm.signal(libc::SIGINT);
    assert!(vmm.wait_exit(Duration::from_secs(10)).is_some(), "{}", vmm.report());
    assert_eq!(std::fs::read(&base).unwrap(), before, "the base image changed");
    let info = Command::new(common::chr_vmm()).arg("info").arg("--json").arg(&overlay).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("\"format\": \"qcow2\"") && text.contains("chr.vmdk"), "{text}");
    if let Ok(check) = Command::new("qemu-img").arg("check").arg(&overlay).output() {
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    }
    let _ = std::fs::remove_dir_all(dir);
}
