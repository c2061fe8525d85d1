//! The serial console's host side: stdio (raw terminal, Ctrl-A x quits), a telnet or Unix
//! socket server, a file, or nothing.
//!
//! The backend outlives guest resets: output goes through a shared sink and input is pushed
//! into whichever UART the current machine has.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use machine::serial::SerialPort;

use crate::cli::SerialSpec;
use crate::events::Event;
use crate::prompt::PromptWatch;

/// Bytes of output kept for a socket client that connects late.
const BACKLOG: usize = 64 << 10;

/// Why the console could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A listening socket could not be created.
    #[error("cannot listen for the serial console on {what}: {source}. Pick another address or free it")]
    Listen { what: String, source: std::io::Error },
    /// The output file could not be opened.
    #[error("cannot open the serial log {path}: {source}")]
    File { path: String, source: std::io::Error },
}

/// The UART input goes to; replaced when the machine is rebuilt after a reset.
pub type InputTarget = Arc<Mutex<Option<Arc<Mutex<SerialPort>>>>>;

/// A write end that may have no reader (a socket with no client keeps a backlog).
trait Sink: Send {
    fn put(&mut self, data: &[u8]);
}

struct WriterSink<W: Write + Send>(W);

impl<W: Write + Send> Sink for WriterSink<W> {
    fn put(&mut self, data: &[u8]) {
        let _ = self.0.write_all(data);
        let _ = self.0.flush();
    }
}

/// A socket server's output side: the current client, or a backlog for the next one.
#[derive(Default)]
struct ClientSink {
    client: Option<Box<dyn Write + Send>>,
    backlog: VecDeque<u8>,
}

impl Sink for ClientSink {
    fn put(&mut self, data: &[u8]) {
        if let Some(c) = self.client.as_mut() {
            if c.write_all(data).is_ok() {
                return;
            }
            self.client = None;
        }
        self.backlog.extend(data);
        let excess = self.backlog.len().saturating_sub(BACKLOG);
        self.backlog.drain(..excess);
    }
}

/// The guest's serial output, cloneable into each machine's UART; it also watches for the
/// login prompt.
#[derive(Clone)]
pub struct ConsoleOut(Arc<Mutex<dyn Sink>>, Arc<PromptWatch>);

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).put(buf);
        self.1.feed(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The console: its output sink and the slot its input feeds.
pub struct Console {
    /// The guest's output.
    pub out: ConsoleOut,
    /// Where input goes.
    pub input: InputTarget,
    _terminal: Option<RawTerminal>,
}

impl Console {
    /// Sets up the console described by `spec`; `events` receives a quit request (Ctrl-A x).
    /// `ready_file` exists while the guest has shown its login prompt since its last reset.
    pub fn open(
        spec: &SerialSpec,
        events: Sender<Event>,
        ready_file: Option<PathBuf>,
    ) -> Result<Self, ConsoleError> {
        let input: InputTarget = Arc::new(Mutex::new(None));
        let (sink, terminal): (Arc<Mutex<dyn Sink>>, Option<RawTerminal>) = match spec {
            SerialSpec::Stdio => {
                let terminal = RawTerminal::enter();
                let target = input.clone();
                std::thread::Builder::new()
                    .name("stdin".into())
                    .spawn(move || stdin_loop(target, events))
                    .map_err(|source| ConsoleError::Listen { what: "stdin".into(), source })?;
                (Arc::new(Mutex::new(WriterSink(std::io::stdout()))), terminal)
            }
            SerialSpec::File(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| ConsoleError::File { path: path.display().to_string(), source })?;
                (Arc::new(Mutex::new(WriterSink(f))), None)
            }
            SerialSpec::None => (Arc::new(Mutex::new(WriterSink(std::io::sink()))), None),
            SerialSpec::Telnet(addr) => {
                let listener = TcpListener::bind(addr)
                    .map_err(|source| ConsoleError::Listen { what: format!("telnet {addr}"), source })?;
                let accept = move || -> std::io::Result<Split> {
                    let (s, _) = listener.accept()?;
                    Ok((Box::new(s.try_clone()?), Box::new(s)))
                };
                log::info!("serial console: telnet server on {addr}");
                (spawn_server("telnet", accept, input.clone(), true), None)
            }
            SerialSpec::Unix(path) => {
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path)
                    .map_err(|source| ConsoleError::Listen { what: path.display().to_string(), source })?;
                let accept = move || -> std::io::Result<Split> {
                    let (s, _) = listener.accept()?;
                    Ok((Box::new(s.try_clone()?), Box::new(s)))
                };
                log::info!("serial console: Unix socket {}", path.display());
                (spawn_server("unix-console", accept, input.clone(), false), None)
            }
        };
        let prompt = Arc::new(PromptWatch::new(ready_file));
        Ok(Self { out: ConsoleOut(sink, prompt), input, _terminal: terminal })
    }

    /// The login prompt's watch (the runner rearms it when the guest resets).
    pub fn prompt(&self) -> &PromptWatch {
        &self.out.1
    }
}

type Split = (Box<dyn Write + Send>, Box<dyn Read + Send>);

/// Accepts clients one at a time; each gets the backlog, then live output, and its input goes
/// to the guest. Returns the output side.
fn spawn_server(
    name: &str,
    accept: impl Fn() -> std::io::Result<Split> + Send + 'static,
    target: InputTarget,
    telnet: bool,
) -> Arc<Mutex<dyn Sink>> {
    let sink = Arc::new(Mutex::new(ClientSink::default()));
    let out: Arc<Mutex<dyn Sink>> = sink.clone();
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || loop {
        let Ok((mut w, mut r)) = accept() else {
            // E.g. out of descriptors: retry later rather than spin.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if telnet {
            // IAC WILL ECHO, IAC WILL SUPPRESS-GO-AHEAD: the client sends characters as typed.
            let _ = w.write_all(&[255, 251, 1, 255, 251, 3]);
        }
        {
            let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
            let backlog: Vec<u8> = s.backlog.drain(..).collect();
            let _ = w.write_all(&backlog);
            s.client = Some(w);
        }
        let mut filter = TelnetFilter::default();
        let mut buf = [0u8; 512];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes: Vec<u8> = if telnet {
                        buf[..n].iter().filter_map(|&b| filter.feed(b)).collect()
                    } else {
                        buf[..n].to_vec()
                    };
                    push_input(&target, &bytes);
                }
            }
        }
        sink.lock().unwrap_or_else(|e| e.into_inner()).client = None;
    });
    if let Err(e) = spawned {
        log::error!("cannot start the serial console server thread: {e}");
    }
    out
}

/// Strips telnet commands (IAC sequences) from client input.
#[derive(Default)]
struct TelnetFilter {
    state: u8,
}

impl TelnetFilter {
    fn feed(&mut self, b: u8) -> Option<u8> {
        match (self.state, b) {
            (0, 255) => {
                self.state = 1;
                None
            }
            (0, 0) => None, // CR NUL from telnet clients.
            (0, _) => Some(b),
            (1, 255) => {
                self.state = 0;
                Some(255)
            }
            (1, 250) => {
                self.state = 3;
                None
            }
            (1, 251..=254) => {
                self.state = 2;
                None
            }
            (1, _) | (2, _) => {
                self.state = 0;
                None
            }
            (3, 255) => {
                self.state = 4;
                None
            }
            (4, 240) => {
                self.state = 0;
                None
            }
            (4, _) => {
                self.state = 3;
                None
            }
            _ => None,
        }
    }
}

/// Pushes `bytes` into the current UART, waiting while its receive FIFO is full.
pub fn push_input(target: &InputTarget, mut bytes: &[u8]) {
    let mut idle_rounds = 0;
    while !bytes.is_empty() {
        let port = target.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let taken = match port {
            Some(p) => p.lock().unwrap_or_else(|e| e.into_inner()).enqueue_input(bytes),
            None => 0,
        };
        bytes = &bytes[taken..];
        if taken == 0 {
            idle_rounds += 1;
            // A guest that never reads its UART must not wedge us: drop input after ~10 s.
            if idle_rounds > 10_000 {
                log::debug!("serial input dropped: the guest is not reading its UART");
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        } else {
            idle_rounds = 0;
        }
    }
}

/// Ctrl-A: the escape key, as in QEMU.
const ESCAPE: u8 = 0x01;

fn stdin_loop(target: InputTarget, events: Sender<Event>) {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 256];
    let mut escaped = false;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut out = Vec::with_capacity(n);
        for &b in &buf[..n] {
            if escaped {
                escaped = false;
                match b {
                    b'x' | b'X' => {
                        let _ = events.send(Event::Quit);
                        return;
                    }
                    ESCAPE => out.push(ESCAPE),
                    _ => {}
                }
            } else if b == ESCAPE {
                escaped = true;
            } else {
                out.push(b);
            }
        }
        push_input(&target, &out);
    }
}

/// Puts a terminal stdin into raw mode and restores it when dropped.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            // Keep output post-processing so our own log lines still start at column 0.
            raw.c_oflag = saved.c_oflag;
            libc::tcsetattr(0, libc::TCSANOW, &raw);
            Some(Self { saved })
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes saved from the same fd.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telnet_commands_are_stripped() {
        let mut f = TelnetFilter::default();
        let input = [b'a', 255, 251, 1, b'b', 255, 255, 255, 250, 24, 0, 255, 240, b'\r', 0, b'c'];
        let out: Vec<u8> = input.iter().filter_map(|&b| f.feed(b)).collect();
        assert_eq!(out, vec![b'a', b'b', 255, b'\r', b'c']);
    }

    #[test]
    fn backlog_is_bounded_and_replayed() {
        let mut s = ClientSink::default();
        s.put(&vec![1u8; BACKLOG + 10]);
        assert_eq!(s.backlog.len(), BACKLOG);
    }
}
