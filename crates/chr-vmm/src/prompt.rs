//! Notices the guest's login prompt on the serial console and says so in the log, with the time
//! since the VM started: RouterOS prints `MikroTik Login: ` once it is up. The prompt ends
//! without a newline, so a reader that works line by line (`docker logs`, a CI log) would not
//! see it until the next line; the log line is how such a reader knows the router is ready.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// What the prompt ends with (RouterOS's `MikroTik Login: `, and `RouterOS Login: `).
const PROMPT: &[u8] = b"Login: ";

/// Watches console output for the first login prompt.
#[derive(Debug)]
pub struct PromptWatch {
    start: Instant,
    /// How many bytes of [`PROMPT`] the output ends with.
    matched: AtomicUsize,
    seen: AtomicBool,
}

impl PromptWatch {
    /// A watch whose times count from now.
    pub fn new() -> Self {
        Self { start: Instant::now(), matched: AtomicUsize::new(0), seen: AtomicBool::new(false) }
    }

    /// Looks at the next console output; true (and a log line) the first time a prompt shows.
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
                log::info!(
                    "guest: login prompt on the serial console, {:.1} s after start",
                    self.start.elapsed().as_secs_f64()
                );
                return true;
            }
        }
        self.matched.store(matched, Ordering::Relaxed);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_found_once_even_a_byte_at_a_time() {
        let w = PromptWatch::new();
        assert!(!w.feed(b"chr-test-guest: ready\r\nLogin failed\r\nMikroTik Log"));
        let found: Vec<bool> = b"in: ".iter().map(|b| w.feed(&[*b])).collect();
        assert_eq!(found, [false, false, false, true]);
        assert!(!w.feed(b"\r\nMikroTik Login: "), "only the first prompt is reported");
        assert!(PromptWatch::new().feed(b"xxLLogin: "));
    }
}
