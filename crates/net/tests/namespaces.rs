//! tap and packet backends against the real kernel, each test inside a network namespace of its
//! own (the test thread unshares one, so nothing touches the host's interfaces and the
//! namespace goes away with the thread). Skipped, with the reason printed, where the process
//! may not create namespaces or `ip` is missing.

use std::process::Command;
use std::time::{Duration, Instant};

use net::packet::PacketBackend;
use net::tap::TapBackend;
use net::Backend;

/// Runs `body` on a thread inside a fresh network namespace, or says why it cannot.
fn in_namespace(body: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            println!("skipped: cannot create a network namespace: {}", std::io::Error::last_os_error());
            return;
        }
        if !ip(&["link", "set", "lo", "up"]) {
            println!("skipped: the `ip` command is missing or failed");
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
        let mut tap = match TapBackend::open("chrtap0", 1500) {
            Ok(t) => t,
            Err(e) => {
                println!("skipped: {e}");
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
