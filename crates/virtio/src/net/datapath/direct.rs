//! Receiving straight into the guest's buffers, for backends that can scatter a read
//! ([`::net::Backend::can_scatter`], the tap): one copy per frame (the kernel's, into guest
//! memory) instead of two.
//!
//! A read is destructive and the frame's length is known only after it, so the read must offer
//! room for the longest frame the guest may get. The card therefore holds receive chains taken
//! from the ring but not yet used, enough for one longest frame, and tops them up before each
//! read; a frame uses the first few and the rest wait for the next frame. Held chains are always
//! the last ones taken from the ring, so they can be given back (the ring's position moved back)
//! whenever the copying path needs the ring: when the guest has posted too little room for a
//! longest frame, or a chain is unusable.
//!
//! Each held chain is kept as host addresses checked against guest memory when it was taken;
//! guest memory stays mapped for the card's life, so they stay valid even if the guest rewrites
//! the descriptors meanwhile (it then gets its frame where the descriptors said at the time).

use vm_memory::{GuestAddress, GuestMemoryBackend};

use super::{chain_too_long, DataPath, MAX_RX_CHAINS, MIN_FRAME};
use crate::net::header::VnetHeader;
use crate::net::NetStats;
use machine::memory::GuestMemory;
use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT};

/// The most guest buffers one read may be spread over: the kernel's UIO_MAXIOV (1024), less
/// one for the backend's header.
const MAX_SEGMENTS: usize = 1023;

/// A stretch of guest memory, as a host address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    addr: usize,
    len: usize,
}

/// A receive chain taken from the ring and not yet used.
#[derive(Debug)]
pub(crate) struct Held {
    head: u16,
    /// Its writable bytes.
    room: usize,
    /// How many of [`DataPath::held_segments`] are its own (they follow the previous chain's).
    segments: usize,
}

/// What one attempt at a direct receive came to.
pub(super) enum Direct {
    /// A frame of this length is in the guest's buffers.
    Delivered(usize),
    /// A frame came and was dropped (counted).
    Dropped,
    /// The backend has nothing now.
    Empty,
    /// The guest's buffers cannot take a longest frame, or the backend failed: the copying path
    /// must do this frame (the held chains are given back).
    Copy,
}

/// The writable part of `chain` as host segments, appended to `out`: its total length, or `None`
/// when a descriptor lies outside guest memory, the chain is too long, or it would take the
/// segments past [`MAX_SEGMENTS`].
fn chain_segments(
    mem: &GuestMemory,
    chain: &DescriptorChain<&GuestMemory>,
    out: &mut Vec<Segment>,
) -> Option<usize> {
    if chain_too_long(chain) {
        return None;
    }
    let start = out.len();
    let mut room = 0usize;
    let mut ok = true;
    for desc in chain.clone().writable() {
        let len = desc.len() as usize;
        for slice in GuestMemoryBackend::get_slices(mem, GuestAddress(desc.addr().0), len) {
            match slice {
                Ok(s) if out.len() < MAX_SEGMENTS => {
                    out.push(Segment { addr: s.ptr_guard_mut().as_ptr() as usize, len: s.len() });
                    room = room.saturating_add(s.len());
                }
                _ => ok = false,
            }
        }
    }
    if ok {
        Some(room)
    } else {
        out.truncate(start);
        None
    }
}

impl DataPath {
    /// The room a read must offer: the guest's header, the longest frame, and a byte to spare so
    /// that a frame too long shows.
    fn direct_room(&self) -> usize {
        self.hdr_len + self.rx_max + 1
    }

    /// Gives every held chain back to the ring, so that the copying path sees them.
    pub(super) fn release_held(&mut self) {
        for _ in 0..self.held.len() {
            self.rx.go_to_previous_position();
        }
        self.held.clear();
        self.held_segments.clear();
    }

    /// Takes chains from the ring until the held ones can take a longest frame; false when the
    /// ring runs out first or a chain is unusable (then the copying path must deal with it).
    fn top_up(&mut self) -> bool {
        let memory = self.memory.clone();
        let limit = if self.mergeable { MAX_RX_CHAINS } else { 1 };
        let want = self.direct_room();
        let mut room = self.held.iter().map(|h| h.room).fold(0usize, usize::saturating_add);
        while room < want {
            if self.held.len() >= limit {
                // The driver's buffers are too small for a longest frame in as many chains as
                // a frame may use; they will stay so (their size is the driver's choice).
                log::debug!("virtio-net: receive buffers too small to receive into directly; copying");
                self.scatter = false;
                return false;
            }
            let Some(chain) = self.rx.pop_descriptor_chain(&memory) else {
                return false;
            };
            let head = chain.head_index();
            let before = self.held_segments.len();
            let usable = chain_segments(&memory, &chain, &mut self.held_segments)
                // Any held chain may end up first, which must hold the whole header.
                .filter(|&r| r >= self.hdr_len);
            let Some(r) = usable else {
                // Hand it back with the rest: the copying path returns or skips it.
                self.held_segments.truncate(before);
                self.held.push(Held { head, room: 0, segments: 0 });
                return false;
            };
            self.held.push(Held { head, room: r, segments: self.held_segments.len() - before });
            room = room.saturating_add(r);
        }
        true
    }

    /// Receives one frame from the backend straight into the held chains.
    pub(super) fn receive_direct(&mut self) -> Direct {
        if !self.top_up() {
            self.release_held();
            return Direct::Copy;
        }
        // The read's buffers: the backend's header into `hdr_scratch`, then the guest's memory
        // past the room for the guest's header.
        let mut iov = Vec::with_capacity(self.held_segments.len() + 1);
        if self.backend_hdr > 0 {
            iov.push(libc::iovec {
                iov_base: self.hdr_scratch.as_mut_ptr().cast(),
                iov_len: self.backend_hdr,
            });
        }
        let mut skip = self.hdr_len;
        for s in &self.held_segments {
            let cut = skip.min(s.len);
            skip -= cut;
            if s.len > cut {
                iov.push(libc::iovec { iov_base: (s.addr + cut) as *mut libc::c_void, iov_len: s.len - cut });
            }
        }
        // SAFETY: each guest segment was checked to lie in guest memory, which `self.memory`
        // keeps mapped; the first points at `hdr_scratch`, not touched until the call returns.
        // Nothing holds a Rust reference to any of it meanwhile.
        let scatter = unsafe { ::net::Scatter::new(&iov) };
        let n = match self.backend.recv_scattered(&scatter) {
            Ok(Some(n)) => n,
            Ok(None) => return Direct::Empty,
            // The copying path reports it.
            Err(_) => {
                self.release_held();
                return Direct::Copy;
            }
        };
        let Some((header, len)) = self.received(self.hdr_scratch, n) else {
            return Direct::Dropped;
        };
        let limit = if header.is_gso() { ::net::MAX_GSO_FRAME } else { self.max_frame };
        if !(MIN_FRAME..=limit).contains(&len) {
            NetStats::add(&self.stats.rx_dropped, 1);
            return Direct::Dropped;
        }
        self.use_held(header, len);
        Direct::Delivered(len)
    }

    /// Returns the held chains a `len`-byte frame filled as used, with the guest's header in the
    /// first; the others stay held.
    fn use_held(&mut self, header: VnetHeader, len: usize) {
        let mut left = self.hdr_len + len;
        let mut chains = 0usize;
        let mut segments = 0usize;
        for h in &self.held {
            if left == 0 {
                break;
            }
            left = left.saturating_sub(h.room);
            chains += 1;
            segments += h.segments;
        }
        let num_buffers = u16::try_from(chains).unwrap_or(u16::MAX);
        self.write_guest_header(&header.to_bytes(num_buffers)[..self.hdr_len]);
        let mut left = self.hdr_len + len;
        let memory = self.memory.clone();
        for h in self.held.drain(..chains) {
            let written = left.min(h.room);
            left -= written;
            if let Err(e) = self.rx.add_used(&memory, h.head, u32::try_from(written).unwrap_or(0)) {
                log::warn!("virtio-net: cannot return receive buffer {}: {e}", h.head);
            }
        }
        self.held_segments.drain(..segments);
    }

    /// Writes `bytes` at the start of the first held chain (which has room for them).
    fn write_guest_header(&self, bytes: &[u8]) {
        let mut rest = bytes;
        for s in &self.held_segments {
            if rest.is_empty() {
                break;
            }
            let n = rest.len().min(s.len);
            // SAFETY: the segment lies in guest memory, mapped for the card's life, and `n` is
            // within its length; the source is our own array.
            unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), s.addr as *mut u8, n) };
            rest = &rest[n..];
        }
    }
}
