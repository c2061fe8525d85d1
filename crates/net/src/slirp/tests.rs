//! The slirp backend with real sockets and hand-built guest frames (no guest needed). Every
//! address the host side touches is on the loopback.

mod guest_tcp;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::*;
use crate::{Backend, NetSpec, MAX_FRAME};
use guest_tcp::{guest_byte, host_byte, tcp_segment, GuestTcp, GUEST_PORT};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];

fn user(spec: &str) -> UserNet {
    match spec.parse::<NetSpec>().unwrap().backend {
        crate::BackendSpec::User(u) => u,
        _ => unreachable!(),
    }
}

fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    for part in parts {
        for c in part.chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    let total = (20 + payload.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(payload);
    ip
}

fn ethernet(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn dhcp_discover() -> Vec<u8> {
    let mut bootp = vec![0u8; 236];
    bootp[0] = 1; // BOOTREQUEST
    bootp[1] = 1; // Ethernet
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    bootp[28..34].copy_from_slice(&GUEST_MAC);
    bootp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
    let mut udp = vec![0, 68, 0, 67, 0, 0, 0, 0];
    let len = (8 + bootp.len()) as u16;
    udp[4..6].copy_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&bootp);
    ethernet([0xff; 6], 0x0800, &ipv4([0; 4], [255; 4], 17, &udp))
}

/// Waits for a frame from the backend that `want` accepts.
fn wait_for(b: &mut SlirpBackend, mut want: impl FnMut(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; MAX_FRAME];
    while Instant::now() < deadline {
        while let Some(n) = b.recv(&mut buf).unwrap() {
            if want(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
        let mut pfd = libc::pollfd { fd: b.rx_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
    }
    None
}

fn ipv4_payload(f: &[u8], proto: u8) -> Option<&[u8]> {
    if f.len() < 34 || f[12..14] != [8, 0] || f[23] != proto {
        return None;
    }
    let ihl = usize::from(f[14] & 0xf) * 4;
    f.get(14 + ihl..)
}

/// Answers slirp's ARP request for the guest; returns slirp's MAC address.
fn answer_arp(b: &mut SlirpBackend) -> [u8; 6] {
    let arp = wait_for(b, |f| f.len() >= 42 && f[12..14] == [8, 6] && f[38..42] == GUEST_IP)
        .expect("no ARP request for the guest");
    assert_eq!(&arp[20..22], &[0, 1], "who-has");
    let mut reply = vec![0, 1, 8, 0, 6, 4, 0, 2];
    reply.extend_from_slice(&GUEST_MAC);
    reply.extend_from_slice(&GUEST_IP);
    reply.extend_from_slice(&arp[22..32]);
    let slirp_mac: [u8; 6] = arp[6..12].try_into().unwrap();
    b.send(&ethernet(slirp_mac, 0x0806, &reply)).unwrap();
    slirp_mac
}

/// Whether `fd` polls readable within `ms` milliseconds.
fn readable(fd: RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Serves the backend like the card's worker for `span`, counting how often `rx_fd` woke it.
fn count_wakes(b: &mut SlirpBackend, span: Duration) -> u32 {
    let end = Instant::now() + span;
    let mut buf = vec![0u8; MAX_FRAME + 1];
    let mut wakes = 0;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return wakes;
        }
        if readable(b.rx_fd(), i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1)) {
            wakes += 1;
            while b.recv(&mut buf).unwrap().is_some() {}
        }
    }
}

/// A backend forwarding a loopback port to [`GUEST_PORT`], a host socket connected to it and the
/// guest's end, accepted.
fn forwarded_connection() -> (SlirpBackend, TcpStream, GuestTcp) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spec = user(&format!("user,ipv6=off,hostfwd=tcp:127.0.0.1:{port}-:{GUEST_PORT}"));
    let mut b = SlirpBackend::new(&spec, 1500).unwrap();
    let host = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let slirp_mac = answer_arp(&mut b);
    let guest = GuestTcp::accept(&mut b, slirp_mac);
    (b, host, guest)
}

#[test]
fn dhcp_discover_gets_an_offer() {
    let mut b = SlirpBackend::new(&user("user,ipv6=off"), 1500).unwrap();
    b.send(&dhcp_discover()).unwrap();
    let offer = wait_for(&mut b, |f| ipv4_payload(f, 17).is_some_and(|u| u.len() > 8 && u[2..4] == [0, 68]))
        .expect("no DHCP answer within 5 s");
    let bootp = &ipv4_payload(&offer, 17).unwrap()[8..];
    assert_eq!(bootp[0], 2, "BOOTREPLY");
    assert_eq!(&bootp[4..8], &0x1234_5678u32.to_be_bytes(), "same transaction");
    assert_eq!(&bootp[16..20], &GUEST_IP, "the first lease is net+15");
    // Options: find message type 53.
    let mut opts = &bootp[240..];
    let mut kind = None;
    while let [code, rest @ ..] = opts {
        if *code == 255 {
            break;
        }
        let (len, rest) = rest.split_first().unwrap();
        if *code == 53 {
            kind = Some(rest[0]);
        }
        opts = &rest[usize::from(*len)..];
    }
    assert_eq!(kind, Some(2), "DHCPOFFER");
}

#[test]
fn hostfwd_connection_reaches_the_guest_as_a_syn() {
    // A free loopback port for the forward.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut b =
        SlirpBackend::new(&user(&format!("user,ipv6=off,hostfwd=tcp:127.0.0.1:{port}-:80")), 1500).unwrap();
    // Forwarding the same port twice fails cleanly at open.
    let err =
        SlirpBackend::new(&user(&format!("user,hostfwd=tcp:127.0.0.1:{port}-:80")), 1500).err().unwrap();
    assert!(matches!(err, OpenError::Forward { .. }), "{err}");

    let mut host = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // slirp first asks who the guest is.
    let slirp_mac = answer_arp(&mut b);
    let syn =
        wait_for(&mut b, |f| ipv4_payload(f, 6).is_some_and(|t| t[2..4] == [0, 80] && t[13] & 0x02 != 0))
            .expect("no SYN to guest port 80");
    assert_eq!(&syn[30..34], &GUEST_IP);
    // The guest refuses: a RST from port 80 closes the host's connection.
    let tcp = ipv4_payload(&syn, 6).unwrap();
    let src: [u8; 4] = syn[26..30].try_into().unwrap();
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
    let rst = tcp_segment((GUEST_IP, 80), (src, sport), 0, seq.wrapping_add(1), 0x14, 0, &[], &[]);
    b.send(&ethernet(slirp_mac, 0x0800, &rst)).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    match host.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the host connection should close, got {other:?}"),
    }
}

#[test]
fn dropping_the_backend_frees_the_port() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spec = user(&format!("user,hostfwd=tcp:127.0.0.1:{port}-:22"));
    drop(SlirpBackend::new(&spec, 9000).unwrap());
    drop(SlirpBackend::new(&spec, 9000).unwrap());
}

#[test]
fn udp_forward_delivers_a_datagram_to_the_guest() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut b =
        SlirpBackend::new(&user(&format!("user,ipv6=off,hostfwd=udp:127.0.0.1:{port}-:5678")), 1500).unwrap();
    let host = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    host.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    // slirp asks for the guest's address first; answer, then the datagram follows.
    answer_arp(&mut b);
    // The first datagram waited on the ARP answer; a second one goes straight out once the
    // guest's address is known. Accept either.
    std::thread::sleep(Duration::from_millis(50));
    host.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let dgram = wait_for(&mut b, |f| {
        ipv4_payload(f, 17).is_some_and(|u| u.len() >= 12 && u[2..4] == 5678u16.to_be_bytes())
    })
    .expect("no datagram for guest port 5678");
    assert_eq!(&dgram[30..34], &GUEST_IP);
    assert_eq!(&ipv4_payload(&dgram, 17).unwrap()[8..], b"ping");
}

#[test]
fn a_forwarded_connection_carries_mebibytes_both_ways_without_drops() {
    const EACH_WAY: usize = 4 << 20;
    let (mut b, host, mut guest) = forwarded_connection();
    let mut to_guest = host.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for start in (0..EACH_WAY).step_by(64 << 10) {
            let chunk: Vec<u8> = (start..EACH_WAY.min(start + (64 << 10))).map(host_byte).collect();
            to_guest.write_all(&chunk).unwrap();
        }
    });
    let mut from_guest = host.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        from_guest.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0;
        while got < EACH_WAY {
            let n = from_guest.read(&mut buf).unwrap();
            assert!(n > 0, "the connection closed after {got} bytes");
            for (i, &byte) in buf[..n].iter().enumerate() {
                assert_eq!(byte, guest_byte(got + i), "byte {} of the guest's stream", got + i);
            }
            got += n;
        }
        got
    });
    guest.exchange(&mut b, EACH_WAY, EACH_WAY, Duration::from_secs(120));
    writer.join().unwrap();
    assert_eq!(reader.join().unwrap(), EACH_WAY);
    assert_eq!(guest.received, EACH_WAY);
    assert_eq!(b.stats().to_guest_dropped, 0, "frames for the guest dropped");
    assert_eq!(guest.out_of_order, 0, "segments from slirp arrived out of order (one was lost)");
    eprintln!("the guest resent after a stall {} times", guest.resends);
}

#[test]
fn rx_fd_is_not_readable_after_a_turn_with_nothing_to_do() {
    let mut b = SlirpBackend::new(&user("user,ipv6=off"), 1500).unwrap();
    b.send(&dhcp_discover()).unwrap();
    wait_for(&mut b, |f| ipv4_payload(f, 17).is_some_and(|u| u.len() > 8 && u[2..4] == [0, 68]))
        .expect("no DHCP answer within 5 s");
    let mut buf = vec![0u8; MAX_FRAME + 1];
    // The last of these calls found the queue empty and ran a turn of slirp's loop.
    while b.recv(&mut buf).unwrap().is_some() {}
    assert!(!readable(b.rx_fd(), 0), "rx_fd is readable with nothing to do");
    // slirp without connections asks to be polled once a second; a busy loop would show here as
    // thousands of wake-ups.
    let wakes = count_wakes(&mut b, Duration::from_millis(1500));
    eprintln!("idle: {wakes} wake-ups in 1.5 s");
    assert!(wakes <= 2, "{wakes} wake-ups in 1.5 s while idle");
}

#[test]
fn an_idle_connection_wakes_the_backend_only_for_slirp_s_timers() {
    let (mut b, mut host, mut guest) = forwarded_connection();
    host.write_all(&(0..5).map(host_byte).collect::<Vec<u8>>()).unwrap();
    guest.exchange(&mut b, 5, 5, Duration::from_secs(10));
    let mut got = [0u8; 5];
    host.read_exact(&mut got).unwrap();
    assert_eq!(got.to_vec(), (0..5).map(guest_byte).collect::<Vec<u8>>());
    // Let the last acknowledgements settle.
    count_wakes(&mut b, Duration::from_millis(100));
    // With a connection open slirp wants its TCP timers run every half second: about three
    // wake-ups, where a socket left in the set would show thousands.
    let wakes = count_wakes(&mut b, Duration::from_millis(1500));
    eprintln!("idle connection: {wakes} wake-ups in 1.5 s");
    assert!(wakes <= 6, "{wakes} wake-ups in 1.5 s on an idle connection");
}
