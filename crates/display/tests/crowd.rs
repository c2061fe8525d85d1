//! Many clients over real TCP sockets on 127.0.0.1: idle viewers that fill every place make
//! room for a new one, connections stuck in the handshake cannot push a viewer out, and a
//! handshake gets its time limit in all, not per byte.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{is_closed, Rig};
use display::rfb::{MAX_CLIENTS, MAX_HANDSHAKES};
use display::{start_vnc, KeySink};

type Keys = Arc<Mutex<Vec<u8>>>;

fn serve(rig: &Rig) -> (SocketAddr, Keys) {
    let keys: Keys = Arc::new(Mutex::new(Vec::new()));
    let k = keys.clone();
    let sink: KeySink = Arc::new(move |codes: &[u8]| k.lock().unwrap().extend_from_slice(codes));
    let server = start_vnc("127.0.0.1:0", None, rig.vga.display(), sink).unwrap();
    (server.local_addr(), keys)
}

fn read(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    s.read_exact(&mut b).unwrap();
    b
}

/// Connects and reads the server's version: the handshake has begun, nothing more.
fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read(&mut s, 12), b"RFB 003.008\n");
    s
}

/// A viewer through the handshake (3.8, None) and the ServerInit. It sends nothing more (Raw
/// is the default), so the server last heard from it when it took its place.
fn viewer(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    s.write_all(b"RFB 003.008\n").unwrap();
    assert_eq!(read(&mut s, 2), [1, 1]);
    s.write_all(&[1]).unwrap();
    assert_eq!(read(&mut s, 4), [0, 0, 0, 0]);
    s.write_all(&[1]).unwrap();
    let init = read(&mut s, 24);
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    read(&mut s, name_len);
    s
}

/// Asks for the whole 720x400 screen and reads the answer: one Raw rectangle of it.
fn full_update(s: &mut TcpStream) {
    s.write_all(&[3, 0, 0, 0, 0, 0, 0x02, 0xd0, 0x01, 0x90]).unwrap();
    assert_eq!(read(s, 4), [0, 0, 0, 1], "a FramebufferUpdate of one rectangle");
    assert_eq!(read(s, 12), [0, 0, 0, 0, 0x02, 0xd0, 0x01, 0x90, 0, 0, 0, 0], "720x400 Raw");
    read(s, 720 * 400 * 4);
}

/// Whether `s` is still open: nothing arrives, and no end, for a moment.
fn is_open(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let open = !is_closed(s);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    open
}

#[test]
fn a_new_viewer_gets_in_when_idle_ones_fill_every_place() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, keys) = serve(&rig);
    // Viewer 1 holds 'a' down and then says nothing more; the round trip makes sure the server
    // heard the key before the others arrive.
    let mut viewers = vec![viewer(addr), viewer(addr)];
    viewers[1].write_all(&[4, 1, 0, 0, 0, 0, 0, b'a']).unwrap();
    full_update(&mut viewers[1]);
    while viewers.len() < MAX_CLIENTS {
        viewers.push(viewer(addr));
    }
    // Viewer 0 came first but is the last one heard from.
    full_update(&mut viewers[0]);
    // Every place is taken by an idle viewer, and none is dropped while nobody needs room.
    std::thread::sleep(Duration::from_millis(500));
    for (i, v) in viewers.iter_mut().enumerate() {
        assert!(is_open(v), "idle viewer {i} was dropped with no one waiting");
    }

    // One more: it gets a working session, and the longest-silent viewer (1) makes room.
    let mut newcomer = viewer(addr);
    full_update(&mut newcomer);
    assert!(is_closed(&mut viewers[1]), "the longest-idle viewer was not disconnected");
    for (i, v) in viewers.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        assert!(is_open(v), "viewer {i} was disconnected too");
    }
    // Its key is released as on any hang-up, so the guest sees no stuck key.
    let started = Instant::now();
    while *keys.lock().unwrap() != [0x1e, 0x9e] {
        assert!(started.elapsed() < Duration::from_secs(5), "keys: {:x?}", keys.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }

    // Places keep turning over: the next newcomer pushes out viewer 2, now the idlest.
    let mut second = viewer(addr);
    full_update(&mut second);
    assert!(is_closed(&mut viewers[2]));
    assert!(is_open(&mut viewers[0]) && is_open(&mut newcomer));
}

#[test]
fn connections_stuck_in_the_handshake_cannot_push_viewers_out() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig);
    let mut viewers: Vec<TcpStream> = (0..MAX_CLIENTS).map(|_| viewer(addr)).collect();
    // Connections that never answer the server's version use up the handshake allowance ...
    let stuck: Vec<TcpStream> = (0..MAX_HANDSHAKES).map(|_| connect(addr)).collect();
    // ... so one more is refused at once, without even a version string,
    let mut refused = TcpStream::connect(addr).unwrap();
    refused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(is_closed(&mut refused), "a connection past the handshake allowance was served");
    // and every viewer is still there and served.
    for (i, v) in viewers.iter_mut().enumerate() {
        assert!(is_open(v), "viewer {i} was pushed out by a connection still in the handshake");
    }
    full_update(&mut viewers[MAX_CLIENTS - 1]);
    // A stuck connection that goes away gives its allowance back.
    drop(stuck);
    let started = Instant::now();
    let newcomer = loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut version = [0u8; 12];
        if s.read_exact(&mut version).is_ok() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the allowance was never given back");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(newcomer);
}

#[test]
fn a_handshake_trickled_a_byte_at_a_time_is_cut_off_in_ten_seconds() {
    let rig = Rig::new();
    rig.text_mode();
    let (addr, _) = serve(&rig);
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    // A byte every 1.5 s: each read is well inside the limit, the whole is not.
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for &b in b"RFB 003.008\n" {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
    });
    assert!(is_closed(&mut s), "the trickling client was never cut off");
    let after = started.elapsed();
    assert!(after >= Duration::from_secs(9) && after < Duration::from_secs(14), "cut off after {after:?}");
    trickle.join().unwrap();
}
