//! A real-userland battery on the interpreter, end to end (issue 12): the battery guest
//! (images/battery-guest: the test guest plus a static C program for x86-64 and i386, busybox
//! compression, awk, sort, checksums, date, DHCP, sleep) boots on each of Debian's two kernels
//! with `--accel interp` and under QEMU TCG, runs `/bin/battery` and prints `key value` lines.
//! Every line must be the same on both (but the CPUID features and timings); lines whose key
//! ends in `.hostref` are where QEMU 7.2 TCG is known to differ from CPUs, and are compared with
//! the host instead. The host also runs the battery's portable part as a tie-breaker: each
//! difference says which side the host agrees with. Any `segfault`, `traps:` or `general
//! protection` line in either guest's dmesg fails the test, and so does a missing DHCP lease.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo_root, skip, Vmm};
use test_support::have;

const NAME: &str = "userland_battery_matches_qemu_tcg_and_the_host";
const PROMPT: &str = "MikroTik Login: ";
const BEGIN: &str = "@@battery-begin@@";
const END: &str = "@@battery-end@@";
/// Upper bounds for a loaded machine; a normal run takes a fraction of them.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// QEMU's reference CPU: qemu64 (SSE3, CX16, POPCNT... in QEMU 7.2) with what x86-64-v2 adds.
const QEMU_CPU: &str = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt";
/// The data partition of the test guest's disk: LBA and sector count (images/test-guest).
const P2: (usize, usize) = (122_880, 8192);

/// One battery run: its lines in order, or why there are none (or only some).
struct Run {
    lines: Vec<(String, String)>,
    error: Option<String>,
}

impl Run {
    fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `key value` lines between the markers; a repeated key gets `#2`, `#3`... appended.
fn parse(text: &str) -> Vec<(String, String)> {
    let body = text.rsplit(BEGIN).next().unwrap_or("");
    let body = body.split(END).next().unwrap_or("");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut lines = Vec::new();
    for l in body.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty()) {
        let (k, v) = l.split_once(' ').unwrap_or((l, ""));
        let n = seen.entry(k.to_string()).or_insert(0);
        *n += 1;
        let key = if *n == 1 { k.to_string() } else { format!("{k}#{n}") };
        lines.push((key, v.to_string()));
    }
    lines
}

/// Lines that may differ between machines: the CPU's features, timings, the run's mode.
fn ignored(key: &str) -> bool {
    key.ends_with(".cpuid") || key.starts_with("time.") || key == "battery.mode"
}

/// Builds (or finds cached) the battery guest for a kernel flavour: (guest dir, overlay dir).
fn battery_guest(flavour: &str) -> Result<(PathBuf, PathBuf), String> {
    let script = repo_root().join("images/battery-guest/build.sh");
    let out = Command::new(&script)
        .arg(flavour)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} {flavour} failed ({})", script.display(), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(PathBuf::from)
            .ok_or(format!("no {name} in {text:?}"))
    };
    Ok((field("guest=")?, field("overlay=")?))
}

/// Boots a VMM whose serial console is its stdio, runs the battery at the prompt, powers off.
fn run_battery(mut vm: Vmm, who: &str) -> Run {
    let started = Instant::now();
    if vm.wait_for(PROMPT, BOOT_TIMEOUT).is_none() {
        let tail = tail(&vm.report(), 3000);
        return Run {
            lines: Vec::new(),
            error: Some(format!("{who}: no prompt within {BOOT_TIMEOUT:?}\n{tail}")),
        };
    }
    let boot = started.elapsed();
    vm.send("/bin/battery\n");
    let done = vm.wait_for(END, RUN_TIMEOUT).is_some();
    let out = vm.output();
    eprintln!(
        "{who}: prompt after {:.1} s, battery {} after {:.1} s more",
        boot.as_secs_f64(),
        if done { "done" } else { "NOT done" },
        (started.elapsed() - boot).as_secs_f64()
    );
    let lines = if out.contains(BEGIN) { parse(&out) } else { Vec::new() };
    let error = (!done)
        .then(|| format!("{who}: the battery did not finish within {RUN_TIMEOUT:?}\n{}", tail(&out, 3000)));
    vm.send("poweroff -f\n");
    let _ = vm.wait_exit(Duration::from_secs(30));
    Run { lines, error }
}

fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let start = (start..=s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
    s[start..].to_string()
}

/// The battery's portable part on the host (the same static programs and busybox).
fn host_run(guest: &Path, overlay: &Path, work: &Path) -> Result<Run, String> {
    let img = std::fs::read(guest.join("guest.img")).map_err(|e| format!("cannot read guest.img: {e}"))?;
    let data = img.get(P2.0 * 512..(P2.0 + P2.1) * 512).ok_or("guest.img is too short")?;
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let data_path = work.join("data.bin");
    std::fs::write(&data_path, data).map_err(|e| e.to_string())?;
    let out = Command::new("busybox")
        .arg("sh")
        .arg(overlay.join("bin/battery"))
        .arg("portable")
        .env("BATTERY_DIR", overlay.join("battery"))
        .env("BATTERY_DATA", &data_path)
        .output()
        .map_err(|e| format!("cannot run busybox: {e}"))?;
    Ok(Run { lines: parse(&String::from_utf8_lossy(&out.stdout)), error: None })
}

fn short(v: Option<&str>) -> String {
    match v {
        None => "(missing)".to_string(),
        Some(v) if v.len() > 160 => {
            format!("`{}...`", &v[..v.char_indices().nth(160).map_or(v.len(), |(i, _)| i)])
        }
        Some(v) => format!("`{v}`"),
    }
}

/// Every difference between the interpreter's run and the reference, with the host's verdict.
fn differences(flavour: &str, interp: &Run, tcg: &Run, host: Option<&Run>) -> Vec<String> {
    let mut keys: Vec<&str> = tcg.lines.iter().map(|(k, _)| k.as_str()).collect();
    keys.extend(interp.lines.iter().map(|(k, _)| k.as_str()).filter(|k| tcg.get(k).is_none()));
    let mut diffs = Vec::new();
    // lines missing because their section died on the interpreter: one line per section
    let mut lost: Vec<(String, usize)> = Vec::new();
    for key in keys.into_iter().filter(|k| !ignored(k) && !k.starts_with("dmesg.bad")) {
        let (i, t) = (interp.get(key), tcg.get(key));
        let h = host.and_then(|h| h.get(key));
        let section = section_of(key);
        if i.is_none()
            && t.is_some()
            && (key.starts_with("c64.") || key.starts_with("c32."))
            && !key.ends_with(".end")
        {
            match lost.iter_mut().find(|(s, _)| *s == section) {
                Some((_, n)) => *n += 1,
                None => lost.push((section, 1)),
            }
            continue;
        }
        if key.contains(".hostref") {
            // QEMU TCG is known to be wrong here: the host is the reference.
            let Some(hv) = h else { continue };
            if i != Some(hv) {
                diffs.push(format!(
                    "[{flavour}] {key} (reference: the host): interp {} | host {} | TCG {}",
                    short(i),
                    short(Some(hv)),
                    short(t)
                ));
            }
            continue;
        }
        if i == t {
            continue;
        }
        let verdict = match (host, h) {
            (None, _) => "host not run".to_string(),
            (Some(_), None) => "host has no such line".to_string(),
            (Some(_), Some(hv)) if Some(hv) == i => "host agrees with interp".to_string(),
            (Some(_), Some(hv)) if Some(hv) == t => "host agrees with TCG".to_string(),
            (Some(_), Some(hv)) => format!("host agrees with neither: {}", short(Some(hv))),
        };
        diffs.push(format!("[{flavour}] {key}: interp {} | TCG {} | {verdict}", short(i), short(t)));
    }
    for (section, n) in lost {
        let end = interp
            .get(&section)
            .or(interp.get(&format!("{section}.end")))
            .or(interp.get(&format!("{}.status", section.split('.').next().unwrap_or(""))))
            .unwrap_or("no such section");
        diffs.push(format!("[{flavour}] {section}.*: {n} lines missing on the interpreter (section: {end})"));
    }
    diffs
}

/// `c64.x87` for `c64.x87.fsqrt2`; the C program's sections end with a `SECTION.end` line, or
/// say `SECTION not present` when CPUID lacks their extension.
fn section_of(key: &str) -> String {
    key.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// What a guest's own run must show: no faults in dmesg, the lease, sleep without errors.
fn guest_checks(flavour: &str, who: &str, run: &Run) -> Vec<String> {
    let mut bad = Vec::new();
    if let Some(e) = &run.error {
        bad.push(format!("[{flavour}] {e}"));
    }
    for (k, v) in run.lines.iter().filter(|(k, _)| k.starts_with("dmesg.bad")) {
        if ["segfault", "traps:", "general protection"].iter().any(|p| v.contains(p)) {
            bad.push(format!("[{flavour}] {who} dmesg: {v}"));
        } else {
            eprintln!("[{flavour}] {who} {k}: {v}");
        }
    }
    if !run.lines.is_empty() && run.get("net.addr") != Some("10.0.2.15/24") {
        bad.push(format!(
            "[{flavour}] {who}: no DHCP lease on user-mode networking (net.lease {}, net.addr {})",
            short(run.get("net.lease")),
            short(run.get("net.addr"))
        ));
    }
    bad
}

/// Boots the battery guest of one kernel flavour on the interpreter and on QEMU TCG at once,
/// runs the host's part, and returns the problems found and a one-line summary.
fn one_flavour(flavour: &str, work: &Path) -> (Vec<String>, Option<String>) {
    let mut failures = Vec::new();
    let t = Instant::now();
    let (guest, overlay) = match battery_guest(flavour) {
        Ok(g) => g,
        Err(e) => {
            skip(NAME, &format!("the battery guest ({flavour}) could not be built: {e}"));
            return (failures, None);
        }
    };
    eprintln!("[{flavour}] guest ready in {:.1} s: {}", t.elapsed().as_secs_f64(), guest.display());
    let img = guest.join("guest.img");
    let disk = img.to_str().unwrap();
    let t = Instant::now();
    let (interp, tcg) = std::thread::scope(|s| {
        let interp = s.spawn(|| {
            let vm = Vmm::start(&["--accel", "interp", "--snapshot", "--net", "user", disk]);
            run_battery(vm, &format!("[{flavour}] interp"))
        });
        let tcg = s.spawn(|| {
            let mut q = Command::new("qemu-system-x86_64");
            q.args(["-machine", "pc", "-accel", "tcg", "-cpu", QEMU_CPU, "-m", "256", "-nodefaults"]);
            q.args(["-display", "none", "-serial", "stdio"]);
            q.arg("-drive").arg(format!("file={disk},if=virtio,format=raw,snapshot=on"));
            q.args(["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile="]);
            run_battery(Vmm::spawn(q), &format!("[{flavour}] TCG"))
        });
        (interp.join().unwrap(), tcg.join().unwrap())
    });
    eprintln!("[{flavour}] both guests done in {:.1} s", t.elapsed().as_secs_f64());
    for (who, run) in [("interp", &interp), ("TCG", &tcg)] {
        let times: Vec<String> = run
            .lines
            .iter()
            .filter(|(k, _)| k.starts_with("time."))
            .map(|(k, v)| format!("{} {v}", &k[5..]))
            .collect();
        eprintln!("[{flavour}] {who} battery phases: {}", times.join(", "));
    }
    let host = match host_run(&guest, &overlay, &work.join(flavour)) {
        Ok(h) => {
            if !h.get("c32.status").is_some_and(|s| s.starts_with("0 ")) {
                skip(
                    NAME,
                    &format!(
                        "the host cannot run the i386 program ({:?}): no tie-breaker for c32",
                        h.get("c32.status")
                    ),
                );
            }
            Some(h)
        }
        Err(e) => {
            skip(NAME, &format!("no host tie-breaker: {e}"));
            None
        }
    };
    failures.extend(guest_checks(flavour, "interp", &interp));
    failures.extend(guest_checks(flavour, "TCG", &tcg));
    if tcg.lines.is_empty() || interp.lines.is_empty() {
        failures.push(format!(
            "[{flavour}] no battery output to compare: {} lines from TCG, {} from the interpreter",
            tcg.lines.len(),
            interp.lines.len()
        ));
        return (failures, None);
    }
    let diffs = differences(flavour, &interp, &tcg, host.as_ref());
    let report = Some(format!(
        "[{flavour}] {} lines from TCG, {} from the interpreter, {} differences",
        tcg.lines.len(),
        interp.lines.len(),
        diffs.len()
    ));
    failures.extend(diffs);
    (failures, report)
}

#[test]
fn userland_battery_matches_qemu_tcg_and_the_host() {
    if !cfg!(target_arch = "x86_64") {
        return skip(
            NAME,
            "the battery programs are built with the host's gcc for x86-64: runs on x86_64 hosts only",
        );
    }
    if !have("qemu-system-x86_64") {
        return skip(NAME, "qemu-system-x86_64 (the reference) is not installed (scripts/install-deps.sh)");
    }
    if !have("busybox") {
        return skip(NAME, "busybox is not installed (scripts/install-deps.sh): the guest is built from it");
    }
    let work = std::env::temp_dir().join(format!("chr-vmm-battery-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut report = Vec::new();
    // the two kernels at once: most of the time is spent in single-threaded VMMs
    let results: Vec<(Vec<String>, Option<String>)> = std::thread::scope(|s| {
        let runs: Vec<_> = ["amd64", "cloud-amd64"]
            .iter()
            .map(|f| {
                let work = &work;
                s.spawn(move || one_flavour(f, work))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (f, r) in results {
        failures.extend(f);
        report.extend(r);
    }
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("battery: whole test {:.1} s", started.elapsed().as_secs_f64());
    for r in &report {
        eprintln!("{r}");
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
