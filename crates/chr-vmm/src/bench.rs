//! `chr-vmm bench boot`: boot a disk with chr-vmm and with QEMU, one after the other in the same
//! run, and report when each reached the firmware, the MBR and the login prompt, and how much
//! memory the VMM itself used beyond guest RAM.
//!
//! Markers are read from the outside, the same way for both VMMs: the firmware's first byte on
//! the 0x402 debug port, SeaBIOS's "Booting from 0000:7c00" line on that port (the jump to the
//! MBR), and the prompt on the serial console.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

use crate::cli::BenchBootArgs;
use crate::VmError;

/// One boot's figures (None: the marker never appeared).
#[derive(Debug, Default, Clone)]
pub struct BootFigures {
    /// Start to the first byte on the debug port.
    pub firmware: Option<Duration>,
    /// Start to SeaBIOS's jump to the MBR.
    pub mbr: Option<Duration>,
    /// Start to the login prompt.
    pub login: Option<Duration>,
    /// Resident memory outside guest RAM at the prompt, in KiB.
    pub overhead_kib: Option<u64>,
}

#[derive(Clone, Copy)]
enum Mark {
    Firmware,
    Mbr,
    Login,
}

/// Reads `r` to its end, sending `Mark::Firmware` on the first byte (if `first_byte`) and
/// `on_match` once `needle` has appeared.
fn watch(
    mut r: impl Read + Send + 'static,
    tx: Sender<Mark>,
    needle: &'static str,
    on_match: Mark,
    first_byte: bool,
) {
    std::thread::spawn(move || {
        let mut tail = String::new();
        let mut buf = [0u8; 4096];
        let mut sent_first = !first_byte;
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            if !sent_first {
                sent_first = true;
                let _ = tx.send(Mark::Firmware);
            }
            tail.push_str(&String::from_utf8_lossy(&buf[..n]));
            if tail.contains(needle) {
                let _ = tx.send(on_match);
                // Keep draining so the VMM never blocks on a full pipe.
                while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
            // Keep only a tail: a marker split across reads is still found.
            if tail.len() > 4096 {
                let cut = (tail.len() - 256..tail.len()).find(|&i| tail.is_char_boundary(i)).unwrap_or(0);
                tail.drain(..cut);
            }
        }
    });
}

/// Resident KiB of `pid` outside guest RAM: every mapping at least half the guest's RAM is
/// taken to be guest RAM (chr-vmm splits RAM around the VGA hole; QEMU maps it whole).
pub fn overhead_kib(pid: u32, guest_ram: u64) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut total = 0u64;
    let mut current_is_guest = false;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            let mut range = first.split('-');
            let start = range.next().and_then(|s| u64::from_str_radix(s, 16).ok());
            let end = range.next().and_then(|s| u64::from_str_radix(s, 16).ok());
            current_is_guest = matches!((start, end), (Some(s), Some(e)) if e - s >= guest_ram / 2);
        } else if first == "Rss:" && !current_is_guest {
            total += parts.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(total)
}

fn mkfifo(path: &Path) -> Result<(), VmError> {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| VmError::Build("a FIFO path contains a NUL byte".into()))?;
    // SAFETY: mkfifo with a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(VmError::Thread(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Boots `cmd` (whose debug port goes to `debug_fifo` and whose serial console is its stdout)
/// and times its markers.
fn time_boot(
    mut cmd: Command,
    debug_fifo: &Path,
    guest_ram: u64,
    timeout: Duration,
) -> Result<BootFigures, VmError> {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let (tx, rx) = channel();
    if let Some(out) = child.stdout.take() {
        watch(out, tx.clone(), "Login:", Mark::Login, false);
    }
    // Opening the FIFO blocks until the VMM opens its end; do it on the watcher's thread.
    let fifo = debug_fifo.to_path_buf();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        if let Ok(f) = std::fs::File::open(&fifo) {
            watch(f, tx2, "Booting from 0000:7c00", Mark::Mbr, true);
        }
    });
    drop(tx);
    let mut fig = BootFigures::default();
    while fig.login.is_none() {
        let left = timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok(Mark::Firmware) => fig.firmware = fig.firmware.or(Some(start.elapsed())),
            Ok(Mark::Mbr) => fig.mbr = fig.mbr.or(Some(start.elapsed())),
            Ok(Mark::Login) => {
                fig.login = Some(start.elapsed());
                fig.overhead_kib = overhead_kib(child.id(), guest_ram);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(fig)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
}

/// Runs the boot benchmark and prints a table.
pub fn boot(args: BenchBootArgs) -> Result<u8, VmError> {
    let dir = std::env::temp_dir().join(format!("chr-vmm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fifo = dir.join("debugcon");
    let exe = std::env::current_exe()?;
    let guest_ram = args.common.memory;
    let mem_arg = format!("{}M", guest_ram >> 20);
    let accel = if args.interp { "interp" } else { "kvm" };
    let mut rows: Vec<(String, BootFigures)> = Vec::new();
    let jits = if args.interp { args.jit.clone() } else { vec![crate::cli::JitSetting(None)] };
    for run in 0..args.runs {
        for jit in &jits {
            mkfifo(&fifo)?;
            let mut ours = Command::new(&exe);
            ours.args([
                "run",
                "--jit",
                &jit.to_string(),
                "--accel",
                accel,
                "--memory",
                &mem_arg,
                "--serial",
                "stdio",
                "--snapshot",
                "--firmware-log",
            ])
            .arg(&fifo);
            if let Some(fw) = &args.common.firmware {
                ours.arg("--firmware").arg(fw);
            }
            ours.arg(&args.common.disk);
            let name = match jit.0 {
                Some(_) => format!("chr-vmm ({accel}+jit) #{}", run + 1),
                None => format!("chr-vmm ({accel}) #{}", run + 1),
            };
            rows.push((name, time_boot(ours, &fifo, guest_ram, args.common.timeout())?));
        }
        if let Some(qemu) = &args.common.qemu {
            mkfifo(&fifo)?;
            let mut q = Command::new(qemu);
            q.args([
                "-accel",
                if args.interp { "tcg" } else { "kvm" },
                "-m",
                &mem_arg,
                "-nodefaults",
                "-no-user-config",
            ])
            .args(["-display", "none", "-serial", "stdio", "-global", "isa-debugcon.iobase=0x402"])
            .arg("-debugcon")
            .arg(format!("file:{}", fifo.display()))
            .arg("-drive")
            .arg(format!("file={},if=virtio,snapshot=on", args.common.disk.display()));
            if let Some(fw) = &args.common.firmware {
                q.arg("-bios").arg(fw);
            }
            if let Some(data) = &args.common.qemu_data {
                q.arg("-L").arg(data);
            }
            rows.push((
                format!("qemu ({}) #{}", if args.interp { "tcg" } else { "kvm" }, run + 1),
                time_boot(q, &fifo, guest_ram, args.common.timeout())?,
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{:<22} {:>12} {:>12} {:>12} {:>14}", "vmm", "firmware", "mbr", "login", "overhead");
    for (name, f) in &rows {
        println!(
            "{:<22} {:>12} {:>12} {:>12} {:>14}",
            name,
            ms(f.firmware),
            ms(f.mbr),
            ms(f.login),
            f.overhead_kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
    }
    Ok(if rows.iter().all(|(_, f)| f.login.is_some()) { 0 } else { 1 })
}
