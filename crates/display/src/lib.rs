//! The VGA console: a std-vga adapter as QEMU's `-vga std` presents it (PCI 1234:1111, legacy
//! VGA registers and window, Bochs VBE with a linear framebuffer), a renderer that runs off the
//! vCPU thread, and an RFB (VNC) server that turns key events into PS/2 scancodes.
//!
//! The device is one [`VgaCore`] behind a mutex; [`StdVga`] hands out the views the machine
//! registers: the PCI function, the legacy port ranges, the 0xA0000 window, and a [`Display`]
//! for the VNC server.

use std::sync::{Arc, Mutex};

use machine::bus::{BusDevice, SharedDevice};
use machine::i8042::I8042;
use machine::pci::{reg, BarKind, PciConfig, PciDevice, PciId};

mod keepalive;
pub mod keymap;
mod render;
pub mod rfb;
mod screen;
mod slots;
pub mod vga;
mod zrle;

pub use render::Frame;
pub use rfb::{start_vnc, KeySink, VncError, VncServer};
pub use screen::Display;
pub use vga::{VgaCore, VRAM_SIZE};

/// First legacy VGA port (0x3B0-0x3DF).
pub const VGA_PORT_BASE: u64 = 0x3b0;
/// Number of legacy VGA ports.
pub const VGA_PORT_LEN: u64 = 0x30;
/// The Bochs VBE index port; the data port follows it. A 16-bit access to the data port
/// (0x1CF) also touches 0x1D0, so the range is three ports long.
pub const VBE_PORT_BASE: u64 = 0x1ce;
/// Ports covered from [`VBE_PORT_BASE`].
pub const VBE_PORT_LEN: u64 = 3;
/// The legacy memory window.
pub const VGA_WINDOW_BASE: u64 = 0xa_0000;
/// Size of the legacy memory window.
pub const VGA_WINDOW_LEN: u64 = 0x2_0000;
/// The fw_cfg file name under which SeaBIOS runs the VGA BIOS *for this PCI device*
/// (it passes the device's bus/device/function, so the BIOS finds BAR0).
pub const ROM_FW_CFG_NAME: &str = "pci1234,1111.rom";
/// The PCI identity of std-vga.
pub const PCI_ID: PciId = PciId {
    vendor: 0x1234,
    device: 0x1111,
    class: 0x03_0000,
    revision: 2,
    subsystem_vendor: 0x1af4,
    subsystem: 0x1100,
};
/// Size of BAR2, the MMIO register bar ("qext"): EDID at 0, VGA ports at 0x400, DISPI at 0x500.
pub const MMIO_BAR_SIZE: u64 = 0x1000;

type SharedCore = Arc<Mutex<VgaCore>>;

fn lock(core: &SharedCore) -> std::sync::MutexGuard<'_, VgaCore> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// The std-vga adapter: one core, several views of it for the machine's buses.
#[derive(Clone)]
pub struct StdVga {
    core: SharedCore,
    display: Display,
}

impl Default for StdVga {
    fn default() -> Self {
        Self::new()
    }
}

impl StdVga {
    /// A new adapter with 16 MiB of VRAM.
    pub fn new() -> Self {
        let core = Arc::new(Mutex::new(VgaCore::new()));
        let display = Display::new(core.clone());
        Self { core, display }
    }

    /// The PCI function (put it at a slot of the root complex).
    pub fn pci_device(&self) -> Arc<Mutex<StdVgaPci>> {
        let mut config = PciConfig::new(PCI_ID, 0);
        config.add_bar(0, BarKind::Mem32, VRAM_SIZE as u64);
        // Prefetchable framebuffer, as on QEMU.
        config.bytes_mut()[reg::BAR0] |= 0x08;
        config.add_bar(2, BarKind::Mem32, MMIO_BAR_SIZE);
        Arc::new(Mutex::new(StdVgaPci { config, core: self.core.clone() }))
    }

    /// The legacy VGA ports, for the port bus at [`VGA_PORT_BASE`] (+[`VGA_PORT_LEN`]).
    pub fn vga_ports(&self) -> SharedDevice {
        Arc::new(Mutex::new(VgaPorts(self.core.clone())))
    }

    /// The Bochs VBE ports, for the port bus at [`VBE_PORT_BASE`] (+[`VBE_PORT_LEN`]).
    pub fn vbe_ports(&self) -> SharedDevice {
        Arc::new(Mutex::new(VbePorts(self.core.clone())))
    }

    /// The legacy memory window, for the MMIO bus at [`VGA_WINDOW_BASE`] (+[`VGA_WINDOW_LEN`]).
    pub fn vga_window(&self) -> SharedDevice {
        Arc::new(Mutex::new(VgaWindow(self.core.clone())))
    }

    /// The picture, for [`start_vnc`] or a screenshot.
    pub fn display(&self) -> Display {
        self.display.clone()
    }

    /// Powers the adapter off and on (machine reset): registers and VRAM back to their
    /// power-on state. The views handed out before stay valid, so a VNC server started once
    /// keeps showing the adapter across guest resets.
    pub fn reset(&self) {
        let mut core = lock(&self.core);
        let generation = core.generation;
        *core = VgaCore::new();
        core.generation = generation.wrapping_add(1);
    }
}

/// A [`KeySink`] that follows the machine's keyboard controller across resets: start the VNC
/// server once with [`KeyboardLink::sink`] and [`attach`](KeyboardLink::attach) each new
/// machine's i8042. Keys pressed while none is attached are dropped.
#[derive(Clone, Default)]
pub struct KeyboardLink(Arc<Mutex<Option<Arc<Mutex<I8042>>>>>);

impl KeyboardLink {
    /// A link with no keyboard yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes keys to `i8042` from now on.
    pub fn attach(&self, i8042: Arc<Mutex<I8042>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(i8042);
    }

    /// The sink to give [`start_vnc`].
    pub fn sink(&self) -> KeySink {
        let link = self.0.clone();
        Arc::new(move |codes: &[u8]| {
            let target = link.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(kbd) = target {
                kbd.lock().unwrap_or_else(|e| e.into_inner()).queue_scancodes(codes);
            }
        })
    }
}

/// std-vga as a PCI function: BAR0 the framebuffer, BAR2 the register mirror.
pub struct StdVgaPci {
    config: PciConfig,
    core: SharedCore,
}

impl PciDevice for StdVgaPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        let mut core = lock(&self.core);
        match bar {
            0 => core.lfb_read(offset, data),
            2 => mmio_read(&mut core, offset, data),
            _ => data.fill(0xff),
        }
    }
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let mut core = lock(&self.core);
        match bar {
            0 => core.lfb_write(offset, data),
            2 => mmio_write(&mut core, offset, data),
            _ => {}
        }
    }
}

/// BAR2: 0x400-0x41F mirror ports 0x3C0-0x3DF, 0x500-0x515 the DISPI registers (index * 2).
fn mmio_read(core: &mut VgaCore, offset: u64, data: &mut [u8]) {
    match offset {
        0x400..=0x41f => {
            for (i, b) in data.iter_mut().enumerate() {
                *b = core.port_read(0x3c0 + (offset - 0x400) as u16 + i as u16);
            }
        }
        0x500..=0x515 if data.len() == 2 => {
            core.vbe_index = ((offset - 0x500) / 2) as u16;
            data.copy_from_slice(&core.vbe_read().to_le_bytes());
        }
        // No EDID: SeaBIOS reads zeros and keeps its defaults.
        _ => data.fill(0),
    }
}

fn mmio_write(core: &mut VgaCore, offset: u64, data: &[u8]) {
    match offset {
        0x400..=0x41f => {
            for (i, &b) in data.iter().enumerate() {
                core.port_write(0x3c0 + (offset - 0x400) as u16 + i as u16, b);
            }
        }
        0x500..=0x515 if data.len() == 2 => {
            core.vbe_index = ((offset - 0x500) / 2) as u16;
            core.vbe_write(u16::from_le_bytes([data[0], data[1]]));
        }
        _ => {}
    }
}

/// Legacy ports 0x3B0-0x3DF; a wide access is that many byte accesses at consecutive ports
/// (`outw 0x3C4` writes the index and then the data register).
struct VgaPorts(SharedCore);

impl BusDevice for VgaPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut core = lock(&self.0);
        for (i, b) in data.iter_mut().enumerate() {
            *b = core.port_read((VGA_PORT_BASE + offset) as u16 + i as u16);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut core = lock(&self.0);
        for (i, &b) in data.iter().enumerate() {
            core.port_write((VGA_PORT_BASE + offset) as u16 + i as u16, b);
        }
    }
}

/// Ports 0x1CE (index) and 0x1CF/0x1D0 (data), 16 bits wide.
struct VbePorts(SharedCore);

impl BusDevice for VbePorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let core = lock(&self.0);
        let v = if offset == 0 { core.vbe_index } else { core.vbe_read() };
        let bytes = v.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut core = lock(&self.0);
        let v = match data {
            [lo] => u16::from(*lo),
            [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
            [] => return,
        };
        if offset == 0 {
            core.vbe_index = v;
        } else {
            core.vbe_write(v);
        }
    }
}

/// The 0xA0000-0xBFFFF window.
struct VgaWindow(SharedCore);

impl BusDevice for VgaWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut core = lock(&self.0);
        for (i, b) in data.iter_mut().enumerate() {
            *b = core.window_read(offset + i as u64);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut core = lock(&self.0);
        for (i, &b) in data.iter().enumerate() {
            core.window_write(offset + i as u64, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine::bus::Bus;

    #[test]
    fn buses_reach_one_core() {
        let vga = StdVga::new();
        let pio = Bus::new();
        pio.insert(VGA_PORT_BASE, VGA_PORT_LEN, vga.vga_ports()).unwrap();
        pio.insert(VBE_PORT_BASE, VBE_PORT_LEN, vga.vbe_ports()).unwrap();
        let mmio = Bus::new();
        mmio.insert(VGA_WINDOW_BASE, VGA_WINDOW_LEN, vga.vga_window()).unwrap();
        // outw 0x3C4 = sequencer index 2, data 0x0f.
        assert!(pio.write(0x3c4, &[2, 0x0f]));
        pio.write(0x3c4, &[2]);
        let mut b = [0u8];
        pio.read(0x3c5, &mut b);
        assert_eq!(b[0], 0x0f);
        // DISPI through 16-bit accesses at 0x1CE/0x1CF.
        pio.write(0x1ce, &0u16.to_le_bytes());
        let mut w = [0u8; 2];
        assert!(pio.read(0x1cf, &mut w));
        assert_eq!(u16::from_le_bytes(w), 0xb0c5);
        // The window in mode 13h-like chain-4 reaches VRAM that BAR0 reads back.
        pio.write(0x3ce, &[6, 0x05]);
        pio.write(0x3c4, &[4, 0x0e]);
        mmio.write(0xa0010, &[0x42]);
        let dev = vga.pci_device();
        let mut d = dev.lock().unwrap();
        let mut v = [0u8];
        d.read_bar(0, 0x10, &mut v);
        assert_eq!(v[0], 0x42);
        // BAR0 is a prefetchable 16 MiB memory BAR; the class is VGA.
        d.config_mut().write(0x10, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(d.config().u32(0x10), 0xff00_0008);
        assert_eq!(d.config().u32(0x08) >> 8, 0x03_0000);
        // BAR2 mirrors the DISPI registers.
        let mut id = [0u8; 2];
        d.read_bar(2, 0x500, &mut id);
        assert_eq!(u16::from_le_bytes(id), 0xb0c5);
    }

    #[test]
    fn reset_keeps_the_views() {
        let vga = StdVga::new();
        let window = vga.vga_window();
        let ports = vga.vga_ports();
        ports.lock().unwrap().write(0x3ce - VGA_PORT_BASE, &[6, 0x05]);
        ports.lock().unwrap().write(0x3c4 - VGA_PORT_BASE, &[4, 0x0e]);
        ports.lock().unwrap().write(0x3c4 - VGA_PORT_BASE, &[2, 0x0f]);
        window.lock().unwrap().write(3, &[9]);
        assert_eq!(lock(&vga.core).vram[3], 9);
        vga.reset();
        assert_eq!(lock(&vga.core).vram[3], 0);
        assert_eq!(lock(&vga.core).seq[4], 0);
        let mut b = [0u8];
        ports.lock().unwrap().read(0x3cc - VGA_PORT_BASE, &mut b);
        assert_eq!(b[0], 0x01, "the old views reach the reset core");
    }
}
