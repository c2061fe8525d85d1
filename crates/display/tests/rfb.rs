//! The RFB server over real TCP sockets on 127.0.0.1, with a client written here; the adapter
//! is driven only through the bus views the machine registers.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{is_closed, Rig, GLYPH};
use display::rfb::vnc_auth_response;
use display::{start_vnc, KeySink};
use machine::pci::PciDevice;

type Keys = Arc<Mutex<Vec<u8>>>;

fn serve(rig: &Rig, password: Option<&str>) -> (SocketAddr, Keys) {
    let keys: Keys = Arc::new(Mutex::new(Vec::new()));
    let k = keys.clone();
    let sink: KeySink = Arc::new(move |codes: &[u8]| k.lock().unwrap().extend_from_slice(codes));
    let server = start_vnc("127.0.0.1:0", password.map(String::from), rig.vga.display(), sink).unwrap();
    (server.local_addr(), keys)
}

struct Client {
    s: TcpStream,
    width: usize,
    height: usize,
    /// The connection's one zlib stream for ZRLE.
    z: flate2::Decompress,
}

fn u16_at(b: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([b[i], b[i + 1]]))
}

impl Client {
    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.s.read_exact(&mut b).unwrap();
        b
    }

    /// Protocol 3.8 with security type None.
    fn open_38(addr: SocketAddr) -> Self {
        let mut c = Client { s: Self::connect(addr), width: 0, height: 0, z: flate2::Decompress::new(true) };
        assert_eq!(c.read(12), b"RFB 003.008\n");
        c.s.write_all(b"RFB 003.008\n").unwrap();
        assert_eq!(c.read(2), [1, 1], "one security type: None");
        c.s.write_all(&[1]).unwrap();
        assert_eq!(c.read(4), [0, 0, 0, 0], "SecurityResult OK");
        c.init();
        c
    }

    fn init(&mut self) {
        self.s.write_all(&[1]).unwrap();
        let head = self.read(24);
        self.width = u16_at(&head, 0);
        self.height = u16_at(&head, 2);
        assert_eq!(&head[4..8], &[32, 24, 0, 1], "32 bpp, depth 24, little-endian, true colour");
        let name_len = u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize;
        assert_eq!(self.read(name_len), b"chr-vmm");
    }

    fn set_encodings(&mut self, encs: &[i32]) {
        let mut m = vec![2, 0];
        m.extend_from_slice(&(encs.len() as u16).to_be_bytes());
        for e in encs {
            m.extend_from_slice(&e.to_be_bytes());
        }
        self.s.write_all(&m).unwrap();
    }

    fn request(&mut self, incremental: bool, x: u16, y: u16, w: u16, h: u16) {
        let mut m = vec![3, u8::from(incremental)];
        for v in [x, y, w, h] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        self.s.write_all(&m).unwrap();
    }

    /// Reads one FramebufferUpdate of Raw/DesktopSize rectangles: (x, y, w, h, encoding, pixels).
    fn update(&mut self) -> Vec<(usize, usize, usize, usize, i32, Vec<u32>)> {
        let head = self.read(4);
        assert_eq!(head[0], 0, "FramebufferUpdate");
        let n = u16_at(&head, 2);
        let mut rects = Vec::new();
        for _ in 0..n {
            let h = self.read(12);
            let (x, y, w, hh) = (u16_at(&h, 0), u16_at(&h, 2), u16_at(&h, 4), u16_at(&h, 6));
            let enc = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
            let px = match enc {
                0 => self
                    .read(w * hh * 4)
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                16 => {
                    let len = self.read(4);
                    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                    let data = self.read(len);
                    let mut raw = Vec::with_capacity(1 << 20);
                    self.z.decompress_vec(&data, &mut raw, flate2::FlushDecompress::Sync).unwrap();
                    raw.into_iter().map(u32::from).collect()
                }
                -223 => {
                    self.width = w;
                    self.height = hh;
                    Vec::new()
                }
                -258 => Vec::new(),
                other => panic!("unexpected encoding {other}"),
            };
            rects.push((x, y, w, hh, enc, px));
        }
        rects
    }
}

const BLUE: u32 = 42 * 255 / 63;
const WHITE: u32 = 0xffffff;

/// The expected pixel of the glyph cell at (col, row) for white-on-blue 'A'.
fn glyph_pixel(x: usize, line: usize) -> u32 {
    if x < 8 && GLYPH[line] & (0x80 >> x) != 0 {
        WHITE
    } else {
        BLUE
    }
}

#[test]
fn handshake_38_full_and_incremental_updates_and_keys() {
    let rig = Rig::new();
    rig.text_mode();
    rig.put_char(1, 2, b'A', 0x1f);
    let (addr, keys) = serve(&rig, None);
    let mut c = Client::open_38(addr);
    assert_eq!((c.width, c.height), (720, 400));
    c.set_encodings(&[0, -223]);
    c.request(false, 0, 0, 720, 400);
    let rects = c.update();
    assert_eq!(rects.len(), 1);
    let (x, y, w, h, enc, px) = &rects[0];
    assert_eq!((*x, *y, *w, *h, *enc), (0, 0, 720, 400, 0));
    for line in 0..16 {
        for cx in 0..9 {
            assert_eq!(px[(16 + line) * 720 + 18 + cx], glyph_pixel(cx, line), "cell pixel {cx},{line}");
        }
    }
    assert_eq!(px[0], 0, "cell 0 is black on black");

    // An incremental request is answered only once something changes, with that region only.
    c.request(true, 0, 0, 720, 400);
    std::thread::sleep(Duration::from_millis(100));
    rig.put_char(20, 40, b'A', 0x1f);
    let rects = c.update();
    assert_eq!(rects.len(), 1, "{:?}", rects.iter().map(|r| (r.0, r.1, r.2, r.3)).collect::<Vec<_>>());
    let (x, y, w, h, _, px) = &rects[0];
    assert!(*x <= 360 && x + w >= 369 && *y <= 320 && y + h >= 336, "covers the cell");
    assert!(w * h <= 32 * 32, "only the changed tiles: {w}x{h}");
    let at = |gx: usize, gy: usize| px[(gy - y) * w + (gx - x)];
    assert_eq!(at(360, 322), WHITE);
    assert_eq!(at(361, 323), BLUE);

    // Key events become set-1 scancodes: 'a', then Up (E0-prefixed) released.
    c.s.write_all(&[4, 1, 0, 0, 0, 0, 0, b'a']).unwrap();
    c.s.write_all(&[4, 0, 0, 0, 0, 0, 0xff, 0x52]).unwrap();
    // Pointer events and small cut text are accepted and ignored.
    c.s.write_all(&[5, 1, 0, 10, 0, 10]).unwrap();
    c.s.write_all(&[6, 0, 0, 0, 0, 0, 0, 3, b'x', b'y', b'z']).unwrap();
    // 'A' without Shift gets a Shift around it; with Shift held (Shift_L, 'A') it does not.
    c.s.write_all(&[4, 1, 0, 0, 0, 0, 0, b'A']).unwrap();
    c.s.write_all(&[4, 0, 0, 0, 0, 0, 0, b'A']).unwrap();
    c.s.write_all(&[4, 1, 0, 0, 0, 0, 0xff, 0xe1]).unwrap();
    c.s.write_all(&[4, 1, 0, 0, 0, 0, 0, b'A']).unwrap();
    c.request(false, 0, 0, 8, 8);
    let rects = c.update();
    assert_eq!((rects[0].2, rects[0].3), (8, 8));
    assert_eq!(*keys.lock().unwrap(), [0x1e, 0xe0, 0xc8, 0x2a, 0x1e, 0xaa, 0x9e, 0x2a, 0x1e]);
    // Keys still held when the client leaves are released.
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(keys.lock().unwrap()[9..], [0x9e, 0xaa]);
}

#[test]
fn handshake_33_with_vnc_authentication() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig, Some("s3cret"));
    // Right password.
    let mut c = Client { s: Client::connect(addr), width: 0, height: 0, z: flate2::Decompress::new(true) };
    assert_eq!(c.read(12), b"RFB 003.008\n");
    c.s.write_all(b"RFB 003.003\n").unwrap();
    assert_eq!(c.read(4), [0, 0, 0, 2], "3.3: the server names VNC authentication");
    let challenge: [u8; 16] = c.read(16).try_into().unwrap();
    c.s.write_all(&vnc_auth_response(b"s3cret", &challenge)).unwrap();
    assert_eq!(c.read(4), [0, 0, 0, 0]);
    c.init();
    assert_eq!((c.width, c.height), (720, 400));

    // Wrong password, 3.8: a failure with a reason, then the connection closes.
    let mut c = Client { s: Client::connect(addr), width: 0, height: 0, z: flate2::Decompress::new(true) };
    c.read(12);
    c.s.write_all(b"RFB 003.008\n").unwrap();
    assert_eq!(c.read(2), [1, 2]);
    c.s.write_all(&[2]).unwrap();
    let challenge: [u8; 16] = c.read(16).try_into().unwrap();
    c.s.write_all(&vnc_auth_response(b"guess", &challenge)).unwrap();
    assert_eq!(c.read(4), [0, 0, 0, 1]);
    let n = u32::from_be_bytes(c.read(4).try_into().unwrap()) as usize;
    assert_eq!(c.read(n), b"authentication failed");
    let mut rest = Vec::new();
    assert_eq!(c.s.read_to_end(&mut rest).unwrap_or(0), 0);
}

#[test]
fn hostile_clients_are_dropped_and_others_keep_working() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig, None);
    let mut good = Client::open_38(addr);
    good.set_encodings(&[0]);

    // A 4 GiB cut text is refused by closing the connection.
    let mut bad = Client::open_38(addr);
    bad.s.write_all(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(is_closed(&mut bad.s), "the hostile client is dropped");

    // A garbage handshake, and an unknown message type, likewise.
    let mut junk = Client::connect(addr);
    let mut v = [0u8; 12];
    junk.read_exact(&mut v).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(is_closed(&mut junk));
    let mut odd = Client::open_38(addr);
    odd.s.write_all(&[200]).unwrap();
    assert!(is_closed(&mut odd.s));

    // An absurd rectangle is clipped to the screen.
    good.request(false, 700, 390, 65535, 65535);
    let rects = good.update();
    assert_eq!((rects[0].0, rects[0].1, rects[0].2, rects[0].3), (700, 390, 20, 10));
    // A rectangle entirely outside gives an empty update rather than an error.
    good.request(false, 60000, 60000, 10, 10);
    assert!(good.update().is_empty());

    // The good client still sees changes.
    good.request(true, 0, 0, 720, 400);
    rig.put_char(0, 0, b'A', 0x1f);
    let rects = good.update();
    assert!(!rects.is_empty());
    assert_eq!((rects[0].0, rects[0].1), (0, 0));
}

#[test]
fn desktop_size_on_vbe_mode_change_and_zrle() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig, None);
    let mut c = Client::open_38(addr);
    c.set_encodings(&[16, 0, -223]);
    c.request(false, 0, 0, 720, 400);
    let rects = c.update();
    assert_eq!(rects[0].4, 16, "ZRLE preferred");
    // Switch to a 64x32 32-bpp VBE mode with a red pixel at (3, 2) through BAR0.
    rig.vbe(1, 64);
    rig.vbe(2, 32);
    rig.vbe(3, 32);
    // The pixel goes in first and the enable keeps VRAM, so no frame shows the mode half-set.
    rig.vga.pci_device().lock().unwrap().write_bar(0, (2 * 64 + 3) * 4, &[0, 0, 0xff, 0]);
    rig.vbe(4, 0xc1);
    c.request(true, 0, 0, 720, 400);
    let rects = c.update();
    assert_eq!((rects[0].2, rects[0].3, rects[0].4), (64, 32, -223), "DesktopSize first");
    assert_eq!((c.width, c.height), (64, 32));
    // Then the whole new screen, ZRLE: decode it.
    let (x, y, w, h, enc, data) = &rects[1];
    assert_eq!((*x, *y, *w, *h, *enc), (0, 0, 64, 32, 16));
    let raw: Vec<u8> = data.iter().map(|&b| b as u8).collect();
    // One 64x32 tile with two colours: palette black, red; 1 bit per pixel, 8 bytes a row.
    assert_eq!(raw[0], 2);
    assert_eq!(&raw[1..7], &[0, 0, 0, 0, 0, 0xff]);
    let row2 = &raw[7 + 2 * 8..7 + 3 * 8];
    assert_eq!(row2[0], 0b0001_0000);
}

#[test]
fn slow_reader_is_dropped_without_holding_up_others() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig, None);
    let mut slow = Client::open_38(addr);
    slow.set_encodings(&[0]);
    // Keep asking for full raw frames (about 1 MiB each) and never read them, until the
    // server hangs up (our writes then fail) or 30 s pass.
    let slow_thread = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let mut m = vec![3, 0, 0, 0, 0, 0];
            m.extend_from_slice(&720u16.to_be_bytes());
            m.extend_from_slice(&400u16.to_be_bytes());
            if slow.s.write_all(&m).is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut good = Client::open_38(addr);
    good.set_encodings(&[0]);
    for i in 0..5 {
        good.request(true, 0, 0, 720, 400);
        rig.put_char(3, i, b'A', 0x1f);
        let started = std::time::Instant::now();
        assert!(!good.update().is_empty());
        assert!(started.elapsed() < Duration::from_secs(2), "the good client waited on the slow one");
    }
    let dropped_after = slow_thread.join().unwrap();
    assert!(dropped_after.is_some(), "the slow reader was never dropped");
}

#[test]
fn handshake_37_with_none() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig, None);
    let mut c = Client { s: Client::connect(addr), width: 0, height: 0, z: flate2::Decompress::new(true) };
    c.read(12);
    c.s.write_all(b"RFB 003.007\n").unwrap();
    assert_eq!(c.read(2), [1, 1]);
    c.s.write_all(&[1]).unwrap();
    // 3.7 sends no SecurityResult for None: the next bytes are the ServerInit.
    c.init();
    assert_eq!((c.width, c.height), (720, 400));
}

#[test]
fn server_init_has_the_current_size_after_an_unwatched_mode_change() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig, None);
    let c = Client::open_38(addr);
    assert_eq!((c.width, c.height), (720, 400));
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    // Nobody watches while the guest switches to a VBE mode.
    rig.vbe(1, 640);
    rig.vbe(2, 480);
    rig.vbe(3, 8);
    rig.vbe(4, 0x01);
    let c = Client::open_38(addr);
    assert_eq!((c.width, c.height), (640, 480));
}

#[test]
fn qemu_extended_key_events() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, keys) = serve(&rig, None);
    let mut c = Client::open_38(addr);
    c.set_encodings(&[0, -258]);
    c.request(true, 0, 0, 720, 400);
    // The server confirms the extension with a pseudo-rectangle.
    let rects = c.update();
    assert!(rects.iter().any(|r| r.4 == -258), "{:?}", rects.iter().map(|r| r.4).collect::<Vec<_>>());
    let event = |down: u16, keysym: u32, keycode: u32| {
        let mut m = vec![255, 0];
        m.extend_from_slice(&down.to_be_bytes());
        m.extend_from_slice(&keysym.to_be_bytes());
        m.extend_from_slice(&keycode.to_be_bytes());
        m
    };
    // Up arrow by XT keycode (0x80 | 0x48 = E0 48); 'q' on an AZERTY keyboard is the 'a'
    // position (keysym 'a', keycode 0x10): the keycode wins; keycode 0 falls back to the keysym.
    c.s.write_all(&event(1, 0xff52, 0xc8)).unwrap();
    c.s.write_all(&event(0, 0xff52, 0xc8)).unwrap();
    c.s.write_all(&event(1, u32::from(b'a'), 0x10)).unwrap();
    c.s.write_all(&event(1, u32::from(b'z'), 0)).unwrap();
    c.request(false, 0, 0, 8, 8);
    c.update();
    assert_eq!(*keys.lock().unwrap(), [0xe0, 0x48, 0xe0, 0xc8, 0x10, 0x2c]);
    // Another QEMU subtype is not understood: the client is dropped.
    c.s.write_all(&[255, 1, 0, 0]).unwrap();
    assert!(is_closed(&mut c.s));
}
