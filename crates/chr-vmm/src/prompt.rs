//! Notices the guest's login prompt on the serial console: RouterOS prints `MikroTik Login: `
//! once it is up. The first prompt of each boot is logged with the time since the boot started
//! (the prompt ends without a newline, so a reader that works line by line, like `docker logs`,
//! would not see it until the next line), and `--ready-file` exists exactly while the guest has
//! shown its prompt since its last reset: a readiness flag for scripts and container health
//! checks (`chr-vmm ready`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What the prompt ends with (RouterOS's `MikroTik Login: `, and `RouterOS Login: `).
const PROMPT: &[u8] = b"Login: ";

/// Watches console output for the first login prompt of each boot.
#[derive(Debug)]
pub struct PromptWatch {
    /// When the current boot started.
    start: Mutex<Instant>,
    /// How many bytes of [`PROMPT`] the output ends with.
    matched: AtomicUsize,
    seen: AtomicBool,
    ready_file: Option<PathBuf>,
}

impl PromptWatch {
    /// A watch whose times count from now, keeping `ready_file` (removed now if left over).
    pub fn new(ready_file: Option<PathBuf>) -> Self {
        let watch = Self {
            start: Mutex::new(Instant::now()),
            matched: AtomicUsize::new(0),
            seen: AtomicBool::new(false),
            ready_file,
        };
        watch.remove_ready_file();
        watch
    }

    /// Looks at the next console output; true (and a log line) at the boot's first prompt.
    pub fn feed(&self, data: &[u8]) -> bool {
        if self.seen.load(Ordering::Relaxed) {
            return false;
        }
        let mut matched = self.matched.load(Ordering::Relaxed);
        for &b in data {
            // No proper prefix of PROMPT is also a suffix of it, so a mismatch restarts the
            // match at this byte.
            matched = if PROMPT.get(matched) == Some(&b) { matched + 1 } else { usize::from(b == PROMPT[0]) };
            if matched == PROMPT.len() {
                self.seen.store(true, Ordering::Relaxed);
                self.matched.store(0, Ordering::Relaxed);
                self.announce();
                return true;
            }
        }
        self.matched.store(matched, Ordering::Relaxed);
        false
    }

    fn announce(&self) {
        let since = self.start.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
        log::info!("guest: login prompt on the serial console, {:.1} s after start", since.as_secs_f64());
        if let Some(path) = &self.ready_file {
            if let Err(e) = std::fs::write(path, format!("{:.1}\n", since.as_secs_f64())) {
                log::warn!(
                    "cannot create the ready file {}: {e}; readiness checks will fail",
                    path.display()
                );
            }
        }
    }

    /// The guest reset: it is not ready until it shows its prompt again.
    pub fn rearm(&self) {
        self.remove_ready_file();
        *self.start.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.matched.store(0, Ordering::Relaxed);
        self.seen.store(false, Ordering::Relaxed);
    }

    fn remove_ready_file(&self) {
        if let Some(path) = &self.ready_file {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove the ready file {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for PromptWatch {
    /// The VM is gone: not ready any more.
    fn drop(&mut self) {
        self.remove_ready_file();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_found_once_per_boot_even_a_byte_at_a_time() {
        let w = PromptWatch::new(None);
        assert!(!w.feed(b"chr-test-guest: ready\r\nLogin failed\r\nMikroTik Log"));
        let found: Vec<bool> = b"in: ".iter().map(|b| w.feed(&[*b])).collect();
        assert_eq!(found, [false, false, false, true]);
        assert!(!w.feed(b"\r\nMikroTik Login: "), "only the first prompt of a boot is reported");
        w.rearm();
        assert!(w.feed(b"MikroTik Login: "), "the next boot's prompt is");
        assert!(PromptWatch::new(None).feed(b"xxLLogin: "));
    }

    #[test]
    fn the_ready_file_follows_the_prompt() {
        let path = std::env::temp_dir().join(format!("chr-vmm-ready-{}", std::process::id()));
        std::fs::write(&path, "left over").unwrap();
        let w = PromptWatch::new(Some(path.clone()));
        assert!(!path.exists(), "a stale file is removed at start");
        w.feed(b"MikroTik Login: ");
        assert!(path.exists(), "created at the prompt");
        w.rearm();
        assert!(!path.exists(), "removed when the guest resets");
        w.feed(b"MikroTik Login: ");
        assert!(path.exists());
        drop(w);
        assert!(!path.exists(), "removed when the VM stops");
    }
}
