//! The serial console over real sockets: a telnet server (with the output produced before the
//! client connected replayed to it) and a Unix socket. Uses our MBR program, which prints on
//! COM1 through SeaBIOS on any KVM, kvm-pvm included.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{host_kvm, repo_root, skip, HostKvm, Vmm};

fn mbr_disk(tag: &str) -> (std::path::PathBuf, String) {
    let disk = std::env::temp_dir().join(format!("chr-vmm-serial-{tag}-{}.img", std::process::id()));
    let out = Command::new(repo_root().join("firmware/mbr-checksum/make-disk.sh"))
        .arg(&disk)
        .arg("20")
        .output()
        .expect("run make-disk.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (disk, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn read_until(mut r: impl Read, needle: &str, timeout: Duration) -> String {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < timeout {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => break,
        }
        if String::from_utf8_lossy(&seen).contains(needle) {
            break;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

#[test]
fn telnet_console_replays_early_output() {
    if host_kvm() == HostKvm::Missing {
        return skip("telnet_console_replays_early_output", "/dev/kvm is missing or cannot be opened");
    }
    let (disk, expected) = mbr_disk("telnet");
    let port = free_port();
    let spec = format!("telnet:127.0.0.1:{port}");
    let vmm = Vmm::start(&["--accel", "kvm", "--serial", &spec, disk.to_str().unwrap()]);
    // Connect only after the guest has printed, so the line must come from the backlog.
    std::thread::sleep(Duration::from_secs(8));
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the telnet console");
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let text = read_until(stream, &expected, Duration::from_secs(20));
    assert!(text.contains(&expected), "got {text:?}\n{}", vmm.report());
    let _ = std::fs::remove_file(disk);
}

#[test]
fn unix_socket_console() {
    if host_kvm() == HostKvm::Missing {
        return skip("unix_socket_console", "/dev/kvm is missing or cannot be opened");
    }
    let (disk, expected) = mbr_disk("unix");
    let sock = std::env::temp_dir().join(format!("chr-vmm-console-{}.sock", std::process::id()));
    let spec = format!("unix:{}", sock.display());
    let vmm = Vmm::start(&["--accel", "kvm", "--serial", &spec, disk.to_str().unwrap()]);
    let start = Instant::now();
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no socket\n{}", vmm.report());
        std::thread::sleep(Duration::from_millis(50));
    };
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let text = read_until(stream, &expected, Duration::from_secs(30));
    assert!(text.contains(&expected), "got {text:?}\n{}", vmm.report());
    let _ = std::fs::remove_file(disk);
    let _ = std::fs::remove_file(sock);
}
