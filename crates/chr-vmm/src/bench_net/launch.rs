//! The two VMMs' command lines for one backend, and the host side of a tap.
//!
//! Both boot the same disk as a snapshot with the same RAM, one vCPU, KVM and one virtio-net
//! card; QEMU's card has no option ROM (`romfile=`), as chr-vmm's has none.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::BenchNetError;

/// The guest port of the sink (`nc -l`) for host->guest transfers.
pub const GUEST_SINK_PORT: u16 = 5001;
/// The guest port of the echo server (`nc -l -e cat`).
pub const GUEST_ECHO_PORT: u16 = 5003;
/// The guest's httpd.
pub const GUEST_HTTP_PORT: u16 = 80;
/// A second httpd serving a large file (busybox httpd sends it with sendfile).
pub const GUEST_BULK_PORT: u16 = 8081;
/// Every guest port the host reaches.
pub const GUEST_PORTS: [u16; 4] = [GUEST_SINK_PORT, GUEST_ECHO_PORT, GUEST_HTTP_PORT, GUEST_BULK_PORT];
/// The host's address on the tap.
pub const TAP_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);
/// The guest's address on the tap.
pub const TAP_GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);
/// The host as the user-mode guest sees it (libslirp's and QEMU's default gateway).
pub const USER_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// How the guest is reached on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetPlan {
    /// User mode: host ports on 127.0.0.1 forwarded to the guest's ports, as (host, guest).
    User {
        /// The forwards.
        forwards: Vec<(u16, u16)>,
    },
    /// A tap with the host at [`TAP_HOST`] and the guest at [`TAP_GUEST`].
    Tap {
        /// The interface name.
        ifname: String,
    },
}

impl NetPlan {
    /// Where the host connects to reach the guest's `port` (one of the three above).
    pub fn guest_addr(&self, guest_port: u16) -> SocketAddr {
        match self {
            Self::User { forwards } => {
                let host_port = forwards.iter().find(|f| f.1 == guest_port).map_or(0, |f| f.0);
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, host_port))
            }
            Self::Tap { .. } => SocketAddr::V4(SocketAddrV4::new(TAP_GUEST, guest_port)),
        }
    }

    /// The host's address as the guest reaches it.
    pub fn host_from_guest(&self) -> Ipv4Addr {
        match self {
            Self::User { .. } => USER_HOST,
            Self::Tap { .. } => TAP_HOST,
        }
    }

    /// The `hostfwd=` options, QEMU's syntax (chr-vmm takes the same).
    fn hostfwds(forwards: &[(u16, u16)]) -> String {
        forwards.iter().map(|(h, g)| format!("hostfwd=tcp:127.0.0.1:{h}-:{g}")).collect::<Vec<_>>().join(",")
    }

    /// User mode with a free host port for each guest port.
    pub fn user() -> Result<Self, BenchNetError> {
        let forwards = GUEST_PORTS.iter().map(|&g| free_port().map(|h| (h, g))).collect::<Result<_, _>>()?;
        Ok(Self::User { forwards })
    }
}

/// What both VMMs need besides the network.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The disk, booted as a snapshot.
    pub disk: PathBuf,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// SeaBIOS for both, when not the default.
    pub firmware: Option<PathBuf>,
}

/// chr-vmm's command line.
pub fn chr_vmm_command(exe: &Path, m: &Machine, plan: &NetPlan) -> Command {
    let mut c = Command::new(exe);
    c.args(["run", "--accel", "kvm", "--cpus", "1", "--memory", &format!("{}M", m.memory_mib)]).args([
        "--serial",
        "stdio",
        "--snapshot",
        "--net",
    ]);
    c.arg(match plan {
        NetPlan::User { forwards } => format!("user,{}", NetPlan::hostfwds(forwards)),
        NetPlan::Tap { ifname } => format!("tap={ifname}"),
    });
    if let Some(fw) = &m.firmware {
        c.arg("--firmware").arg(fw);
    }
    c.arg(&m.disk);
    c
}

/// QEMU's command line: `-netdev user|tap` with `virtio-net-pci`.
pub fn qemu_command(qemu: &Path, qemu_data: Option<&Path>, m: &Machine, plan: &NetPlan) -> Command {
    let mut c = Command::new(qemu);
    c.args(["-accel", "kvm", "-smp", "1", "-m", &format!("{}M", m.memory_mib)])
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio"])
        // Thread names, for the benchmark's CPU accounting.
        .args(["-name", "bench,debug-threads=on"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,snapshot=on", m.disk.display()))
        .arg("-netdev")
        .arg(match plan {
            NetPlan::User { forwards } => format!("user,id=n0,{}", NetPlan::hostfwds(forwards)),
            NetPlan::Tap { ifname } => format!("tap,id=n0,ifname={ifname},script=no,downscript=no"),
        })
        .args(["-device", "virtio-net-pci,netdev=n0,romfile="]);
    if let Some(fw) = &m.firmware {
        c.arg("-bios").arg(fw);
    }
    if let Some(data) = qemu_data {
        c.arg("-L").arg(data);
    }
    c
}

/// A free TCP port on 127.0.0.1 (free when asked; the VMM binds it right after).
pub fn free_port() -> Result<u16, BenchNetError> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| BenchNetError::Socket { what: "find a free port on 127.0.0.1".into(), source })
}

/// Why a tap cannot be used here, or `None` when it can.
pub fn tap_unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (load the tun module)".into());
    }
    match Command::new("ip").args(["link", "show", "lo"]).output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2 or busybox) does not work".into()),
    }
}

/// Whether the interface `ifname` exists.
pub fn interface_exists(ifname: &str) -> bool {
    Path::new("/sys/class/net").join(ifname).exists()
}

/// Waits (until `deadline`) for the VMM to create the tap, then gives it the host address and
/// brings it up.
pub fn configure_tap_host(ifname: &str, deadline: Instant) -> Result<(), BenchNetError> {
    while !interface_exists(ifname) {
        if Instant::now() >= deadline {
            return Err(BenchNetError::TapNotCreated { ifname: ifname.to_string() });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr = format!("{TAP_HOST}/24");
    for args in [vec!["addr", "add", &addr, "dev", ifname], vec!["link", "set", ifname, "up"]] {
        let out = Command::new("ip").args(&args).output().map_err(|e| BenchNetError::TapSetup {
            ifname: ifname.to_string(),
            detail: format!("cannot run ip: {e}"),
        })?;
        if !out.status.success() {
            return Err(BenchNetError::TapSetup {
                ifname: ifname.to_string(),
                detail: format!("`ip {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
    }
    Ok(())
}

/// Waits up to `timeout` for a tap to disappear once its VMM has exited.
pub fn wait_tap_gone(ifname: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while interface_exists(ifname) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(c: &Command) -> Vec<String> {
        c.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn machine() -> Machine {
        Machine { disk: "/d/guest.img".into(), memory_mib: 256, firmware: Some("/fw/bios.bin".into()) }
    }

    #[test]
    fn user_mode_command_lines_forward_the_same_ports() {
        let plan = NetPlan::User { forwards: vec![(4001, 5001), (4003, 5003), (4080, 80)] };
        let fwd = "hostfwd=tcp:127.0.0.1:4001-:5001,hostfwd=tcp:127.0.0.1:4003-:5003,hostfwd=tcp:127.0.0.1:4080-:80";
        let ours = args(&chr_vmm_command(Path::new("/bin/chr-vmm"), &machine(), &plan));
        assert_eq!(
            ours,
            [
                "run",
                "--accel",
                "kvm",
                "--cpus",
                "1",
                "--memory",
                "256M",
                "--serial",
                "stdio",
                "--snapshot",
                "--net",
                &format!("user,{fwd}"),
                "--firmware",
                "/fw/bios.bin",
                "/d/guest.img"
            ]
        );
        let q = args(&qemu_command(Path::new("/bin/qemu"), Some(Path::new("/q")), &machine(), &plan));
        let joined = q.join(" ");
        assert!(joined.contains(&format!("-netdev user,id=n0,{fwd}")), "{joined}");
        assert!(joined.contains("-device virtio-net-pci,netdev=n0,romfile="), "{joined}");
        assert!(joined.contains("-accel kvm"), "{joined}");
        assert!(joined.contains("file=/d/guest.img,if=virtio,snapshot=on"), "{joined}");
        assert!(joined.ends_with("-bios /fw/bios.bin -L /q"), "{joined}");
        assert_eq!(plan.guest_addr(GUEST_ECHO_PORT).to_string(), "127.0.0.1:4003");
        assert_eq!(plan.guest_addr(GUEST_HTTP_PORT).to_string(), "127.0.0.1:4080");
        assert_eq!(plan.host_from_guest(), USER_HOST);
    }

    #[test]
    fn tap_command_lines() {
        let plan = NetPlan::Tap { ifname: "chrbench0".into() };
        let ours = args(&chr_vmm_command(Path::new("chr-vmm"), &machine(), &plan)).join(" ");
        assert!(ours.contains("--net tap=chrbench0 "), "{ours}");
        let q = args(&qemu_command(Path::new("qemu"), None, &machine(), &plan)).join(" ");
        assert!(q.contains("-netdev tap,id=n0,ifname=chrbench0,script=no,downscript=no"), "{q}");
        assert!(!q.contains(" -L "), "{q}");
        assert_eq!(plan.guest_addr(GUEST_SINK_PORT).to_string(), "10.0.3.2:5001");
        assert_eq!(plan.host_from_guest(), TAP_HOST);
    }
}
