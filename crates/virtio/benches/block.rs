//! virtio-blk request throughput through the whole device path: a driver-side ring in guest
//! memory, a notify write into the modern BAR, the worker thread, an in-memory disk, and the
//! used ring. Run with `cargo bench -p virtio`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use disk::{BlockDevice, DiskError};
use machine::irq::{IrqLine, NoInterrupts};
use machine::memory::GuestMemory;
use machine::pci::PciDevice;
use virtio::block::Block;
use virtio::pci::{VirtioPci, MODERN_BAR};
use vm_memory::{Bytes, GuestAddress};

struct MemDisk(Mutex<Vec<u8>>);

impl BlockDevice for MemDisk {
    fn size(&self) -> u64 {
        self.0.lock().map_or(0, |d| d.len() as u64)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let d = self.0.lock().map_err(|_| DiskError::ReadOnly)?;
        disk::check_range(offset, buf.len(), d.len() as u64)?;
        buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        let mut d = self.0.lock().map_err(|_| DiskError::ReadOnly)?;
        disk::check_range(offset, buf.len(), d.len() as u64)?;
        d[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> Result<(), DiskError> {
        Ok(())
    }
    fn read_only(&self) -> bool {
        false
    }
    fn format(&self) -> &'static str {
        "memory"
    }
}

const QUEUE: u16 = 128;
const DESC: u64 = 0x10_0000;
const AVAIL: u64 = 0x11_0000;
const USED: u64 = 0x12_0000;
const HEADERS: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const DATA: u64 = 0x100_0000;

fn bar_write(dev: &mut VirtioPci, offset: u64, len: usize, value: u32) {
    dev.write_bar(MODERN_BAR, offset, &value.to_le_bytes()[..len]);
}

/// Brings the device up the way a modern driver does, with one 128-entry queue.
fn bring_up(dev: &mut VirtioPci) {
    bar_write(dev, 0x14, 1, 0);
    bar_write(dev, 0x14, 1, 3);
    bar_write(dev, 0x08, 4, 1);
    bar_write(dev, 0x0c, 4, 1); // VERSION_1
    bar_write(dev, 0x14, 1, 0xb);
    bar_write(dev, 0x16, 2, 0);
    bar_write(dev, 0x18, 2, u32::from(QUEUE));
    for (off, v) in [(0x20, DESC), (0x28, AVAIL), (0x30, USED)] {
        bar_write(dev, off, 4, v as u32);
        bar_write(dev, off + 4, 4, 0);
    }
    bar_write(dev, 0x1c, 2, 1);
    bar_write(dev, 0x14, 1, 0xf);
}

/// Runs `total` requests of `len` bytes, `batch` in flight at a time; returns the elapsed time.
fn run(dev: &mut VirtioPci, mem: &GuestMemory, kind: u32, len: u32, batch: u16, total: u32) -> Duration {
    let mut avail_idx: u16 = mem.read_obj(GuestAddress(AVAIL + 2)).unwrap_or(0);
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        for i in 0..batch {
            let slot = avail_idx % QUEUE;
            // Three descriptors per request: header, data, status, at 3 * slot.
            let d = (slot % (QUEUE / 3)) * 3;
            let hdr = HEADERS + 16 * u64::from(slot);
            let sector = u64::from((done + u32::from(i)) % 64) * u64::from(len / 512);
            let _ = mem.write_obj(kind, GuestAddress(hdr));
            let _ = mem.write_obj(sector, GuestAddress(hdr + 8));
            let data_flags: u16 = if kind == 0 { 2 } else { 0 };
            let descs = [
                (hdr, 16u32, 1u16, d + 1),
                (DATA + u64::from(len) * u64::from(slot % 64), len, data_flags | 1, d + 2),
                (STATUS + u64::from(slot), 1, 2, 0),
            ];
            for (j, (addr, l, flags, next)) in descs.into_iter().enumerate() {
                let at = DESC + 16 * u64::from(d + j as u16);
                let _ = mem.write_obj(addr, GuestAddress(at));
                let _ = mem.write_obj(l, GuestAddress(at + 8));
                let _ = mem.write_obj(flags, GuestAddress(at + 12));
                let _ = mem.write_obj(next, GuestAddress(at + 14));
            }
            let _ = mem.write_obj(d, GuestAddress(AVAIL + 4 + 2 * u64::from(slot)));
            avail_idx = avail_idx.wrapping_add(1);
        }
        let _ = mem.write_obj(avail_idx, GuestAddress(AVAIL + 2));
        bar_write(dev, 0x3000, 2, 0);
        while mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap_or(0) != avail_idx {
            std::hint::spin_loop();
        }
        done += u32::from(batch);
    }
    start.elapsed()
}

fn main() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 64 << 20)]).expect("guest memory");
    let disk: Arc<dyn BlockDevice> = Arc::new(MemDisk(Mutex::new(vec![0x5a; 64 << 20])));
    let mut dev = VirtioPci::new(
        Box::new(Block::new(disk, "bench")),
        mem.clone(),
        IrqLine::new(Arc::new(NoInterrupts), 11),
        Arc::new(NoInterrupts),
    )
    .expect("virtio-pci device");
    bring_up(&mut dev);
    println!("virtio-blk, in-memory disk, notify by register write, worker thread:");
    for (name, kind, len, batch) in [
        ("read 4 KiB, 1 in flight", 0, 4096, 1),
        ("read 4 KiB, 32 in flight", 0, 4096, 32),
        ("write 4 KiB, 32 in flight", 1, 4096, 32),
        ("read 64 KiB, 16 in flight", 0, 65536, 16),
    ] {
        let total = 20_000u32;
        let t = run(&mut dev, &mem, kind, len, batch, total);
        let secs = t.as_secs_f64();
        println!(
            "  {name:28} {:>9.0} requests/s  {:>8.1} MiB/s  {:>6.2} us/request",
            f64::from(total) / secs,
            f64::from(total) * f64::from(len) / secs / (1 << 20) as f64,
            secs * 1e6 / f64::from(total)
        );
    }
}
