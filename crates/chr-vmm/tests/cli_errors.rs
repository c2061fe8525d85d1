//! Bad input gives a clear error and writes nothing.

mod common;

use std::process::Command;

use common::chr_vmm;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(chr_vmm()).arg("run").args(args).output().expect("run chr-vmm");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn scratch_disk(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("chr-vmm-cli-{}-{name}.img", std::process::id()));
    std::fs::write(&p, vec![0u8; 1 << 20]).expect("write a scratch disk");
    p
}

#[test]
fn a_missing_firmware_file_is_a_clear_error() {
    let disk = scratch_disk("fw");
    let (code, err) = run(&["--accel", "kvm", "--firmware", "/nonexistent/bios.bin", disk.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot read the firmware /nonexistent/bios.bin"), "{err}");
    assert!(err.contains("--firmware"), "{err}");
    let _ = std::fs::remove_file(disk);
}

#[test]
fn unreadable_disk_and_tiny_memory_are_errors() {
    let (code, err) = run(&["--accel", "kvm", "/nonexistent/chr.img"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot open disk image /nonexistent/chr.img"), "{err}");
    let disk = scratch_disk("mem");
    let (code, err) = run(&["--accel", "kvm", "--memory", "1M", disk.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("too little"), "{err}");
    let (code, err) = run(&["--accel", "kvm", "--memory", "64T", disk.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("more than this host's"), "{err}");
    let (code, err) = run(&["--memory", "12Q", disk.to_str().unwrap()]);
    assert_eq!(code, 2, "clap usage error");
    assert!(err.contains("unknown size suffix"), "{err}");
    let _ = std::fs::remove_file(disk);
}

#[test]
fn a_disk_in_use_is_refused() {
    let disk = scratch_disk("lock");
    let holder = std::fs::OpenOptions::new().read(true).write(true).open(&disk).unwrap();
    let fd = std::os::unix::io::AsRawFd::as_raw_fd(&holder);
    // SAFETY: flock on a descriptor we own.
    let locked = unsafe { libc::flock(fd, libc::LOCK_EX) };
    assert_eq!(locked, 0);
    let before = std::fs::read(&disk).unwrap();
    let (code, err) = run(&["--accel", "kvm", disk.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("in use by another process"), "{err}");
    assert_eq!(std::fs::read(&disk).unwrap(), before, "nothing written");
    drop(holder);
    let _ = std::fs::remove_file(disk);
}
