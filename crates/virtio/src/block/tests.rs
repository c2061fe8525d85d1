//! The request path over real guest memory with hand-built descriptor tables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use disk::DiskError;
use machine::irq::IrqLine;
use vm_memory::{Bytes, GuestAddress};

use super::request::{kind, status};
use super::*;
use crate::interrupt::tests::Recorder;

/// A disk in memory that counts flushes.
pub(crate) struct MemDisk {
    data: Mutex<Vec<u8>>,
    read_only: bool,
    pub(crate) flushes: AtomicUsize,
}

impl MemDisk {
    pub(crate) fn new(sectors: usize, read_only: bool) -> Arc<Self> {
        let data = (0..sectors * 512).map(|i| (i / 512 + i) as u8).collect();
        Arc::new(Self { data: Mutex::new(data), read_only, flushes: AtomicUsize::new(0) })
    }

    pub(crate) fn bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        self.data.lock().unwrap()[offset..offset + len].to_vec()
    }
}

impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let data = self.data.lock().unwrap();
        disk::check_range(offset, buf.len(), data.len() as u64)?;
        buf.copy_from_slice(&data[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        let mut data = self.data.lock().unwrap();
        disk::check_range(offset, buf.len(), data.len() as u64)?;
        data[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> Result<(), DiskError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn format(&self) -> &'static str {
        "memory"
    }
}

pub(crate) const MEM_SIZE: usize = 0x10_0000;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const SIZE: u16 = 16;
pub(crate) const F_NEXT: u16 = 1;
pub(crate) const F_WRITE: u16 = 2;

/// Writes split-ring structures into guest memory the way a driver does.
pub(crate) struct Ring {
    pub(crate) desc: u64,
    pub(crate) avail: u64,
    pub(crate) used: u64,
    pub(crate) size: u16,
    next_desc: u16,
    avail_idx: u16,
}

impl Ring {
    pub(crate) fn new(desc: u64, avail: u64, used: u64, size: u16) -> Self {
        Self { desc, avail, used, size, next_desc: 0, avail_idx: 0 }
    }

    pub(crate) fn write_desc(
        &self,
        mem: &GuestMemory,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let at = GuestAddress(self.desc + 16 * u64::from(index));
        mem.write_obj(addr, at).unwrap();
        mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
        mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
        mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
    }

    /// Makes descriptor `head` available.
    pub(crate) fn publish(&mut self, mem: &GuestMemory, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_obj(head, GuestAddress(self.avail + 4 + 2 * slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2)).unwrap();
    }

    /// Adds a chain of (address, length, device-writable) buffers and publishes it.
    pub(crate) fn add(&mut self, mem: &GuestMemory, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let index = (head + i as u16) % self.size;
            let last = i + 1 == bufs.len();
            let flags = if write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.write_desc(mem, index, addr, len, flags, (index + 1) % self.size);
        }
        self.next_desc = (head + bufs.len() as u16) % self.size;
        self.publish(mem, head);
        head
    }

    pub(crate) fn used_idx(&self, mem: &GuestMemory) -> u16 {
        mem.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// The (id, len) of used element `i`.
    pub(crate) fn used_elem(&self, mem: &GuestMemory, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        (mem.read_obj(GuestAddress(at)).unwrap(), mem.read_obj(GuestAddress(at + 4)).unwrap())
    }
}

pub(crate) fn header(mem: &GuestMemory, at: u64, request_type: u32, sector: u64) {
    mem.write_obj(request_type, GuestAddress(at)).unwrap();
    mem.write_obj(0u32, GuestAddress(at + 4)).unwrap();
    mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
}

struct Harness {
    mem: GuestMemory,
    disk: Arc<MemDisk>,
    rec: Arc<Recorder>,
    ring: Ring,
    server: QueueServer,
}

impl Harness {
    fn new(read_only: bool) -> Self {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let disk = MemDisk::new(16, read_only);
        let rec = Arc::new(Recorder::default());
        let interrupt = Arc::new(VirtioInterrupt::new(IrqLine::new(rec.clone(), 10), rec.clone(), 1, 2));
        let mut queue = Queue::new(SIZE).unwrap();
        queue.set_desc_table_address(Some(DESC as u32), Some(0));
        queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        queue.set_used_ring_address(Some(USED as u32), Some(0));
        queue.set_ready(true);
        assert!(queue.is_valid(&mem));
        let server = QueueServer {
            memory: mem.clone(),
            queue,
            interrupt,
            disk: disk.clone(),
            serial: *b"chr.img\0\0\0\0\0\0\0\0\0\0\0\0\0",
            bounce: vec![0; 4096],
        };
        Self { mem, disk, rec, ring: Ring::new(DESC, AVAIL, USED, SIZE), server }
    }

    fn status(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap()
    }

    /// A standard three-part request; returns nothing, the test serves it.
    fn request(&mut self, request_type: u32, sector: u64, data_len: u32, device_writes: bool) {
        header(&self.mem, 0x10000, request_type, sector);
        self.ring
            .add(&self.mem, &[(0x10000, 16, false), (0x20000, data_len, device_writes), (0x30000, 1, true)]);
    }
}

#[test]
fn read_copies_sectors_into_guest_buffers() {
    let mut h = Harness::new(false);
    // Two sectors from sector 2; the bounce buffer (4 KiB) is smaller than some requests.
    h.mem.write_obj(0xaau8, GuestAddress(0x30000)).unwrap();
    h.request(kind::IN, 2, 1024, true);
    h.server.serve();
    assert_eq!(h.status(0x30000), status::OK);
    let mut got = vec![0u8; 1024];
    h.mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
    assert_eq!(got, h.disk.bytes(1024, 1024));
    assert_eq!(h.ring.used_idx(&h.mem), 1);
    assert_eq!(h.ring.used_elem(&h.mem, 0), (0, 1025));
    assert_eq!(h.rec.take_levels(), vec![(10, true)], "INTx raised");

    // A request larger than the bounce buffer, its data split over two descriptors.
    header(&h.mem, 0x10000, kind::IN, 0);
    h.ring.add(
        &h.mem,
        &[(0x10000, 16, false), (0x40000, 3 * 512, true), (0x50000, 13 * 512, true), (0x30000, 1, true)],
    );
    h.server.serve();
    let mut a = vec![0u8; 3 * 512];
    let mut b = vec![0u8; 13 * 512];
    h.mem.read_slice(&mut a, GuestAddress(0x40000)).unwrap();
    h.mem.read_slice(&mut b, GuestAddress(0x50000)).unwrap();
    a.extend_from_slice(&b);
    assert_eq!(a, h.disk.bytes(0, 16 * 512));
    assert_eq!(h.ring.used_elem(&h.mem, 1), (3, 16 * 512 + 1));
}

#[test]
fn write_reaches_the_disk_and_header_may_be_split() {
    let mut h = Harness::new(false);
    let pattern: Vec<u8> = (0..512).map(|i| (i * 7) as u8).collect();
    h.mem.write_slice(&pattern, GuestAddress(0x20000)).unwrap();
    header(&h.mem, 0x10000, kind::OUT, 5);
    // The header arrives in two pieces, the status byte shares nothing.
    h.ring
        .add(&h.mem, &[(0x10000, 8, false), (0x10008, 8, false), (0x20000, 512, false), (0x30000, 1, true)]);
    h.server.serve();
    assert_eq!(h.status(0x30000), status::OK);
    assert_eq!(h.disk.bytes(5 * 512, 512), pattern);
    assert_eq!(h.ring.used_elem(&h.mem, 0), (0, 1));
}

#[test]
fn flush_and_get_id() {
    let mut h = Harness::new(false);
    header(&h.mem, 0x10000, kind::FLUSH, 0);
    h.ring.add(&h.mem, &[(0x10000, 16, false), (0x30000, 1, true)]);
    h.server.serve();
    assert_eq!(h.status(0x30000), status::OK);
    assert_eq!(h.disk.flushes.load(Ordering::SeqCst), 1);

    h.request(kind::GET_ID, 0, 20, true);
    h.server.serve();
    assert_eq!(h.status(0x30000), status::OK);
    let mut id = [0u8; 20];
    h.mem.read_slice(&mut id, GuestAddress(0x20000)).unwrap();
    assert_eq!(&id[..8], b"chr.img\0");
    assert_eq!(h.ring.used_elem(&h.mem, 1).1, 21);
}

#[test]
fn out_of_range_partial_and_unknown_requests_fail_with_a_status() {
    let mut h = Harness::new(false);
    let cases = [
        (kind::IN, 16, 512, status::IOERR),        // first sector past the end
        (kind::IN, 15, 1024, status::IOERR),       // runs past the end
        (kind::OUT, u64::MAX, 512, status::IOERR), // offset overflows
        (kind::IN, 0, 100, status::IOERR),         // not whole sectors
        (99, 0, 512, status::UNSUPP),
    ];
    for (i, &(t, sector, len, want)) in cases.iter().enumerate() {
        let writes = t != kind::OUT;
        h.mem.write_obj(0xffu8, GuestAddress(0x30000)).unwrap();
        h.request(t, sector, len, writes);
        h.server.serve();
        assert_eq!(h.status(0x30000), want, "case {i}");
        assert_eq!(h.ring.used_idx(&h.mem), i as u16 + 1);
    }
    assert_eq!(h.disk.bytes(0, 16 * 512), MemDisk::new(16, false).bytes(0, 16 * 512));
}

#[test]
fn read_only_disk_refuses_writes() {
    let mut h = Harness::new(true);
    let before = h.disk.bytes(0, 512);
    h.mem.write_slice(&[0x55; 512], GuestAddress(0x20000)).unwrap();
    h.request(kind::OUT, 0, 512, false);
    h.server.serve();
    assert_eq!(h.status(0x30000), status::IOERR);
    assert_eq!(h.disk.bytes(0, 512), before);
    // Reads and flushes still work.
    h.request(kind::IN, 0, 512, true);
    h.server.serve();
    assert_eq!(h.status(0x30000), status::OK);
    let block = Block::new(h.disk.clone(), "ro");
    assert_ne!(block.features() & features::RO, 0);
    assert_eq!(Block::new(MemDisk::new(1, false), "rw").features() & features::RO, 0);
}

#[test]
fn several_requests_in_flight_are_served_in_one_pass() {
    let mut h = Harness::new(false);
    for i in 0..4u64 {
        let hdr = 0x10000 + 0x100 * i;
        header(&h.mem, hdr, kind::IN, i);
        h.ring.add(&h.mem, &[(hdr, 16, false), (0x20000 + 0x1000 * i, 512, true), (0x30000 + i, 1, true)]);
    }
    h.server.serve();
    assert_eq!(h.ring.used_idx(&h.mem), 4);
    for i in 0..4u64 {
        assert_eq!(h.status(0x30000 + i), status::OK);
        let mut got = vec![0u8; 512];
        h.mem.read_slice(&mut got, GuestAddress(0x20000 + 0x1000 * i)).unwrap();
        assert_eq!(got, h.disk.bytes(512 * i as usize, 512));
    }
    assert_eq!(h.rec.take_levels(), vec![(10, true)], "one interrupt for the batch");
}

#[test]
fn malformed_chains_fail_or_are_skipped_without_panic() {
    let mut h = Harness::new(false);
    let before = h.disk.bytes(0, 16 * 512);

    // A header shorter than 16 bytes: IOERR.
    h.ring.add(&h.mem, &[(0x10000, 8, false), (0x30000, 1, true)]);
    // No status byte at all (nothing device-writable): skipped with length 0.
    header(&h.mem, 0x10000, kind::OUT, 0);
    h.ring.add(&h.mem, &[(0x10000, 16, false), (0x20000, 512, false)]);
    // A data buffer outside guest RAM: IOERR, the status byte is still reachable.
    h.ring.add(&h.mem, &[(0x10000, 16, false), (MEM_SIZE as u64 + 0x1000, 512, false), (0x30001, 1, true)]);
    // A writable buffer outside guest RAM and a length of 4 GiB - 1: dropped, nothing allocated.
    h.ring.add(&h.mem, &[(0x10000, 16, false), (0x20000, u32::MAX, true)]);
    h.ring.add(&h.mem, &[(0x10000, 16, false), (u64::MAX - 8, 16, true)]);
    h.mem.write_slice(&[0xee; 3], GuestAddress(0x30000)).unwrap();
    h.server.serve();
    assert_eq!(h.ring.used_idx(&h.mem), 5);
    assert_eq!(h.status(0x30000), status::IOERR);
    assert_eq!(h.status(0x30001), status::IOERR);
    assert_eq!(h.ring.used_elem(&h.mem, 1).1, 0);
    assert_eq!(h.ring.used_elem(&h.mem, 3).1, 0);
    assert_eq!(h.ring.used_elem(&h.mem, 4).1, 0);

    // A chain that loops back on itself ends after `queue size` descriptors.
    let d = h.ring.next_desc;
    header(&h.mem, 0x10000, kind::IN, 0);
    h.ring.write_desc(&h.mem, d, 0x10000, 16, F_NEXT, d + 1);
    h.ring.write_desc(&h.mem, d + 1, 0x30002, 1, F_WRITE | F_NEXT, d);
    h.ring.publish(&h.mem, d);
    // A head index past the queue's end.
    h.ring.publish(&h.mem, SIZE + 3);
    h.server.serve();
    assert_eq!(h.ring.used_idx(&h.mem), 6, "the bad head cannot be returned");

    // An available index far ahead of the queue: ignored, the worker returns.
    h.mem.write_obj(h.ring.avail_idx.wrapping_add(1000), GuestAddress(AVAIL + 2)).unwrap();
    h.server.serve();
    assert_eq!(h.disk.bytes(0, 16 * 512), before);
}

#[test]
fn serial_comes_from_the_file_name() {
    assert_eq!(Block::serial_for(Path::new("/images/chr-7.15.img")), "chr-7.15.img");
    assert_eq!(Block::serial_for(Path::new("a-very-long-image-name-indeed.vmdk")), "a-very-long-image-na");
    assert_eq!(Block::serial_for(Path::new("/")), "");
    let b = Block::new(MemDisk::new(8, false), "x");
    let mut cap = [0u8; 8];
    b.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 8);
    let mut past = [0xffu8; 4];
    b.read_config(u64::MAX - 1, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn no_interrupt_flag_is_honoured_without_event_idx() {
    let mut h = Harness::new(false);
    h.mem.write_obj(1u16, GuestAddress(AVAIL)).unwrap();
    h.request(kind::IN, 0, 512, true);
    h.server.serve();
    assert_eq!(h.ring.used_idx(&h.mem), 1);
    assert!(h.rec.take_levels().is_empty(), "the driver polls");
    h.mem.write_obj(0u16, GuestAddress(AVAIL)).unwrap();
    h.request(kind::IN, 0, 512, true);
    h.server.serve();
    assert_eq!(h.rec.take_levels(), vec![(10, true)]);
}

#[test]
fn indirect_tables_work_and_overlong_ones_are_dropped() {
    const F_INDIRECT: u16 = 4;
    let mut h = Harness::new(false);
    // A read through an indirect table of three descriptors at 0x8000.
    header(&h.mem, 0x10000, kind::IN, 1);
    let table = Ring::new(0x8000, 0, 0, 256);
    table.write_desc(&h.mem, 0, 0x10000, 16, F_NEXT, 1);
    table.write_desc(&h.mem, 1, 0x20000, 512, F_WRITE | F_NEXT, 2);
    table.write_desc(&h.mem, 2, 0x30000, 1, F_WRITE, 0);
    h.ring.write_desc(&h.mem, 0, 0x8000, 3 * 16, F_INDIRECT, 0);
    h.ring.publish(&h.mem, 0);
    h.server.serve();
    assert_eq!(h.status(0x30000), status::OK);
    assert_eq!(h.ring.used_elem(&h.mem, 0), (0, 513));
    let mut got = vec![0u8; 512];
    h.mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
    assert_eq!(got, h.disk.bytes(512, 512));

    // 200 one-byte buffers: longer than any queue allows.
    for i in 0..200u16 {
        table.write_desc(&h.mem, i, 0x20000 + u64::from(i), 1, F_WRITE | F_NEXT, i + 1);
    }
    table.write_desc(&h.mem, 200, 0x30000, 1, F_WRITE, 0);
    h.ring.write_desc(&h.mem, 1, 0x8000, 201 * 16, F_INDIRECT, 0);
    h.ring.publish(&h.mem, 1);
    h.server.serve();
    assert_eq!(h.ring.used_elem(&h.mem, 1), (1, 0));
}
