//! SeaBIOS POST on the interpreter with the machine crate's real devices (CMOS, fw_cfg, PCI,
//! serial, debug console) and the userspace irqchip: it must calibrate its clock on the PIT,
//! enumerate PCI and reach its boot menu stage ("No bootable device" with no disk).

#![allow(clippy::unwrap_used)]

use machine::bus::Offset;
use machine::bus::SharedDevice;
use machine::cmos::{Cmos, CMOS_PORT};
use machine::debugcon::{DebugCon, DEBUGCON_PORT};
use machine::fw_cfg::{key, FwCfg, FW_CFG_PORT, FW_CFG_PORT_LEN};
use machine::i8042::{I8042, I8042_PORT, KEYBOARD_IRQ};
use machine::io::IoBuses;
use machine::irq::{InterruptController, IrqLine};
use machine::memory::MemoryLayout;
use machine::pci::{HostBridge, PciRoot, Piix3, PCI_CONFIG_PORT};
use machine::port92::{Port92, PORT92};
use machine::power::PowerControl;
use machine::serial::{SerialPort, COM1_IRQ, COM1_PORT};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use x86::InterpVcpu;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn shared<T: machine::bus::BusDevice + 'static>(d: T) -> SharedDevice {
    Arc::new(Mutex::new(d))
}

#[test]
fn seabios_post_reaches_the_boot_stage() {
    let path = "/usr/share/seabios/bios-256k.bin";
    let Ok(bios) = std::fs::read(path) else {
        test_support::skip(
            "seabios_post_reaches_the_boot_stage",
            &format!("{path} is missing (install Debian's seabios package)"),
        );
        return;
    };
    let layout = MemoryLayout::new(128 << 20, bios.len() as u64).unwrap();
    let mem = layout.build(&bios).unwrap();
    let platform = irqchip::Platform::new(1);
    let irq: Arc<dyn InterruptController> = platform.clone();
    let buses = IoBuses::default();
    let devs = platform.bus_devices();
    for r in devs.pio {
        buses.pio.insert(r.base, r.len, r.device).unwrap();
    }
    for r in devs.mmio {
        buses.mmio.insert(r.base, r.len, r.device).unwrap();
    }
    let power = Arc::new(PowerControl::new());
    let debug = Buf::default();
    let serial = Buf::default();
    buses.pio.insert(CMOS_PORT, 2, shared(Cmos::new(layout.low_end, layout.high_size(), 1))).unwrap();
    buses.pio.insert(DEBUGCON_PORT, 1, shared(DebugCon::new(Some(Box::new(debug.clone()))))).unwrap();
    buses
        .pio
        .insert(
            COM1_PORT,
            8,
            shared(SerialPort::new(IrqLine::new(irq.clone(), COM1_IRQ), Box::new(serial.clone()))),
        )
        .unwrap();
    buses.pio.insert(PORT92, 1, shared(Port92::new(power.clone()))).unwrap();
    let kbd: SharedDevice = shared(I8042::new(IrqLine::new(irq.clone(), KEYBOARD_IRQ), power.clone()));
    buses.pio.insert(I8042_PORT, 1, kbd.clone()).unwrap();
    buses.pio.insert(I8042_PORT + 4, 1, shared(Offset::new(kbd, 4))).unwrap();
    let mut pci = PciRoot::new(buses.pio.clone(), buses.mmio.clone(), power.clone());
    pci.add(0, Arc::new(Mutex::new(HostBridge::new())));
    pci.add(1, Arc::new(Mutex::new(Piix3::new())));
    buses.pio.insert(PCI_CONFIG_PORT, 8, shared(pci)).unwrap();
    let mut fw = FwCfg::new();
    fw.add_item(key::NB_CPUS, 1u16.to_le_bytes().to_vec());
    fw.add_item(key::MAX_CPUS, 1u16.to_le_bytes().to_vec());
    fw.add_item(key::RAM_SIZE, (128u64 << 20).to_le_bytes().to_vec());
    fw.add_item(key::BOOT_MENU, 0u16.to_le_bytes().to_vec());
    let mut e820 = Vec::new();
    for (start, len, kind) in layout.e820() {
        e820.extend_from_slice(&start.to_le_bytes());
        e820.extend_from_slice(&len.to_le_bytes());
        e820.extend_from_slice(&kind.to_le_bytes());
    }
    fw.add_file("etc/e820", e820).unwrap();
    buses.pio.insert(FW_CFG_PORT, FW_CFG_PORT_LEN, shared(fw)).unwrap();

    let mut vcpu = InterpVcpu::new(&mem, layout.bios_base(), 0, Some(platform.clone()));
    let t = Instant::now();
    let mut done = false;
    while t.elapsed().as_secs() < 60 {
        vcpu.run_for(&buses, 50_000).unwrap();
        let log = String::from_utf8_lossy(&debug.0.lock().unwrap()).to_string();
        if log.contains("No bootable device") || log.contains("Booting from") {
            done = true;
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&debug.0.lock().unwrap()).to_string();
    eprintln!("{log}");
    eprintln!(
        "{} instructions in {secs:.2} s ({:.1} M/s)",
        vcpu.instructions,
        vcpu.instructions as f64 / secs / 1e6
    );
    assert!(done, "SeaBIOS did not reach its boot stage");
}
