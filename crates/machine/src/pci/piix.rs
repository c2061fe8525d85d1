//! The i440FX host bridge and the PIIX3 ISA bridge: the two functions SeaBIOS looks for.

use super::{PciConfig, PciDevice, PciId};

/// The i440FX PCI and memory controller (00:00.0).
///
/// Its PAM registers (0x59-0x5F) are writable; guest RAM already backs 0xC0000-0xFFFFF, so
/// SeaBIOS's shadowing works without remapping anything.
pub struct HostBridge {
    config: PciConfig,
}

impl HostBridge {
    /// A fresh host bridge.
    pub fn new() -> Self {
        let mut config = PciConfig::new(
            PciId { vendor: 0x8086, device: 0x1237, class: 0x060000, revision: 2, ..Default::default() },
            0,
        );
        // PAM0-PAM6 and SMRAM.
        config.set_writable(0x59, &[0xff; 7]);
        config.set_writable(0x72, &[0xff]);
        Self { config }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write_bar(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

/// The PIIX3 PCI-to-ISA bridge (00:01.0) with its PIRQ routing registers.
pub struct Piix3 {
    config: PciConfig,
}

/// Config offset of PIRQA-PIRQD routing.
pub const PIRQ_ROUTE: usize = 0x60;

impl Piix3 {
    /// A fresh PIIX3 with PIRQs unrouted (0x80) until the firmware programs them.
    pub fn new() -> Self {
        let mut config = PciConfig::new(
            PciId { vendor: 0x8086, device: 0x7000, class: 0x060100, ..Default::default() },
            0,
        );
        // Multi-function header, as on real hardware (IDE and USB live at functions 1 and 2).
        config.bytes_mut()[super::reg::HEADER_TYPE] = 0x80;
        config.bytes_mut()[PIRQ_ROUTE..PIRQ_ROUTE + 4].copy_from_slice(&[0x80; 4]);
        config.set_writable(PIRQ_ROUTE, &[0x8f; 4]);
        // Top of memory, misc control, APIC base and the rest of the low registers.
        config.set_writable(0x4c, &[0xff; 4]);
        config.set_writable(0x69, &[0xff; 16]);
        config.set_writable(0x80, &[0xff; 8]);
        Self { config }
    }

    /// The ISA IRQ that PIRQ `n` (0 = A) is routed to, if routed.
    pub fn pirq_irq(&self, n: usize) -> Option<u8> {
        let v = self.config.u32(PIRQ_ROUTE).to_le_bytes()[n & 3];
        (v & 0x80 == 0).then_some(v & 0x0f)
    }
}

impl Default for Piix3 {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for Piix3 {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
    fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write_bar(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}
