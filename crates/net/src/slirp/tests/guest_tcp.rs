//! A guest-side TCP endpoint just big enough to carry a stream each way through slirp: it
//! answers the one connection slirp opens toward it, acknowledges what it receives and sends
//! within slirp's window. Its only recovery is to resend the first unacknowledged segment after
//! a stall (which also probes a shut window); it has no congestion control.

use std::time::{Duration, Instant};

use super::*;

/// The guest port the forwards of these tests point at.
pub(super) const GUEST_PORT: u16 = 80;
const MSS: usize = 1460;
const ISS: u32 = 0x1000_0000;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Byte `i` of the stream the guest sends.
pub(super) fn guest_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Byte `i` of the stream the host sends.
pub(super) fn host_byte(i: usize) -> u8 {
    (i % 241) as u8
}

/// A TCP segment from `src` to `dst` with a correct checksum.
#[allow(clippy::too_many_arguments)]
pub(super) fn tcp_segment(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20 + options.len() + data.len());
    tcp.extend_from_slice(&src.1.to_be_bytes());
    tcp.extend_from_slice(&dst.1.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push((((20 + options.len()) / 4) as u8) << 4);
    tcp.push(flags);
    tcp.extend_from_slice(&window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]);
    tcp.extend_from_slice(options);
    tcp.extend_from_slice(data);
    let mut pseudo = src.0.to_vec();
    pseudo.extend_from_slice(&dst.0);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    let c = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src.0, dst.0, 6, &tcp)
}

/// The TCP header and data of a frame for guest port [`GUEST_PORT`], without Ethernet padding.
fn tcp_to_guest(f: &[u8]) -> Option<&[u8]> {
    let total = usize::from(u16::from_be_bytes(f.get(16..18)?.try_into().ok()?));
    let ip = f.get(14..14 + total)?;
    let tcp = ipv4_payload(f, 6)?.get(..total - usize::from(ip[0] & 0xf) * 4)?;
    (f[30..34] == GUEST_IP && tcp.get(2..4)? == GUEST_PORT.to_be_bytes()).then_some(tcp)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) struct GuestTcp {
    slirp_mac: [u8; 6],
    /// slirp's end of the connection.
    peer: ([u8; 4], u16),
    /// The next sequence number expected from slirp.
    rcv_nxt: u32,
    /// Bytes of the guest's stream sent, and acknowledged by slirp.
    sent: usize,
    acked: usize,
    /// slirp's last advertised window.
    window: usize,
    /// Bytes of the host's stream received in order.
    pub(super) received: usize,
    /// Segments from slirp that did not start where expected (each means one was lost).
    pub(super) out_of_order: u64,
    /// Stalls after which the first unacknowledged segment was sent again.
    pub(super) resends: u64,
}

impl GuestTcp {
    /// Waits for slirp's SYN toward [`GUEST_PORT`] and answers it.
    pub(super) fn accept(b: &mut SlirpBackend, slirp_mac: [u8; 6]) -> Self {
        let syn = wait_for(b, |f| tcp_to_guest(f).is_some_and(|t| t[13] & SYN != 0))
            .expect("no SYN to the guest's port");
        let tcp = tcp_to_guest(&syn).unwrap();
        let peer_ip: [u8; 4] = syn[26..30].try_into().unwrap();
        let peer = (peer_ip, u16::from_be_bytes([tcp[0], tcp[1]]));
        let guest = Self {
            slirp_mac,
            peer,
            rcv_nxt: be32(&tcp[4..8]).wrapping_add(1),
            sent: 0,
            acked: 0,
            window: 0,
            received: 0,
            out_of_order: 0,
            resends: 0,
        };
        // SYN-ACK, announcing an MSS of 1460.
        let mss = [2, 4, (MSS >> 8) as u8, MSS as u8];
        guest.transmit(b, ISS, SYN | ACK, &mss, &[]);
        guest
    }

    fn transmit(&self, b: &mut SlirpBackend, seq: u32, flags: u8, options: &[u8], data: &[u8]) {
        let ip =
            tcp_segment((GUEST_IP, GUEST_PORT), self.peer, seq, self.rcv_nxt, flags, 65535, options, data);
        b.send(&ethernet(self.slirp_mac, 0x0800, &ip)).unwrap();
    }

    /// Sends `len` bytes of the guest's stream from `offset`.
    fn send_data(&self, b: &mut SlirpBackend, offset: usize, len: usize) {
        let data: Vec<u8> = (offset..offset + len).map(guest_byte).collect();
        let seq = ISS.wrapping_add(1).wrapping_add(offset as u32);
        self.transmit(b, seq, ACK | PSH, &[], &data);
    }

    /// Takes one frame from slirp; returns whether it moved either stream on.
    fn take(&mut self, f: &[u8]) -> (bool, bool) {
        let Some(tcp) = tcp_to_guest(f) else { return (false, false) };
        let flags = tcp[13];
        assert_eq!(flags & RST, 0, "slirp reset the connection");
        let mut progress = false;
        if flags & ACK != 0 {
            let acked = be32(&tcp[8..12]).wrapping_sub(ISS.wrapping_add(1)) as usize;
            if acked > self.acked && acked <= self.sent.max(self.acked + MSS) {
                self.acked = acked;
                self.sent = self.sent.max(acked);
                progress = true;
            }
            self.window = usize::from(u16::from_be_bytes([tcp[14], tcp[15]]));
        }
        let data = &tcp[usize::from(tcp[12] >> 4) * 4..];
        if data.is_empty() {
            return (progress, false);
        }
        if be32(&tcp[4..8]) == self.rcv_nxt {
            for (i, &byte) in data.iter().enumerate() {
                assert_eq!(
                    byte,
                    host_byte(self.received + i),
                    "byte {} of the host's stream",
                    self.received + i
                );
            }
            self.received += data.len();
            self.rcv_nxt = self.rcv_nxt.wrapping_add(data.len() as u32);
            progress = true;
        } else {
            self.out_of_order += 1;
        }
        (progress, true)
    }

    /// Sends `send_total` bytes and receives `recv_total`, both at once, within `limit`.
    pub(super) fn exchange(
        &mut self,
        b: &mut SlirpBackend,
        send_total: usize,
        recv_total: usize,
        limit: Duration,
    ) {
        let deadline = Instant::now() + limit;
        let mut last_progress = Instant::now();
        let mut buf = vec![0u8; MAX_FRAME + 1];
        while self.acked < send_total || self.received < recv_total {
            assert!(
                Instant::now() < deadline,
                "stalled: sent {} acked {} of {send_total}, received {} of {recv_total}, window {}",
                self.sent,
                self.acked,
                self.received,
                self.window
            );
            let mut progress = false;
            while self.sent < send_total {
                let room = self.window.saturating_sub(self.sent - self.acked);
                let len = MSS.min(send_total - self.sent).min(room);
                if len == 0 {
                    break;
                }
                self.send_data(b, self.sent, len);
                self.sent += len;
                progress = true;
            }
            let mut ack_due = false;
            while let Some(n) = b.recv(&mut buf).unwrap() {
                let (moved, has_data) = self.take(&buf[..n]);
                progress |= moved;
                ack_due |= has_data;
            }
            if ack_due {
                self.transmit(b, ISS.wrapping_add(1).wrapping_add(self.sent as u32), ACK, &[], &[]);
            }
            if progress {
                last_progress = Instant::now();
                continue;
            }
            if self.acked < send_total && last_progress.elapsed() > Duration::from_millis(200) {
                self.resends += 1;
                self.send_data(b, self.acked, MSS.min(send_total - self.acked));
                last_progress = Instant::now();
            }
            let mut pfd = libc::pollfd { fd: b.rx_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one live pollfd.
            unsafe { libc::poll(&mut pfd, 1, 20) };
        }
    }
}
