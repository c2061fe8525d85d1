//! The RX/TX paths over real guest memory with hand-built descriptor chains and a mock backend.

use std::collections::VecDeque;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use machine::irq::IrqLine;
use machine::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::datapath::{DataPath, HDR_LEN_LEGACY, HDR_LEN_MODERN};
use super::*;
use crate::interrupt::tests::Recorder;
use crate::{ActiveQueue, VirtioInterrupt};

const MEM_SIZE: usize = 0x20_0000;
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x4000;
const SIZE: u16 = 64;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

/// Frames in both directions, shared between the test and the backend the worker owns.
#[derive(Default)]
struct Wire {
    sent: Vec<Vec<u8>>,
    inbound: VecDeque<Vec<u8>>,
    refuse: bool,
    /// What the card last told the backend about the guest's offloads.
    offloads: Option<::net::GuestOffloads>,
    /// Frames handed over straight into guest memory.
    scattered: usize,
}

struct MockBackend {
    wire: Arc<Mutex<Wire>>,
    ready: EventFd,
    /// Frames carry a 12-byte virtio-net header, as on a tap with IFF_VNET_HDR.
    vnet_hdr: bool,
    /// Frames can be received straight into guest memory, as on a tap.
    scatter: bool,
}

impl ::net::Backend for MockBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut w = self.wire.lock().unwrap();
        if w.refuse {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        w.sent.push(frame.to_vec());
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let Some(f) = self.wire.lock().unwrap().inbound.pop_front() else {
                let _ = self.ready.read();
                return Ok(None);
            };
            // As the tap: a frame that does not fit with a byte to spare is dropped.
            if f.len() < buf.len() {
                buf[..f.len()].copy_from_slice(&f);
                return Ok(Some(f.len()));
            }
        }
    }
    fn can_scatter(&self) -> bool {
        self.scatter
    }
    fn recv_scattered(&mut self, into: &::net::Scatter<'_>) -> io::Result<Option<usize>> {
        assert!(self.scatter, "recv_scattered on a backend that said it cannot");
        loop {
            let Some(f) = self.wire.lock().unwrap().inbound.pop_front() else {
                let _ = self.ready.read();
                return Ok(None);
            };
            if f.len() >= into.len() {
                continue;
            }
            self.wire.lock().unwrap().scattered += 1;
            let mut rest = &f[..];
            for v in into.iovecs() {
                let n = rest.len().min(v.iov_len);
                // SAFETY: `Scatter` promises each buffer is writable for its length.
                unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), v.iov_base.cast::<u8>(), n) };
                rest = &rest[n..];
            }
            return Ok(Some(f.len()));
        }
    }
    fn rx_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }
    fn describe(&self) -> String {
        "mock".into()
    }
    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
    fn set_guest_offloads(&mut self, offloads: ::net::GuestOffloads) -> io::Result<()> {
        self.wire.lock().unwrap().offloads = Some(offloads);
        Ok(())
    }
}

/// A split ring written the way a driver writes it.
struct Ring {
    base: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl Ring {
    fn desc(&self) -> u64 {
        self.base
    }
    fn avail(&self) -> u64 {
        self.base + 16 * u64::from(SIZE)
    }
    fn used(&self) -> u64 {
        self.base + 0x1000
    }

    fn queue(&self, mem: &GuestMemory) -> Queue {
        let mut q = Queue::new(SIZE).unwrap();
        q.set_desc_table_address(Some(self.desc() as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail() as u32), Some(0));
        q.set_used_ring_address(Some(self.used() as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(mem));
        q
    }

    fn write_desc(&self, mem: &GuestMemory, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.desc() + 16 * u64::from(index);
        mem.write_obj(addr, GuestAddress(at)).unwrap();
        mem.write_obj(len, GuestAddress(at + 8)).unwrap();
        mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
        mem.write_obj(next, GuestAddress(at + 14)).unwrap();
    }

    fn publish(&mut self, mem: &GuestMemory, head: u16) {
        let slot = u64::from(self.avail_idx % SIZE);
        mem.write_obj(head, GuestAddress(self.avail() + 4 + 2 * slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail() + 2)).unwrap();
    }

    fn add(&mut self, mem: &GuestMemory, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let index = (head + i as u16) % SIZE;
            let last = i + 1 == bufs.len();
            let flags = if write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.write_desc(mem, index, addr, len, flags, (index + 1) % SIZE);
        }
        self.next_desc = (head + bufs.len() as u16) % SIZE;
        self.publish(mem, head);
        head
    }

    fn used_idx(&self, mem: &GuestMemory) -> u16 {
        mem.read_obj(GuestAddress(self.used() + 2)).unwrap()
    }

    fn used_elem(&self, mem: &GuestMemory, i: u16) -> (u32, u32) {
        let at = self.used() + 4 + 8 * u64::from(i % SIZE);
        (mem.read_obj(GuestAddress(at)).unwrap(), mem.read_obj(GuestAddress(at + 4)).unwrap())
    }
}

struct Harness {
    mem: GuestMemory,
    wire: Arc<Mutex<Wire>>,
    rec: Arc<Recorder>,
    rx: Ring,
    tx: Ring,
    stats: Arc<NetStats>,
    path: DataPath,
}

impl Harness {
    fn new(acked: u64, mtu: u16) -> Self {
        Self::with_backend(acked, mtu, false)
    }

    /// A card on a backend that carries the virtio-net header when `vnet_hdr`.
    fn with_backend(acked: u64, mtu: u16, vnet_hdr: bool) -> Self {
        Self::with_scatter(acked, mtu, vnet_hdr, false)
    }

    /// As [`Self::with_backend`], on a backend that receives straight into guest memory when
    /// `scatter`.
    fn with_scatter(acked: u64, mtu: u16, vnet_hdr: bool, scatter: bool) -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let wire = Arc::new(Mutex::new(Wire::default()));
        let backend =
            MockBackend { wire: wire.clone(), ready: EventFd::new(EFD_NONBLOCK).unwrap(), vnet_hdr, scatter };
        let rec = Arc::new(Recorder::default());
        let interrupt = Arc::new(VirtioInterrupt::new(IrqLine::new(rec.clone(), 11), rec.clone(), 2, 3));
        let rx = Ring { base: RX_RING, next_desc: 0, avail_idx: 0 };
        let tx = Ring { base: TX_RING, next_desc: 0, avail_idx: 0 };
        let stats = Arc::new(NetStats::default());
        let path = DataPath::new(
            mem.clone(),
            interrupt,
            ActiveQueue { index: 0, queue: rx.queue(&mem), event: EventFd::new(EFD_NONBLOCK).unwrap() },
            ActiveQueue { index: 1, queue: tx.queue(&mem), event: EventFd::new(EFD_NONBLOCK).unwrap() },
            Box::new(backend),
            acked,
            usize::from(mtu) + 22,
            stats.clone(),
        );
        Self { mem, wire, rec, rx, tx, stats, path }
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn read(&self, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    fn inbound(&self, frame: Vec<u8>) {
        self.wire.lock().unwrap().inbound.push_back(frame);
    }

    fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

const MODERN: u64 = crate::features::VERSION_1 | features::MRG_RXBUF;

#[test]
fn transmit_modern_and_legacy_headers() {
    for (acked, hdr) in [(MODERN, HDR_LEN_MODERN), (crate::features::VERSION_1, 12), (0, HDR_LEN_LEGACY)] {
        let mut h = Harness::new(acked, 1500);
        assert_eq!(h.path.hdr_len(), hdr);
        let frame = Harness::frame(98, 1);
        // Header and the frame's first bytes share a descriptor; the rest follows in another.
        let mut buf = vec![0u8; hdr];
        buf.extend_from_slice(&frame);
        h.mem.write_slice(&buf, GuestAddress(0x10000)).unwrap();
        h.tx.add(&h.mem, &[(0x10000, (hdr + 20) as u32, false), (0x10000 + hdr as u64 + 20, 78, false)]);
        h.path.process_tx();
        assert_eq!(h.wire.lock().unwrap().sent, vec![frame], "header length {hdr}");
        assert_eq!(h.tx.used_idx(&h.mem), 1);
        assert_eq!(h.tx.used_elem(&h.mem, 0), (0, 0));
        assert_eq!(Harness::count(&h.stats.tx_frames), 1);
        assert_eq!(h.rec.take_levels(), vec![(11, true)]);
    }
}

#[test]
fn hostile_transmit_chains_are_dropped_and_counted() {
    let mut h = Harness::new(MODERN, 1500);
    let max = 1500 + 22;
    // Oversized: header + max + 1 bytes.
    h.tx.add(&h.mem, &[(0x10000, (12 + max + 1) as u32, false)]);
    // Truncated: shorter than a header plus an Ethernet header.
    h.tx.add(&h.mem, &[(0x10000, 20, false)]);
    // An offload request that was never offered.
    h.mem.write_obj(1u8, GuestAddress(0x20000)).unwrap();
    h.tx.add(&h.mem, &[(0x20000, 12 + 60, false)]);
    // A buffer outside guest RAM, and a 4 GiB length.
    h.tx.add(&h.mem, &[(MEM_SIZE as u64 - 8, 100, false)]);
    h.tx.add(&h.mem, &[(0x10000, u32::MAX, false)]);
    // Only device-writable buffers: nothing to send.
    h.tx.add(&h.mem, &[(0x10000, 100, true)]);
    // A chain that loops on itself.
    let d = h.tx.next_desc;
    h.tx.write_desc(&h.mem, d, 0x10000, 40, F_NEXT, d + 1);
    h.tx.write_desc(&h.mem, d + 1, 0x10000, 40, F_NEXT, d);
    h.tx.publish(&h.mem, d);
    // A head past the table.
    h.tx.publish(&h.mem, SIZE + 5);
    h.path.process_tx();
    assert!(h.wire.lock().unwrap().sent.is_empty());
    assert_eq!(Harness::count(&h.stats.tx_oversized), 2, "the 4 GiB one counts as oversized");
    assert!(Harness::count(&h.stats.tx_malformed) >= 4);
    assert_eq!(h.tx.used_idx(&h.mem), 7, "every chain with a valid head is returned");

    // The backend refusing a frame costs that frame only.
    h.wire.lock().unwrap().refuse = true;
    h.mem.write_obj(0u8, GuestAddress(0x20000)).unwrap();
    h.tx.add(&h.mem, &[(0x20000, 12 + 60, false)]);
    h.path.process_tx();
    assert_eq!(Harness::count(&h.stats.tx_backend_errors), 1);
    assert_eq!(h.tx.used_idx(&h.mem), 8);
}

#[test]
fn receive_modern_and_legacy_headers() {
    for (acked, hdr) in [(MODERN, 12usize), (0, 10)] {
        let mut h = Harness::new(acked, 1500);
        h.mem.write_slice(&[0xee; 64], GuestAddress(0x30000)).unwrap();
        h.rx.add(&h.mem, &[(0x30000, 2048, true)]);
        let frame = Harness::frame(100, 7);
        h.inbound(frame.clone());
        h.path.process_rx();
        assert_eq!(h.rx.used_elem(&h.mem, 0), (0, (hdr + 100) as u32));
        let mut want_hdr = vec![0u8; hdr];
        if hdr == 12 {
            want_hdr[10] = 1; // num_buffers
        }
        assert_eq!(h.read(0x30000, hdr), want_hdr);
        assert_eq!(h.read(0x30000 + hdr as u64, 100), frame);
        assert_eq!(Harness::count(&h.stats.rx_frames), 1);
        assert_eq!(h.rec.take_levels(), vec![(11, true)]);
    }
}

#[test]
fn jumbo_frames_merge_over_several_buffers() {
    let mut h = Harness::new(MODERN, 9000);
    for i in 0..8u64 {
        h.rx.add(&h.mem, &[(0x40000 + i * 0x1000, 1536, true)]);
    }
    let frame = Harness::frame(9014, 3);
    h.inbound(frame.clone());
    h.path.process_rx();
    // 12 + 9014 bytes over 1536-byte buffers: 6 buffers.
    assert_eq!(h.rx.used_idx(&h.mem), 6);
    assert_eq!(h.read(0x40000 + 10, 2), vec![6, 0], "num_buffers");
    let mut got = Vec::new();
    for i in 0..6u16 {
        let (id, len) = h.rx.used_elem(&h.mem, i);
        assert_eq!(id, u32::from(i));
        let start = if i == 0 { 12 } else { 0 };
        got.extend(h.read(0x40000 + u64::from(i) * 0x1000 + start, len as usize - start as usize));
    }
    assert_eq!(got, frame);
}

#[test]
fn big_packet_chain_for_legacy_drivers() {
    // A legacy driver without mergeable buffers posts a header descriptor and big pages.
    let mut h = Harness::new(0, 9000);
    h.rx.add(
        &h.mem,
        &[(0x30000, 10, true), (0x40000, 4096, true), (0x50000, 4096, true), (0x60000, 4096, true)],
    );
    let frame = Harness::frame(9000, 9);
    h.inbound(frame.clone());
    h.path.process_rx();
    assert_eq!(h.rx.used_elem(&h.mem, 0), (0, 9010));
    let mut got = h.read(0x40000, 4096);
    got.extend(h.read(0x50000, 4096));
    got.extend(h.read(0x60000, 808));
    assert_eq!(got, frame);
}

#[test]
fn no_buffers_keeps_the_frame_until_the_guest_adds_some() {
    let mut h = Harness::new(MODERN, 1500);
    h.inbound(Harness::frame(60, 1));
    h.inbound(Harness::frame(61, 2));
    h.path.process_rx();
    assert_eq!(h.rx.used_idx(&h.mem), 0);
    assert_eq!(Harness::count(&h.stats.rx_dropped), 0);
    assert_eq!(h.wire.lock().unwrap().inbound.len(), 1, "one frame in hand, the other still queued");
    // A mergeable frame that needs two buffers when only one is there waits too.
    h.rx.add(&h.mem, &[(0x30000, 2048, true)]);
    h.path.process_rx();
    assert_eq!(h.rx.used_idx(&h.mem), 1);
    assert_eq!(h.read(0x30000 + 12, 60), Harness::frame(60, 1));
    h.rx.add(&h.mem, &[(0x38000, 2048, true)]);
    h.path.process_rx();
    assert_eq!(h.rx.used_idx(&h.mem), 2);
    assert_eq!(h.read(0x38000 + 12, 61), Harness::frame(61, 2));
    assert_eq!(Harness::count(&h.stats.rx_frames), 2);
}

#[test]
fn split_frame_waits_when_buffers_run_out_midway() {
    let mut h = Harness::new(MODERN, 9000);
    h.rx.add(&h.mem, &[(0x40000, 1536, true)]);
    h.inbound(Harness::frame(3000, 5));
    h.path.process_rx();
    assert_eq!(h.rx.used_idx(&h.mem), 0, "the first buffer is given back, not used");
    h.rx.add(&h.mem, &[(0x41000, 1536, true)]);
    h.path.process_rx();
    assert_eq!(h.rx.used_idx(&h.mem), 2);
    let mut got = h.read(0x40000 + 12, 1524);
    got.extend(h.read(0x41000, 3000 - 1524));
    assert_eq!(got, Harness::frame(3000, 5));
}

#[test]
fn frames_that_cannot_fit_are_dropped_and_counted() {
    // Legacy, no merging: a 64-byte buffer cannot take a 100-byte frame.
    let mut h = Harness::new(0, 1500);
    h.rx.add(&h.mem, &[(0x30000, 64, true)]);
    h.inbound(Harness::frame(100, 1));
    // An oversized and a runt frame from the backend.
    h.inbound(Harness::frame(1500 + 23, 1));
    h.inbound(Harness::frame(10, 1));
    h.path.process_rx();
    assert_eq!(Harness::count(&h.stats.rx_dropped), 3);
    assert_eq!(h.rx.used_elem(&h.mem, 0), (0, 10), "returned with an empty frame");

    // Unusable receive buffers: read-only, outside RAM; skipped, the frame lands in the next.
    let mut h = Harness::new(MODERN, 1500);
    h.rx.add(&h.mem, &[(0x30000, 2048, false)]);
    h.rx.add(&h.mem, &[(MEM_SIZE as u64, 2048, true)]);
    h.rx.add(&h.mem, &[(0x30000, 2048, true)]);
    h.inbound(Harness::frame(80, 4));
    h.path.process_rx();
    assert_eq!(Harness::count(&h.stats.rx_bad_buffers), 2);
    assert_eq!(h.rx.used_idx(&h.mem), 3);
    assert_eq!(h.rx.used_elem(&h.mem, 2), (2, 92));

    // 64 one-byte mergeable buffers, each smaller than the header (against the spec): returned
    // empty and counted, not spun on; the frame waits for proper buffers.
    let mut h = Harness::new(MODERN, 1500);
    for i in 0..64u64 {
        h.rx.add(&h.mem, &[(0x30000 + i, 1, true)]);
    }
    h.inbound(Harness::frame(200, 4));
    h.path.process_rx();
    assert_eq!(Harness::count(&h.stats.rx_bad_buffers), 64);
    assert_eq!(h.rx.used_idx(&h.mem), 64);
    assert_eq!(h.rx.used_elem(&h.mem, 63), (63, 0));
    h.rx.add(&h.mem, &[(0x40000, 2048, true)]);
    h.path.process_rx();
    assert_eq!(h.rx.used_elem(&h.mem, 64), (0, 212), "the frame in the first proper buffer");
    assert_eq!(Harness::count(&h.stats.rx_dropped), 0);
}

#[test]
fn configuration_space_and_features() {
    let wire = Arc::new(Mutex::new(Wire::default()));
    let backend =
        MockBackend { wire, ready: EventFd::new(EFD_NONBLOCK).unwrap(), vnet_hdr: false, scatter: false };
    let n = Net::new(Box::new(backend), [0x52, 0x54, 0, 1, 2, 3], 9000);
    assert_eq!(n.device_type(), crate::device_type::NET);
    let f = n.features();
    assert_ne!(f & features::MAC, 0);
    assert_ne!(f & features::STATUS, 0);
    assert_ne!(f & features::MTU, 0);
    assert_ne!(f & features::MRG_RXBUF, 0);
    assert_eq!(f & 0b111, 0, "no checksum offloads");
    let mut cfg = [0u8; 12];
    n.read_config(0, &mut cfg);
    assert_eq!(&cfg[..6], &[0x52, 0x54, 0, 1, 2, 3]);
    assert_eq!(u16::from_le_bytes([cfg[6], cfg[7]]), 1, "link up");
    assert_eq!(u16::from_le_bytes([cfg[10], cfg[11]]), 9000);
    let mut past = [0xffu8; 4];
    n.read_config(u64::MAX - 1, &mut past);
    assert_eq!(past, [0; 4]);
    assert_eq!(
        Net::new(Box::new(::net::NullBackend::new().unwrap()), [2, 0, 0, 0, 0, 1], 60000).max_frame(),
        9022
    );
}

#[test]
fn activated_card_echoes_through_its_worker_thread() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let wire = Arc::new(Mutex::new(Wire::default()));
    let ready = EventFd::new(EFD_NONBLOCK).unwrap();
    let backend = MockBackend {
        wire: wire.clone(),
        ready: ready.try_clone().unwrap(),
        vnet_hdr: false,
        scatter: false,
    };
    let rec = Arc::new(Recorder::default());
    let interrupt = Arc::new(VirtioInterrupt::new(IrqLine::new(rec.clone(), 11), rec.clone(), 2, 3));
    let mut rx = Ring { base: RX_RING, next_desc: 0, avail_idx: 0 };
    let mut tx = Ring { base: TX_RING, next_desc: 0, avail_idx: 0 };
    let rx_kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let tx_kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut card = Net::new(Box::new(backend), [2, 0, 0, 0, 0, 1], 1500);
    card.activate(Activation {
        memory: mem.clone(),
        interrupt,
        queues: vec![
            ActiveQueue { index: 0, queue: rx.queue(&mem), event: rx_kick.try_clone().unwrap() },
            ActiveQueue { index: 1, queue: tx.queue(&mem), event: tx_kick.try_clone().unwrap() },
        ],
        acked_features: MODERN,
    })
    .unwrap();
    // A frame arrives before the guest has buffers; then the guest posts one and kicks.
    wire.lock().unwrap().inbound.push_back(Harness::frame(70, 8));
    ready.write(1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    rx.add(&mem, &[(0x30000, 2048, true)]);
    rx_kick.write(1).unwrap();
    // The guest sends one frame.
    let mut buf = vec![0u8; 12];
    buf.extend(Harness::frame(60, 2));
    mem.write_slice(&buf, GuestAddress(0x50000)).unwrap();
    tx.add(&mem, &[(0x50000, 72, false)]);
    tx_kick.write(1).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while (rx.used_idx(&mem) < 1 || wire.lock().unwrap().sent.is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    card.reset();
    assert_eq!(rx.used_elem(&mem, 0), (0, 82));
    let mut got = vec![0u8; 70];
    mem.read_slice(&mut got, GuestAddress(0x30000 + 12)).unwrap();
    assert_eq!(got, Harness::frame(70, 8));
    assert_eq!(wire.lock().unwrap().sent, vec![Harness::frame(60, 2)]);
    let stats = card.stats();
    assert_eq!(stats.rx_frames.load(Ordering::Relaxed), 1);
    assert_eq!(stats.tx_frames.load(Ordering::Relaxed), 1);
}

/// A DHCP DISCOVER from 52:54:00:12:34:56, as a guest sends it.
fn dhcp_discover() -> Vec<u8> {
    let mut bootp = vec![0u8; 236];
    bootp[..3].copy_from_slice(&[1, 1, 6]);
    bootp[4..8].copy_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
    bootp[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    bootp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
    let udp_len = (8 + bootp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0, 68, 0, 67]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&bootp);
    f
}

#[test]
fn guest_gets_a_dhcp_offer_through_the_card_and_slirp() {
    let spec: ::net::NetSpec = "user,ipv6=off".parse().unwrap();
    for (acked, hdr) in [(MODERN, 12usize), (0, 10)] {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let rec = Arc::new(Recorder::default());
        let interrupt = Arc::new(VirtioInterrupt::new(IrqLine::new(rec.clone(), 11), rec.clone(), 2, 3));
        let mut rx = Ring { base: RX_RING, next_desc: 0, avail_idx: 0 };
        let mut tx = Ring { base: TX_RING, next_desc: 0, avail_idx: 0 };
        let (rx_kick, tx_kick) = (EventFd::new(EFD_NONBLOCK).unwrap(), EventFd::new(EFD_NONBLOCK).unwrap());
        let mut card = Net::new(::net::open(&spec).unwrap(), spec.mac_for(0), spec.mtu);
        card.activate(Activation {
            memory: mem.clone(),
            interrupt,
            queues: vec![
                ActiveQueue { index: 0, queue: rx.queue(&mem), event: rx_kick.try_clone().unwrap() },
                ActiveQueue { index: 1, queue: tx.queue(&mem), event: tx_kick.try_clone().unwrap() },
            ],
            acked_features: acked,
        })
        .unwrap();
        for i in 0..4u64 {
            rx.add(&mem, &[(0x30000 + i * 0x1000, 2048, true)]);
        }
        rx_kick.write(1).unwrap();
        let mut buf = vec![0u8; hdr];
        buf.extend(dhcp_discover());
        mem.write_slice(&buf, GuestAddress(0x50000)).unwrap();
        tx.add(&mem, &[(0x50000, buf.len() as u32, false)]);
        tx_kick.write(1).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut offer = None;
        'wait: while std::time::Instant::now() < deadline {
            for i in 0..rx.used_idx(&mem) {
                let (id, len) = rx.used_elem(&mem, i);
                let mut f = vec![0u8; len as usize];
                mem.read_slice(&mut f, GuestAddress(0x30000 + u64::from(id) * 0x1000)).unwrap();
                // UDP to port 68 behind a header of `hdr` bytes.
                if f.len() > hdr + 42 + 20 && f[hdr + 23] == 17 && f[hdr + 36..hdr + 38] == [0, 68] {
                    offer = Some(f[hdr..].to_vec());
                    break 'wait;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        card.reset();
        let offer = offer.expect("a DHCP answer through the card");
        assert_eq!(&offer[42 + 16..42 + 20], &[10, 0, 2, 15], "yiaddr, header length {hdr}");
        assert_eq!(card.stats().tx_frames.load(Ordering::Relaxed), 1);
    }
}

/// Offloads a Linux guest accepts on a card that offers them all.
const OFFLOADS: u64 = features::CSUM
    | features::GUEST_CSUM
    | features::GUEST_TSO4
    | features::GUEST_TSO6
    | features::GUEST_ECN
    | features::HOST_TSO4
    | features::HOST_TSO6
    | features::HOST_ECN;

/// A header as `struct virtio_net_hdr_v1` lays it out.
fn vnet_header(
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum: (u16, u16),
    num_buffers: u16,
) -> Vec<u8> {
    let mut h = vec![flags, gso_type];
    for v in [hdr_len, gso_size, csum.0, csum.1, num_buffers] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// The guest queues `header` + `frame` as one transmit buffer, the `slot`th of 64 KiB + 4 KiB
/// from 0x80000.
fn queue_tx(h: &mut Harness, slot: u64, header: &[u8], frame: &[u8]) {
    let mut buf = header.to_vec();
    buf.extend_from_slice(frame);
    let at = 0x8_0000 + slot * 0x1_1000;
    h.mem.write_slice(&buf, GuestAddress(at)).unwrap();
    h.tx.add(&h.mem, &[(at, buf.len() as u32, false)]);
}

#[test]
fn offloads_are_offered_and_passed_on_only_with_a_header_carrying_backend() {
    for vnet_hdr in [false, true] {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let backend = MockBackend {
            wire: wire.clone(),
            ready: EventFd::new(EFD_NONBLOCK).unwrap(),
            vnet_hdr,
            scatter: false,
        };
        let mut card = Net::new(Box::new(backend), [2, 0, 0, 0, 0, 1], 1500);
        let offered = card.features() & OFFLOADS;
        assert_eq!(offered, if vnet_hdr { OFFLOADS } else { 0 }, "vnet header {vnet_hdr}");
        // Linux's set, then a driver that takes segmentation without checksum offload.
        for (acked, want) in [
            (MODERN | OFFLOADS, ::net::GuestOffloads { csum: true, tso4: true, tso6: true, tso_ecn: true }),
            (MODERN | features::GUEST_TSO4 | features::GUEST_ECN, ::net::GuestOffloads::default()),
        ] {
            let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
            let rec = Arc::new(Recorder::default());
            let interrupt = Arc::new(VirtioInterrupt::new(IrqLine::new(rec.clone(), 11), rec, 2, 3));
            let (rx, tx) = (
                Ring { base: RX_RING, next_desc: 0, avail_idx: 0 },
                Ring { base: TX_RING, next_desc: 0, avail_idx: 0 },
            );
            card.activate(Activation {
                memory: mem.clone(),
                interrupt,
                queues: vec![
                    ActiveQueue {
                        index: 0,
                        queue: rx.queue(&mem),
                        event: EventFd::new(EFD_NONBLOCK).unwrap(),
                    },
                    ActiveQueue {
                        index: 1,
                        queue: tx.queue(&mem),
                        event: EventFd::new(EFD_NONBLOCK).unwrap(),
                    },
                ],
                acked_features: acked & card.features(),
            })
            .unwrap();
            let told = wire.lock().unwrap().offloads;
            assert_eq!(told, vnet_hdr.then_some(want), "acked {acked:#x}");
            card.reset();
            let told = wire.lock().unwrap().offloads;
            assert_eq!(told, vnet_hdr.then_some(::net::GuestOffloads::default()), "after reset, none");
        }
    }
}

#[test]
fn transmit_passes_the_guests_header_to_the_backend() {
    // A 64 KiB TCP/IPv4 segment to be split at 1448 bytes, its checksum still to do.
    let gso = vnet_header(1, 1, 66, 1448, (34, 16), 0);
    let big = Harness::frame(::net::MAX_GSO_FRAME - 8, 1);
    // A small frame with only its checksum to do, and a complete one.
    let csum = vnet_header(1, 0, 0, 0, (34, 6), 0);
    let small = Harness::frame(100, 2);
    let plain = vnet_header(0, 0, 0, 0, (0, 0), 0);
    for (acked, hdr) in [(MODERN | OFFLOADS, 12usize), (OFFLOADS, 10)] {
        let mut h = Harness::with_backend(acked, 1500, true);
        queue_tx(&mut h, 0, &gso[..hdr], &big);
        queue_tx(&mut h, 1, &csum[..hdr], &small);
        queue_tx(&mut h, 2, &plain[..hdr], &small);
        // ECN on a TCP/IPv6 segment, num_buffers (which the driver must leave 0) not handed on.
        let ecn = vnet_header(1, 0x84, 74, 1428, (54, 16), 7);
        queue_tx(&mut h, 3, &ecn[..hdr], &Harness::frame(3000, 3));
        h.path.process_tx();
        let sent = std::mem::take(&mut h.wire.lock().unwrap().sent);
        assert_eq!(sent.len(), 4, "guest header {hdr} bytes");
        let with = |header: &[u8], frame: &[u8]| [header, frame].concat();
        assert!(sent[0] == with(&gso, &big), "the 12-byte header goes first, whatever the guest's");
        assert!(sent[1] == with(&csum, &small));
        assert!(sent[2] == with(&plain, &small));
        assert!(sent[3] == with(&vnet_header(1, 0x84, 74, 1428, (54, 16), 0), &Harness::frame(3000, 3)));
        assert_eq!(Harness::count(&h.stats.tx_frames), 4);
        assert_eq!(Harness::count(&h.stats.tx_malformed), 0);
        assert_eq!(h.tx.used_idx(&h.mem), 4);
    }
}

#[test]
fn hostile_transmit_headers_are_dropped_and_counted() {
    let frame = Harness::frame(100, 4);
    // Each of these is refused with every offload negotiated except TSO6 and ECN.
    let hostile: &[(&str, Vec<u8>)] = &[
        ("UDP fragmentation (never offered)", vnet_header(1, 3, 42, 1400, (34, 6), 0)),
        ("UDP segmentation (never offered)", vnet_header(1, 5, 42, 1400, (34, 6), 0)),
        ("an unknown gso_type", vnet_header(1, 0x42, 54, 1400, (34, 16), 0)),
        ("ECN alone", vnet_header(1, 0x80, 54, 1400, (34, 16), 0)),
        ("TSO6 not negotiated", vnet_header(1, 4, 74, 1400, (54, 16), 0)),
        ("ECN not negotiated", vnet_header(1, 0x81, 54, 1400, (34, 16), 0)),
        ("segmentation without NEEDS_CSUM", vnet_header(0, 1, 54, 1400, (34, 16), 0)),
        ("gso_size 0", vnet_header(1, 1, 54, 0, (34, 16), 0)),
        ("segments longer than the MTU", vnet_header(1, 1, 54, 9000, (34, 16), 0)),
        ("csum_start past the end", vnet_header(1, 0, 0, 0, (100, 0), 0)),
        ("checksum field one byte past the end", vnet_header(1, 0, 0, 0, (90, 9), 0)),
        ("csum_start and offset at their maximum", vnet_header(1, 0, 0, 0, (u16::MAX, u16::MAX), 0)),
        ("hdr_len past the end", vnet_header(1, 1, 101, 1400, (34, 16), 0)),
        ("DATA_VALID from the driver", vnet_header(2, 0, 0, 0, (0, 0), 0)),
        ("unknown flags", vnet_header(0x81, 0, 0, 0, (34, 6), 0)),
    ];
    let acked = MODERN | features::CSUM | features::HOST_TSO4;
    let mut h = Harness::with_backend(acked, 1500, true);
    for (i, (what, header)) in hostile.iter().enumerate() {
        queue_tx(&mut h, 0, header, &frame);
        h.path.process_tx();
        assert!(h.wire.lock().unwrap().sent.is_empty(), "{what} reached the backend");
        assert_eq!(Harness::count(&h.stats.tx_malformed), i as u64 + 1, "{what}");
    }
    assert_eq!(Harness::count(&h.stats.tx_malformed), hostile.len() as u64);
    assert_eq!(h.tx.used_idx(&h.mem), hostile.len() as u16, "every chain is returned");
    // A checksum field ending exactly at the frame's end is fine.
    queue_tx(&mut h, 0, &vnet_header(1, 0, 0, 0, (90, 8), 0), &frame);
    // Longer than the MTU without segmentation, and longer than 64 KiB with it: oversized.
    queue_tx(&mut h, 1, &vnet_header(1, 0, 0, 0, (34, 16), 0), &Harness::frame(1523, 1));
    queue_tx(
        &mut h,
        2,
        &vnet_header(1, 1, 54, 1448, (34, 16), 0),
        &Harness::frame(::net::MAX_GSO_FRAME + 1, 1),
    );
    h.path.process_tx();
    assert_eq!(h.wire.lock().unwrap().sent.len(), 1);
    assert_eq!(Harness::count(&h.stats.tx_oversized), 2);

    // The same requests on cards that may not honour them: a backend without the header, and a
    // driver that took segmentation without checksum offload.
    for (acked, vnet_hdr) in [(MODERN | OFFLOADS, false), (MODERN | features::HOST_TSO4, true)] {
        let mut h = Harness::with_backend(acked, 1500, vnet_hdr);
        queue_tx(&mut h, 0, &vnet_header(1, 1, 54, 1448, (34, 16), 0), &Harness::frame(3000, 1));
        queue_tx(&mut h, 1, &vnet_header(1, 0, 0, 0, (34, 6), 0), &frame);
        h.path.process_tx();
        assert!(h.wire.lock().unwrap().sent.is_empty());
        let malformed = Harness::count(&h.stats.tx_malformed) + Harness::count(&h.stats.tx_oversized);
        assert_eq!(malformed, 2, "acked {acked:#x}, vnet header {vnet_hdr}");
    }
}

#[test]
fn receive_hands_the_backends_header_to_the_guest() {
    // Through the copy and straight into guest memory (where the buffers allow).
    for scatter in [false, true] {
        // A 64 KiB TCP/IPv4 frame the host left unsegmented, over 1536-byte mergeable buffers.
        let mut h = Harness::with_scatter(MODERN | OFFLOADS, 1500, true, scatter);
        let big = Harness::frame(::net::MAX_GSO_FRAME, 6);
        let header = vnet_header(1, 1, 66, 1448, (34, 16), 0);
        h.inbound([header.clone(), big.clone()].concat());
        let buffers = (12 + big.len()).div_ceil(1536);
        for i in 0..buffers as u64 {
            h.rx.add(&h.mem, &[(0x40000 + i * 0x1000, 1536, true)]);
        }
        h.path.process_rx();
        assert_eq!(h.rx.used_idx(&h.mem), buffers as u16);
        let mut want = header.clone();
        want[10..12].copy_from_slice(&(buffers as u16).to_le_bytes());
        assert_eq!(h.read(0x40000, 12), want, "the host's header, num_buffers set");
        let mut got = Vec::new();
        for i in 0..buffers as u16 {
            let (id, len) = h.rx.used_elem(&h.mem, i);
            let start = if i == 0 { 12 } else { 0 };
            got.extend(h.read(0x40000 + u64::from(id) * 0x1000 + start, len as usize - start as usize));
        }
        assert_eq!(got, big);
        assert_eq!(Harness::count(&h.stats.rx_frames), 1);

        // A legacy driver without mergeable buffers: a 10-byte header and one big chain.
        let mut h = Harness::with_scatter(OFFLOADS, 1500, true, scatter);
        let header = vnet_header(3, 4, 74, 1428, (54, 16), 0);
        let frame = Harness::frame(60_000, 7);
        h.inbound([header.clone(), frame.clone()].concat());
        let mut chain = vec![(0x30000, 10, true)];
        // Room for the longest frame (17 pages), so that it can go straight in too.
        chain.extend((0..17u64).map(|i| (0x40000 + i * 0x1000, 4096, true)));
        h.rx.add(&h.mem, &chain);
        h.path.process_rx();
        assert_eq!(h.rx.used_elem(&h.mem, 0), (0, 60_010));
        assert_eq!(h.read(0x30000, 10), header[..10].to_vec());
        assert_eq!(h.read(0x40000, 60_000), frame);
    }
}

#[test]
fn receive_drops_and_counts_what_the_guest_did_not_accept() {
    let frame = Harness::frame(100, 8);
    let gso = vnet_header(1, 1, 54, 1448, (34, 16), 0);
    // (acked, header, delivered header or None when dropped)
    let cases: Vec<(u64, Vec<u8>, Option<Vec<u8>>)> = vec![
        // Segmentation or a partial checksum the guest did not take.
        (MODERN | features::GUEST_CSUM, gso.clone(), None),
        (MODERN, vnet_header(1, 0, 0, 0, (34, 6), 0), None),
        (
            MODERN | OFFLOADS,
            vnet_header(1, 0x81, 54, 1448, (34, 16), 0),
            Some(vnet_header(1, 0x81, 54, 1448, (34, 16), 1)),
        ),
        (MODERN | OFFLOADS & !features::GUEST_ECN, vnet_header(1, 0x81, 54, 1448, (34, 16), 0), None),
        // Kinds never offered, broken fields.
        (MODERN | OFFLOADS, vnet_header(1, 3, 42, 1400, (34, 6), 0), None),
        (MODERN | OFFLOADS, vnet_header(1, 1, 54, 0, (34, 16), 0), None),
        (MODERN | OFFLOADS, vnet_header(1, 0, 0, 0, (99, 0), 0), None),
        (MODERN | OFFLOADS, vnet_header(4, 0, 0, 0, (0, 0), 0), None),
        // DATA_VALID is kept for a guest with checksum offload, cleared otherwise.
        (MODERN | OFFLOADS, vnet_header(2, 0, 0, 0, (0, 0), 0), Some(vnet_header(2, 0, 0, 0, (0, 0), 1))),
        (MODERN, vnet_header(2, 0, 0, 0, (0, 0), 0), Some(vnet_header(0, 0, 0, 0, (0, 0), 1))),
    ];
    for ((acked, header, want), scatter) in cases.into_iter().flat_map(|c| [(c.clone(), false), (c, true)]) {
        let mut h = Harness::with_scatter(acked, 1500, true, scatter);
        h.rx.add(&h.mem, &[(0x30000, 2048, true)]);
        h.inbound([header.clone(), frame.clone()].concat());
        h.path.process_rx();
        match want {
            Some(want) => {
                assert_eq!(h.rx.used_elem(&h.mem, 0), (0, 112), "header {header:?}");
                assert_eq!(h.read(0x30000, 12), want);
                assert_eq!(h.read(0x30000 + 12, 100), frame);
            }
            None => {
                assert_eq!(h.rx.used_idx(&h.mem), 0, "header {header:?} acked {acked:#x}");
                assert_eq!(Harness::count(&h.stats.rx_dropped), 1);
            }
        }
    }

    let mut h = Harness::with_backend(MODERN | OFFLOADS, 1500, true);
    // A frame shorter than the header, a frame longer than the MTU without segmentation, and
    // a 64 KiB one that the guest's buffers (not mergeable enough: 64 of 1 KiB) cannot hold.
    h.inbound(vec![0; 11]);
    h.inbound([vnet_header(0, 0, 0, 0, (0, 0), 0), Harness::frame(1523, 1)].concat());
    h.inbound([gso.clone(), Harness::frame(::net::MAX_GSO_FRAME, 1)].concat());
    // And one longer than 64 KiB, which the backend cannot even hand over whole.
    h.inbound([gso.clone(), Harness::frame(::net::MAX_GSO_FRAME + 1, 1)].concat());
    for i in 0..64u64 {
        h.rx.add(&h.mem, &[(0x40000 + i * 0x400, 1024, true)]);
    }
    h.path.process_rx();
    assert_eq!(Harness::count(&h.stats.rx_dropped), 3);
    assert_eq!(h.rx.used_idx(&h.mem), 1, "the first buffer comes back empty for the dropped frame");
    assert_eq!(Harness::count(&h.stats.rx_frames), 0);
}

/// Posts `count` mergeable receive buffers of `len` bytes, each at `base` + 4 KiB times its
/// descriptor's index.
fn post(h: &mut Harness, base: u64, count: u64, len: u32) {
    for _ in 0..count {
        let at = base + u64::from(h.rx.next_desc) * 0x1000;
        h.rx.add(&h.mem, &[(at, len, true)]);
    }
}

/// The frame in used elements `first..first + count`, read from buffers posted by [`post`] at
/// `base`, header skipped in the first.
fn used_frame(h: &Harness, base: u64, first: u16, count: u16) -> Vec<u8> {
    let mut got = Vec::new();
    for i in first..first + count {
        let (id, len) = h.rx.used_elem(&h.mem, i);
        let start = if i == first { 12 } else { 0 };
        got.extend(h.read(base + u64::from(id) * 0x1000 + start, len as usize - start as usize));
    }
    got
}

#[test]
fn direct_receive_fills_buffers_in_order_and_hands_over_to_the_copy() {
    let mut h = Harness::with_scatter(MODERN | OFFLOADS, 1500, true, true);
    let plain = vnet_header(0, 0, 0, 0, (0, 0), 0);
    let gso = vnet_header(1, 1, 66, 1448, (34, 16), 0);
    let small = Harness::frame(100, 1);
    let big = Harness::frame(::net::MAX_GSO_FRAME, 2);
    let last = Harness::frame(60, 3);
    for f in [[plain.clone(), small.clone()].concat(), [gso.clone(), big.clone()].concat()] {
        h.inbound(f);
    }
    h.inbound([plain.clone(), last.clone()].concat());
    // 64 buffers of 4 KiB: a longest frame takes 17.
    post(&mut h, 0x40000, 64, 4096);
    h.path.process_rx();
    // 1 + 17 + 1 buffers used, in ring order, each frame whole.
    assert_eq!(h.rx.used_idx(&h.mem), 19);
    assert_eq!(used_frame(&h, 0x40000, 0, 1), small);
    assert!(used_frame(&h, 0x40000, 1, 17) == big, "the 64 KiB frame");
    assert_eq!(h.read(0x40000 + 0x1000 + 10, 2), vec![17, 0], "num_buffers");
    assert_eq!(used_frame(&h, 0x40000, 18, 1), last);
    assert_eq!(Harness::count(&h.stats.rx_frames), 3);
    assert_eq!(h.wire.lock().unwrap().scattered, 3, "all three went straight in");

    // Two more longest frames leave 11 buffers (held): too little for a third, which goes
    // through the copy; that finds the held buffers back in the ring and waits for more.
    for _ in 0..3 {
        h.inbound([gso.clone(), big.clone()].concat());
    }
    h.path.process_rx();
    assert_eq!(h.rx.used_idx(&h.mem), 19 + 34, "the third frame waits for buffers");
    post(&mut h, 0x40000, 6, 4096);
    h.path.process_rx();
    assert_eq!(h.rx.used_idx(&h.mem), 19 + 51);
    let (first, _) = h.rx.used_elem(&h.mem, 53);
    assert_eq!(first, 53, "the held buffers are used first");
    assert!(used_frame(&h, 0x40000, 53, 17) == big, "the 64 KiB frame through the copy");
    assert_eq!(Harness::count(&h.stats.rx_frames), 6);
    assert_eq!(Harness::count(&h.stats.rx_dropped), 0);
    assert_eq!(h.wire.lock().unwrap().scattered, 5, "the sixth came through the copy");
}

#[test]
fn direct_receive_leaves_bad_buffers_and_bad_frames_to_be_counted() {
    let mut h = Harness::with_scatter(MODERN | OFFLOADS, 1500, true, true);
    let plain = vnet_header(0, 0, 0, 0, (0, 0), 0);
    // A read-only buffer, one outside RAM, then good ones.
    h.rx.add(&h.mem, &[(0x30000, 2048, false)]);
    h.rx.add(&h.mem, &[(MEM_SIZE as u64 - 100, 2048, true)]);
    post(&mut h, 0x40000, 40, 2048);
    h.inbound([plain.clone(), Harness::frame(80, 1)].concat());
    // A header the guest did not accept, a runt and an oversized frame: dropped on the direct path.
    h.inbound([vnet_header(1, 3, 42, 1400, (34, 6), 0), Harness::frame(100, 2)].concat());
    h.inbound([plain.clone(), Harness::frame(10, 3)].concat());
    h.inbound([plain.clone(), Harness::frame(1523, 4)].concat());
    h.inbound([plain.clone(), Harness::frame(90, 5)].concat());
    h.path.process_rx();
    assert_eq!(Harness::count(&h.stats.rx_bad_buffers), 2);
    assert_eq!(Harness::count(&h.stats.rx_dropped), 3);
    assert_eq!(Harness::count(&h.stats.rx_frames), 2);
    assert_eq!(h.rx.used_idx(&h.mem), 4);
    assert_eq!(h.rx.used_elem(&h.mem, 0), (0, 0));
    assert_eq!(h.rx.used_elem(&h.mem, 1), (1, 0));
    assert_eq!(h.rx.used_elem(&h.mem, 2), (2, 92));
    assert_eq!(h.rx.used_elem(&h.mem, 3), (3, 102), "the dropped frames used no buffer");
    assert_eq!(used_frame(&h, 0x40000, 3, 1), Harness::frame(90, 5));
    assert_eq!(h.wire.lock().unwrap().scattered, 4, "all but the first went straight in");
}

#[test]
fn buffers_smaller_than_the_header_never_hold_one() {
    // A proper buffer, one of 8 bytes (against the spec), then proper ones; two small frames.
    let mut h = Harness::with_scatter(MODERN | OFFLOADS, 1500, true, true);
    let plain = vnet_header(0, 0, 0, 0, (0, 0), 0);
    post(&mut h, 0x40000, 1, 4096);
    h.rx.add(&h.mem, &[(0x30000, 8, true)]);
    post(&mut h, 0x40000, 40, 4096);
    h.inbound([plain.clone(), Harness::frame(60, 1)].concat());
    h.inbound([plain.clone(), Harness::frame(70, 2)].concat());
    h.path.process_rx();
    assert_eq!(Harness::count(&h.stats.rx_frames), 2);
    assert_eq!(Harness::count(&h.stats.rx_bad_buffers), 1);
    assert_eq!(h.rx.used_elem(&h.mem, 0), (0, 72));
    assert_eq!(h.rx.used_elem(&h.mem, 1), (1, 0), "the small one comes back empty");
    assert_eq!(h.rx.used_elem(&h.mem, 2), (2, 82));
    assert_eq!(used_frame(&h, 0x40000, 2, 1), Harness::frame(70, 2));
    assert_eq!(h.read(0x40000 + 2 * 0x1000, 12), vnet_header(0, 0, 0, 0, (0, 0), 1), "a whole header");
}
