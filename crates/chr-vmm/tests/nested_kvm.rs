//! The KVM path end to end on a real (nested) KVM: the test guest boots over virtio-blk to its
//! login prompt with 1 and 2 vCPUs, comes back after a guest reboot, exits 0 when the guest
//! powers off, and powers the guest off on SIGTERM; user-mode networking leases it an address
//! and forwards a host port to its HTTP server; a direct kernel boot (`--kernel`) with two
//! vCPUs finds its disk and powers off through ACPI. Runs inside scripts/nested-kvm.sh (QEMU TCG
//! with an emulated AMD CPU whose nested SVM gives a hardware-style /dev/kvm).

mod common;

use std::process::Command;

use common::{chr_vmm, script, skip, test_guest};

/// The script run inside L1. Each scenario prints `SCENARIO name rc=N` and the serial log.
const SCENARIOS: &str = r#"#!/bin/sh
VMM=/payload/chr-vmm
DISK=/payload/guest.img
wait_for() { # file pattern seconds
  i=0; while [ $i -lt $(($3 * 10)) ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; i=$((i+1)); done; return 1; }
boot() { # name cpus [extra args]
  rm -f /tmp/in /tmp/serial; mkfifo /tmp/in
  $VMM run --accel kvm --cpus $2 --firmware /payload/bios-256k.bin $3 $DISK < /tmp/in > /tmp/serial 2>/tmp/vmm.log &
  PID=$!; exec 3>/tmp/in
  if wait_for /tmp/serial "MikroTik Login:" 90; then echo "SCENARIO $1 login-ok"; else echo "SCENARIO $1 login-missing"; fi
}
finish() { # name
  i=0; while kill -0 $PID 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  if kill -0 $PID 2>/dev/null; then kill -9 $PID; echo "SCENARIO $1 rc=hung"; else wait $PID; echo "SCENARIO $1 rc=$?"; fi
  exec 3>&-
  echo "--- $1 serial"; tail -c 3000 /tmp/serial; echo "--- $1 log"; tail -c 2000 /tmp/vmm.log; echo "--- end"
}
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
boot one 1 "--net user,hostfwd=tcp:127.0.0.1:8080-:80"
wait_for /tmp/serial "chr-test-guest: dhcp eth0" 30
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 nc 127.0.0.1 8080 | grep -q "200 OK" && echo "SCENARIO one http-ok"
echo 'reboot -f' >&3
i=0; while [ $i -lt 900 ] && [ "$(grep -c 'chr-test-guest: ready' /tmp/serial)" -lt 2 ]; do sleep 0.1; i=$((i+1)); done
[ "$(grep -c 'chr-test-guest: ready' /tmp/serial)" -ge 2 ] && echo "SCENARIO one rebooted" || echo "SCENARIO one no-reboot"
sleep 1; echo 'poweroff -f' >&3
finish one
boot two 2
sleep 1; echo 'grep -c ^processor /proc/cpuinfo' >&3; sleep 2
grep -q '^2' /tmp/serial && echo "SCENARIO two cpus=2" || echo "SCENARIO two cpus=?"
kill -TERM $PID
finish two
rm -f /tmp/in /tmp/serial; mkfifo /tmp/in
$VMM run --accel kvm --cpus 2 --firmware /payload/bios-256k.bin --kernel /payload/vmlinuz --initrd /payload/initrd.gz \
  --cmdline "console=ttyS0 quiet chr_test=poweroff" $DISK < /tmp/in > /tmp/serial 2>/tmp/vmm.log &
PID=$!; exec 3>/tmp/in
wait_for /tmp/serial "chr-test-guest: ready" 90 && echo "SCENARIO kernel ready" || echo "SCENARIO kernel not-ready"
finish kernel
grep -q "virtio-blk ok" /tmp/serial && echo "SCENARIO kernel blk-ok"
"#;

#[test]
fn test_guest_boots_on_nested_kvm() {
    const NAME: &str = "test_guest_boots_on_nested_kvm";
    let harness = script("nested-kvm.sh");
    let guest = match test_guest() {
        Ok(g) => g,
        Err(e) => return skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    let payload = std::env::temp_dir().join(format!("chr-vmm-nested-{}", std::process::id()));
    std::fs::create_dir_all(&payload).unwrap();
    std::fs::copy(chr_vmm(), payload.join("chr-vmm")).unwrap();
    std::fs::copy("/usr/share/seabios/bios-256k.bin", payload.join("bios-256k.bin")).unwrap();
    for file in ["guest.img", "vmlinuz", "initrd.gz"] {
        std::fs::copy(guest.join(file), payload.join(file)).unwrap();
    }
    std::fs::write(payload.join("run"), SCENARIOS).unwrap();
    let out = Command::new("bash")
        .arg(&harness)
        .args(["-t", "400", "-L"])
        .arg(payload.join("chr-vmm"))
        .arg(&payload)
        .arg("sh ./run")
        .output()
        .expect("run the nested-KVM harness");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&payload);
    // Status 3 before L1 is up: this machine cannot run L1 (its kernel or QEMU could not be
    // installed); after that, 3 would be the scenario script's own status.
    if out.status.code() == Some(3) && !text.contains("NESTED-KVM: L1 up") {
        let why = String::from_utf8_lossy(&out.stderr);
        return skip(NAME, &format!("scripts/nested-kvm.sh cannot run L1 here: {}", why.trim()));
    }
    if text.contains("NESTED-KVM: no /dev/kvm") {
        return skip(NAME, "the nested L1 guest has no /dev/kvm");
    }
    for expected in [
        "SCENARIO one login-ok",
        "SCENARIO one http-ok",
        "SCENARIO one rebooted",
        "SCENARIO one rc=0",
        "SCENARIO two login-ok",
        "SCENARIO two cpus=2",
        "SCENARIO two rc=0",
        "SCENARIO kernel ready",
        "SCENARIO kernel rc=0",
        "SCENARIO kernel blk-ok",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in the nested run:\n{text}");
    }
}
