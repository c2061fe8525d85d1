//! An AF_PACKET socket bound to an existing interface in promiscuous mode: the interface (a
//! container's `eth1`, say) becomes the guest's wire, with no tap, bridge or tc rule.
//!
//! Three kernel habits are undone here so the guest sees frames as they were on the wire:
//! - the receive path strips a VLAN tag into metadata: it is put back (PACKET_AUXDATA);
//! - frames sent by local sockets may carry a checksum still to be computed: with
//!   PACKET_VNET_HDR the kernel says so and it is finished in software;
//! - frames the socket itself sent come back as outgoing: they are skipped.
//!
//! Segmentation-offloaded frames (larger than the MTU, from local senders on the peer side of a
//! veth) cannot be handed to a card without offloads: they are dropped and counted; turn TSO/GSO
//! off on the peer (`ethtool -K PEER tso off gso off`) when local senders talk to the guest.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::unix::io::{AsRawFd, OwnedFd, RawFd};

use crate::sys;
use crate::{Backend, OpenError, MAX_FRAME};

const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;
const ETH_P_8021Q: u16 = 0x8100;
/// `struct virtio_net_hdr` as PACKET_VNET_HDR prepends it.
const VNET_HDR_LEN: usize = 10;
const VNET_F_NEEDS_CSUM: u8 = 1;

#[repr(C)]
struct PacketMreq {
    ifindex: libc::c_int,
    kind: libc::c_ushort,
    alen: libc::c_ushort,
    address: [u8; 8],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    status: u32,
    len: u32,
    snaplen: u32,
    mac: u16,
    net: u16,
    vlan_tci: u16,
    vlan_tpid: u16,
}

/// What the backend dropped, for its log lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct PacketDrops {
    /// Frames longer than [`MAX_FRAME`] (segmentation offload included).
    pub oversized: u64,
    /// Frames whose offload metadata could not be honoured.
    pub bad_offload: u64,
}

/// One datagram as the socket returned it.
struct RawFrame {
    len: usize,
    /// The VLAN TCI and TPID the kernel stripped, to put back.
    vlan: Option<(u16, u16)>,
    /// The socket itself (or the host) sent it.
    outgoing: bool,
    /// It was longer than the buffer.
    truncated: bool,
}

/// An AF_PACKET backend.
pub struct PacketBackend {
    fd: OwnedFd,
    ifname: String,
    vnet_hdr: bool,
    ignore_outgoing: bool,
    drops: PacketDrops,
    buf: Vec<u8>,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed.
    sys::check(unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    })
    .map(drop)
}

/// The ones' complement sum of `data` folded to 16 bits (not inverted).
fn ones_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Finishes a checksum the kernel left to the device: the field at `start + offset` holds the
/// pseudo-header sum, the ones' complement of the sum from `start` to the end goes there.
pub(crate) fn finish_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(field) = start.checked_add(offset) else { return false };
    if start >= frame.len() || field.checked_add(2).is_none_or(|end| end > frame.len()) {
        return false;
    }
    let sum = !ones_sum(&frame[start..]);
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

impl PacketBackend {
    /// Opens a packet socket on `ifname`, which must exist (and should be up).
    pub fn open(ifname: &str) -> Result<Self, OpenError> {
        let err = |source| OpenError::Packet { ifname: ifname.to_string(), source };
        let index = sys::if_index(ifname).map_err(err)?;
        // SAFETY: a plain socket(2) call; the result is checked by `owned`.
        let fd = sys::owned(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        })
        .map_err(err)?;
        let raw = fd.as_raw_fd();
        // Options that must be set before bind to apply to every frame.
        let vnet_hdr = setsockopt(raw, SOL_PACKET, PACKET_VNET_HDR, &1i32).is_ok();
        let ignore_outgoing = setsockopt(raw, SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32).is_ok();
        if let Err(e) = setsockopt(raw, SOL_PACKET, PACKET_AUXDATA, &1i32) {
            log::warn!("packet {ifname}: no PACKET_AUXDATA ({e}): VLAN tags will be lost on receive");
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = index;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        sys::check(unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .map_err(err)?;
        let mreq = PacketMreq { ifindex: index, kind: PACKET_MR_PROMISC, alen: 0, address: [0; 8] };
        setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq).map_err(err)?;
        log::debug!("packet {ifname}: bound to ifindex {index}, vnet header {vnet_hdr}");
        Ok(Self {
            fd,
            ifname: ifname.to_string(),
            vnet_hdr,
            ignore_outgoing,
            drops: PacketDrops::default(),
            buf: vec![0; VNET_HDR_LEN + MAX_FRAME + 1],
        })
    }

    /// What was dropped so far.
    pub fn drops(&self) -> PacketDrops {
        self.drops
    }

    fn count_drop(&mut self, oversized: bool) {
        let n = if oversized {
            self.drops.oversized += 1;
            self.drops.oversized
        } else {
            self.drops.bad_offload += 1;
            self.drops.bad_offload
        };
        if n.is_power_of_two() {
            let what =
                if oversized { "oversized (offloaded) frames" } else { "frames with unusable offload data" };
            log::warn!("packet {}: {n} {what} dropped", self.ifname);
        }
    }

    /// Receives one raw datagram into `self.buf`.
    fn recv_raw(&mut self) -> io::Result<Option<RawFrame>> {
        let mut iov = libc::iovec { iov_base: self.buf.as_mut_ptr().cast(), iov_len: self.buf.len() };
        // u64 elements keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: sockaddr_ll and msghdr are plain data; all-zero is valid for both.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>() as _;
        let n = loop {
            // SAFETY: `msg` points at live buffers (`self.buf`, `control`, `from`) of the sizes given.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
            match sys::check_len(n) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        let mut vlan = None;
        // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer within
        // `msg_controllen`, and each PACKET_AUXDATA payload holds a tpacket_auxdata.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                if c.cmsg_level == SOL_PACKET
                    && c.cmsg_type == PACKET_AUXDATA
                    && c.cmsg_len as usize >= libc::CMSG_LEN(size_of::<TpacketAuxdata>() as u32) as usize
                {
                    let aux = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<TpacketAuxdata>());
                    if aux.status & TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if aux.status & TP_STATUS_VLAN_TPID_VALID != 0 {
                            aux.vlan_tpid
                        } else {
                            ETH_P_8021Q
                        };
                        vlan = Some((aux.vlan_tci, tpid));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let truncated = msg.msg_flags & libc::MSG_TRUNC != 0 || n >= self.buf.len();
        Ok(Some(RawFrame { len: n, vlan, outgoing: from.sll_pkttype == PACKET_OUTGOING, truncated }))
    }
}

impl Backend for PacketBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let header = [0u8; VNET_HDR_LEN];
        let mut iov = [
            libc::iovec { iov_base: header.as_ptr() as *mut _, iov_len: header.len() },
            libc::iovec { iov_base: frame.as_ptr() as *mut _, iov_len: frame.len() },
        ];
        let (iov, count) = if self.vnet_hdr { (&mut iov[..], 2) } else { (&mut iov[1..], 1) };
        loop {
            // SAFETY: each iovec points at a live buffer of the length given; writev only reads.
            let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), count) };
            match sys::check_len(n) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(io::Error::from(io::ErrorKind::WouldBlock))
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn recv(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let Some(RawFrame { len: n, vlan, outgoing, truncated }) = self.recv_raw()? else {
                return Ok(None);
            };
            if outgoing && !self.ignore_outgoing {
                continue;
            }
            if truncated {
                self.count_drop(true);
                continue;
            }
            let skip = if self.vnet_hdr { VNET_HDR_LEN } else { 0 };
            if n < skip + 14 {
                continue;
            }
            if self.vnet_hdr {
                let h = &self.buf[..VNET_HDR_LEN];
                let (flags, gso_type) = (h[0], h[1]);
                let csum_start = usize::from(u16::from_le_bytes([h[6], h[7]]));
                let csum_offset = usize::from(u16::from_le_bytes([h[8], h[9]]));
                if gso_type != 0 {
                    self.count_drop(true);
                    continue;
                }
                if flags & VNET_F_NEEDS_CSUM != 0
                    && !finish_checksum(&mut self.buf[skip..n], csum_start, csum_offset)
                {
                    self.count_drop(false);
                    continue;
                }
            }
            let frame = &self.buf[skip..n];
            let tag = if vlan.is_some() { 4 } else { 0 };
            let len = frame.len() + tag;
            if len > out.len() || len > MAX_FRAME {
                self.count_drop(true);
                continue;
            }
            match vlan {
                Some((tci, tpid)) => {
                    out[..12].copy_from_slice(&frame[..12]);
                    out[12..14].copy_from_slice(&tpid.to_be_bytes());
                    out[14..16].copy_from_slice(&tci.to_be_bytes());
                    out[16..len].copy_from_slice(&frame[12..]);
                }
                None => out[..len].copy_from_slice(frame),
            }
            return Ok(Some(len));
        }
    }

    fn rx_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn describe(&self) -> String {
        format!("packet {}", self.ifname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_completion_matches_a_full_computation() {
        // An IPv4 UDP datagram 10.0.0.1:1000 -> 10.0.0.2:2000 with 5 payload bytes.
        let mut frame = vec![0u8; 14 + 20 + 8 + 5];
        frame[14 + 20..14 + 20 + 8].copy_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 13, 0, 0]);
        frame[14 + 28..].copy_from_slice(b"hello");
        let pseudo: Vec<u8> = [10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 13].to_vec();
        // Full checksum: pseudo header + UDP header + payload.
        let mut all = pseudo.clone();
        all.extend_from_slice(&frame[34..]);
        let want = !ones_sum(&all);
        // Partial: the field holds the pseudo-header sum, as the kernel leaves it.
        frame[40..42].copy_from_slice(&ones_sum(&pseudo).to_be_bytes());
        assert!(finish_checksum(&mut frame, 34, 6));
        assert_eq!(u16::from_be_bytes([frame[40], frame[41]]), want);
        // Offsets past the frame are refused.
        assert!(!finish_checksum(&mut frame, 34, 100));
        assert!(!finish_checksum(&mut frame, usize::MAX, 2));
    }
}
