//! Driving the test guest through its serial console: the VMM's stdout is the console output,
//! its stdin the console input. The guest's prompt runs every line typed as a shell command.
//!
//! Each command is followed by `echo @@BEN""CH<n>=$?@@`: the shell prints `@@BENCH<n>=STATUS@@`,
//! while the terminal's echo of the typed line still reads `BEN""CH`, so only the command's end
//! matches. Everything read from the console is untrusted text: it is searched, never indexed.

use std::io::{Read, Write};
use std::process::ChildStdin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::BenchNetError;

/// Console output kept for searching; older output is forgotten beyond this.
const KEEP: usize = 1 << 20;

#[derive(Default)]
struct Output {
    /// The newest console output.
    bytes: Vec<u8>,
    /// How many older bytes were forgotten: absolute position of `bytes[0]`.
    forgotten: usize,
    /// The VMM closed its stdout (it exited).
    closed: bool,
}

impl Output {
    fn end(&self) -> usize {
        self.forgotten + self.bytes.len()
    }
}

type SharedOutput = Arc<(Mutex<Output>, Condvar)>;

fn lock(m: &Mutex<Output>) -> MutexGuard<'_, Output> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text between the first `prefix` at or after absolute position `from` and the next
/// `suffix`, and the absolute position just after that suffix.
pub(crate) fn find_between(
    bytes: &[u8],
    base: usize,
    from: usize,
    prefix: &str,
    suffix: &str,
) -> Option<(String, usize)> {
    let start = from.saturating_sub(base).min(bytes.len());
    let hay = &bytes[start..];
    let p = find(hay, prefix.as_bytes())?;
    let after = &hay[p + prefix.len()..];
    let s = find(after, suffix.as_bytes())?;
    let text = String::from_utf8_lossy(&after[..s]).into_owned();
    Some((text, base + start + p + prefix.len() + s + suffix.len()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The console line that runs `cmd` and then prints marker `seq` with the command's status.
pub(crate) fn command_line(cmd: &str, seq: u32) -> String {
    format!("{cmd}; echo @@BEN\"\"CH{seq}=$?@@\n")
}

/// The serial console of a running VMM.
pub struct GuestConsole {
    input: ChildStdin,
    output: SharedOutput,
    seq: u32,
    /// Where the next search starts (absolute position).
    cursor: usize,
}

impl GuestConsole {
    /// Starts collecting `stdout` on a thread; commands go to `stdin`.
    pub fn new(stdin: ChildStdin, mut stdout: impl Read + Send + 'static) -> Self {
        let output: SharedOutput = Arc::default();
        let shared = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (m, cv) = &*shared;
                let mut out = lock(m);
                out.bytes.extend_from_slice(&buf[..n]);
                if out.bytes.len() > KEEP {
                    let drop = out.bytes.len() - KEEP / 2;
                    out.bytes.drain(..drop);
                    out.forgotten += drop;
                }
                cv.notify_all();
            }
            let (m, cv) = &*shared;
            lock(m).closed = true;
            cv.notify_all();
        });
        Self { input: stdin, output, seq: 0, cursor: 0 }
    }

    /// The last `n` bytes of console output, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let out = lock(&self.output.0);
        let start = out.bytes.len().saturating_sub(n);
        String::from_utf8_lossy(&out.bytes[start..]).into_owned()
    }

    /// Waits until `prefix ... suffix` appears after the cursor; returns the text between and
    /// moves the cursor past it. `None`: the deadline passed or the VMM exited first.
    fn wait_between(&mut self, prefix: &str, suffix: &str, deadline: Instant) -> Option<String> {
        let (m, cv) = &*self.output;
        let mut out = lock(m);
        loop {
            if let Some((text, end)) = find_between(&out.bytes, out.forgotten, self.cursor, prefix, suffix) {
                self.cursor = end;
                return Some(text);
            }
            let now = Instant::now();
            if out.closed || now >= deadline {
                return None;
            }
            out = cv.wait_timeout(out, deadline - now).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Whether the VMM has closed the console (exited).
    pub fn closed(&self) -> bool {
        lock(&self.output.0).closed
    }

    /// Waits for the guest's `MikroTik Login: ` prompt.
    pub fn wait_prompt(&mut self, timeout: Duration) -> bool {
        self.wait_between("MikroTik Login: ", "", Instant::now() + timeout).is_some()
    }

    /// Types `cmd` without waiting for it; [`GuestConsole::finish`] waits for its end.
    pub fn start(&mut self, cmd: &str) -> Result<Pending, BenchNetError> {
        self.seq += 1;
        self.cursor = lock(&self.output.0).end();
        let line = command_line(cmd, self.seq);
        self.input
            .write_all(line.as_bytes())
            .and_then(|()| self.input.flush())
            .map_err(|source| BenchNetError::ConsoleWrite { source })?;
        Ok(Pending { seq: self.seq, cmd: cmd.to_string() })
    }

    /// Waits for a started command to end and returns its exit status.
    pub fn finish(&mut self, pending: Pending, timeout: Duration) -> Result<i32, BenchNetError> {
        let prefix = format!("@@BENCH{}=", pending.seq);
        let Some(status) = self.wait_between(&prefix, "@@", Instant::now() + timeout) else {
            return Err(BenchNetError::GuestTimeout {
                cmd: pending.cmd,
                secs: timeout.as_secs(),
                exited: self.closed(),
                tail: self.tail(600),
            });
        };
        status.trim().parse().map_err(|_| BenchNetError::GuestGarbled { cmd: pending.cmd, status })
    }

    /// Runs `cmd` in the guest and insists that it succeeds.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(), BenchNetError> {
        let pending = self.start(cmd)?;
        match self.finish(pending, timeout)? {
            0 => Ok(()),
            status => Err(BenchNetError::GuestFailed { cmd: cmd.to_string(), status, tail: self.tail(600) }),
        }
    }
}

/// A command typed into the guest whose end has not been seen yet.
pub struct Pending {
    seq: u32,
    cmd: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_line_never_matches_its_own_marker() {
        let line = command_line("true", 7);
        assert_eq!(line, "true; echo @@BEN\"\"CH7=$?@@\n");
        // The terminal echoes the typed line; only the shell's output carries the marker.
        let console = format!("{line}@@BENCH7=0@@\r\nMikroTik Login: ");
        let echo_only = find_between(line.as_bytes(), 0, 0, "@@BENCH7=", "@@");
        assert_eq!(echo_only, None);
        let (status, end) = find_between(console.as_bytes(), 0, 0, "@@BENCH7=", "@@").unwrap();
        assert_eq!(status, "0");
        assert_eq!(&console[end..end + 2], "\r\n");
    }

    #[test]
    fn search_respects_cursor_and_forgotten_output() {
        let bytes = b"@@BENCH1=0@@ noise @@BENCH1=3@@";
        // Absolute positions: the buffer starts at 100 because 100 bytes were forgotten.
        let (first, end) = find_between(bytes, 100, 0, "@@BENCH1=", "@@").unwrap();
        assert_eq!((first.as_str(), end), ("0", 112));
        let (second, _) = find_between(bytes, 100, end, "@@BENCH1=", "@@").unwrap();
        assert_eq!(second, "3");
        assert_eq!(find_between(bytes, 100, 1000, "@@BENCH1=", "@@"), None);
        // A marker cut off before its suffix is not a match yet.
        assert_eq!(find_between(b"@@BENCH2=1", 0, 0, "@@BENCH2=", "@@"), None);
        // Invalid UTF-8 from the guest is text, not a panic.
        let (junk, _) = find_between(b"@@BENCH3=\xff\xfe@@", 0, 0, "@@BENCH3=", "@@").unwrap();
        assert!(junk.trim().parse::<i32>().is_err());
    }
}
