//! The PCI root complex: configuration mechanism #1 (0xCF8/0xCFC) on bus 0, and BAR mappings
//! kept in step with what the guest writes to config space.

use std::sync::{Arc, Mutex};

use super::{BarIoEvent, BarKind, BarMapping, IoEventAddress, IoEventBinder, PciConfig, PciDevice};
use crate::bus::{Bus, BusDevice};
use crate::power::{PowerControl, PowerEvent};

/// The first port of the configuration mechanism (0xCF8-0xCFF; 0xCF9 is the reset control).
pub const PCI_CONFIG_PORT: u64 = 0xcf8;

type SharedPci = Arc<Mutex<dyn PciDevice>>;

struct Slot {
    device: SharedPci,
    mapped: [Option<BarMapping>; 6],
    ioevents: Vec<BarIoEvent>,
}

/// Forwards bus accesses in one BAR's range to its device.
struct BarWindow {
    device: SharedPci,
    bar: usize,
}

impl BusDevice for BarWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.device.lock().unwrap_or_else(|e| e.into_inner()).read_bar(self.bar, offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.device.lock().unwrap_or_else(|e| e.into_inner()).write_bar(self.bar, offset, data);
    }
}

/// Bus 0 with up to 32 single-function devices.
pub struct PciRoot {
    slots: Vec<Option<Slot>>,
    address: u32,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    power: Arc<PowerControl>,
    reset_control: u8,
    binder: Option<Arc<dyn IoEventBinder>>,
}

impl PciRoot {
    /// An empty bus 0 that maps BARs onto `pio` and `mmio`.
    pub fn new(pio: Arc<Bus>, mmio: Arc<Bus>, power: Arc<PowerControl>) -> Self {
        Self {
            slots: (0..32).map(|_| None).collect(),
            address: 0,
            pio,
            mmio,
            power,
            reset_control: 0,
            binder: None,
        }
    }

    /// Binds devices' doorbells through `binder` whenever their BARs are mapped.
    pub fn set_ioevent_binder(&mut self, binder: Arc<dyn IoEventBinder>) {
        self.binder = Some(binder);
    }

    /// Puts `device` at slot `slot` (function 0). Returns false if the slot is taken or invalid.
    pub fn add(&mut self, slot: usize, device: SharedPci) -> bool {
        match self.slots.get_mut(slot) {
            Some(s @ None) => {
                let ioevents = device.lock().unwrap_or_else(|e| e.into_inner()).ioevents();
                *s = Some(Slot { device, mapped: [None; 6], ioevents });
                true
            }
            _ => false,
        }
    }

    /// The first free slot at or after `from`.
    pub fn free_slot(&self, from: usize) -> Option<usize> {
        (from..32).find(|&i| self.slots[i].is_none())
    }

    fn target(&self) -> Option<(usize, usize)> {
        let a = self.address;
        let enabled = a & 0x8000_0000 != 0;
        let bus = (a >> 16) & 0xff;
        let slot = ((a >> 11) & 0x1f) as usize;
        let function = (a >> 8) & 0x7;
        let reg = (a & 0xfc) as usize;
        (enabled && bus == 0 && function == 0 && self.slots[slot].is_some()).then_some((slot, reg))
    }

    /// A config read of `data.len()` bytes at byte `offset` of slot `slot`.
    pub fn config_read(&mut self, slot: usize, offset: usize, data: &mut [u8]) {
        match self.slots.get(slot).and_then(|s| s.as_ref()) {
            Some(s) => s.device.lock().unwrap_or_else(|e| e.into_inner()).read_config(offset, data),
            None => data.fill(0xff),
        }
    }

    /// A config write at byte `offset` of slot `slot`; remaps the device's BARs if they moved.
    pub fn config_write(&mut self, slot: usize, offset: usize, data: &[u8]) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        let wanted: [Option<BarMapping>; 6] = {
            let mut dev = s.device.lock().unwrap_or_else(|e| e.into_inner());
            dev.write_config(offset, data);
            let cfg: &PciConfig = dev.config();
            std::array::from_fn(|i| cfg.bar_mapping(i))
        };
        for (bar, want) in wanted.into_iter().enumerate() {
            if s.mapped[bar] == want {
                continue;
            }
            if let Some(old) = s.mapped[bar].take() {
                bus_for(&self.pio, &self.mmio, old.kind).remove(old.base);
                if let Some(b) = &self.binder {
                    for ev in s.ioevents.iter().filter(|e| e.bar == bar) {
                        b.unbind(event_address(old, ev.offset), ev);
                    }
                }
            }
            if let Some(new) = want {
                let window = Arc::new(Mutex::new(BarWindow { device: s.device.clone(), bar }));
                match bus_for(&self.pio, &self.mmio, new.kind).insert(new.base, new.size, window) {
                    Ok(()) => {
                        s.mapped[bar] = Some(new);
                        if let Some(b) = &self.binder {
                            for ev in s.ioevents.iter().filter(|e| e.bar == bar) {
                                if let Err(e) = b.bind(event_address(new, ev.offset), ev) {
                                    log::debug!("PCI 00:{slot:02x}.0 BAR{bar} doorbell not bound: {e}");
                                }
                            }
                        }
                    }
                    Err(e) => log::warn!("PCI 00:{slot:02x}.0 BAR{bar}: {e}; left unmapped"),
                }
            }
        }
    }
}

fn event_address(m: BarMapping, offset: u64) -> IoEventAddress {
    match m.kind {
        BarKind::Io => IoEventAddress::Pio(m.base + offset),
        BarKind::Mem32 | BarKind::Mem64 => IoEventAddress::Mmio(m.base + offset),
    }
}

fn bus_for<'a>(pio: &'a Bus, mmio: &'a Bus, kind: BarKind) -> &'a Bus {
    match kind {
        BarKind::Io => pio,
        BarKind::Mem32 | BarKind::Mem64 => mmio,
    }
}

impl BusDevice for PciRoot {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            1 if data.len() == 1 => data[0] = self.reset_control,
            4..=7 => match self.target() {
                Some((slot, reg)) => self.config_read(slot, reg + (offset as usize - 4), data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.address = u32::from_le_bytes(b);
            }
            1 if data.len() == 1 => {
                // Reset control register: a 0->1 transition of bit 2 resets the system.
                let v = data[0];
                if v & 0x4 != 0 && self.reset_control & 0x4 == 0 {
                    self.power.request(PowerEvent::Reset);
                }
                self.reset_control = v & 0x2;
            }
            4..=7 => {
                if let Some((slot, reg)) = self.target() {
                    self.config_write(slot, reg + (offset as usize - 4), data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{HostBridge, PciId};

    struct Dummy {
        config: PciConfig,
        last_write: Option<(usize, u64, Vec<u8>)>,
    }
    impl PciDevice for Dummy {
        fn config(&self) -> &PciConfig {
            &self.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.config
        }
        fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            data.fill((bar as u8) << 4 | offset as u8);
        }
        fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.last_write = Some((bar, offset, data.to_vec()));
        }
    }

    fn cfg_addr(slot: u32, reg: u32) -> [u8; 4] {
        (0x8000_0000 | slot << 11 | reg).to_le_bytes()
    }

    #[test]
    fn bars_follow_the_guest() {
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let power = Arc::new(PowerControl::new());
        let mut root = PciRoot::new(pio.clone(), mmio.clone(), power.clone());
        assert!(root.add(0, Arc::new(Mutex::new(HostBridge::new()))));
        let mut config = PciConfig::new(PciId { vendor: 0x1af4, device: 0x1001, ..Default::default() }, 1);
        config.add_bar(0, BarKind::Io, 0x20);
        config.add_bar(1, BarKind::Mem32, 0x1000);
        let dev = Arc::new(Mutex::new(Dummy { config, last_write: None }));
        assert!(root.add(3, dev.clone()));
        assert!(!root.add(3, dev.clone()));

        // Vendor/device through 0xCF8/0xCFC.
        root.write(0, &cfg_addr(0, 0));
        let mut id = [0u8; 4];
        root.read(4, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x1237_8086);
        // An empty slot reads all-ones.
        root.write(0, &cfg_addr(7, 0));
        root.read(4, &mut id);
        assert_eq!(id, [0xff; 4]);

        // Program BAR0 and BAR1, then enable decoding.
        root.write(0, &cfg_addr(3, 0x10));
        root.write(4, &0xc000u32.to_le_bytes());
        root.write(0, &cfg_addr(3, 0x14));
        root.write(4, &0xfebf_0000u32.to_le_bytes());
        let mut b = [0u8; 1];
        assert!(!pio.read(0xc001, &mut b), "not decoded before the command register says so");
        root.write(0, &cfg_addr(3, 0x04));
        root.write(4, &3u32.to_le_bytes());
        assert!(pio.read(0xc001, &mut b));
        assert_eq!(b[0], 0x01);
        assert!(mmio.write(0xfebf_0010, &[9, 9]));
        assert_eq!(dev.lock().unwrap().last_write, Some((1, 0x10, vec![9, 9])));

        // Move BAR0: the old range goes away.
        root.write(0, &cfg_addr(3, 0x10));
        root.write(4, &0xd000u32.to_le_bytes());
        assert!(!pio.read(0xc001, &mut b));
        assert!(pio.read(0xd002, &mut b));
        // A hostile BAR address overlapping BAR0 is refused, not a panic.
        root.write(0, &cfg_addr(3, 0x14));
        root.write(4, &0xffff_f000u32.to_le_bytes());
        assert!(!mmio.read(0xfebf_0000, &mut b));
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(bool, IoEventAddress)>>);
    impl IoEventBinder for Recorder {
        fn bind(&self, at: IoEventAddress, _ev: &BarIoEvent) -> Result<(), String> {
            self.0.lock().unwrap().push((true, at));
            Ok(())
        }
        fn unbind(&self, at: IoEventAddress, _ev: &BarIoEvent) {
            self.0.lock().unwrap().push((false, at));
        }
    }

    struct Doorbell(PciConfig);
    impl PciDevice for Doorbell {
        fn config(&self) -> &PciConfig {
            &self.0
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.0
        }
        fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn write_bar(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
        fn ioevents(&self) -> Vec<BarIoEvent> {
            let event = vmm_sys_util::eventfd::EventFd::new(0).unwrap();
            vec![BarIoEvent { bar: 0, offset: 0x10, len: 2, datamatch: Some(1), event }]
        }
    }

    #[test]
    fn doorbells_follow_their_bar() {
        let power = Arc::new(PowerControl::new());
        let mut root = PciRoot::new(Arc::new(Bus::new()), Arc::new(Bus::new()), power);
        let rec = Arc::new(Recorder::default());
        root.set_ioevent_binder(rec.clone());
        let mut config = PciConfig::new(PciId { vendor: 0x1af4, device: 0x1001, ..Default::default() }, 1);
        config.add_bar(0, BarKind::Io, 0x40);
        root.add(3, Arc::new(Mutex::new(Doorbell(config))));
        root.config_write(3, 0x10, &0xc000u32.to_le_bytes());
        root.config_write(3, 0x04, &1u16.to_le_bytes());
        root.config_write(3, 0x10, &0xc040u32.to_le_bytes());
        let log = rec.0.lock().unwrap().clone();
        assert_eq!(
            log,
            vec![
                (true, IoEventAddress::Pio(0xc010)),
                (false, IoEventAddress::Pio(0xc010)),
                (true, IoEventAddress::Pio(0xc050))
            ]
        );
    }

    #[test]
    fn reset_control_requests_reset() {
        let power = Arc::new(PowerControl::new());
        let mut root = PciRoot::new(Arc::new(Bus::new()), Arc::new(Bus::new()), power.clone());
        root.write(1, &[0x02]);
        assert_eq!(power.pending(), None);
        root.write(1, &[0x06]);
        assert_eq!(power.pending(), Some(PowerEvent::Reset));
    }
}
