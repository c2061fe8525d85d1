//! Pieces shared by every crate's tests: skip reporting, tool lookup, the test guest.
//!
//! A test that cannot run on this host (a missing tool, no privileges, another architecture)
//! calls [`skip`] and returns. The reason goes to stderr and, when `$CHR_VMM_SKIP_LOG` names a
//! file, one line is appended to it; `scripts/test.sh` lists those lines and counts them as
//! skipped rather than passed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Records that `test` did not run here, and why.
pub fn skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason}");
    eprintln!("SKIPPED: {line}");
    if let Some(log) = std::env::var_os("CHR_VMM_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
}

/// Builds (or finds cached) the test guest with images/test-guest/build.sh, serialised with
/// flock; returns its directory.
pub fn test_guest() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/test-guest/build.sh");
    let out = Command::new("flock")
        .arg("/tmp/chr-vmm-test-guest.lock")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_skip_is_appended_to_the_log() {
        let log = std::env::temp_dir().join(format!("test-support-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        std::env::set_var("CHR_VMM_SKIP_LOG", &log);
        super::skip("some_test", "no frobnicator here");
        super::skip("other_test", "not on this architecture");
        std::env::remove_var("CHR_VMM_SKIP_LOG");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "some_test: no frobnicator here\nother_test: not on this architecture\n");
        let _ = std::fs::remove_file(&log);
    }
}
