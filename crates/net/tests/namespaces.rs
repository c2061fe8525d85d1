//! tap and packet backends against the real kernel, each test inside a network namespace of its
//! own (the test thread unshares one, so nothing touches the host's interfaces and the
//! namespace goes away with the thread). Skipped, with the reason printed, where the process
//! may not create namespaces or `ip` is missing.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use net::packet::PacketBackend;
use net::tap::TapBackend;
use net::{Backend, GuestOffloads, VNET_HDR_LEN};

/// Runs `body` on a thread inside a fresh network namespace, or says why it cannot.
fn in_namespace(body: impl FnOnce() + Send + 'static) {
    // The test harness names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("namespaces").to_string();
    std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            test_support::skip(
                &test,
                &format!("cannot create a network namespace: {}", std::io::Error::last_os_error()),
            );
            return;
        }
        if !ip(&["link", "set", "lo", "up"]) {
            test_support::skip(&test, "the `ip` command is missing or failed");
            return;
        }
        body();
    })
    .join()
    .expect("the namespace test thread panicked");
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

fn wait_for(b: &mut dyn Backend, mut want: impl FnMut(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; net::MAX_FRAME];
    while Instant::now() < deadline {
        while let Some(n) = b.recv(&mut buf).expect("backend receive") {
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

fn frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

#[test]
fn packet_backends_on_a_veth_pair_see_each_others_frames() {
    in_namespace(|| {
        assert!(ip(&[
            "link", "add", "va", "mtu", "9000", "type", "veth", "peer", "name", "vb", "mtu", "9000"
        ]));
        assert!(ip(&["link", "set", "va", "up"]) && ip(&["link", "set", "vb", "up"]));
        let mut a = PacketBackend::open("va").unwrap();
        let mut b = PacketBackend::open("vb").unwrap();
        // The payload is an experimental ethertype, so the kernel leaves it alone.
        let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let sent = frame(B, A, 0x88b5, &payload);
        a.send(&sent).unwrap();
        assert_eq!(wait_for(&mut b, |f| f[12..14] == [0x88, 0xb5]), Some(sent.clone()));
        // A VLAN-tagged jumbo frame keeps its tag (the kernel strips it into metadata).
        let mut tagged = B.to_vec();
        tagged.extend_from_slice(&A);
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a, 0x88, 0xb5]);
        tagged.extend(std::iter::repeat_n(0x5a, 8900));
        b.send(&tagged).unwrap();
        let got = wait_for(&mut a, |f| f.len() > 100).expect("tagged frame");
        assert_eq!(got, tagged);
        // Neither side hears its own frames back.
        assert_eq!(wait_for(&mut a, |f| f[6..12] == A), None);
        assert!(PacketBackend::open("nosuchif0").is_err());
    });
}

#[test]
fn tap_is_created_and_the_kernel_answers_arp() {
    in_namespace(|| {
        let mut tap = match TapBackend::open_without_vnet_hdr("chrtap0", 1500) {
            Ok(t) => t,
            Err(e) => {
                test_support::skip("tap_is_created_and_the_kernel_answers_arp", &e.to_string());
                return;
            }
        };
        assert!(ip(&["addr", "add", "10.199.0.1/24", "dev", "chrtap0"]));
        // An ARP request from the "guest" 10.199.0.2 for the host side 10.199.0.1.
        let guest = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&guest);
        arp.extend_from_slice(&[10, 199, 0, 2]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[10, 199, 0, 1]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut reply = None;
        // The link may need a moment before the kernel takes frames from it.
        while reply.is_none() && Instant::now() < deadline {
            tap.send(&frame([0xff; 6], guest, 0x0806, &arp)).unwrap();
            reply = wait_for(&mut tap, |f| f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2]);
        }
        let reply = reply.expect("the kernel should answer ARP on the tap");
        assert_eq!(&reply[0..6], &guest);
        assert_eq!(&reply[28..32], &[10, 199, 0, 1]);
    });
}

/// An Ethernet + IPv4 + UDP frame from `src` (10.199.1.2:5555) to `dst` (10.199.1.1:9999), its
/// IP checksum right and its UDP checksum `udp_csum` (possibly wrong).
fn udp_frame(dst: [u8; 6], src: [u8; 6], payload: &[u8], udp_csum: u16) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 199, 1, 2, 10, 199, 1, 1];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut l4 = ip;
    l4.extend_from_slice(&5555u16.to_be_bytes());
    l4.extend_from_slice(&9999u16.to_be_bytes());
    l4.extend_from_slice(&udp_len.to_be_bytes());
    l4.extend_from_slice(&udp_csum.to_be_bytes());
    l4.extend_from_slice(payload);
    frame(dst, src, 0x0800, &l4)
}

/// A virtio-net header: flags, gso_type 0, csum_start, csum_offset.
fn vnet_header(flags: u8, csum_start: u16, csum_offset: u16) -> Vec<u8> {
    let mut h = vec![flags, 0, 0, 0, 0, 0];
    h.extend_from_slice(&csum_start.to_le_bytes());
    h.extend_from_slice(&csum_offset.to_le_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

#[test]
fn tap_with_vnet_header_passes_checksum_offload_both_ways() {
    in_namespace(|| {
        let mut tap = match TapBackend::open("chrtap1", 1500) {
            Ok(t) => t,
            Err(e) => {
                test_support::skip("tap_with_vnet_header_passes_checksum_offload_both_ways", &e.to_string());
                return;
            }
        };
        assert!(tap.vnet_hdr(), "the kernel should take IFF_VNET_HDR and a 12-byte header");
        let guest = [0x52, 0x54, 0, 0x12, 0x34, 0x57];
        assert!(ip(&["addr", "add", "10.199.1.1/24", "dev", "chrtap1"]));
        assert!(ip(&["neigh", "add", "10.199.1.2", "lladdr", "52:54:00:12:34:57", "dev", "chrtap1"]));
        // The tap's own address (sysfs shows the test's original namespace, `ip` this one).
        let out = Command::new("ip").args(["-br", "link", "show", "dev", "chrtap1"]).output().unwrap();
        let out = String::from_utf8_lossy(&out.stdout).to_string();
        let mac = out.split_whitespace().nth(2).expect("ip -br link prints the address third");
        let host: Vec<u8> = mac.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
        let host: [u8; 6] = host.try_into().unwrap();
        let sock = UdpSocket::bind("10.199.1.1:9999").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut got = [0u8; 64];

        // Guest to host: a wrong UDP checksum with NEEDS_CSUM (start 34, the UDP header; offset
        // 6) is one the kernel is to finish, so it is delivered; without the flag it is dropped.
        let bad = udp_frame(host, guest, b"unfinished", 0xdead);
        let mut delivered = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while delivered.is_none() && Instant::now() < deadline {
            tap.send(&[vnet_header(0, 0, 0), bad.clone()].concat()).unwrap();
            if sock.recv(&mut got).is_ok() {
                panic!("a frame with a wrong checksum and no NEEDS_CSUM was delivered");
            }
            tap.send(&[vnet_header(1, 34, 6), bad.clone()].concat()).unwrap();
            delivered = sock.recv(&mut got).ok();
        }
        assert_eq!(delivered.map(|n| &got[..n]), Some(&b"unfinished"[..]), "NEEDS_CSUM honoured");
        // Now that the link takes frames, the same without the flag is dropped for its checksum.
        tap.send(&[vnet_header(0, 0, 0), bad.clone()].concat()).unwrap();
        assert!(sock.recv(&mut got).is_err(), "a wrong checksum without NEEDS_CSUM was delivered");

        // Host to guest: with checksum offload allowed, the kernel leaves the UDP checksum to
        // the guest and says so; with none, the header is empty and the checksum done.
        let is_ours =
            |f: &[u8]| f.len() > VNET_HDR_LEN + 42 && f[VNET_HDR_LEN + 12..VNET_HDR_LEN + 14] == [8, 0];
        let all = GuestOffloads { csum: true, tso4: true, tso6: true, tso_ecn: true };
        tap.set_guest_offloads(all).expect("TUNSETOFFLOAD with checksum, TSO4/6 and ECN");
        sock.send_to(b"to the guest", "10.199.1.2:7777").unwrap();
        let f = wait_for(&mut tap, is_ours).expect("a datagram for the guest");
        assert_eq!(f[0] & 1, 1, "NEEDS_CSUM set");
        assert_eq!(u16::from_le_bytes([f[6], f[7]]), 34, "csum_start: the UDP header");
        assert_eq!(u16::from_le_bytes([f[8], f[9]]), 6, "csum_offset: UDP's checksum field");
        assert_eq!(&f[VNET_HDR_LEN..VNET_HDR_LEN + 6], &guest);
        assert_eq!(&f[f.len() - 12..], b"to the guest");

        tap.set_guest_offloads(GuestOffloads::default()).expect("TUNSETOFFLOAD with none");
        sock.send_to(b"to the guest", "10.199.1.2:7777").unwrap();
        let f = wait_for(&mut tap, is_ours).expect("a datagram for the guest");
        assert_eq!(f[..VNET_HDR_LEN], [0; VNET_HDR_LEN], "no offload left to the guest");
        let udp = &f[VNET_HDR_LEN + 34..];
        assert_ne!(&udp[6..8], &[0, 0], "the kernel computed the UDP checksum");
    });
}
