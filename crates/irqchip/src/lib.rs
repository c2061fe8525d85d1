//! The interrupt controllers and timers that KVM provides in the kernel, in userspace for the
//! interpreter: the 8259 PIC pair, the 8254 PIT with port 0x61, the I/O APIC and one local
//! APIC per vCPU. Time follows the host's monotonic clock.
//!
//! Wiring: [`Platform::new`] builds everything; register [`Platform::bus_devices`] on the
//! machine's port and MMIO buses, hand the platform to devices as their
//! [`InterruptController`], and give it to each interpreter vCPU, which consults its
//! [`LocalApic`] (the APIC page at 0xFEE00000 is handled inside the vCPU).

mod ioapic;
mod lapic;
mod pic;
mod pit;

pub use lapic::LocalApic;

use machine::bus::{BusDevice, SharedDevice};
use machine::irq::InterruptController;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A device range for the machine builder to register.
pub struct BusRange {
    pub base: u64,
    pub len: u64,
    pub device: SharedDevice,
}

/// The ranges to register: `pio` on the port bus, `mmio` on the MMIO bus.
pub struct BusDevices {
    pub pio: Vec<BusRange>,
    pub mmio: Vec<BusRange>,
}

/// The PC's interrupt controllers and timers.
pub struct Platform {
    start: Instant,
    pic: Mutex<pic::Pic>,
    pit: Mutex<pit::Pit>,
    ioapic: Mutex<ioapic::IoApic>,
    lapics: Vec<Arc<LocalApic>>,
    /// The earliest timer deadline (ns of platform time); u64::MAX when none.
    next_deadline: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Platform {
    /// Controllers for `cpus` vCPUs (APIC IDs 0..cpus).
    pub fn new(cpus: usize) -> Arc<Self> {
        Arc::new_cyclic(|w| Self {
            start: Instant::now(),
            pic: Mutex::new(pic::Pic::default()),
            pit: Mutex::new(pit::Pit::default()),
            ioapic: Mutex::new(ioapic::IoApic::default()),
            lapics: (0..cpus.max(1)).map(|i| Arc::new(LocalApic::new(i as u32, w.clone()))).collect(),
            next_deadline: AtomicU64::new(0),
        })
    }

    /// Platform time in nanoseconds.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The local APIC of vCPU `id`.
    pub fn lapic(&self, id: usize) -> Option<Arc<LocalApic>> {
        self.lapics.get(id).cloned()
    }

    /// The port and MMIO ranges the machine must route here.
    pub fn bus_devices(self: &Arc<Self>) -> BusDevices {
        let dev =
            |kind: Kind| -> SharedDevice { Arc::new(Mutex::new(Port { platform: self.clone(), kind })) };
        BusDevices {
            pio: vec![
                BusRange { base: 0x20, len: 2, device: dev(Kind::Pic(0)) },
                BusRange { base: 0xa0, len: 2, device: dev(Kind::Pic(1)) },
                BusRange { base: 0x4d0, len: 2, device: dev(Kind::Elcr) },
                BusRange { base: 0x40, len: 4, device: dev(Kind::Pit) },
                BusRange { base: 0x61, len: 1, device: dev(Kind::Port61) },
            ],
            mmio: vec![BusRange {
                base: machine::memory::IOAPIC_BASE,
                len: 0x1000,
                device: dev(Kind::IoApic),
            }],
        }
    }

    fn pic_changed(&self, pic: &pic::Pic) {
        if pic.output() {
            if let Some(l) = self.lapics.first() {
                l.wake();
            }
        }
    }

    pub(crate) fn pic_ack(&self) -> Option<u8> {
        let mut p = lock(&self.pic);
        if !p.output() {
            return None;
        }
        Some(p.ack())
    }

    fn route(&self, m: ioapic::Message) {
        if m.mode == 7 {
            // ExtINT: the 8259 supplies the vector.
            if let Some(l) = self.lapics.first() {
                l.wake();
            }
            return;
        }
        if m.mode != 0 && m.mode != 1 {
            return;
        }
        let mut targets = self.lapics.iter().filter(|l| l.lock().matches(m.dest, m.logical));
        if m.mode == 1 || m.logical {
            if let Some(l) = targets.next() {
                l.deliver(m.vector, m.level);
            }
        } else {
            for l in targets {
                l.deliver(m.vector, m.level);
            }
        }
    }

    pub(crate) fn ioapic_eoi(&self, vector: u8) {
        let msgs = lock(&self.ioapic).eoi(vector);
        for m in msgs {
            self.route(m);
        }
    }

    pub(crate) fn send_ipi(&self, from: u32, vector: u8, mode: u8, dest: u8, logical: bool, shorthand: u8) {
        for l in &self.lapics {
            let (id, hit) = {
                let s = l.lock();
                let hit = match shorthand {
                    1 => s.id == from,
                    2 => true,
                    3 => s.id != from,
                    _ => s.matches(dest, logical),
                };
                (s.id, hit)
            };
            if !hit {
                continue;
            }
            match mode {
                0 | 1 => l.deliver(vector, false),
                5 if id != from => {
                    l.lock().init = true;
                    l.wake();
                }
                6 => {
                    l.lock().sipi = Some(vector);
                    l.wake();
                }
                _ => {}
            }
        }
    }

    /// Runs due timers (PIT channel 0, APIC timers); cheap when nothing is due. Every vCPU
    /// calls this between blocks.
    pub fn poll(&self) {
        let now = self.now();
        if now < self.next_deadline.load(Ordering::Relaxed) {
            return;
        }
        let mut next = u64::MAX;
        {
            let mut pit = lock(&self.pit);
            if pit.take_irq0(now) {
                drop(pit);
                self.pulse_irq0();
                pit = lock(&self.pit);
            }
            if let Some(d) = pit.next_deadline(now) {
                next = next.min(d);
            }
        }
        for l in &self.lapics {
            let fired = {
                let mut s = l.lock();
                let f = s.poll_timer(now);
                if let Some(d) = s.timer_deadline {
                    next = next.min(d);
                }
                f
            };
            if fired {
                l.wake();
            }
        }
        self.next_deadline.store(next, Ordering::Relaxed);
    }

    fn pulse_irq0(&self) {
        {
            let mut p = lock(&self.pic);
            p.set_irq(0, true);
            p.set_irq(0, false);
            self.pic_changed(&p);
        }
        // The ISA timer is wired to I/O APIC pin 2 (the MADT's interrupt source override).
        let m = {
            let mut io = lock(&self.ioapic);
            let m = io.set_level(2, true);
            io.set_level(2, false);
            m
        };
        if let Some(m) = m {
            self.route(m);
        }
    }

    pub(crate) fn timers_changed(&self) {
        self.next_deadline.store(0, Ordering::Relaxed);
    }

    /// The next timer deadline, for a halted vCPU's sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        let d = self.next_deadline.load(Ordering::Relaxed);
        (d != u64::MAX).then(|| self.start + Duration::from_nanos(d))
    }
}

impl InterruptController for Platform {
    fn set_level(&self, gsi: u32, level: bool) {
        if gsi < 16 {
            let mut p = lock(&self.pic);
            p.set_irq(gsi, level);
            self.pic_changed(&p);
        }
        let m = lock(&self.ioapic).set_level(gsi as usize, level);
        if let Some(m) = m {
            self.route(m);
        }
    }

    fn signal_msi(&self, address: u64, data: u32) {
        if address >> 20 != 0xfee {
            return;
        }
        let m = ioapic::Message {
            vector: data as u8,
            dest: (address >> 12) as u8,
            logical: address & 4 != 0,
            mode: ((data >> 8) & 7) as u8,
            level: false,
        };
        self.route(m);
    }
}

enum Kind {
    Pic(usize),
    Elcr,
    Pit,
    Port61,
    IoApic,
}

/// A bus-facing view of one part of the platform.
struct Port {
    platform: Arc<Platform>,
    kind: Kind,
}

impl BusDevice for Port {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let p = &self.platform;
        match self.kind {
            Kind::Pic(c) => data.fill(lock(&p.pic).read(c, offset as u8)),
            Kind::Elcr => data.fill(lock(&p.pic).read_elcr(offset as usize & 1)),
            Kind::Pit => {
                let now = p.now();
                data.fill(lock(&p.pit).read(offset as u8, now));
            }
            Kind::Port61 => {
                let now = p.now();
                data.fill(lock(&p.pit).read_port61(now));
            }
            Kind::IoApic => {
                let v = lock(&p.ioapic).read(offset & 0xff).to_le_bytes();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = v[i % 4];
                }
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let p = &self.platform;
        let v = data.first().copied().unwrap_or(0);
        match self.kind {
            Kind::Pic(c) => {
                let mut pic = lock(&p.pic);
                pic.write(c, offset as u8, v);
                p.pic_changed(&pic);
            }
            Kind::Elcr => lock(&p.pic).write_elcr(offset as usize & 1, v),
            Kind::Pit => {
                let now = p.now();
                lock(&p.pit).write(offset as u8, v, now);
                p.timers_changed();
            }
            Kind::Port61 => {
                let now = p.now();
                lock(&p.pit).write_port61(v, now);
            }
            Kind::IoApic => {
                let mut b = [0u8; 4];
                let n = data.len().min(4);
                b[..n].copy_from_slice(&data[..n]);
                let msgs = lock(&p.ioapic).write(offset & 0xff, u32::from_le_bytes(b));
                for m in msgs {
                    p.route(m);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ioapic_routes_a_gsi_to_the_lapic() {
        let p = Platform::new(1);
        let devs = p.bus_devices();
        let io = &devs.mmio[0].device;
        // Pin 11 -> vector 0x41, level, physical destination 0.
        io.lock().unwrap().write(0, &0x10u32.wrapping_add(22).to_le_bytes());
        io.lock().unwrap().write(0x10, &(0x41u32 | 1 << 15).to_le_bytes());
        io.lock().unwrap().write(0, &0x27u32.to_le_bytes());
        io.lock().unwrap().write(0x10, &0u32.to_le_bytes());
        let l = p.lapic(0).unwrap();
        l.mmio_write(0xf0, 0x1ff);
        // The 8259 path (LINT0 ExtINT) is masked as an OS using the I/O APIC does.
        l.mmio_write(0x350, 1 << 16);
        p.set_level(11, true);
        assert_eq!(l.take_interrupt(), Some(0x41));
        // Level-triggered: EOI with the line still high delivers again.
        l.mmio_write(0xb0, 0);
        assert_eq!(l.take_interrupt(), Some(0x41));
        p.set_level(11, false);
        l.mmio_write(0xb0, 0);
        assert_eq!(l.take_interrupt(), None);
    }

    #[test]
    fn apic_timer_one_shot_fires() {
        let p = Platform::new(1);
        let l = p.lapic(0).unwrap();
        l.mmio_write(0xf0, 0x1ff);
        l.mmio_write(0x3e0, 0xb); // divide by 1
        l.mmio_write(0x320, 0x30);
        l.mmio_write(0x380, 1_000_000); // 1 ms
        assert_eq!(l.take_interrupt(), None);
        std::thread::sleep(Duration::from_millis(3));
        p.poll();
        assert_eq!(l.take_interrupt(), Some(0x30));
    }
}
