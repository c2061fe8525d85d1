//! The card's worker: moves frames between the two queues and the backend.
//!
//! One thread sleeps in epoll on the RX and TX queue eventfds, the backend's readiness fd and a
//! stop eventfd. When the guest has no receive buffer, the frame in hand is kept, the backend
//! fd is taken out of epoll and the RX queue's notifications are turned on: the thread sleeps
//! until the guest adds buffers, and the backend queues (or drops) meanwhile; a backend that does
//! its own work in `recv` (user mode runs libslirp's poll loop there) waits too, which is
//! harmless: its host sockets keep their data and push back on their senders. A backend that
//! fails to receive is left alone for a second before it is polled again, so a broken
//! interface costs neither CPU nor the VM.
//!
//! Everything in a chain comes from the guest: chain lengths, buffer sizes and headers are
//! checked, and a bad chain is returned (or dropped) and counted. With a backend that carries the
//! virtio-net header, the guest's header is checked and handed on in front of the frame, and the
//! backend's header is checked and handed to the guest; frames being segmented may then be up to
//! [`::net::MAX_GSO_FRAME`] long.
//!
//! Frames for the guest go straight into its buffers when the backend can scatter a read
//! ([`direct`]); otherwise, and whenever the guest's buffers are short, through `rx_frame`.

mod direct;

use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use machine::memory::GuestMemory;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::header::{self, VnetHeader};
use super::{features, NetStats, RX_QUEUE, TX_QUEUE};
use crate::{ActiveQueue, VirtioInterrupt};

/// The header with `num_buffers` (VERSION_1, or legacy with MRG_RXBUF).
pub(crate) const HDR_LEN_MODERN: usize = 12;
/// The legacy header without `num_buffers`.
pub(crate) const HDR_LEN_LEGACY: usize = 10;
/// The most descriptors one chain may have (Linux uses at most about 20).
const MAX_DESCRIPTORS: usize = 64;
/// The most receive chains one frame may be merged over.
const MAX_RX_CHAINS: usize = 64;
/// Frames moved per wake-up before the other direction gets a turn.
const BUDGET: usize = 256;
/// How long a backend that failed to receive is left alone.
const BACKEND_RETRY: Duration = Duration::from_secs(1);
/// The smallest frame: an Ethernet header.
const MIN_FRAME: usize = 14;

const TOKEN_RX: u64 = 0;
const TOKEN_TX: u64 = 1;
const TOKEN_BACKEND: u64 = 2;
const TOKEN_STOP: u64 = 3;

/// What became of one frame for the guest.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Delivered,
    Dropped,
    NoBuffers,
}

pub(crate) struct DataPath {
    memory: GuestMemory,
    interrupt: Arc<VirtioInterrupt>,
    rx: Queue,
    rx_event: EventFd,
    tx: Queue,
    tx_event: EventFd,
    backend: Box<dyn ::net::Backend>,
    /// The guest's header length (10 or 12).
    hdr_len: usize,
    /// The backend's header length: [`::net::VNET_HDR_LEN`], or 0 for bare frames.
    backend_hdr: usize,
    /// The offload features in force ([`header::effective_offloads`]; none without a backend
    /// header).
    offloads: u64,
    mergeable: bool,
    max_frame: usize,
    /// The longest frame the backend may hand over.
    rx_max: usize,
    stats: Arc<NetStats>,
    /// Whether frames are received straight into the guest's buffers ([`direct`]).
    scatter: bool,
    /// The receive chains held for that, and their memory.
    held: Vec<direct::Held>,
    held_segments: Vec<direct::Segment>,
    /// Where the backend's header lands on a direct receive.
    hdr_scratch: [u8; ::net::VNET_HDR_LEN],
    /// What the backend handed over (its header, then the frame); the frame of `pending` waits
    /// for a guest buffer, with the header the guest will see.
    rx_frame: Vec<u8>,
    pending: Option<(VnetHeader, usize)>,
    /// Room for the backend's header and the longest frame the guest may send.
    tx_frame: Vec<u8>,
    bad_headers: u64,
    starving: bool,
    retry_at: Option<Instant>,
    armed: bool,
    backend_errors: u64,
}

/// The number of descriptors in `chain`, counting at most `MAX_DESCRIPTORS + 1`.
fn chain_too_long(chain: &DescriptorChain<&GuestMemory>) -> bool {
    chain.clone().take(MAX_DESCRIPTORS + 1).count() > MAX_DESCRIPTORS
}

impl DataPath {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        memory: GuestMemory,
        interrupt: Arc<VirtioInterrupt>,
        rx: ActiveQueue,
        tx: ActiveQueue,
        backend: Box<dyn ::net::Backend>,
        acked_features: u64,
        max_frame: usize,
        stats: Arc<NetStats>,
    ) -> Self {
        let mergeable = acked_features & features::MRG_RXBUF != 0;
        let modern = acked_features & crate::features::VERSION_1 != 0;
        let hdr_len = if mergeable || modern { HDR_LEN_MODERN } else { HDR_LEN_LEGACY };
        let max_frame = max_frame.min(::net::MAX_FRAME);
        let (backend_hdr, offloads) = if backend.vnet_hdr() {
            (::net::VNET_HDR_LEN, header::effective_offloads(acked_features))
        } else {
            (0, 0)
        };
        let tx_max = if offloads & (features::HOST_TSO4 | features::HOST_TSO6) != 0 {
            ::net::MAX_GSO_FRAME
        } else {
            max_frame
        };
        let rx_max = if offloads & (features::GUEST_TSO4 | features::GUEST_TSO6) != 0 {
            ::net::MAX_GSO_FRAME
        } else {
            ::net::MAX_FRAME
        };
        let backend_can_scatter = backend.can_scatter();
        Self {
            memory,
            interrupt,
            rx: rx.queue,
            rx_event: rx.event,
            tx: tx.queue,
            tx_event: tx.event,
            backend,
            hdr_len,
            backend_hdr,
            offloads,
            mergeable,
            max_frame,
            rx_max,
            stats,
            scatter: backend_can_scatter,
            held: Vec::new(),
            held_segments: Vec::new(),
            hdr_scratch: [0; ::net::VNET_HDR_LEN],
            // One byte to spare, so that a frame too long shows.
            rx_frame: vec![0; backend_hdr + rx_max + 1],
            pending: None,
            tx_frame: vec![0; backend_hdr + tx_max],
            bad_headers: 0,
            starving: false,
            retry_at: None,
            armed: false,
            backend_errors: 0,
        }
    }

    /// The header length in use (10 or 12).
    #[cfg(test)]
    pub(crate) fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    pub(crate) fn into_backend(self) -> Box<dyn ::net::Backend> {
        self.backend
    }

    /// Serves the queues until `stop` is signalled.
    pub(crate) fn run(&mut self, stop: &EventFd) {
        let epoll = match self.setup_epoll(stop) {
            Ok(e) => e,
            Err(e) => {
                log::error!("virtio-net: cannot set up the worker's epoll: {e}; the card stays silent");
                return;
            }
        };
        // The driver may have queued frames before the device started.
        self.process_tx();
        self.process_rx();
        self.sync_backend_registration(&epoll);
        let mut ready = [EpollEvent::default(); 4];
        loop {
            let timeout = match self.retry_at {
                Some(at) => i32::try_from(at.saturating_duration_since(Instant::now()).as_millis())
                    .unwrap_or(i32::MAX)
                    .max(1),
                None => -1,
            };
            let n = match epoll.wait(timeout, &mut ready) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("virtio-net: epoll failed: {e}; the card stops");
                    return;
                }
            };
            if self.retry_at.is_some_and(|at| at <= Instant::now()) {
                self.retry_at = None;
                self.process_rx();
            }
            for ev in &ready[..n] {
                match ev.data() {
                    TOKEN_STOP => return,
                    TOKEN_RX => {
                        let _ = self.rx_event.read();
                        self.starving = false;
                        self.process_rx();
                    }
                    TOKEN_TX => {
                        let _ = self.tx_event.read();
                        self.process_tx();
                    }
                    TOKEN_BACKEND => self.process_rx(),
                    _ => {}
                }
            }
            self.sync_backend_registration(&epoll);
        }
    }

    fn setup_epoll(&self, stop: &EventFd) -> std::io::Result<Epoll> {
        let epoll = Epoll::new()?;
        for (fd, token) in [
            (self.rx_event.as_raw_fd(), TOKEN_RX),
            (self.tx_event.as_raw_fd(), TOKEN_TX),
            (stop.as_raw_fd(), TOKEN_STOP),
        ] {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, token))?;
        }
        Ok(epoll)
    }

    /// Watches the backend's fd exactly when a frame from it could be delivered.
    fn sync_backend_registration(&mut self, epoll: &Epoll) {
        let want = !self.starving && self.retry_at.is_none();
        if want == self.armed {
            return;
        }
        let fd: RawFd = self.backend.rx_fd();
        let result = if want {
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, TOKEN_BACKEND))
        } else {
            epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default())
        };
        match result {
            Ok(()) => self.armed = want,
            Err(e) => {
                log::error!("virtio-net: cannot watch {}: {e}; its frames wait", self.backend.describe());
                self.retry_at = Some(Instant::now() + BACKEND_RETRY);
            }
        }
    }

    /// Sends every frame the guest queued to the backend.
    pub(crate) fn process_tx(&mut self) {
        let memory = self.memory.clone();
        loop {
            if let Err(e) = self.tx.disable_notification(&memory) {
                log::warn!("virtio-net: the transmit queue's rings are unusable: {e}");
                return;
            }
            let mut served = 0usize;
            while let Some(chain) = self.tx.pop_descriptor_chain(&memory) {
                served += 1;
                let head = chain.head_index();
                self.transmit(chain);
                if let Err(e) = self.tx.add_used(&memory, head, 0) {
                    log::warn!("virtio-net: cannot return transmit buffer {head}: {e}");
                }
            }
            if served > 0 && crate::driver_wants_interrupt(&mut self.tx, &memory) {
                self.interrupt.signal_queue(TX_QUEUE);
            }
            // Loop only while the last pass made progress, so a corrupt index cannot spin us.
            match self.tx.enable_notification(&memory) {
                Ok(true) if served > 0 => continue,
                _ => return,
            }
        }
    }

    /// One frame from the guest: header, then the frame, possibly over several descriptors.
    fn transmit(&mut self, chain: DescriptorChain<&GuestMemory>) {
        if chain_too_long(&chain) {
            NetStats::add(&self.stats.tx_malformed, 1);
            return;
        }
        let Ok(mut reader) = Reader::new(&self.memory, chain) else {
            NetStats::add(&self.stats.tx_malformed, 1);
            return;
        };
        let total = reader.available_bytes();
        let Some(len) = total.checked_sub(self.hdr_len).filter(|&n| n >= MIN_FRAME) else {
            NetStats::add(&self.stats.tx_malformed, 1);
            return;
        };
        if len > self.tx_frame.len() - self.backend_hdr {
            NetStats::add(&self.stats.tx_oversized, 1);
            return;
        }
        let mut raw = [0u8; HDR_LEN_MODERN];
        if reader.read_exact(&mut raw[..self.hdr_len]).is_err() {
            NetStats::add(&self.stats.tx_malformed, 1);
            return;
        }
        let header =
            match VnetHeader::parse(&raw[..self.hdr_len]).check_tx(len, self.offloads, self.max_frame) {
                Ok(h) => h,
                Err(e) => {
                    NetStats::add(&self.stats.tx_malformed, 1);
                    self.note_bad_header("the guest sent", &e);
                    return;
                }
            };
        // Only a frame to be segmented may be longer than the MTU allows.
        if len > self.max_frame && !header.is_gso() {
            NetStats::add(&self.stats.tx_oversized, 1);
            return;
        }
        let wire = &mut self.tx_frame[..self.backend_hdr + len];
        if reader.read_exact(&mut wire[self.backend_hdr..]).is_err() {
            NetStats::add(&self.stats.tx_malformed, 1);
            return;
        }
        if self.backend_hdr > 0 {
            wire[..self.backend_hdr].copy_from_slice(&header.to_bytes(0)[..self.backend_hdr]);
        }
        match self.backend.send(wire) {
            Ok(()) => {
                NetStats::add(&self.stats.tx_frames, 1);
                NetStats::add(&self.stats.tx_bytes, len as u64);
            }
            Err(e) => {
                NetStats::add(&self.stats.tx_backend_errors, 1);
                self.backend_errors += 1;
                if self.backend_errors.is_power_of_two() {
                    log::warn!(
                        "virtio-net: {} cannot send ({e}); {} frames lost so far",
                        self.backend.describe(),
                        self.backend_errors
                    );
                }
            }
        }
    }

    /// Logs the first bad header and then every power of two of them.
    fn note_bad_header(&mut self, who: &str, e: &header::HeaderError) {
        self.bad_headers += 1;
        if self.bad_headers.is_power_of_two() {
            log::warn!(
                "virtio-net: {who} a frame with a bad header ({e}); dropped ({} so far)",
                self.bad_headers
            );
        }
    }

    /// The header and frame length of the `n` bytes the backend handed over, starting with
    /// `raw_header` (ignored for a backend without one), or `None` (counted) when its header
    /// asks for something the guest did not accept.
    fn received(&mut self, raw_header: [u8; ::net::VNET_HDR_LEN], n: usize) -> Option<(VnetHeader, usize)> {
        if self.backend_hdr == 0 {
            return Some((VnetHeader::default(), n));
        }
        let Some(len) = n.checked_sub(self.backend_hdr) else {
            NetStats::add(&self.stats.rx_dropped, 1);
            return None;
        };
        let raw = VnetHeader::parse(&raw_header[..self.backend_hdr]);
        match raw.check_rx(len, self.offloads) {
            Ok(h) => Some((h, len)),
            Err(e) => {
                NetStats::add(&self.stats.rx_dropped, 1);
                let who = format!("{} handed over", self.backend.describe());
                self.note_bad_header(&who, &e);
                None
            }
        }
    }

    /// Moves frames from the backend into the guest's receive buffers while both have some.
    pub(crate) fn process_rx(&mut self) {
        let mut delivered = 0usize;
        for _ in 0..BUDGET {
            if self.pending.is_none() && self.scatter {
                match self.receive_direct() {
                    direct::Direct::Delivered(len) => {
                        delivered += 1;
                        NetStats::add(&self.stats.rx_frames, 1);
                        NetStats::add(&self.stats.rx_bytes, len as u64);
                        continue;
                    }
                    direct::Direct::Dropped => continue,
                    direct::Direct::Empty => break,
                    direct::Direct::Copy => {}
                }
            }
            let (header, len) = match self.pending.take() {
                Some(p) => p,
                None => match self.backend.recv(&mut self.rx_frame) {
                    Ok(Some(n)) => {
                        // `rx_frame` is always longer than a header.
                        let raw = self.rx_frame[..::net::VNET_HDR_LEN].try_into().unwrap_or_default();
                        match self.received(raw, n) {
                            Some(p) => p,
                            None => continue,
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        NetStats::add(&self.stats.rx_backend_errors, 1);
                        self.backend_errors += 1;
                        if self.backend_errors.is_power_of_two() {
                            log::error!(
                                "virtio-net: {} cannot receive ({e}); retrying in a second",
                                self.backend.describe()
                            );
                        }
                        self.retry_at = Some(Instant::now() + BACKEND_RETRY);
                        break;
                    }
                },
            };
            let limit = if header.is_gso() { ::net::MAX_GSO_FRAME } else { self.max_frame };
            if !(MIN_FRAME..=limit).contains(&len) {
                NetStats::add(&self.stats.rx_dropped, 1);
                continue;
            }
            match self.deliver(header, len) {
                Delivery::Delivered => {
                    delivered += 1;
                    NetStats::add(&self.stats.rx_frames, 1);
                    NetStats::add(&self.stats.rx_bytes, len as u64);
                }
                Delivery::Dropped => NetStats::add(&self.stats.rx_dropped, 1),
                Delivery::NoBuffers => {
                    self.pending = Some((header, len));
                    // Ask for a kick when buffers come; if some came meanwhile, go on.
                    match self.rx.enable_notification(&self.memory) {
                        Ok(true) => continue,
                        _ => {
                            self.starving = true;
                            break;
                        }
                    }
                }
            }
        }
        if delivered > 0 && crate::driver_wants_interrupt(&mut self.rx, &self.memory) {
            self.interrupt.signal_queue(RX_QUEUE);
        }
    }

    /// Puts `header` and the `len`-byte frame in `rx_frame` into the guest's receive buffers.
    fn deliver(&mut self, header: VnetHeader, len: usize) -> Delivery {
        let mem = &self.memory;
        let total = self.hdr_len + len;
        let limit = if self.mergeable { MAX_RX_CHAINS } else { 1 };
        let mut chains: Vec<(u16, DescriptorChain<&GuestMemory>, usize)> = Vec::new();
        let mut capacity = 0usize;
        while capacity < total && chains.len() < limit {
            let Some(chain) = self.rx.pop_descriptor_chain(mem) else {
                // Put back what was taken: the frame waits for more buffers.
                for _ in 0..chains.len() {
                    self.rx.go_to_previous_position();
                }
                return Delivery::NoBuffers;
            };
            let head = chain.head_index();
            let room = if chain_too_long(&chain) {
                0
            } else {
                Writer::new(mem, chain.clone()).map(|w| w.available_bytes()).unwrap_or(0)
            };
            // The spec has every receive buffer hold at least the header; a smaller one
            // (or an unusable one) is returned empty and counted.
            if room < self.hdr_len {
                NetStats::add(&self.stats.rx_bad_buffers, 1);
                if chains.is_empty() {
                    if let Err(e) = self.rx.add_used(mem, head, 0) {
                        log::warn!("virtio-net: cannot return receive buffer {head}: {e}");
                    }
                    continue;
                }
                // Leave it for the next frame and make do with the buffers in hand.
                self.rx.go_to_previous_position();
                break;
            }
            capacity = capacity.saturating_add(room);
            chains.push((head, chain, room));
        }
        if capacity < total {
            // The frame does not fit: give back all but the first buffer, and return the first
            // with an empty frame, which the driver counts as a length error and recycles.
            for _ in 1..chains.len() {
                self.rx.go_to_previous_position();
            }
            if let Some((head, chain, _)) = chains.into_iter().next() {
                let used = self.write_header(chain, 1).unwrap_or(0);
                if let Err(e) = self.rx.add_used(mem, head, used as u32) {
                    log::warn!("virtio-net: cannot return receive buffer {head}: {e}");
                }
            }
            return Delivery::Dropped;
        }

        let num_buffers = u16::try_from(chains.len()).unwrap_or(u16::MAX);
        let mut data = &self.rx_frame[self.backend_hdr..self.backend_hdr + len];
        let mut used = Vec::with_capacity(chains.len());
        for (i, (head, chain, room)) in chains.into_iter().enumerate() {
            let Ok(mut w) = Writer::new(mem, chain) else {
                used.push((head, 0));
                continue;
            };
            let mut written = 0usize;
            if i == 0 {
                let header = header.to_bytes(num_buffers);
                if w.write_all(&header[..self.hdr_len]).is_ok() {
                    written = self.hdr_len;
                }
            }
            let n = room.saturating_sub(written).min(data.len());
            if w.write_all(&data[..n]).is_ok() {
                written += n;
            }
            data = &data[n..];
            used.push((head, written));
        }
        for (head, written) in used {
            if let Err(e) = self.rx.add_used(mem, head, u32::try_from(written).unwrap_or(0)) {
                log::warn!("virtio-net: cannot return receive buffer {head}: {e}");
            }
        }
        Delivery::Delivered
    }

    /// Writes a header announcing `num_buffers` buffers and returns its length.
    fn write_header(&self, chain: DescriptorChain<&GuestMemory>, num_buffers: u16) -> Option<usize> {
        let mut w = Writer::new(&self.memory, chain).ok()?;
        let header = VnetHeader::default().to_bytes(num_buffers);
        let n = self.hdr_len.min(w.available_bytes());
        w.write_all(&header[..n]).ok()?;
        Some(n)
    }
}
