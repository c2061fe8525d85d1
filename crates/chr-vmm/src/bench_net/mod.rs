//! `chr-vmm bench net`: TCP throughput both ways and the latency of small requests, through a
//! user-mode port forward and through a tap, for chr-vmm and (with `--qemu`) for QEMU's
//! `-netdev user` / `-netdev tap` with virtio-net-pci, on the same guest in the same run.
//!
//! For each VMM and backend the test guest is booted on KVM, driven through its serial console
//! (it runs every typed line as a shell command), and measured with this process's own sockets:
//! - host->guest: the guest listens with `nc -l -e` running dd into /dev/null, the host writes
//!   `--mib` MiB, closes its side and waits for dd's record count, sent once all has arrived;
//! - guest->host: the host listens, the guest runs `dd if=/dev/zero | nc HOST PORT`; and the
//!   host GETs a `--mib` MiB file from a second httpd in the guest, which sends it with
//!   sendfile (no copies in guest user space, so the figure leans more on the VMM);
//! - latency: round trips of 64 bytes on one connection to `nc -l -e cat` in the guest, and
//!   HTTP GETs of `/` from the guest's httpd, each on a new connection.

mod console;
mod cpu;
mod launch;
mod measure;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use console::GuestConsole;
use launch::{
    Machine, NetPlan, GUEST_BULK_PORT, GUEST_ECHO_PORT, GUEST_HTTP_PORT, GUEST_SINK_PORT, TAP_GUEST, TAP_HOST,
};

/// `chr-vmm bench net` options.
#[derive(Debug, clap::Args)]
pub struct BenchNetArgs {
    #[command(flatten)]
    pub common: crate::cli::BenchCommon,
    /// Backends to measure, comma-separated. Default: user, and tap when this process can
    /// create one (root and /dev/net/tun).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub backend: Vec<NetBackend>,
    /// MiB moved by each throughput transfer.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub mib: u64,
    /// Transfers per direction; the table shows their median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
    /// Echo round trips and HTTP requests timed for the latency columns.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub requests: u64,
    /// The tap interface to create (host 10.0.3.1/24, guest 10.0.3.2); it must not exist yet.
    #[arg(long, default_value = "chrbench0", value_parser = parse_ifname)]
    pub tap: String,
}

/// A network backend to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetBackend {
    /// User-mode networking (libslirp) with port forwards.
    User,
    /// A tap interface.
    Tap,
}

impl NetBackend {
    fn name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Tap => "tap",
        }
    }
}

/// Which VMM a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    /// This chr-vmm.
    ChrVmm,
    /// The QEMU given with --qemu.
    Qemu,
}

impl Vmm {
    fn name(self) -> &'static str {
        match self {
            Self::ChrVmm => "chr-vmm",
            Self::Qemu => "QEMU",
        }
    }
}

fn parse_ifname(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() < 16
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an interface name: use 1-15 letters, digits, '-', '_' or '.'"))
    }
}

fn wait_note(exited: bool, secs: u64) -> String {
    if exited {
        " before the VMM exited".into()
    } else {
        format!(" within {secs} s")
    }
}

/// What can go wrong in the network benchmark; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BenchNetError {
    /// The disk is missing.
    #[error("the disk {0} does not exist; build the test guest with images/test-guest/build.sh and pass its guest.img")]
    NoDisk(PathBuf),
    /// A VMM could not be started.
    #[error("cannot start {vmm} ({path}): {source}; check the path (--qemu) and that it runs here")]
    Spawn {
        /// Which VMM.
        vmm: &'static str,
        /// Its binary.
        path: PathBuf,
        /// The system's answer.
        source: std::io::Error,
    },
    /// The scratch directory could not be made.
    #[error("cannot create the scratch directory {path}: {source}")]
    Scratch {
        /// The directory.
        path: PathBuf,
        /// The system's answer.
        source: std::io::Error,
    },
    /// No login prompt.
    #[error("the guest never showed `MikroTik Login:`{}; is DISK the test guest, and does KVM work here (`chr-vmm accel`)? console ends: {console:?}; VMM log ends: {log:?}", wait_note(*.exited, *.secs))]
    NoPrompt {
        /// The timeout.
        secs: u64,
        /// Whether the VMM had exited.
        exited: bool,
        /// The end of the console output.
        console: String,
        /// The end of the VMM's stderr.
        log: String,
    },
    /// Typing into the console failed: the VMM has gone.
    #[error("cannot type into the guest's console ({source}); the VMM has probably exited")]
    ConsoleWrite {
        /// The system's answer.
        source: std::io::Error,
    },
    /// A guest command did not finish.
    #[error("the guest command `{cmd}` did not finish{}; console ends: {tail:?}", wait_note(*.exited, *.secs))]
    GuestTimeout {
        /// The command.
        cmd: String,
        /// The timeout.
        secs: u64,
        /// Whether the VMM had exited.
        exited: bool,
        /// The end of the console output.
        tail: String,
    },
    /// A guest command failed.
    #[error("the guest command `{cmd}` failed with status {status}; console ends: {tail:?}")]
    GuestFailed {
        /// The command.
        cmd: String,
        /// Its exit status.
        status: i32,
        /// The end of the console output.
        tail: String,
    },
    /// The end marker of a command carried no status.
    #[error("the guest's console garbled the status of `{cmd}` ({status:?}); retry, and check that nothing else writes to the console")]
    GuestGarbled {
        /// The command.
        cmd: String,
        /// What stood where the status should be.
        status: String,
    },
    /// DHCP never answered.
    #[error("the guest got no DHCP lease on eth0 within 30 s (user-mode networking); see /tmp/udhcpc.log in the guest")]
    NoLease,
    /// The guest cannot reach the host over the tap.
    #[error("the guest at 10.0.3.2 cannot ping the host at 10.0.3.1 over tap {ifname}; check that no firewall drops it and that the subnet 10.0.3.0/24 is free here")]
    TapNoPing {
        /// The tap.
        ifname: String,
    },
    /// A tap was asked for but cannot be made.
    #[error("--backend tap was asked for, but a tap cannot be created here: {0}; run as root on a host with /dev/net/tun, or leave tap out")]
    TapUnavailable(String),
    /// The tap name is in use.
    #[error("the interface {0} already exists; remove it or pick another name with --tap")]
    TapExists(String),
    /// The VMM never created the tap.
    #[error("the VMM did not create tap {ifname} within 30 s; see the VMM's log")]
    TapNotCreated {
        /// The tap.
        ifname: String,
    },
    /// The host side of the tap could not be configured.
    #[error("cannot give tap {ifname} the host address 10.0.3.1/24: {detail}; the benchmark needs root and the ip command")]
    TapSetup {
        /// The tap.
        ifname: String,
        /// What `ip` said.
        detail: String,
    },
    /// A socket operation failed.
    #[error("cannot {what}: {source}")]
    Socket {
        /// What was being done.
        what: String,
        /// The system's answer.
        source: std::io::Error,
    },
    /// The guest never connected for the guest->host transfer.
    #[error("the guest did not connect to host port {port} in time; its `nc` may be missing or the route to the host broken")]
    NoConnection {
        /// The listening port.
        port: u16,
    },
    /// The guest's side broke the expected exchange.
    #[error("{what}")]
    Protocol {
        /// What happened.
        what: String,
    },
}

/// The figures of one VMM on one backend.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// host->guest MiB/s, one per transfer.
    pub to_guest: Vec<f64>,
    /// guest->host MiB/s, `dd | nc` in the guest, one per transfer.
    pub from_guest: Vec<f64>,
    /// guest->host MiB/s, a GET from the guest's httpd (sendfile), one per transfer.
    pub download: Vec<f64>,
    /// Echo round trips.
    pub echo: Vec<Duration>,
    /// HTTP requests.
    pub http: Vec<Duration>,
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    /// The VMM.
    pub vmm: Vmm,
    /// The backend.
    pub backend: NetBackend,
    /// The figures, or why there are none.
    pub result: Result<Figures, String>,
}

/// A running VMM, killed (and its tap awaited) when dropped.
struct Running {
    child: Child,
    log: PathBuf,
    tap: Option<String>,
}

impl Running {
    fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(800);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(tap) = &self.tap {
            if !launch::wait_tap_gone(tap, Duration::from_secs(10)) {
                eprintln!("bench net: tap {tap} is still there after its VMM exited; the next boot may fail");
            }
        }
    }
}

/// Everything one scenario needs.
struct Setup<'a> {
    args: &'a BenchNetArgs,
    machine: Machine,
    exe: PathBuf,
    scratch: PathBuf,
}

const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The guest command that starts `server` in the background and returns once `port` listens.
fn listen_cmd(server: &str, port: u16) -> String {
    let listening = format!("netstat -ltn 2>/dev/null | grep -q ':{port} '");
    format!(
        "{server} </dev/null >/dev/null 2>&1 & i=0; while [ $i -lt 250 ] && ! {listening}; do usleep 20000; i=$((i+1)); done; {listening}"
    )
}

fn progress(vmm: Vmm, backend: NetBackend, what: &str) {
    eprintln!("bench net: {} {}: {what}", vmm.name(), backend.name());
}

impl Setup<'_> {
    fn boot(&self, vmm: Vmm, plan: &NetPlan) -> Result<(Running, GuestConsole), BenchNetError> {
        let (mut cmd, path) = match vmm {
            Vmm::ChrVmm => (launch::chr_vmm_command(&self.exe, &self.machine, plan), self.exe.clone()),
            Vmm::Qemu => {
                let qemu = self.args.common.qemu.clone().unwrap_or_default();
                (
                    launch::qemu_command(&qemu, self.args.common.qemu_data.as_deref(), &self.machine, plan),
                    qemu,
                )
            }
        };
        let log = self.scratch.join(format!("{}.log", vmm.name()));
        let log_file = std::fs::File::create(&log)
            .map_err(|source| BenchNetError::Scratch { path: log.clone(), source })?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|source| BenchNetError::Spawn { vmm: vmm.name(), path, source })?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let tap = match plan {
            NetPlan::Tap { ifname } => Some(ifname.clone()),
            NetPlan::User { .. } => None,
        };
        let running = Running { child, log, tap };
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(BenchNetError::ConsoleWrite { source: std::io::ErrorKind::BrokenPipe.into() });
        };
        let mut console = GuestConsole::new(stdin, stdout);
        if let Some(tap) = &running.tap {
            launch::configure_tap_host(tap, Instant::now() + Duration::from_secs(30))?;
        }
        if !console.wait_prompt(self.args.common.timeout()) {
            return Err(BenchNetError::NoPrompt {
                secs: self.args.common.timeout_secs,
                exited: console.closed(),
                console: console.tail(400),
                log: running.log_tail(),
            });
        }
        Ok((running, console))
    }

    /// Boots `vmm` on `plan` and measures it.
    fn scenario(&self, vmm: Vmm, backend: NetBackend) -> Result<Figures, BenchNetError> {
        let plan = match backend {
            NetBackend::User => NetPlan::user()?,
            NetBackend::Tap => NetPlan::Tap { ifname: self.args.tap.clone() },
        };
        let listener = TcpListener::bind("0.0.0.0:0")
            .map_err(|source| BenchNetError::Socket { what: "listen on a host port".into(), source })?;
        let listen_port = listener
            .local_addr()
            .map_err(|source| BenchNetError::Socket { what: "read the listener's port".into(), source })?
            .port();
        progress(vmm, backend, "booting");
        let start = Instant::now();
        let (running, mut console) = self.boot(vmm, &plan)?;
        progress(vmm, backend, &format!("prompt after {:.1} s", start.elapsed().as_secs_f64()));
        match &plan {
            NetPlan::User { .. } => {
                let lease = "i=0; while [ $i -lt 150 ] && ! grep -q 'dhcp eth0' /tmp/dhcp.log 2>/dev/null; do sleep 0.2; i=$((i+1)); done; grep -q 'dhcp eth0' /tmp/dhcp.log";
                console.run(lease, SETUP_TIMEOUT).map_err(|e| match e {
                    BenchNetError::GuestFailed { .. } => BenchNetError::NoLease,
                    e => e,
                })?;
            }
            NetPlan::Tap { ifname } => {
                let ping = format!("ping -c 1 -W 1 {TAP_HOST} >/dev/null 2>&1");
                let cmd = format!(
                    "killall udhcpc 2>/dev/null; sleep 0.3; ip addr flush dev eth0; ip addr add {TAP_GUEST}/24 dev eth0; ip link set eth0 up; i=0; while [ $i -lt 30 ] && ! {ping}; do i=$((i+1)); done; {ping}"
                );
                console.run(&cmd, SETUP_TIMEOUT).map_err(|e| match e {
                    BenchNetError::GuestFailed { .. } => BenchNetError::TapNoPing { ifname: ifname.clone() },
                    e => e,
                })?;
            }
        }
        // The sink reads everything, then answers with its counts (see measure::send_to_guest).
        let sink = format!(
            "printf '#!/bin/sh\\nexec dd of=/dev/null bs={} iflag=fullblock 2>&1\\n' >/tmp/bench-sink && chmod +x /tmp/bench-sink",
            measure::SINK_BLOCK
        );
        console.run(&sink, SETUP_TIMEOUT)?;
        // The file the second httpd sends (with sendfile: no guest user-space copy).
        let bulk = format!(
            "mkdir -p /tmp/bulk && dd if=/dev/zero of=/tmp/bulk/file bs=65536 count={} 2>/dev/null && {}",
            self.args.mib * 16,
            listen_cmd(&format!("httpd -p {GUEST_BULK_PORT} -h /tmp/bulk"), GUEST_BULK_PORT)
        );
        console.run(&bulk, SETUP_TIMEOUT)?;
        let mut fig = Figures::default();
        let requests = usize::try_from(self.args.requests).unwrap_or(usize::MAX);

        console.run(
            &listen_cmd(&format!("nc -l -p {GUEST_ECHO_PORT} -e cat"), GUEST_ECHO_PORT),
            SETUP_TIMEOUT,
        )?;
        fig.echo = measure::echo_round_trips(plan.guest_addr(GUEST_ECHO_PORT), requests)?;
        progress(
            vmm,
            backend,
            &format!("echo round trip median {}", ms(measure::percentile(&fig.echo, 50.0))),
        );
        fig.http = measure::http_requests(plan.guest_addr(GUEST_HTTP_PORT), requests)?;
        progress(vmm, backend, &format!("HTTP GET median {}", ms(measure::percentile(&fig.http, 50.0))));

        let bytes = self.args.mib << 20;
        let transfer_timeout = Duration::from_secs(60 + 2 * self.args.mib);
        for _ in 0..self.args.repeat {
            let sink = format!("nc -l -p {GUEST_SINK_PORT} -e /tmp/bench-sink");
            console.run(&listen_cmd(&sink, GUEST_SINK_PORT), SETUP_TIMEOUT)?;
            let pid = running.child.id();
            let (t, to_guest_cpu) =
                cpu::during(pid, || measure::send_to_guest(plan.guest_addr(GUEST_SINK_PORT), bytes));
            fig.to_guest.push(measure::mib_per_s(bytes, t?));

            let send = format!(
                "dd if=/dev/zero bs=65536 count={} 2>/dev/null | nc {} {listen_port}",
                self.args.mib * 16,
                plan.host_from_guest()
            );
            let pending = console.start(&send)?;
            let (t, from_guest_cpu) = cpu::during(pid, || {
                measure::receive_from_guest(&listener, bytes, Instant::now() + transfer_timeout)
            });
            fig.from_guest.push(measure::mib_per_s(bytes, t?));
            match console.finish(pending, transfer_timeout)? {
                0 => {}
                status => {
                    return Err(BenchNetError::GuestFailed { cmd: send, status, tail: console.tail(400) })
                }
            }
            let (t, download_cpu) =
                cpu::during(pid, || measure::download(plan.guest_addr(GUEST_BULK_PORT), "/file", bytes));
            fig.download.push(measure::mib_per_s(bytes, t?));
            progress(
                vmm,
                backend,
                &format!(
                    "host->guest {:.1} MiB/s, guest->host {:.1} MiB/s (nc), {:.1} MiB/s (httpd)",
                    fig.to_guest.last().copied().unwrap_or_default(),
                    fig.from_guest.last().copied().unwrap_or_default(),
                    fig.download.last().copied().unwrap_or_default()
                ),
            );
            progress(vmm, backend, &format!("host->guest {to_guest_cpu}"));
            progress(vmm, backend, &format!("guest->host (nc) {from_guest_cpu}"));
            progress(vmm, backend, &format!("guest->host (httpd) {download_cpu}"));
        }
        drop(running);
        Ok(fig)
    }
}

impl BenchNetArgs {
    /// The backends to measure; an explicit tap that cannot be made is an error, a default one
    /// is skipped with a note.
    fn backends(&self) -> Result<Vec<NetBackend>, BenchNetError> {
        let unavailable = launch::tap_unavailable();
        if self.backend.is_empty() {
            let mut list = vec![NetBackend::User];
            match unavailable {
                None => list.push(NetBackend::Tap),
                Some(why) => eprintln!("bench net: tap skipped: {why}"),
            }
            return Ok(list);
        }
        let mut list = self.backend.clone();
        list.dedup();
        if list.contains(&NetBackend::Tap) {
            if let Some(why) = unavailable {
                return Err(BenchNetError::TapUnavailable(why));
            }
        }
        Ok(list)
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
}

fn summary(samples: &[Duration]) -> String {
    match (measure::percentile(samples, 50.0), measure::percentile(samples, 99.0)) {
        (Some(m), Some(p)) => format!("{:.2} / {:.2}", m.as_secs_f64() * 1000.0, p.as_secs_f64() * 1000.0),
        _ => "-".into(),
    }
}

fn rate(values: &[f64]) -> String {
    measure::median(values).map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// The results as a Markdown table, then the failures.
pub fn format_table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| VMM | backend | host->guest MiB/s | guest->host MiB/s (nc) | guest->host MiB/s (httpd) | TCP echo RTT median / p99 ms | HTTP GET median / p99 ms |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for row in rows {
        let _ = match &row.result {
            Ok(f) => writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.vmm.name(),
                row.backend.name(),
                rate(&f.to_guest),
                rate(&f.from_guest),
                rate(&f.download),
                summary(&f.echo),
                summary(&f.http)
            ),
            Err(_) => writeln!(
                out,
                "| {} | {} | failed | failed | failed | failed | failed |",
                row.vmm.name(),
                row.backend.name()
            ),
        };
    }
    for row in rows {
        if let Err(e) = &row.result {
            let _ = writeln!(out, "\n{} {}: {e}", row.vmm.name(), row.backend.name());
        }
    }
    out
}

/// The transfers behind each median, for the record.
fn format_details(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        if let Ok(f) = &row.result {
            let list = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                out,
                "{} {}: host->guest [{}] guest->host nc [{}] httpd [{}] MiB/s",
                row.vmm.name(),
                row.backend.name(),
                list(&f.to_guest),
                list(&f.from_guest),
                list(&f.download)
            );
        }
    }
    out
}

fn qemu_version(qemu: &Path) -> String {
    Command::new(qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown version".into())
}

/// Runs the network benchmark and prints the table; exit status 1 if any row failed.
pub fn run(args: BenchNetArgs) -> Result<u8, BenchNetError> {
    if !args.common.disk.exists() {
        return Err(BenchNetError::NoDisk(args.common.disk.clone()));
    }
    let backends = args.backends()?;
    if backends.contains(&NetBackend::Tap) && launch::interface_exists(&args.tap) {
        return Err(BenchNetError::TapExists(args.tap.clone()));
    }
    let exe = std::env::current_exe()
        .map_err(|source| BenchNetError::Socket { what: "find this chr-vmm binary".into(), source })?;
    let scratch = std::env::temp_dir().join(format!("chr-vmm-bench-net-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .map_err(|source| BenchNetError::Scratch { path: scratch.clone(), source })?;
    let setup = Setup {
        args: &args,
        machine: Machine {
            disk: args.common.disk.clone(),
            memory_mib: args.common.memory >> 20,
            firmware: args.common.firmware.clone(),
        },
        exe,
        scratch: scratch.clone(),
    };
    let mut vmms = vec![Vmm::ChrVmm];
    if args.common.qemu.is_some() {
        vmms.push(Vmm::Qemu);
    }
    let mut rows = Vec::new();
    for &backend in &backends {
        for &vmm in &vmms {
            let result = setup.scenario(vmm, backend).map_err(|e| e.to_string());
            if let Err(e) = &result {
                progress(vmm, backend, &format!("failed: {e}"));
            }
            rows.push(Row { vmm, backend, result });
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);

    println!(
        "chr-vmm {} vs {}; accelerator: KVM for both (chr-vmm --accel kvm, QEMU -accel kvm), 1 vCPU, {} MiB RAM, virtio-net",
        env!("CARGO_PKG_VERSION"),
        args.common.qemu.as_deref().map_or_else(|| "no QEMU".into(), qemu_version),
        args.common.memory >> 20
    );
    println!(
        "throughput: median of {} transfers of {} MiB; latency: {} round trips of {} bytes on one connection, {} HTTP/1.0 GETs each on a new connection",
        args.repeat,
        args.mib,
        args.requests,
        measure::ECHO_BYTES,
        args.requests
    );
    print!("{}", format_table(&rows));
    print!("{}", format_details(&rows));
    Ok(if rows.iter().all(|r| r.result.is_ok()) { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchNetArgs,
    }

    fn parse(argv: &[&str]) -> Result<BenchNetArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn arguments_and_defaults() {
        let a = parse(&["guest.img"]).unwrap();
        assert_eq!((a.mib, a.repeat, a.requests, a.common.memory), (32, 3, 200, 256 << 20));
        assert_eq!(a.tap, "chrbench0");
        assert!(a.backend.is_empty() && a.common.qemu.is_none());
        let a = parse(&[
            "--backend",
            "tap,user",
            "--mib",
            "8",
            "--qemu",
            "/usr/bin/qemu",
            "--tap",
            "t0",
            "g.img",
        ])
        .unwrap();
        assert_eq!(a.backend, [NetBackend::Tap, NetBackend::User]);
        assert_eq!(a.mib, 8);
        assert_eq!(a.common.qemu.as_deref(), Some(Path::new("/usr/bin/qemu")));
        assert!(parse(&["--backend", "vde", "g.img"]).is_err());
        assert!(parse(&["--mib", "0", "g.img"]).is_err());
        assert!(parse(&["--tap", "a-name-far-too-long", "g.img"]).is_err());
        assert!(parse(&["--tap", "bad/name", "g.img"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn listen_command_waits_for_the_port() {
        let c = listen_cmd("nc -l -p 5001", 5001);
        assert!(c.starts_with("nc -l -p 5001 </dev/null >/dev/null 2>&1 & "), "{c}");
        assert!(c.ends_with("netstat -ltn 2>/dev/null | grep -q ':5001 '"), "{c}");
    }

    #[test]
    fn table_has_medians_and_failures() {
        let ms = |v: u64| Duration::from_micros(v);
        let fig = Figures {
            to_guest: vec![10.0, 30.0, 20.0],
            from_guest: vec![5.5],
            download: vec![7.0, 8.0],
            echo: vec![ms(500), ms(700), ms(600)],
            http: (1..=100).map(|i| ms(i * 100)).collect(),
        };
        let rows = [
            Row { vmm: Vmm::ChrVmm, backend: NetBackend::User, result: Ok(fig) },
            Row { vmm: Vmm::Qemu, backend: NetBackend::Tap, result: Err("it broke".into()) },
            Row { vmm: Vmm::Qemu, backend: NetBackend::User, result: Ok(Figures::default()) },
        ];
        let t = format_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[2], "| chr-vmm | user | 20.0 | 5.5 | 7.0 | 0.60 / 0.70 | 5.00 / 9.90 |");
        assert_eq!(lines[3], "| QEMU | tap | failed | failed | failed | failed | failed |");
        assert_eq!(lines[4], "| QEMU | user | - | - | - | - | - |");
        assert!(t.contains("\nQEMU tap: it broke\n"), "{t}");
        assert_eq!(
            format_details(&rows[..1]),
            "chr-vmm user: host->guest [10.0, 30.0, 20.0] guest->host nc [5.5] httpd [7.0, 8.0] MiB/s\n"
        );
    }

    #[test]
    fn errors_read_as_advice() {
        let e = BenchNetError::NoPrompt { secs: 5, exited: true, console: "x".into(), log: "y".into() };
        assert!(e.to_string().contains("`MikroTik Login:` before the VMM exited;"), "{e}");
        let e =
            BenchNetError::GuestTimeout { cmd: "true".into(), secs: 7, exited: false, tail: String::new() };
        assert!(e.to_string().contains("`true` did not finish within 7 s;"), "{e}");
        let e = BenchNetError::TapUnavailable("not running as root".into());
        assert!(e.to_string().contains("not running as root; run as root"), "{e}");
    }
}
