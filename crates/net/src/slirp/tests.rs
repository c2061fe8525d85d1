//! The slirp backend with real sockets and hand-built guest frames (no guest needed). Every
//! address the host side touches is on the loopback.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::*;
use crate::{Backend, NetSpec};

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
    let arp = wait_for(&mut b, |f| f.len() >= 42 && f[12..14] == [8, 6] && f[38..42] == GUEST_IP)
        .expect("no ARP request for the guest");
    assert_eq!(&arp[20..22], &[0, 1], "who-has");
    let mut reply = vec![0, 1, 8, 0, 6, 4, 0, 2];
    reply.extend_from_slice(&GUEST_MAC);
    reply.extend_from_slice(&GUEST_IP);
    reply.extend_from_slice(&arp[22..28]);
    reply.extend_from_slice(&arp[28..32]);
    let mut slirp_mac = [0u8; 6];
    slirp_mac.copy_from_slice(&arp[6..12]);
    b.send(&ethernet(slirp_mac, 0x0806, &reply)).unwrap();

    let syn =
        wait_for(&mut b, |f| ipv4_payload(f, 6).is_some_and(|t| t[2..4] == [0, 80] && t[13] & 0x02 != 0))
            .expect("no SYN to guest port 80");
    assert_eq!(&syn[30..34], &GUEST_IP);
    // The guest refuses: a RST from port 80 closes the host's connection.
    let tcp = ipv4_payload(&syn, 6).unwrap();
    let src: [u8; 4] = syn[26..30].try_into().unwrap();
    let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
    let mut rst = vec![0u8; 20];
    rst[0..2].copy_from_slice(&tcp[2..4]);
    rst[2..4].copy_from_slice(&tcp[0..2]);
    rst[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    rst[12] = 5 << 4;
    rst[13] = 0x14; // RST + ACK
    let mut pseudo = src.to_vec();
    pseudo.extend_from_slice(&GUEST_IP);
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    let c = checksum(&[&pseudo, &rst]);
    rst[16..18].copy_from_slice(&c.to_be_bytes());
    b.send(&ethernet(slirp_mac, 0x0800, &ipv4(GUEST_IP, src, 6, &rst))).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    match host.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the host connection should close, got {other:?}"),
    }
}

#[test]
fn dropping_the_backend_stops_its_thread_and_frees_the_port() {
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
    let arp = wait_for(&mut b, |f| f.len() >= 42 && f[12..14] == [8, 6] && f[38..42] == GUEST_IP)
        .expect("no ARP request for the guest");
    let mut reply = vec![0, 1, 8, 0, 6, 4, 0, 2];
    reply.extend_from_slice(&GUEST_MAC);
    reply.extend_from_slice(&GUEST_IP);
    reply.extend_from_slice(&arp[22..32]);
    let slirp_mac: [u8; 6] = arp[6..12].try_into().unwrap();
    b.send(&ethernet(slirp_mac, 0x0806, &reply)).unwrap();
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
