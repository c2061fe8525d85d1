//! Linux on the interpreter, end to end, in one boot (issues 4, 5 and 6): the test guest boots
//! through SeaBIOS and SYSLINUX to its prompt with `--accel interp`, binds virtio-blk and three
//! virtio-net NICs, reads its data partition and writes its disk; user-mode networking leases
//! it an address, lets it fetch a page from the host and forwards a TCP and a UDP port to it; a
//! `packet` NIC on a veth and a `tap` NIC exchange traffic both ways with peers in two network
//! namespaces made here (ping out, HTTP in); the
//! VGA console read back over VNC by OCR shows its prompt, and a command typed through a VNC
//! client runs in its shell. `poweroff -f` ends the VMM with status 0. Then QEMU TCG boots the
//! same image and the guest reports the same state in both.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{skip, test_guest, Vmm};
use test_support::have;

const NAME: &str = "linux_boots_and_works_on_the_interpreter";

/// Linux on the interpreter takes minutes; the bound leaves room for a loaded CI machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(1200);
const PROMPT: &str = "MikroTik Login: ";

/// The guest command that prints one line describing what the guest found: the data
/// partition's md5, the disk's size, its network interfaces, bound virtio-net devices, CPUs.
const STATE: &str = "echo STATE $(md5sum </dev/vda2 | cut -c1-32) $(cat /sys/block/vda/size) \
     $(ls /sys/class/net | tr '\\n' ,) $(ls /sys/bus/virtio/drivers/virtio_net | grep -c virtio) \
     $(grep -c ^processor /proc/cpuinfo)";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ip(args: &str) -> Result<(), String> {
    let out = Command::new("sh").arg("-c").arg(format!("ip {args}")).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Network namespaces and links made by the test, removed when it ends.
#[derive(Default)]
struct Netns {
    namespaces: Vec<String>,
    links: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = ip(&format!("link del {l}"));
        }
        for n in &self.namespaces {
            let _ = ip(&format!("netns del {n}"));
        }
    }
}

/// The peer side of the packet NIC: a veth pair whose far end (10.77.0.1/24) lives in its own
/// namespace; the near end is given to `--net packet=`.
fn veth_peer(ns: &mut Netns, tag: u32) -> Result<String, String> {
    let (near, far, space) = (format!("cvp{tag}"), format!("cvq{tag}"), format!("chrvmm-pkt-{tag}"));
    ip(&format!("netns add {space}"))?;
    ns.namespaces.push(space.clone());
    ip(&format!("link add {near} type veth peer name {far}"))?;
    ns.links.push(near.clone());
    ip(&format!("link set {far} netns {space}"))?;
    ip(&format!("-n {space} addr add 10.77.0.1/24 dev {far}"))?;
    ip(&format!("-n {space} link set {far} up"))?;
    ip(&format!("link set {near} up"))?;
    Ok(near)
}

/// Moves the tap chr-vmm created into its own namespace as 10.78.0.1/24.
fn tap_peer(ns: &mut Netns, tap: &str, tag: u32) -> Result<(), String> {
    let space = format!("chrvmm-tap-{tag}");
    ip(&format!("netns add {space}"))?;
    ns.namespaces.push(space.clone());
    ip(&format!("link set {tap} netns {space}"))?;
    ip(&format!("-n {space} addr add 10.78.0.1/24 dev {tap}"))?;
    ip(&format!("-n {space} link set {tap} up"))
}

/// The guest's web page fetched from inside namespace `space` (with busybox's nc, which
/// scripts/install-deps.sh installs; the host may have no other client).
fn peer_fetch(space: &str, addr: &str) -> String {
    let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 30 busybox nc {addr} 80");
    let out = Command::new("ip").args(["netns", "exec", space, "sh", "-c", &get]).output();
    match out {
        Ok(o) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("cannot run ip netns exec: {e}"),
    }
}

/// Runs `cmd` at the guest's prompt and returns its output; the marker is computed by the
/// guest's shell, so the echo of the typed line never matches it.
fn guest(vmm: &mut Vmm, n: u32, cmd: &str, timeout: Duration) -> Option<String> {
    let mark = format!("@@{}@@", 1000 + n);
    let from = vmm.output().len();
    vmm.send(&format!("{cmd}; echo @@$((1000+{n}))@@\n"));
    vmm.wait_for(&mark, timeout)?;
    let out = vmm.output();
    let tail = out.get(from..).unwrap_or("");
    Some(tail.split(&mark).next().unwrap_or("").to_string())
}

/// A one-page HTTP server on the host's loopback, for the guest to fetch through slirp.
fn host_page(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut req = [0u8; 1024];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut req);
            let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

fn http_get(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Sends datagrams to the forwarded UDP port until one comes back (the first may wait on ARP).
fn udp_echo(port: u16) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    for i in 0..15 {
        let _ = s.send_to(format!("chr-udp-{i}").as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 64];
        if let Ok(n) = s.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

/// A VNC screenshot of the guest's screen, read back by tesseract.
fn vnc_ocr(vnc_port: u16, dir: &Path) -> Result<String, String> {
    let shot = dir.join("screen.jpg");
    let out = Command::new("timeout")
        .args(["60", "vncsnapshot", "-quiet", "-quality", "100"])
        .arg(format!("127.0.0.1::{vnc_port}"))
        .arg(&shot)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("vncsnapshot failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    // Upscaled, so that the 8x16 VGA font is large enough for tesseract.
    let big = dir.join("screen-big.png");
    let py = "import sys; from PIL import Image; i = Image.open(sys.argv[1]); \
              i.resize((i.width * 3, i.height * 3)).save(sys.argv[2])";
    let scaled = Command::new("python3").args(["-c", py]).arg(&shot).arg(&big).status();
    let input = if scaled.is_ok_and(|s| s.success()) { big } else { shot };
    let out = Command::new("tesseract").arg(&input).arg("stdout").output().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn vncdo() -> Option<PathBuf> {
    if have("vncdo") {
        return Some(PathBuf::from("vncdo"));
    }
    let venv = PathBuf::from("/var/tmp/chr-vmm/venv/bin/vncdo");
    venv.exists().then_some(venv)
}

/// Collects failed checks, so that one boot reports every problem at once.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: &str, detail: impl FnOnce() -> String) {
        if ok {
            eprintln!("ok: {what}");
        } else {
            self.0.push(format!("{what}: {}", detail()));
        }
    }
}

#[test]
fn linux_boots_and_works_on_the_interpreter() {
    let guest_dir = match test_guest() {
        Ok(g) => g,
        Err(e) => return skip(NAME, &format!("the test guest could not be built: {e}")),
    };
    let pid = std::process::id();
    let tag = pid % 100_000;
    let work = std::env::temp_dir().join(format!("chr-vmm-interp-linux-{pid}"));
    std::fs::create_dir_all(&work).unwrap();
    let disk = work.join("guest.img");
    std::fs::copy(guest_dir.join("guest.img"), &disk).unwrap();
    let md5 = std::fs::read_to_string(guest_dir.join("data.md5")).unwrap().trim().to_string();

    // Networking: user mode always; packet and tap when this process may make namespaces.
    let (tcp_fwd, udp_fwd, vnc_port) = (free_port(), free_port(), free_port());
    let page = host_page("chr-host-page-for-the-guest");
    let mut ns = Netns::default();
    let root = have("ip") && Path::new("/dev/net/tun").exists() && is_root();
    let veth = match root.then(|| veth_peer(&mut ns, tag)) {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            skip(NAME, &format!("no packet NIC test: {e}"));
            None
        }
        None => {
            skip(NAME, "packet and tap NICs not tested: needs root, ip(8) and /dev/net/tun");
            None
        }
    };
    let tap = format!("cvt{tag}");
    let user = format!("user,hostfwd=tcp:127.0.0.1:{tcp_fwd}-:80,hostfwd=udp:127.0.0.1:{udp_fwd}-:7");
    let nic2 = veth.as_ref().map_or("user".to_string(), |v| format!("packet={v}"));
    let nic3 = if root { format!("tap={tap}") } else { "user".to_string() };
    let vnc = format!("127.0.0.1:{vnc_port}");
    let d = disk.to_str().unwrap();
    let args = ["--accel", "interp", "--vnc", &vnc, "--net", &user, "--net", &nic2, "--net", &nic3, d];
    let started = Instant::now();
    let mut vmm = Vmm::start(&args);
    let mut c = Checks::default();

    let tap_ready = root && {
        // chr-vmm creates the tap as it builds the machine.
        let t = Instant::now();
        while !Path::new(&format!("/sys/class/net/{tap}")).exists() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        match tap_peer(&mut ns, &tap, tag) {
            Ok(()) => true,
            Err(e) => {
                c.0.push(format!("tap {tap} could not be moved to its namespace: {e}"));
                false
            }
        }
    };

    let booted = vmm.wait_for(PROMPT, BOOT_TIMEOUT);
    assert!(booted.is_some(), "no prompt within {BOOT_TIMEOUT:?}\n{}", vmm.report());
    eprintln!("interp: login prompt after {:.1} s", started.elapsed().as_secs_f64());
    let out = vmm.output();
    c.check(out.contains("virtio-blk ok vda sectors=131072"), "virtio-blk bound", String::new);
    c.check(
        out.lines().any(|l| l.contains("virtio-net ok eth0") && l.contains("eth1") && l.contains("eth2")),
        "three virtio-net NICs bound",
        String::new,
    );

    let t = Duration::from_secs(180);
    let state = guest(&mut vmm, 1, STATE, t).unwrap_or_default();
    let state = state.lines().find(|l| l.starts_with("STATE ")).unwrap_or("").trim().to_string();
    c.check(state.contains(&md5), "the data partition reads back with its md5", || state.clone());

    let dhcp = guest(
        &mut vmm,
        2,
        "for i in $(seq 90); do [ -s /tmp/dhcp.log ] && break; sleep 1; done; cat /tmp/dhcp.log",
        t,
    )
    .unwrap_or_default();
    c.check(dhcp.contains("dhcp eth0 10.0.2.15/24"), "DHCP lease on the user NIC", || dhcp.clone());
    let fetched = guest(&mut vmm, 3, &format!("wget -q -O - http://10.0.2.2:{page}/"), t).unwrap_or_default();
    c.check(
        fetched.contains("chr-host-page-for-the-guest"),
        "the guest fetches a page from the host",
        || fetched.clone(),
    );
    let page_in = http_get(tcp_fwd);
    c.check(page_in.contains("200 OK"), "the host reaches the guest's httpd through hostfwd", || {
        page_in.clone()
    });
    let echoed = udp_echo(udp_fwd);
    c.check(echoed.as_deref().is_some_and(|e| e.starts_with("chr-udp-")), "a UDP forward echoes", || {
        format!("{echoed:?}")
    });

    if veth.is_some() {
        let ping = guest(
            &mut vmm,
            4,
            "ip addr add 10.77.0.2/24 dev eth1; ip link set eth1 up; ping -c 3 -W 5 10.77.0.1",
            t,
        )
        .unwrap_or_default();
        c.check(ping.contains("bytes from 10.77.0.1"), "packet NIC: the guest pings its veth peer", || {
            ping.clone()
        });
        let back = peer_fetch(&format!("chrvmm-pkt-{tag}"), "10.77.0.2");
        c.check(
            back.contains("chr-test-guest"),
            "packet NIC: the peer namespace fetches the guest's page",
            || back,
        );
    }
    if tap_ready {
        let ping = guest(
            &mut vmm,
            5,
            "ip addr add 10.78.0.2/24 dev eth2; ip link set eth2 up; ping -c 3 -W 5 10.78.0.1",
            t,
        )
        .unwrap_or_default();
        c.check(ping.contains("bytes from 10.78.0.1"), "tap NIC: the guest pings its peer namespace", || {
            ping.clone()
        });
        let back = peer_fetch(&format!("chrvmm-tap-{tag}"), "10.78.0.2");
        c.check(
            back.contains("chr-test-guest"),
            "tap NIC: the peer namespace fetches the guest's page",
            || back,
        );
    }

    // The VGA console over VNC: OCR of the prompt, then a command typed through a VNC client.
    if have("vncsnapshot") && have("tesseract") {
        let text = vnc_ocr(vnc_port, &work).unwrap_or_else(|e| e);
        c.check(
            text.contains("MikroTik") || text.contains("Login:"),
            "VNC screenshot shows the prompt (OCR)",
            || text.clone(),
        );
    } else {
        skip(
            NAME,
            "no VNC screenshot check: vncsnapshot or tesseract is not installed (scripts/install-deps.sh)",
        );
    }
    if let Some(vncdo) = vncdo() {
        let server = format!("127.0.0.1::{vnc_port}");
        let typed = Command::new("timeout")
            .arg("60")
            .arg(&vncdo)
            .args(["-s", &server, "type", "echo vnc-typed-$((6*7)) >/dev/ttyS0", "key", "enter"])
            .status();
        c.check(typed.is_ok_and(|s| s.success()), "vncdo types", String::new);
        let seen = vmm.wait_for("vnc-typed-42", Duration::from_secs(60)).is_some();
        c.check(seen, "a command typed over VNC runs and prints on the serial console", String::new);
    } else {
        skip(NAME, "no VNC typing check: vncdo (PyPI vncdotool) is not installed (scripts/install-deps.sh)");
    }

    // Writes reach the image: the data partition's last sector, checked on the host.
    let w = guest(
        &mut vmm,
        6,
        "printf chr-interp-wrote-this | dd of=/dev/vda bs=512 seek=131071 conv=notrunc 2>/dev/null; sync",
        t,
    );
    c.check(w.is_some(), "the guest writes its disk", String::new);
    vmm.send("poweroff -f\n");
    let code = vmm.wait_exit(Duration::from_secs(120));
    c.check(code == Some(Some(0)), "poweroff -f exits 0", || format!("{code:?}"));
    let img = std::fs::read(&disk).unwrap();
    let sector = &img[131071 * 512..131071 * 512 + 21];
    c.check(sector == b"chr-interp-wrote-this", "the write is in the image", || {
        String::from_utf8_lossy(sector).into_owned()
    });
    eprintln!("interp: whole scenario {:.1} s", started.elapsed().as_secs_f64());
    let interp_state = state;
    drop(ns);

    // The same image on QEMU TCG reaches the same state.
    if have("qemu-system-x86_64") {
        std::fs::copy(guest_dir.join("guest.img"), &disk).unwrap();
        let mut q = Command::new("qemu-system-x86_64");
        q.args(["-accel", "tcg", "-nodefaults", "-display", "none", "-serial", "stdio", "-m", "256"]);
        q.arg("-drive").arg(format!("file={d},if=virtio,format=raw"));
        for i in 0..3 {
            q.args(["-netdev", &format!("user,id=n{i}"), "-device", &format!("virtio-net-pci,netdev=n{i}")]);
        }
        let mut qemu = Vmm::spawn(q);
        if qemu.wait_for(PROMPT, Duration::from_secs(300)).is_some() {
            let s = guest(&mut qemu, 1, STATE, t).unwrap_or_default();
            let s = s.lines().find(|l| l.starts_with("STATE ")).unwrap_or("").trim().to_string();
            c.check(s == interp_state, "QEMU TCG reports the same guest state", || {
                format!("QEMU {s:?}, chr-vmm {interp_state:?}")
            });
        } else {
            c.0.push(format!("QEMU TCG did not reach the prompt\n{}", qemu.report()));
        }
    } else {
        skip(NAME, "no QEMU comparison: qemu-system-x86_64 is not installed");
    }
    let _ = std::fs::remove_dir_all(&work);
    assert!(c.0.is_empty(), "failed checks:\n{}\n{}", c.0.join("\n"), vmm.report());
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
