//! The transport as a driver sees it: IDs, BARs, the capability walk, both register interfaces,
//! the PCI_CFG window, and whole bring-ups that end in a served block request.

use std::time::{Duration, Instant};

use machine::irq::IrqLine;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::block::tests::{header, MemDisk, Ring, MEM_SIZE};
use crate::block::Block;
use crate::interrupt::tests::Recorder;
use crate::{features, status};

struct Fixture {
    dev: VirtioPci,
    mem: GuestMemory,
    rec: Arc<Recorder>,
    disk: Arc<MemDisk>,
}

fn fixture() -> Fixture {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let disk = MemDisk::new(64, false);
    let rec = Arc::new(Recorder::default());
    let dev = VirtioPci::new(
        Box::new(Block::new(disk.clone(), "serial")),
        mem.clone(),
        IrqLine::new(rec.clone(), 11),
        rec.clone(),
    )
    .unwrap();
    Fixture { dev, mem, rec, disk }
}

fn cfg_read(dev: &mut VirtioPci, offset: usize, len: usize) -> u32 {
    let mut b = [0u8; 4];
    dev.read_config(offset, &mut b[..len]);
    u32::from_le_bytes(b)
}

fn cfg_write(dev: &mut VirtioPci, offset: usize, len: usize, value: u32) {
    dev.write_config(offset, &value.to_le_bytes()[..len]);
}

fn bar_read(dev: &mut VirtioPci, bar: usize, offset: u64, len: usize) -> u32 {
    let mut b = [0u8; 4];
    dev.read_bar(bar, offset, &mut b[..len]);
    u32::from_le_bytes(b)
}

fn bar_write(dev: &mut VirtioPci, bar: usize, offset: u64, len: usize, value: u32) {
    dev.write_bar(bar, offset, &value.to_le_bytes()[..len]);
}

/// Waits until the used ring reaches `idx` (the worker thread serves asynchronously).
fn wait_used(ring: &Ring, mem: &GuestMemory, idx: u16) {
    let start = Instant::now();
    while ring.used_idx(mem) != idx {
        assert!(start.elapsed() < Duration::from_secs(10), "the worker never answered");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A virtio capability as a driver parses it.
#[derive(Debug, PartialEq, Eq)]
struct Cap {
    at: usize,
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
}

/// Walks the capability list the way a driver does and returns the virtio ones and the
/// MSI-X capability's offset.
fn walk(dev: &mut VirtioPci) -> (Vec<Cap>, usize) {
    assert_ne!(cfg_read(dev, reg::STATUS, 2) & 0x10, 0, "capability list bit");
    let mut at = cfg_read(dev, reg::CAPABILITIES, 1) as usize;
    let mut caps = Vec::new();
    let mut msix = 0;
    let mut hops = 0;
    while at != 0 {
        hops += 1;
        assert!(hops < 48, "capability list loops");
        assert!(at >= 0x40 && at & 3 == 0);
        match cfg_read(dev, at, 1) as u8 {
            CAP_ID_VENDOR => caps.push(Cap {
                at,
                cfg_type: cfg_read(dev, at + 3, 1) as u8,
                bar: cfg_read(dev, at + 4, 1) as u8,
                offset: cfg_read(dev, at + 8, 4),
                length: cfg_read(dev, at + 12, 4),
            }),
            CAP_ID_MSIX => msix = at,
            other => panic!("unexpected capability {other:#x}"),
        }
        at = cfg_read(dev, at + 1, 1) as usize;
    }
    (caps, msix)
}

#[test]
fn ids_and_bars() {
    let mut f = fixture();
    let d = &mut f.dev;
    assert_eq!(cfg_read(d, reg::VENDOR_ID, 2), 0x1af4);
    assert_eq!(cfg_read(d, reg::DEVICE_ID, 2), 0x1001);
    assert_eq!(cfg_read(d, reg::REVISION, 1), 0);
    assert_eq!(cfg_read(d, reg::CLASS_PROG, 4) >> 8, 0x01_00_00 >> 8);
    assert_eq!(cfg_read(d, reg::SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    assert_eq!(cfg_read(d, reg::SUBSYSTEM_ID, 2), 2);
    assert_eq!(cfg_read(d, reg::INTERRUPT_PIN, 1), 1);

    // Sizing: write all-ones, read back the size mask and the type bits.
    for off in (0x10..0x28).step_by(4) {
        cfg_write(d, off, 4, 0xffff_ffff);
    }
    assert_eq!(cfg_read(d, 0x10, 4), !(0x40 - 1) | 0x1, "BAR0: 64 I/O ports");
    assert_eq!(cfg_read(d, 0x14, 4), !(0x1000 - 1), "BAR1: 4 KiB MSI-X");
    assert_eq!(cfg_read(d, 0x18, 4), 0);
    assert_eq!(cfg_read(d, 0x1c, 4), 0);
    assert_eq!(cfg_read(d, 0x20, 4), !(0x4000 - 1) | 0xc, "BAR4: 16 KiB, 64-bit prefetchable");
    assert_eq!(cfg_read(d, 0x24, 4), 0xffff_ffff);
}

#[test]
fn capability_chain_describes_the_modern_interface() {
    let mut f = fixture();
    let (caps, msix) = walk(&mut f.dev);
    let find = |t: u8| caps.iter().find(|c| c.cfg_type == t).unwrap();
    let common = find(cfg_type::COMMON);
    assert_eq!((common.bar, common.offset, common.length), (4, 0, 0x38));
    let isr = find(cfg_type::ISR);
    assert_eq!((isr.bar, isr.offset, isr.length), (4, 0x1000, 1));
    let device = find(cfg_type::DEVICE);
    assert_eq!((device.bar, device.offset, device.length), (4, 0x2000, 0x24));
    let notify = find(cfg_type::NOTIFY);
    assert_eq!((notify.bar, notify.offset, notify.length), (4, 0x3000, 4));
    let notify_at = notify.at;
    assert_eq!(cfg_read(&mut f.dev, notify_at + 2, 1), 20, "cap_len");
    assert_eq!(cfg_read(&mut f.dev, notify_at + 16, 4), 4, "multiplier");
    let window = find(cfg_type::PCI_CFG);
    assert_eq!(window.at, f.dev.pci_cfg_cap);
    // MSI-X: two vectors (config + one queue), table at BAR1+0, PBA at BAR1+0x800.
    assert_ne!(msix, 0);
    assert_eq!(cfg_read(&mut f.dev, msix + 2, 2), 1);
    assert_eq!(cfg_read(&mut f.dev, msix + 4, 4), 1);
    assert_eq!(cfg_read(&mut f.dev, msix + 8, 4), 0x801);
    // The capabilities are read-only except where a driver must write.
    cfg_write(&mut f.dev, common.at + 8, 4, 0x1234);
    assert_eq!(cfg_read(&mut f.dev, common.at + 8, 4), 0);
    cfg_write(&mut f.dev, msix + 2, 2, 0xffff);
    assert_eq!(cfg_read(&mut f.dev, msix + 2, 2), 0xc001);
}

#[test]
fn legacy_registers() {
    let mut f = fixture();
    let d = &mut f.dev;
    let host = bar_read(d, 0, legacy::HOST_FEATURES, 4);
    let want = crate::block::features::FLUSH
        | crate::block::features::SEG_MAX
        | crate::block::features::BLK_SIZE
        | crate::block::features::SIZE_MAX
        | features::RING_EVENT_IDX
        | features::RING_INDIRECT_DESC;
    assert_eq!(u64::from(host), want, "low 32 bits only, no VERSION_1");
    bar_write(d, 0, legacy::GUEST_FEATURES, 4, 0xffff_ffff);
    assert_eq!(bar_read(d, 0, legacy::GUEST_FEATURES, 4), host);
    assert_eq!(bar_read(d, 0, legacy::QUEUE_NUM, 2), 128);
    bar_write(d, 0, legacy::QUEUE_SEL, 2, 1);
    assert_eq!(bar_read(d, 0, legacy::QUEUE_NUM, 2), 0, "no queue 1");
    bar_write(d, 0, legacy::QUEUE_SEL, 2, 0);
    bar_write(d, 0, legacy::STATUS, 1, 3);
    assert_eq!(bar_read(d, 0, legacy::STATUS, 1), 3);
    // Device configuration right after the ISR: capacity in sectors.
    assert_eq!(bar_read(d, 0, legacy::CONFIG, 4), 64);
    assert_eq!(bar_read(d, 0, legacy::CONFIG + 4, 4), 0);
    // The ISR reads as zero, and a write to a read-only register changes nothing.
    assert_eq!(bar_read(d, 0, legacy::ISR, 1), 0);
    bar_write(d, 0, legacy::HOST_FEATURES, 4, 0);
    assert_eq!(bar_read(d, 0, legacy::HOST_FEATURES, 4), host);
    // Reads past the registers and odd widths never fail.
    for off in 0..0x40 {
        for len in [1, 2, 4] {
            bar_read(d, 0, off, len);
        }
    }

    // With MSI-X enabled the vectors appear at 0x14 and the configuration moves to 0x18.
    let msix = d.msix_cap;
    cfg_write(d, msix + 2, 2, u32::from(MSIX_ENABLE));
    assert_eq!(bar_read(d, 0, legacy::CONFIG_VECTOR, 2), 0xffff);
    bar_write(d, 0, legacy::CONFIG_VECTOR, 2, 0);
    bar_write(d, 0, legacy::QUEUE_VECTOR, 2, 1);
    assert_eq!(bar_read(d, 0, legacy::CONFIG_VECTOR, 2), 0);
    assert_eq!(bar_read(d, 0, legacy::QUEUE_VECTOR, 2), 1);
    bar_write(d, 0, legacy::QUEUE_VECTOR, 2, 9);
    assert_eq!(bar_read(d, 0, legacy::QUEUE_VECTOR, 2), 0xffff, "refused");
    assert_eq!(bar_read(d, 0, legacy::CONFIG_MSIX, 4), 64);

    // Status 0 resets features and status.
    bar_write(d, 0, legacy::STATUS, 1, 0);
    assert_eq!(bar_read(d, 0, legacy::STATUS, 1), 0);
    assert_eq!(bar_read(d, 0, legacy::GUEST_FEATURES, 4), 0);
    assert_eq!(bar_read(d, 0, legacy::CONFIG_VECTOR, 2), 0xffff);
}

/// Sets a legacy queue up at page `pfn` and returns its ring as the driver lays it out.
fn legacy_ring(d: &mut VirtioPci, pfn: u32) -> Ring {
    bar_write(d, 0, legacy::QUEUE_SEL, 2, 0);
    let size = bar_read(d, 0, legacy::QUEUE_NUM, 2) as u16;
    bar_write(d, 0, legacy::QUEUE_PFN, 4, pfn);
    assert_eq!(bar_read(d, 0, legacy::QUEUE_PFN, 4), pfn);
    let desc = u64::from(pfn) << 12;
    let avail = desc + 16 * u64::from(size);
    let used = (avail + 6 + 2 * u64::from(size)).div_ceil(4096) * 4096;
    Ring::new(desc, avail, used, size)
}

#[test]
fn legacy_driver_before_driver_ok_like_linux_3x() {
    let mut f = fixture();
    let d = &mut f.dev;
    bar_write(d, 0, legacy::STATUS, 1, 0);
    bar_write(d, 0, legacy::STATUS, 1, u32::from(status::ACKNOWLEDGE));
    bar_write(d, 0, legacy::STATUS, 1, u32::from(status::ACKNOWLEDGE | status::DRIVER));
    let host = bar_read(d, 0, legacy::HOST_FEATURES, 4);
    bar_write(d, 0, legacy::GUEST_FEATURES, 4, host);
    let mut ring = legacy_ring(d, 0x40);
    // A read of sector 3 before DRIVER_OK, notified through the I/O register.
    header(&f.mem, 0x10000, 0, 3);
    ring.add(&f.mem, &[(0x10000, 16, false), (0x20000, 512, true), (0x30000, 1, true)]);
    bar_write(d, 0, legacy::QUEUE_NOTIFY, 2, 0);
    wait_used(&ring, &f.mem, 1);
    let mut got = vec![0u8; 512];
    f.mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
    assert_eq!(got, f.disk.bytes(3 * 512, 512));
    assert_eq!(f.mem.read_obj::<u8>(GuestAddress(0x30000)).unwrap(), 0);
    // INTx rises; reading the ISR acknowledges and lowers it.
    let start = Instant::now();
    while f.rec.levels.lock().unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(f.rec.take_levels(), vec![(11, true)]);
    assert_eq!(bar_read(d, 0, legacy::ISR, 1), 1);
    assert_eq!(f.rec.take_levels(), vec![(11, false)]);

    // The same through the eventfd alone (a KVM ioeventfd), once DRIVER_OK is set.
    bar_write(d, 0, legacy::STATUS, 1, 7);
    let events = d.ioevents().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!((events[0].bar, events[0].offset, events[0].len, events[0].datamatch), (0, 0x10, 2, Some(0)));
    assert_eq!((events[1].bar, events[1].offset, events[1].datamatch), (4, 0x3000, None));
    header(&f.mem, 0x10000, 1, 9);
    f.mem.write_slice(&[0x5a; 512], GuestAddress(0x20000)).unwrap();
    ring.add(&f.mem, &[(0x10000, 16, false), (0x20000, 512, false), (0x30000, 1, true)]);
    events[0].event.write(1).unwrap();
    wait_used(&ring, &f.mem, 2);
    assert_eq!(f.disk.bytes(9 * 512, 512), vec![0x5a; 512]);

    // Reset stops the worker: a notification after it is not served.
    bar_write(d, 0, legacy::STATUS, 1, 0);
    assert_eq!(bar_read(d, 0, legacy::QUEUE_PFN, 4), 0);
    ring.add(&f.mem, &[(0x10000, 16, false), (0x20000, 512, false), (0x30000, 1, true)]);
    events[0].event.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ring.used_idx(&f.mem), 2);
}

#[test]
fn legacy_queue_outside_ram_is_refused() {
    let mut f = fixture();
    let d = &mut f.dev;
    bar_write(d, 0, legacy::STATUS, 1, 3);
    bar_write(d, 0, legacy::QUEUE_PFN, 4, 0xffff_ffff);
    bar_write(d, 0, legacy::QUEUE_NOTIFY, 2, 0);
    bar_write(d, 0, legacy::QUEUE_NOTIFY, 2, 0xffff);
    assert_ne!(bar_read(d, 0, legacy::STATUS, 1) & u32::from(status::NEEDS_RESET), 0);
    assert_eq!(bar_read(d, 0, legacy::ISR, 1), 2, "a configuration interrupt");
}

/// Modern bring-up the way Linux's virtio_pci_modern does it, with MSI-X.
#[test]
fn modern_driver_with_msix() {
    let mut f = fixture();
    let d = &mut f.dev;
    let msix = d.msix_cap;
    cfg_write(d, reg::COMMAND, 2, u32::from(command::MEMORY | command::BUS_MASTER));
    cfg_write(d, msix + 2, 2, u32::from(MSIX_ENABLE));
    // Vector 1: unmasked, address/data.
    bar_write(d, 1, 16, 4, 0xfee0_0000);
    bar_write(d, 1, 16 + 8, 4, 0x4021);
    bar_write(d, 1, 16 + 12, 4, 0);

    bar_write(d, 4, 0x14, 1, 0);
    bar_write(d, 4, 0x14, 1, 3);
    bar_write(d, 4, 0x00, 4, 1);
    assert_eq!(bar_read(d, 4, 0x04, 4), 1, "VERSION_1 in the high word");
    bar_write(d, 4, 0x00, 4, 0);
    let low = bar_read(d, 4, 0x04, 4);
    bar_write(d, 4, 0x08, 4, 0);
    bar_write(d, 4, 0x0c, 4, low);
    bar_write(d, 4, 0x08, 4, 1);
    bar_write(d, 4, 0x0c, 4, 1);
    bar_write(d, 4, 0x14, 1, 0xb);
    assert_eq!(bar_read(d, 4, 0x14, 1), 0xb, "FEATURES_OK kept");
    assert_eq!(bar_read(d, 4, 0x12, 2), 1, "num_queues");
    bar_write(d, 4, 0x10, 2, 0);
    bar_write(d, 4, 0x16, 2, 0);
    assert_eq!(bar_read(d, 4, 0x18, 2), 128);
    bar_write(d, 4, 0x18, 2, 100);
    assert_eq!(bar_read(d, 4, 0x18, 2), 128, "not a power of two");
    bar_write(d, 4, 0x18, 2, 16);
    assert_eq!(bar_read(d, 4, 0x18, 2), 16);
    bar_write(d, 4, 0x1a, 2, 1);
    assert_eq!(bar_read(d, 4, 0x1a, 2), 1);
    assert_eq!(bar_read(d, 4, 0x1e, 2), 0, "queue_notify_off");
    let ring = Ring::new(0x4000, 0x5000, 0x6000, 16);
    for (off, v) in [(0x20, 0x4000), (0x24, 0), (0x28, 0x5000), (0x2c, 0), (0x30, 0x6000), (0x34, 0)] {
        bar_write(d, 4, off, 4, v);
    }
    assert_eq!(bar_read(d, 4, 0x28, 4), 0x5000);
    bar_write(d, 4, 0x1c, 2, 1);
    bar_write(d, 4, 0x14, 1, 0xf);
    // Device configuration at BAR4+0x2000.
    assert_eq!(bar_read(d, 4, 0x2000, 4), 64);
    assert_eq!(bar_read(d, 4, 0x2000 + 0x14, 4), 512, "blk_size");

    let mut ring = ring;
    header(&f.mem, 0x10000, 8, 0);
    ring.add(&f.mem, &[(0x10000, 16, false), (0x20000, 20, true), (0x30000, 1, true)]);
    bar_write(d, 4, 0x3000, 2, 0);
    wait_used(&ring, &f.mem, 1);
    let mut id = [0u8; 6];
    f.mem.read_slice(&mut id, GuestAddress(0x20000)).unwrap();
    assert_eq!(&id, b"serial");
    let start = Instant::now();
    while f.rec.msis.lock().unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(f.rec.take_msis(), vec![(0xfee0_0000, 0x4021)]);
    assert!(f.rec.take_levels().is_empty(), "no INTx with MSI-X");
    // Queue set-up is frozen while the device runs.
    bar_write(d, 4, 0x18, 2, 8);
    assert_eq!(bar_read(d, 4, 0x18, 2), 16);
}

#[test]
fn pci_cfg_window_reaches_the_bars() {
    let mut f = fixture();
    let d = &mut f.dev;
    let cap = d.pci_cfg_cap;
    // num_queues (2 bytes at BAR4+0x12).
    cfg_write(d, cap + PCI_CFG_BAR, 1, 4);
    cfg_write(d, cap + PCI_CFG_OFFSET, 4, 0x12);
    cfg_write(d, cap + PCI_CFG_LENGTH, 4, 2);
    assert_eq!(cfg_read(d, cap + PCI_CFG_DATA, 2), 1);
    // Write device_status through the window, read it back directly.
    cfg_write(d, cap + PCI_CFG_OFFSET, 4, 0x14);
    cfg_write(d, cap + PCI_CFG_LENGTH, 4, 1);
    cfg_write(d, cap + PCI_CFG_DATA, 1, 3);
    assert_eq!(bar_read(d, 4, 0x14, 1), 3);
    // The legacy BAR through the window (capacity at 0x14).
    cfg_write(d, cap + PCI_CFG_BAR, 1, 0);
    cfg_write(d, cap + PCI_CFG_OFFSET, 4, 0x14);
    cfg_write(d, cap + PCI_CFG_LENGTH, 4, 4);
    assert_eq!(cfg_read(d, cap + PCI_CFG_DATA, 4), 64);
    // Bad windows do nothing: odd length, misaligned, past the BAR, a BAR that is not there.
    for (bar, offset, len) in [(4, 0x14, 3), (4, 0x13, 2), (4, 0x4000, 4), (2, 0, 4), (4, u32::MAX, 4)] {
        cfg_write(d, cap + PCI_CFG_BAR, 1, bar);
        cfg_write(d, cap + PCI_CFG_OFFSET, 4, offset);
        cfg_write(d, cap + PCI_CFG_LENGTH, 4, len);
        cfg_write(d, cap + PCI_CFG_DATA, 4, 0);
        cfg_read(d, cap + PCI_CFG_DATA, 4);
    }
    assert_eq!(bar_read(d, 4, 0x14, 1), 3);
}

#[test]
fn hostile_register_traffic_does_not_panic() {
    let mut f = fixture();
    let d = &mut f.dev;
    let mut x: u32 = 0x1234_5678;
    for i in 0..20_000u32 {
        // xorshift: deterministic garbage.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let len = [1, 2, 4][(x % 3) as usize];
        let bar = [0, 1, 4, 2][(x >> 2) as usize % 4];
        let offset = u64::from(x >> 8) % 0x4100;
        if i % 2 == 0 {
            bar_write(d, bar, offset, len, x);
        } else {
            bar_read(d, bar, offset, len);
        }
        if i % 7 == 0 {
            let off = (x >> 4) as usize % 0x100;
            cfg_write(d, off, len.min(0x100 - off), x);
            cfg_read(d, off, len.min(0x100 - off));
        }
    }
    // The device still resets and comes back.
    bar_write(d, 0, legacy::STATUS, 1, 0);
    assert_eq!(bar_read(d, 0, legacy::STATUS, 1), 0);
}

#[test]
fn legacy_queue_laid_out_again_restarts_the_device() {
    let mut f = fixture();
    let d = &mut f.dev;
    bar_write(d, 0, legacy::STATUS, 1, 3);
    let _old = legacy_ring(d, 0x40);
    // Linux 3.x gives up on its first interrupt plan: queues off, then set up again elsewhere.
    bar_write(d, 0, legacy::QUEUE_PFN, 4, 0);
    let mut ring = legacy_ring(d, 0x80);
    header(&f.mem, 0x10000, 0, 1);
    ring.add(&f.mem, &[(0x10000, 16, false), (0x20000, 512, true), (0x30000, 1, true)]);
    bar_write(d, 0, legacy::QUEUE_NOTIFY, 2, 0);
    wait_used(&ring, &f.mem, 1);
    let mut got = vec![0u8; 512];
    f.mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
    assert_eq!(got, f.disk.bytes(512, 512));
}
