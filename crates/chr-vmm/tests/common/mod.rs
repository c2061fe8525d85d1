//! Shared pieces of the end-to-end tests: the test guest, a running chr-vmm with its serial
//! console captured, and skip reporting.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// One of the project's scripts (scripts/NAME).
pub fn script(name: &str) -> PathBuf {
    repo_root().join("scripts").join(name)
}

/// The chr-vmm binary under test.
pub fn chr_vmm() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chr-vmm"))
}

/// Records that `test` could not run here and why; the test then returns without asserting.
/// scripts/test.sh lists these and counts them as skipped, not passed.
pub fn skip(test: &str, reason: &str) {
    test_support::skip(test, reason);
}

/// Builds (or finds cached) the test guest; returns its directory.
pub fn test_guest() -> Result<PathBuf, String> {
    test_support::test_guest()
}

/// What /dev/kvm on this host is.
#[derive(Debug, PartialEq, Eq)]
pub enum HostKvm {
    /// None, or not openable.
    Missing,
    /// The paravirtual kvm-pvm (runs real-mode firmware, not Linux).
    Pvm,
    /// A hardware-backed KVM.
    Real,
}

/// Probes /dev/kvm the way the tests need.
pub fn host_kvm() -> HostKvm {
    let ok = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !ok {
        HostKvm::Missing
    } else if Path::new("/sys/module/kvm_pvm").exists() {
        HostKvm::Pvm
    } else {
        HostKvm::Real
    }
}

/// A running chr-vmm whose serial console is piped.
pub struct Vmm {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

fn pump(mut r: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
}

impl Vmm {
    /// Starts `chr-vmm run ARGS...` with the console on piped stdio.
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(chr_vmm());
        cmd.arg("run").args(args);
        Self::spawn(cmd)
    }

    /// Starts any VMM command (QEMU for comparisons) whose serial console is its stdio.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the VMM");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), out.clone());
        pump(child.stderr.take().unwrap(), err.clone());
        let stdin = child.stdin.take();
        Self { child, stdin, out, err }
    }

    /// The serial output so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// The VMM's log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Waits until the serial output contains `needle`; returns the time it took, or None
    /// when `timeout` passes or the VMM exits first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.output().contains(needle) {
                return Some(start.elapsed());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return self.output().contains(needle).then(|| start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = s.write_all(text.as_bytes());
            let _ = s.flush();
        }
    }

    /// Sends a signal to the VMM.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `timeout` for the VMM to exit; returns its exit code (None on a signal or
    /// on timeout, after which the VMM is killed).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// A report for assertion messages.
    pub fn report(&self) -> String {
        format!("--- serial ---\n{}\n--- log ---\n{}", self.output(), self.log())
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
