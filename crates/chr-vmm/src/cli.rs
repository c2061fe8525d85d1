//! The command line: `chr-vmm run DISK [options]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Run MikroTik RouterOS CHR (or any BIOS-booting x86-64 disk) without QEMU.
#[derive(Debug, Parser)]
#[command(name = "chr-vmm", version, about)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace (also $CHR_VMM_LOG).
    #[arg(long, global = true, default_value = "info", env = "CHR_VMM_LOG", value_parser = parse_level)]
    pub log_level: log::LevelFilter,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a disk image.
    Run(RunArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Say which accelerator `--accel auto` would use here, and why (exit 0 if it can run).
    Accel,
    /// The container image's entrypoint: boot the CHR image in /image with options taken from
    /// the container (CHR_* variables, eth1.. as packet NICs, an overlay on /data).
    Container(crate::container::ContainerArgs),
    /// Exit 0 if the guest of `run --ready-file FILE` is at its login prompt, 1 if not yet (the
    /// container image's health check).
    Ready {
        /// The ready file.
        #[arg(default_value = crate::container::READY_FILE)]
        file: PathBuf,
    },
    /// Describe a disk image: format, virtual size, allocation, backing chain (like `qemu-img info`).
    Info {
        /// The image.
        disk: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time a boot to the firmware, the MBR and the login prompt, beside QEMU on the same disk.
    Boot(BenchBootArgs),
    /// TCP throughput both ways and request latency over user-mode and tap networking, beside QEMU.
    Net(crate::bench_net::BenchNetArgs),
}

/// Options every benchmark shares: the disk, what to compare with, the firmware, guest RAM and
/// the boot timeout.
#[derive(Debug, clap::Args)]
pub struct BenchCommon {
    /// The disk to boot (the test guest's guest.img for `bench net`); both VMMs run it as a
    /// snapshot, so it is never written.
    pub disk: PathBuf,
    /// Also run this qemu-system-x86_64 on the same disk, for comparison.
    #[arg(long)]
    pub qemu: Option<PathBuf>,
    /// QEMU's data directory (-L), when its firmware is not installed where it looks.
    #[arg(long)]
    pub qemu_data: Option<PathBuf>,
    /// SeaBIOS image for both VMMs.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Guest RAM.
    #[arg(short, long, default_value = "256M", value_parser = parse_size)]
    pub memory: u64,
    /// Give up on a boot after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout_secs: u64,
}

impl BenchCommon {
    /// The per-boot timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }
}

/// `chr-vmm bench boot` options.
#[derive(Debug, clap::Args)]
pub struct BenchBootArgs {
    #[command(flatten)]
    pub common: BenchCommon,
    /// Boots per VMM.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// Use the interpreter (and QEMU's TCG) instead of KVM.
    #[arg(long)]
    pub interp: bool,
    /// With --interp: the compiled tier settings to boot with, each in turn in every run
    /// (e.g. `off,on`).
    #[arg(long, value_delimiter = ',', default_value = "off", value_parser = parse_jit)]
    pub jit: Vec<JitSetting>,
}

/// The interpreter's compiled tier: off, or on with the number of runs after which a
/// block is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitSetting(pub Option<u32>);

impl std::fmt::Display for JitSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => write!(f, "off"),
            Some(t) => write!(f, "{t}"),
        }
    }
}

/// `on`, `off` or a threshold (0 compiles every block at its first run).
pub fn parse_jit(s: &str) -> Result<JitSetting, String> {
    match s {
        "off" => Ok(JitSetting(None)),
        "on" => Ok(JitSetting(Some(x86_threshold()))),
        n => n.parse::<u32>().map(|t| JitSetting(Some(t))).map_err(|_| {
            format!("{s:?} is not a --jit setting; use on, off or a threshold (runs before compiling)")
        }),
    }
}

#[cfg(feature = "jit")]
fn x86_threshold() -> u32 {
    x86::DEFAULT_THRESHOLD
}

#[cfg(not(feature = "jit"))]
fn x86_threshold() -> u32 {
    50
}

/// Which CPU accelerator runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// KVM when /dev/kvm can run an ordinary guest, otherwise the interpreter.
    Auto,
    /// KVM, even where the probe doubts it.
    Kvm,
    /// The built-in x86-64 interpreter.
    Interp,
}

/// `chr-vmm run` options.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The disk image to boot (raw .img; other formats as the disk crate supports them).
    pub disk: PathBuf,
    /// Guest RAM, e.g. 256M or 1G (a bare number means MiB).
    #[arg(short, long, default_value = "256M", value_parser = parse_size)]
    pub memory: u64,
    /// Number of vCPUs.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub cpus: u8,
    /// CPU accelerator.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// The interpreter's compiled tier (Cranelift): on, off, or the number of runs after which
    /// a block is compiled (0: at once, for tests).
    #[arg(long, default_value = "off", value_parser = parse_jit, env = "CHR_JIT")]
    pub jit: JitSetting,
    /// The guest's serial console: stdio, telnet:HOST:PORT, unix:PATH, file:PATH or none.
    #[arg(long, default_value = "stdio", value_parser = parse_serial)]
    pub serial: SerialSpec,
    /// Add a virtio-net card (repeatable: guest ether1, ether2, ...). `user[,hostfwd=tcp::8080-:80]
    /// [,routeros][,net=CIDR]` needs no privileges; `tap=IFNAME`; `packet=IFNAME` uses an
    /// existing interface (a container's ethN). Options: `mac=`, `mtu=`.
    #[arg(long = "net", value_name = "SPEC")]
    pub nets: Vec<net::NetSpec>,
    /// Export the VGA console over VNC at HOST:PORT (a bare PORT means 127.0.0.1); off by default.
    #[arg(long, value_name = "HOST:PORT")]
    pub vnc: Option<String>,
    /// Require this password from VNC clients (VNC authentication; only the first 8 bytes count).
    #[arg(long, requires = "vnc", env = "CHR_VMM_VNC_PASSWORD")]
    pub vnc_password: Option<String>,
    /// Discard all guest writes when the VM exits; the image is opened read-only.
    #[arg(long, conflicts_with = "overlay")]
    pub snapshot: bool,
    /// Keep guest writes in this qcow2 file over DISK (created if missing); DISK is only read.
    /// How a container keeps its state on a volume while the CHR image stays in the image.
    #[arg(long, value_name = "FILE")]
    pub overlay: Option<PathBuf>,
    /// The SeaBIOS image (default: bios-256k.bin from the usual firmware directories).
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Boot this Linux bzImage directly instead of through SeaBIOS (the disk stays attached).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// The initrd for --kernel.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line for --kernel.
    #[arg(long, requires = "kernel", default_value = "console=ttyS0")]
    pub cmdline: String,
    /// Create this file when the guest's serial console shows its login prompt, and remove it
    /// when the guest resets or the VM stops: a readiness flag for scripts (see `chr-vmm ready`).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Write the firmware's debug log (port 0x402) to this file.
    #[arg(long)]
    pub firmware_log: Option<PathBuf>,
}

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialSpec {
    /// The terminal (Ctrl-A x quits).
    Stdio,
    /// A telnet server.
    Telnet(String),
    /// A Unix socket server.
    Unix(PathBuf),
    /// Output appended to a file, no input.
    File(PathBuf),
    /// No serial console.
    None,
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse().map_err(|_| format!("{s:?} is not a log level; use error, warn, info, debug or trace"))
}

fn parse_serial(s: &str) -> Result<SerialSpec, String> {
    let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
    match (kind, rest) {
        ("stdio", "") => Ok(SerialSpec::Stdio),
        ("none", "") => Ok(SerialSpec::None),
        ("telnet", addr) if addr.contains(':') => Ok(SerialSpec::Telnet(addr.to_string())),
        ("unix", path) if !path.is_empty() => Ok(SerialSpec::Unix(PathBuf::from(path))),
        ("file", path) if !path.is_empty() => Ok(SerialSpec::File(PathBuf::from(path))),
        _ => Err(format!(
            "{s:?} is not a serial console; use stdio, telnet:HOST:PORT, unix:PATH, file:PATH or none"
        )),
    }
}

/// Parses sizes like `256M`, `1G`, `1024` (MiB), `512K`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: unknown size suffix {c:?}; use K, M or G")),
            };
            (&t[..i], shift)
        }
        _ => (t, 20),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("{s:?} is not a size such as 256M or 1G"))?;
    n.checked_shl(shift).filter(|v| v >> shift == n).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_serial_specs() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512 << 20));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("abc").is_err());
        assert!(parse_size("99999999999999G").is_err());
        assert_eq!(parse_serial("telnet:0.0.0.0:5000"), Ok(SerialSpec::Telnet("0.0.0.0:5000".into())));
        assert_eq!(parse_serial("file:/tmp/x"), Ok(SerialSpec::File("/tmp/x".into())));
        assert!(parse_serial("telnet:5000").is_err());
        assert!(parse_serial("bogus").is_err());
    }
}
