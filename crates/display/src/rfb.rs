//! A small RFB (VNC) server: protocol 3.3/3.7/3.8, None and VNC authentication, Raw and ZRLE,
//! DesktopSize, key events (X11 keysyms, or QEMU extended key events with XT keycodes) to PS/2
//! set-1 scancodes.
//!
//! Each client has a reader thread (its messages) and a writer thread (its updates). The
//! writer sends only when its client asked, only what changed, and a client that stops reading
//! is dropped when a write times out; nothing a client does reaches the vCPU beyond keys.
//!
//! A new viewer always gets in: when all [`MAX_CLIENTS`] places are taken, the one heard from
//! least recently is disconnected to make room (see `slots`). A viewer whose machine vanished
//! is dropped by TCP keepalive within about a minute; an idle viewer that is still there stays
//! until its place is needed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use des::cipher::{BlockEncrypt, KeyInit};

use crate::keepalive::keep_alive;
use crate::keymap::{is_shift, keysym_to_key, needs_shift, scancodes, Key, LEFT_SHIFT};
use crate::screen::{Display, Rect, FRAME_INTERVAL};
use crate::slots::{Handshake, Seat, Slots};
use crate::zrle::Zrle;

/// Where key presses go: set-1 scancodes, e.g. into `I8042::queue_scancodes`.
pub type KeySink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Most clients served at once; one more makes the longest-idle one leave.
pub const MAX_CLIENTS: usize = 16;
/// Most connections in the handshake at once; past this, new connections are refused.
pub const MAX_HANDSHAKES: usize = 16;
/// Longest client cut text accepted (it is read and discarded).
pub const MAX_CUT_TEXT: u32 = 1 << 20;
/// The whole handshake, up to the ClientInit, however slowly the client trickles it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Past this many rectangles an update becomes one bounding rectangle.
const MAX_RECTS: usize = 64;

const ENC_RAW: i32 = 0;
const ENC_ZRLE: i32 = 16;
const ENC_DESKTOP_SIZE: i32 = -223;
/// QEMU's extended key events: the client sends the key's XT scancode beside the keysym, so
/// keys arrive as pressed whatever the client's keyboard layout.
const ENC_QEMU_EXTENDED_KEYS: i32 = -258;

/// Why the VNC server could not start.
#[derive(Debug, thiserror::Error)]
pub enum VncError {
    /// The address does not resolve.
    #[error("--vnc {addr}: not a HOST:PORT address: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The socket could not be bound.
    #[error("--vnc {addr}: cannot listen there ({source}); is the port in use?")]
    Bind {
        /// The address as given.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("VNC server thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A running VNC server; it serves for the life of the process.
pub struct VncServer {
    local_addr: SocketAddr,
}

impl VncServer {
    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Listens on `addr` (`HOST:PORT`) and serves `display`; key events go to `keys`. With a
/// password, clients must pass VNC authentication (only its first 8 bytes count).
pub fn start_vnc(
    addr: &str,
    password: Option<String>,
    display: Display,
    keys: KeySink,
) -> Result<VncServer, VncError> {
    let resolved: Vec<SocketAddr> = listen_address(addr)
        .to_socket_addrs()
        .map_err(|source| VncError::Resolve { addr: addr.to_string(), source })?
        .collect();
    let listener = TcpListener::bind(&resolved[..])
        .map_err(|source| VncError::Bind { addr: addr.to_string(), source })?;
    let local_addr =
        listener.local_addr().map_err(|source| VncError::Bind { addr: addr.to_string(), source })?;
    if password.is_none() && !local_addr.ip().is_loopback() {
        log::warn!("VNC on {local_addr} without a password: anyone who can reach it can type into the guest");
    }
    display.start_renderer().map_err(VncError::Thread)?;
    let password = password.map(|p| {
        if p.len() > 8 {
            log::warn!("VNC: only the first 8 bytes of the password are used");
        }
        Arc::new(p.into_bytes())
    });
    let slots = Slots::new(MAX_CLIENTS, MAX_HANDSHAKES);
    std::thread::Builder::new()
        .name("vnc-accept".into())
        .spawn(move || {
            let mut refused = 0u64;
            for stream in listener.incoming() {
                let Ok(stream) = stream else {
                    // Out of file descriptors, most likely: don't spin.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let Some(handshake) = slots.begin_handshake() else {
                    // A flood is logged at the first refusal and every power of two after it.
                    refused += 1;
                    if refused.is_power_of_two() {
                        log::warn!(
                            "VNC: {MAX_HANDSHAKES} connections are already in the handshake; refusing more ({refused} so far)"
                        );
                    }
                    continue;
                };
                let (display, keys, password) = (display.clone(), keys.clone(), password.clone());
                // If the thread cannot start, the closure and its handshake allowance are dropped.
                let spawned = std::thread::Builder::new().name("vnc-client".into()).spawn(move || {
                    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                    match serve(stream, handshake, &display, &keys, password.as_deref().map(|p| &p[..])) {
                        Ok(()) => log::info!("VNC: {peer} left"),
                        Err(e) => log::info!("VNC: {peer} dropped: {e}"),
                    }
                });
                if spawned.is_err() {
                    log::warn!("VNC: cannot start a client thread");
                }
            }
        })
        .map_err(VncError::Thread)?;
    Ok(VncServer { local_addr })
}

/// `HOST:PORT` as given; a bare `PORT` or `:PORT` means the loopback address.
pub fn listen_address(addr: &str) -> String {
    let port = addr.strip_prefix(':').unwrap_or(addr);
    if port.parse::<u16>().is_ok() {
        format!("127.0.0.1:{port}")
    } else {
        addr.to_string()
    }
}

/// A client's pixel format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    bpp: u8,
    depth: u8,
    big_endian: bool,
    max: [u16; 3],
    shift: [u8; 3],
}

impl Default for PixelFormat {
    /// 32 bpp, depth 24, little-endian, red at bit 16.
    fn default() -> Self {
        Self { bpp: 32, depth: 24, big_endian: false, max: [255; 3], shift: [16, 8, 0] }
    }
}

impl PixelFormat {
    fn to_wire(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bpp;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = 1;
        for i in 0..3 {
            b[4 + 2 * i..6 + 2 * i].copy_from_slice(&self.max[i].to_be_bytes());
        }
        b[10..13].copy_from_slice(&self.shift);
        b
    }

    fn from_wire(b: &[u8; 16]) -> Result<Self, String> {
        let pf = Self {
            bpp: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            max: [
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]]),
                u16::from_be_bytes([b[8], b[9]]),
            ],
            shift: [b[10], b[11], b[12]],
        };
        if b[3] == 0 {
            return Err("colour-map pixel formats are not supported".into());
        }
        if !matches!(pf.bpp, 8 | 16 | 32) || pf.shift.iter().any(|&s| u32::from(s) >= u32::from(pf.bpp)) {
            return Err(format!("unsupported pixel format {b:?}"));
        }
        Ok(pf)
    }

    fn value(&self, rgb: u32) -> u32 {
        let chan = |c: u32, i: usize| (c * u32::from(self.max[i]) / 255) << self.shift[i];
        chan((rgb >> 16) & 0xff, 0) | chan((rgb >> 8) & 0xff, 1) | chan(rgb & 0xff, 2)
    }

    fn put_pixel(&self, rgb: u32, out: &mut Vec<u8>) {
        let v = self.value(rgb);
        match (self.bpp, self.big_endian) {
            (8, _) => out.push(v as u8),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// A ZRLE CPIXEL: three bytes when a 32-bit pixel's colour bits fit in three of them.
    pub(crate) fn put_cpixel(&self, rgb: u32, out: &mut Vec<u8>) {
        if self.bpp == 32 && self.depth <= 24 {
            let used = (0..3).fold(0u32, |m, i| m | (u32::from(self.max[i]) << self.shift[i]));
            let v = self.value(rgb);
            let (le, be) = (v.to_le_bytes(), v.to_be_bytes());
            if used & 0xff00_0000 == 0 {
                out.extend_from_slice(if self.big_endian { &be[1..] } else { &le[..3] });
                return;
            }
            if used & 0xff == 0 {
                out.extend_from_slice(if self.big_endian { &be[..3] } else { &le[1..] });
                return;
            }
        }
        self.put_pixel(rgb, out);
    }
}

/// What the reader thread tells the writer.
#[derive(Default)]
struct ClientState {
    pf: PixelFormat,
    zrle: bool,
    desktop_size: bool,
    /// The client asked for extended key events and has not yet been told they are on.
    ext_keys_ack: bool,
    request: Option<(bool, Rect)>,
    gone: bool,
}

struct Client {
    state: Mutex<ClientState>,
    alive: AtomicBool,
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// A stream whose reads must all be done by `until`: a client that trickles its handshake a
/// byte at a time still gets [`HANDSHAKE_TIMEOUT`] in all, not that much per byte.
struct Until<'a> {
    s: &'a TcpStream,
    until: Instant,
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let too_slow = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no complete handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
            )
        };
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(too_slow());
        }
        self.s.set_read_timeout(Some(left))?;
        let mut s = self.s;
        s.read(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => too_slow(),
            _ => e,
        })
    }
}

impl Write for Until<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.s;
        s.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut s = self.s;
        s.flush()
    }
}

fn serve(
    stream: TcpStream,
    handshake_allowance: Handshake,
    display: &Display,
    keys: &KeySink,
    password: Option<&[u8]>,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    // A viewer that vanishes without a word (no FIN, no RST) must not keep its place for good.
    keep_alive(&stream)?;
    let mut timed = Until { s: &stream, until: Instant::now() + HANDSHAKE_TIMEOUT };
    handshake(&mut timed, password)?;
    // ClientInit (the shared flag: every client shares the display anyway).
    let mut shared = [0u8; 1];
    timed.read_exact(&mut shared)?;
    let seat = handshake_allowance.seat(&stream)?;
    display.add_viewer();
    let result = serve_session(stream, &seat, display, keys);
    display.remove_viewer();
    result
}

fn serve_session(
    mut stream: TcpStream,
    seat: &Seat,
    display: &Display,
    keys: &KeySink,
) -> std::io::Result<()> {
    let (w, h) = {
        // The renderer sleeps while nobody watches, so the last frame may be stale: the
        // ServerInit must carry the size of the picture as it is now.
        display.refresh();
        let st = display.state();
        (st.frame.width, st.frame.height)
    };
    let mut init = Vec::new();
    init.extend_from_slice(&(w as u16).to_be_bytes());
    init.extend_from_slice(&(h as u16).to_be_bytes());
    init.extend_from_slice(&PixelFormat::default().to_wire());
    let name = b"chr-vmm";
    init.extend_from_slice(&(name.len() as u32).to_be_bytes());
    init.extend_from_slice(name);
    stream.write_all(&init)?;
    stream.set_read_timeout(None)?;

    let client = Arc::new(Client { state: Mutex::new(ClientState::default()), alive: AtomicBool::new(true) });
    let writer_stream = stream.try_clone()?;
    let writer = {
        let (client, display) = (client.clone(), display.clone());
        std::thread::Builder::new().name("vnc-writer".into()).spawn(move || {
            let mut s = writer_stream;
            if let Err(e) = write_loop(&mut s, &client, &display, (w, h)) {
                log::debug!("VNC writer: {e}");
            }
            client.alive.store(false, Ordering::Release);
            let _ = s.shutdown(Shutdown::Both);
        })?
    };
    let mut held: Vec<Key> = Vec::new();
    let result = read_loop(&mut stream, seat, &client, display, keys, &mut held);
    // Release whatever the client still held down, so the guest sees no stuck keys.
    for key in held.into_iter().rev() {
        let (b, n) = scancodes(key, false);
        keys(&b[..n]);
    }
    client.state.lock().unwrap_or_else(|e| e.into_inner()).gone = true;
    let _ = stream.shutdown(Shutdown::Both);
    display.screen.changed.notify_all();
    let _ = writer.join();
    result
}

fn handshake(s: &mut (impl Read + Write), password: Option<&[u8]>) -> std::io::Result<()> {
    s.write_all(b"RFB 003.008\n")?;
    let mut v = [0u8; 12];
    s.read_exact(&mut v)?;
    if &v[..4] != b"RFB " || v[7] != b'.' || v[11] != b'\n' {
        return Err(io_err("not an RFB client"));
    }
    let num = |b: &[u8]| std::str::from_utf8(b).ok().and_then(|t| t.parse::<u32>().ok());
    let (Some(major), Some(minor)) = (num(&v[4..7]), num(&v[8..11])) else {
        return Err(io_err("garbled RFB version"));
    };
    if major != 3 {
        return Err(io_err(format!("RFB {major}.{minor} is not supported")));
    }
    let minor = match minor {
        7 => 7,
        8..=888 => 8,
        _ => 3,
    };
    let sec_type: u8 = if password.is_some() { 2 } else { 1 };
    if minor == 3 {
        s.write_all(&u32::from(sec_type).to_be_bytes())?;
    } else {
        s.write_all(&[1, sec_type])?;
        let mut chosen = [0u8];
        s.read_exact(&mut chosen)?;
        if chosen[0] != sec_type {
            if minor == 8 {
                let reason = b"security type not offered";
                s.write_all(&1u32.to_be_bytes())?;
                s.write_all(&(reason.len() as u32).to_be_bytes())?;
                s.write_all(reason)?;
            }
            return Err(io_err("client chose a security type we did not offer"));
        }
    }
    match password {
        None => {
            if minor == 8 {
                s.write_all(&0u32.to_be_bytes())?;
            }
        }
        Some(pw) => {
            let mut challenge = [0u8; 16];
            random_bytes(&mut challenge)?;
            s.write_all(&challenge)?;
            let mut response = [0u8; 16];
            s.read_exact(&mut response)?;
            if response != vnc_auth_response(pw, &challenge) {
                s.write_all(&1u32.to_be_bytes())?;
                if minor == 8 {
                    let reason = b"authentication failed";
                    s.write_all(&(reason.len() as u32).to_be_bytes())?;
                    s.write_all(reason)?;
                }
                return Err(io_err("wrong VNC password"));
            }
            s.write_all(&0u32.to_be_bytes())?;
        }
    }
    Ok(())
}

fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// The DES encryption of `challenge` that VNC authentication expects for `password`: the key
/// is the password's first 8 bytes, zero-padded, each byte bit-reversed.
pub fn vnc_auth_response(password: &[u8], challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    let cipher = des::Des::new(&key.into());
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(block.into());
    }
    out
}

fn read_loop(
    s: &mut TcpStream,
    seat: &Seat,
    client: &Client,
    display: &Display,
    keys: &KeySink,
    held: &mut Vec<Key>,
) -> std::io::Result<()> {
    loop {
        let mut t = [0u8; 1];
        if s.read(&mut t)? == 0 {
            return Ok(());
        }
        seat.heard();
        match t[0] {
            0 => {
                let mut b = [0u8; 19];
                s.read_exact(&mut b)?;
                let mut pf = [0u8; 16];
                pf.copy_from_slice(&b[3..]);
                let pf = PixelFormat::from_wire(&pf).map_err(io_err)?;
                client.state.lock().unwrap_or_else(|e| e.into_inner()).pf = pf;
            }
            2 => {
                let mut b = [0u8; 3];
                s.read_exact(&mut b)?;
                let n = usize::from(u16::from_be_bytes([b[1], b[2]]));
                let mut list = vec![0u8; n * 4];
                s.read_exact(&mut list)?;
                let encs: Vec<i32> =
                    list.chunks_exact(4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
                let mut st = client.state.lock().unwrap_or_else(|e| e.into_inner());
                st.zrle = encs.iter().find(|&&e| e == ENC_RAW || e == ENC_ZRLE) == Some(&ENC_ZRLE);
                st.desktop_size = encs.contains(&ENC_DESKTOP_SIZE);
                st.ext_keys_ack = encs.contains(&ENC_QEMU_EXTENDED_KEYS);
            }
            3 => {
                let mut b = [0u8; 9];
                s.read_exact(&mut b)?;
                let u = |i: usize| usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
                let rect = Rect { x: u(1), y: u(3), w: u(5), h: u(7) };
                let incremental = b[0] != 0;
                let mut st = client.state.lock().unwrap_or_else(|e| e.into_inner());
                // A full request wins over an incremental one that has not been served.
                st.request = match st.request {
                    Some((false, r)) if incremental => Some((false, r)),
                    _ => Some((incremental, rect)),
                };
                drop(st);
                display.screen.changed.notify_all();
            }
            4 => {
                let mut b = [0u8; 7];
                s.read_exact(&mut b)?;
                let down = b[0] != 0;
                let keysym = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                if let Some(key) = keysym_to_key(keysym) {
                    let shift_held = held.iter().any(|&k| is_shift(k));
                    if down && !held.contains(&key) {
                        held.push(key);
                    } else if !down {
                        held.retain(|&k| k != key);
                    }
                    let (bytes, n) = scancodes(key, down);
                    if down && needs_shift(keysym) && !shift_held {
                        // The client typed a shifted character without pressing Shift.
                        let mut seq = vec![LEFT_SHIFT.code];
                        seq.extend_from_slice(&bytes[..n]);
                        seq.push(LEFT_SHIFT.code | 0x80);
                        keys(&seq);
                    } else {
                        keys(&bytes[..n]);
                    }
                }
            }
            5 => {
                let mut b = [0u8; 5];
                s.read_exact(&mut b)?;
            }
            6 => {
                let mut b = [0u8; 7];
                s.read_exact(&mut b)?;
                let len = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                if len > MAX_CUT_TEXT {
                    return Err(io_err(format!("cut text of {len} bytes")));
                }
                std::io::copy(&mut s.take(u64::from(len)), &mut std::io::sink())?;
            }
            255 => {
                // QEMU client message; subtype 0 is the extended key event.
                let mut sub = [0u8; 1];
                s.read_exact(&mut sub)?;
                if sub[0] != 0 {
                    return Err(io_err(format!("unknown QEMU client message {}", sub[0])));
                }
                let mut b = [0u8; 11];
                s.read_exact(&mut b[1..])?;
                let down = u16::from_be_bytes([b[1], b[2]]) != 0;
                let keysym = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                let keycode = u32::from_be_bytes([b[7], b[8], b[9], b[10]]);
                // XT keycode, 0x80 set for the E0-prefixed keys; fall back to the keysym.
                let key = match u8::try_from(keycode) {
                    Ok(code) if code & 0x7f != 0 => {
                        Some(Key { code: code & 0x7f, extended: code & 0x80 != 0 })
                    }
                    _ => keysym_to_key(keysym),
                };
                if let Some(key) = key {
                    if down && !held.contains(&key) {
                        held.push(key);
                    } else if !down {
                        held.retain(|&k| k != key);
                    }
                    let (bytes, n) = scancodes(key, down);
                    keys(&bytes[..n]);
                }
            }
            other => return Err(io_err(format!("unknown client message {other}"))),
        }
    }
}

fn write_loop(
    s: &mut TcpStream,
    client: &Client,
    display: &Display,
    mut size: (usize, usize),
) -> std::io::Result<()> {
    let mut sent_serial = 0u64;
    let mut size_serial = display.state().size_serial;
    let mut zrle = Zrle::new();
    let mut buf = Vec::new();
    let mut last_send: Option<Instant> = None;
    loop {
        // At most one update per frame interval, however fast the client asks.
        if let Some(t) = last_send {
            std::thread::sleep(FRAME_INTERVAL.saturating_sub(t.elapsed()));
        }
        // Wait until the client asked and there is something to send.
        let (rects, pixels, pf, use_zrle, resize, serial, ext_keys_ack) = {
            let mut st = display.state();
            loop {
                let cs = client.state.lock().unwrap_or_else(|e| e.into_inner());
                if cs.gone || !client.alive.load(Ordering::Acquire) {
                    return Ok(());
                }
                if let Some((incremental, _)) = cs.request {
                    let resized = st.size_serial != size_serial;
                    if !incremental || resized || st.serial > sent_serial || cs.ext_keys_ack {
                        break;
                    }
                }
                drop(cs);
                st = display
                    .screen
                    .changed
                    .wait_timeout(st, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let mut cs = client.state.lock().unwrap_or_else(|e| e.into_inner());
            let Some((incremental, mut area)) = cs.request else { continue };
            let resized = st.size_serial != size_serial;
            let mut resize = None;
            let mut since = if incremental { sent_serial } else { 0 };
            if resized {
                size_serial = st.size_serial;
                if cs.desktop_size {
                    size = (st.frame.width, st.frame.height);
                    resize = Some(size);
                    area = Rect { x: 0, y: 0, w: size.0, h: size.1 };
                }
                since = 0;
            }
            // Never send outside what the client believes the screen is.
            let area = Rect {
                x: area.x,
                y: area.y,
                w: area.w.min(size.0.saturating_sub(area.x)),
                h: area.h.min(size.1.saturating_sub(area.y)),
            };
            let mut rects = st.changed_since(since, area);
            if rects.is_empty() && incremental && resize.is_none() && !cs.ext_keys_ack {
                // Changes elsewhere: keep waiting for changes inside the requested area.
                sent_serial = st.serial;
                continue;
            }
            if rects.len() > MAX_RECTS {
                let x0 = rects.iter().map(|r| r.x).min().unwrap_or(0);
                let y0 = rects.iter().map(|r| r.y).min().unwrap_or(0);
                let x1 = rects.iter().map(|r| r.x + r.w).max().unwrap_or(0);
                let y1 = rects.iter().map(|r| r.y + r.h).max().unwrap_or(0);
                rects = vec![Rect { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }];
            }
            let pixels: Vec<Vec<u32>> = rects.iter().map(|&r| st.copy_rect(r)).collect();
            cs.request = None;
            let ext_keys_ack = std::mem::take(&mut cs.ext_keys_ack);
            (rects, pixels, cs.pf, cs.zrle, resize, st.serial, ext_keys_ack)
        };
        sent_serial = serial;
        buf.clear();
        let count = rects.len() + usize::from(resize.is_some()) + usize::from(ext_keys_ack);
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&(count as u16).to_be_bytes());
        if let Some((w, h)) = resize {
            rect_header(&mut buf, Rect { x: 0, y: 0, w, h }, ENC_DESKTOP_SIZE);
        }
        if ext_keys_ack {
            rect_header(&mut buf, Rect { x: 0, y: 0, w: 0, h: 0 }, ENC_QEMU_EXTENDED_KEYS);
        }
        for (r, px) in rects.iter().zip(&pixels) {
            if use_zrle {
                rect_header(&mut buf, *r, ENC_ZRLE);
                zrle.encode(&pf, r.w, r.h, px, &mut buf);
            } else {
                rect_header(&mut buf, *r, ENC_RAW);
                for &p in px {
                    pf.put_pixel(p, &mut buf);
                }
            }
        }
        s.write_all(&buf)?;
        last_send = Some(Instant::now());
        // Don't keep a huge buffer after a full-screen update.
        if buf.capacity() > 16 << 20 {
            buf = Vec::new();
        }
    }
}

fn rect_header(buf: &mut Vec<u8>, r: Rect, encoding: i32) {
    for v in [r.x, r.y, r.w, r.h] {
        buf.extend_from_slice(&(v as u16).to_be_bytes());
    }
    buf.extend_from_slice(&encoding.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnc_auth_matches_a_known_answer() {
        // DES with an all-zero key (empty password) of an all-zero block is the classic
        // 8CA64DE9C1B123A7 test vector.
        let r = vnc_auth_response(b"", &[0; 16]);
        assert_eq!(&r[..8], &[0x8c, 0xa6, 0x4d, 0xe9, 0xc1, 0xb1, 0x23, 0xa7]);
        assert_eq!(r[..8], r[8..]);
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address("5900"), "127.0.0.1:5900");
        assert_eq!(listen_address(":5901"), "127.0.0.1:5901");
        assert_eq!(listen_address("0.0.0.0:5900"), "0.0.0.0:5900");
        assert_eq!(listen_address("[::1]:5900"), "[::1]:5900");
    }

    #[test]
    fn bind_errors_name_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let display = crate::StdVga::new().display();
        let err = start_vnc(&addr, None, display.clone(), Arc::new(|_: &[u8]| {})).err().unwrap();
        assert!(err.to_string().contains(&addr), "{err}");
        let err =
            start_vnc("no-such-host.invalid:5900", None, display, Arc::new(|_: &[u8]| {})).err().unwrap();
        assert!(err.to_string().contains("no-such-host.invalid:5900"), "{err}");
    }

    #[test]
    fn pixel_formats() {
        let pf = PixelFormat::default();
        let mut v = Vec::new();
        pf.put_pixel(0x123456, &mut v);
        assert_eq!(v, [0x56, 0x34, 0x12, 0]);
        v.clear();
        pf.put_cpixel(0x123456, &mut v);
        assert_eq!(v, [0x56, 0x34, 0x12]);
        let rgb565 =
            PixelFormat { bpp: 16, depth: 16, big_endian: true, max: [31, 63, 31], shift: [11, 5, 0] };
        v.clear();
        rgb565.put_pixel(0xff0000, &mut v);
        assert_eq!(v, [0xf8, 0x00]);
        assert!(PixelFormat::from_wire(&[32, 24, 0, 0, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]).is_err());
    }
}
