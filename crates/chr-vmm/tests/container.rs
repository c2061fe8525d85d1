//! The container image end to end: `images/container/build.sh` builds it around this test's
//! chr-vmm, docker runs it on the test guest with nothing but a published port and two volumes
//! (no privileges, no /dev/kvm: the interpreter boots it), and the test checks that
//! - the guest's serial console reaches its login prompt, as `docker logs` tells, and docker's
//!   health check then calls the container healthy;
//! - the published port reaches the guest's web server through the default user-mode network
//!   (RouterOS's port 80 among the forwarded ones);
//! - the container's second interface (`eth1`, a second docker network, as containerlab wires
//!   one) is the guest's second card, and the guest reaches that network's gateway through it;
//! - guest writes go to an overlay on the /data volume, the image stays untouched, and what the
//!   guest wrote (through a forwarded telnet) is still there after `docker restart`.
//!
//! Needs root and a running docker daemon (scripts/dockerd.sh starts one); skipped otherwise.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{chr_vmm, repo_root, skip, test_guest};

const NAME: &str = "container::image_boots_the_guest_and_forwards_its_ports";

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Why docker cannot be used here, if it cannot.
fn docker_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root for the docker daemon".into());
    }
    match Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output() {
        Err(e) => Some(format!("no docker client ({e}); scripts/install-deps.sh installs docker.io")),
        Ok(o) if !o.status.success() => {
            Some(format!("no docker daemon answers ({}); scripts/dockerd.sh starts one", text(&o).trim()))
        }
        Ok(_) => None,
    }
}

/// Waits until `docker logs` of `name` shows `needle` `times` times.
fn wait_logs(name: &str, needle: &str, times: usize, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let logs = text(&docker(&["logs", name]));
        if logs.matches(needle).count() >= times {
            return Some(logs);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// GETs / from 127.0.0.1:`port`, retrying while the forward or the guest's server is not up.
fn http_get(port: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.contains("200 OK") || Instant::now() >= deadline {
                return out;
            }
        } else if Instant::now() >= deadline {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `cmd` in the guest's shell through its telnetd (forwarded like RouterOS's telnet) and
/// returns what came back up to the end mark.
fn guest_shell(port: u16, cmd: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    // The end mark is computed by the shell, so the echoed command line does not contain it.
    let _ = s.write_all(format!("{cmd}; echo END-$((6*7))\r\n").as_bytes());
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !String::from_utf8_lossy(&out).contains("END-42") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Removes the container and its second network when the test ends, however it ends.
struct Container {
    name: String,
    network: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
        let _ = docker(&["network", "rm", &self.network]);
    }
}

#[test]
fn image_boots_the_guest_and_forwards_its_ports() {
    if let Some(why) = docker_unavailable() {
        return skip(NAME, &why);
    }
    let guest = match test_guest() {
        Ok(g) => g,
        Err(e) => return skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    let pid = std::process::id();
    let tag = format!("chr-vmm-test:{pid}");
    let built = Command::new(repo_root().join("images/container/build.sh"))
        .arg(&tag)
        .env("CHR_VMM_BIN", chr_vmm())
        .output()
        .expect("run images/container/build.sh");
    assert!(built.status.success(), "the image builds: {}", text(&built));

    let work = std::env::temp_dir().join(format!("chr-vmm-container-{pid}"));
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let disk = work.join("guest.img");
    std::fs::copy(guest.join("guest.img"), &disk).unwrap();
    let before = std::fs::read(&disk).unwrap();

    let name = format!("chr-vmm-test-{pid}");
    let (port, telnet) = (free_port(), free_port());
    // A second network, as containerlab would wire a data link: the container's eth1.
    let network = format!("chr-vmm-test-{pid}");
    let subnet = 10 + pid % 200;
    let container = Container { name: name.clone(), network: network.clone() };
    let made = docker(&[
        "network",
        "create",
        "--subnet",
        &format!("10.199.{subnet}.0/24"),
        "--gateway",
        &format!("10.199.{subnet}.1"),
        &network,
    ]);
    assert!(made.status.success(), "docker network create: {}", text(&made));
    let volume = |host: &Path, inside: &str| format!("{}:{inside}", host.display());
    let created = docker(&[
        "create",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-p",
        &format!("127.0.0.1:{telnet}:23"),
        "-v",
        &volume(&disk, "/image/guest.img:ro"),
        "-v",
        &volume(&data, "/data"),
        "-e",
        "CHR_VMM_LOG=info",
        &tag,
    ]);
    assert!(created.status.success(), "docker create: {}", text(&created));
    let connected = docker(&["network", "connect", &network, &name]);
    assert!(connected.status.success(), "docker network connect: {}", text(&connected));
    let started = docker(&["start", &name]);
    assert!(started.status.success(), "docker start: {}", text(&started));

    // The prompt ends without a newline, so docker logs (line by line) shows chr-vmm's log line
    // that reports it.
    let ready = "login prompt on the serial console";
    let logs = wait_logs(&name, ready, 1, Duration::from_secs(180));
    let logs = logs
        .unwrap_or_else(|| panic!("no login prompt in docker logs:\n{}", text(&docker(&["logs", &name]))));
    assert!(
        logs.contains("--net user,routeros --net packet=eth1,mtu=1500"),
        "the entrypoint says what it runs:\n{logs}"
    );
    assert!(logs.contains("accel") || logs.contains("interp"), "{logs}");

    // The image's health check follows the prompt.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut health = String::new();
    while Instant::now() < deadline {
        health = text(&docker(&["inspect", "-f", "{{.State.Health.Status}}", &name])).trim().to_string();
        if health == "healthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(health, "healthy", "docker's health check after the prompt");

    let page = http_get(port, Duration::from_secs(60));
    assert!(page.contains("chr-test-guest"), "the published port reaches the guest's httpd: {page:?}");

    // Named after the image and its content: guest.img.<id>.overlay.qcow2.
    let overlays: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".overlay.qcow2"))
        .collect();
    assert_eq!(overlays.len(), 1, "one overlay on the /data volume: {overlays:?}");
    let overlay = overlays[0].clone();
    assert!(overlay.file_name().unwrap().to_string_lossy().starts_with("guest.img."), "{overlay:?}");
    // The guest writes a mark on its disk (its second partition), through a forwarded telnet.
    let mark = format!("chr-container-mark-{pid}");
    let wrote = guest_shell(
        telnet,
        &format!("printf {mark} | dd of=/dev/vda2 bs=512 seek=100 conv=notrunc 2>/dev/null; sync"),
    );
    assert!(wrote.contains("END-42"), "the guest's shell answers through the forward: {wrote:?}");
    assert_eq!(std::fs::read(&disk).unwrap(), before, "the image itself is never written");

    // ether2 is the container's eth1 (a packet socket, no privileges): the guest reaches the
    // second network's gateway through it.
    let ping = guest_shell(
        telnet,
        &format!("ip link set eth1 up; ip addr add 10.199.{subnet}.77/24 dev eth1; ping -c 2 -W 3 10.199.{subnet}.1"),
    );
    assert!(
        ping.contains(&format!("bytes from 10.199.{subnet}.1")),
        "ether2 reaches the second network: {ping:?}"
    );

    let restarted = docker(&["restart", "-t", "2", &name]);
    assert!(restarted.status.success(), "docker restart: {}", text(&restarted));
    let logs = wait_logs(&name, ready, 2, Duration::from_secs(180));
    assert!(logs.is_some(), "the guest boots again after a restart:\n{}", text(&docker(&["logs", &name])));
    assert!(overlay.exists(), "the overlay survives the restart");
    let read = guest_shell(telnet, "dd if=/dev/vda2 bs=512 skip=100 count=1 2>/dev/null | head -c 40");
    assert!(read.contains(&mark), "the guest's write survives the restart: {read:?}");
    drop(container);
    let _ = docker(&["rmi", &tag]);
    let _ = std::fs::remove_dir_all(&work);
}
