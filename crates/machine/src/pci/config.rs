//! A PCI function's 256-byte configuration space: the standard type-0 header, BARs that the
//! firmware sizes and moves, and a capability list.

/// The kind of a base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// An I/O port range.
    Io,
    /// A 32-bit memory range.
    Mem32,
    /// A 64-bit memory range (occupies this BAR slot and the next).
    Mem64,
}

/// Where a BAR is decoded right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarMapping {
    /// The BAR's kind.
    pub kind: BarKind,
    /// The guest address (port number for I/O BARs).
    pub base: u64,
    /// The BAR's size in bytes (a power of two).
    pub size: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bar {
    kind: BarKind,
    size: u64,
}

/// Offsets of the standard header fields.
pub mod reg {
    /// Vendor ID (u16).
    pub const VENDOR_ID: usize = 0x00;
    /// Device ID (u16).
    pub const DEVICE_ID: usize = 0x02;
    /// Command (u16).
    pub const COMMAND: usize = 0x04;
    /// Status (u16).
    pub const STATUS: usize = 0x06;
    /// Revision ID (u8).
    pub const REVISION: usize = 0x08;
    /// Programming interface, subclass, class (u8 each).
    pub const CLASS_PROG: usize = 0x09;
    /// Header type (u8).
    pub const HEADER_TYPE: usize = 0x0e;
    /// First BAR (u32 each, six of them).
    pub const BAR0: usize = 0x10;
    /// Subsystem vendor ID (u16).
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
    /// Subsystem ID (u16).
    pub const SUBSYSTEM_ID: usize = 0x2e;
    /// Capabilities pointer (u8).
    pub const CAPABILITIES: usize = 0x34;
    /// Interrupt line (u8).
    pub const INTERRUPT_LINE: usize = 0x3c;
    /// Interrupt pin (u8).
    pub const INTERRUPT_PIN: usize = 0x3d;
}

/// Command register bits.
pub mod command {
    /// I/O space decode enable.
    pub const IO: u16 = 1 << 0;
    /// Memory space decode enable.
    pub const MEMORY: u16 = 1 << 1;
    /// Bus master enable.
    pub const BUS_MASTER: u16 = 1 << 2;
    /// INTx disable.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

const STATUS_CAP_LIST: u16 = 1 << 4;
const STATUS_INTERRUPT: u16 = 1 << 3;

/// Identity of a PCI function.
#[derive(Debug, Clone, Copy, Default)]
pub struct PciId {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code (class << 16 | subclass << 8 | prog-if).
    pub class: u32,
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// A function's configuration space with its write masks.
#[derive(Clone)]
pub struct PciConfig {
    data: [u8; 256],
    writable: [u8; 256],
    bars: [Option<Bar>; 6],
    next_cap: usize,
    last_cap: usize,
}

impl PciConfig {
    /// A type-0 header for `id`; `interrupt_pin` is 0 for none, 1-4 for INTA-INTD.
    pub fn new(id: PciId, interrupt_pin: u8) -> Self {
        let mut cfg =
            Self { data: [0; 256], writable: [0; 256], bars: [None; 6], next_cap: 0x40, last_cap: 0 };
        cfg.set_u16(reg::VENDOR_ID, id.vendor);
        cfg.set_u16(reg::DEVICE_ID, id.device);
        cfg.data[reg::REVISION] = id.revision;
        cfg.data[reg::CLASS_PROG] = id.class as u8;
        cfg.data[reg::CLASS_PROG + 1] = (id.class >> 8) as u8;
        cfg.data[reg::CLASS_PROG + 2] = (id.class >> 16) as u8;
        cfg.set_u16(reg::SUBSYSTEM_VENDOR_ID, id.subsystem_vendor);
        cfg.set_u16(reg::SUBSYSTEM_ID, id.subsystem);
        cfg.data[reg::INTERRUPT_PIN] = interrupt_pin;
        let cmd_mask = command::IO | command::MEMORY | command::BUS_MASTER | command::INTX_DISABLE;
        cfg.set_writable(reg::COMMAND, &cmd_mask.to_le_bytes());
        cfg.set_writable(reg::INTERRUPT_LINE, &[0xff]);
        cfg
    }

    /// Declares BAR `index` of `kind` and `size` (a power of two; I/O at least 4, memory at
    /// least 16 bytes). A 64-bit BAR also takes slot `index + 1`.
    pub fn add_bar(&mut self, index: usize, kind: BarKind, size: u64) {
        assert!(index < 6 && size.is_power_of_two(), "a programming error in a device model");
        let off = reg::BAR0 + index * 4;
        let mask = !(size - 1);
        match kind {
            BarKind::Io => {
                self.data[off] = 0x1;
                self.set_writable(off, &((mask as u32) & !0x3).to_le_bytes());
            }
            BarKind::Mem32 => self.set_writable(off, &((mask as u32) & !0xf).to_le_bytes()),
            BarKind::Mem64 => {
                assert!(index < 5, "a 64-bit BAR needs two slots");
                self.data[off] = 0x4;
                self.set_writable(off, &((mask as u32) & !0xf).to_le_bytes());
                self.set_writable(off + 4, &((mask >> 32) as u32).to_le_bytes());
            }
        }
        self.bars[index] = Some(Bar { kind, size });
    }

    /// Appends a capability with `id` and `body` (the bytes after the id/next pair), making
    /// `writable` (same length as `body`) guest-writable. Returns its offset in config space.
    pub fn add_capability(&mut self, id: u8, body: &[u8], writable: &[u8]) -> usize {
        let off = self.next_cap;
        let len = (2 + body.len() + 3) & !3;
        assert!(off + len <= 256, "capabilities overflow config space");
        self.data[off] = id;
        self.data[off + 1] = 0;
        self.data[off + 2..off + 2 + body.len()].copy_from_slice(body);
        self.writable[off + 2..off + 2 + writable.len()].copy_from_slice(writable);
        if self.last_cap == 0 {
            self.data[reg::CAPABILITIES] = off as u8;
            let status = self.u16(reg::STATUS) | STATUS_CAP_LIST;
            self.set_u16(reg::STATUS, status);
        } else {
            self.data[self.last_cap + 1] = off as u8;
        }
        self.last_cap = off;
        self.next_cap = off + len;
        off
    }

    /// Reads from config space at `offset`; bytes past the end read as zero.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.data.get(offset + i).copied().unwrap_or(0);
        }
    }

    /// Writes to config space through the write masks; read-only bits keep their value.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(idx) = offset.checked_add(i).filter(|&x| x < 256) else {
                break;
            };
            let mask = self.writable[idx];
            self.data[idx] = (self.data[idx] & !mask) | (b & mask);
        }
    }

    /// Marks `bytes.len()` bytes at `offset` writable with the given bit masks.
    pub fn set_writable(&mut self, offset: usize, bytes: &[u8]) {
        self.writable[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// A little-endian u16 at `offset`.
    pub fn u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.data[offset], self.data[offset + 1]])
    }

    /// A little-endian u32 at `offset`.
    pub fn u32(&self, offset: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.data[offset..offset + 4]);
        u32::from_le_bytes(b)
    }

    /// Sets a u16 directly (device-side, ignoring write masks).
    pub fn set_u16(&mut self, offset: usize, v: u16) {
        self.data[offset..offset + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Sets a u32 directly (device-side, ignoring write masks).
    pub fn set_u32(&mut self, offset: usize, v: u32) {
        self.data[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Raw bytes (device-side).
    pub fn bytes_mut(&mut self) -> &mut [u8; 256] {
        &mut self.data
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.u16(reg::COMMAND)
    }

    /// Reflects a pending INTx in the status register.
    pub fn set_interrupt_status(&mut self, pending: bool) {
        let s = self.u16(reg::STATUS);
        let s = if pending { s | STATUS_INTERRUPT } else { s & !STATUS_INTERRUPT };
        self.set_u16(reg::STATUS, s);
    }

    /// The BAR's current address and size, if it is decoded (its space is enabled in the
    /// command register and its address is a plausible one rather than a sizing pattern).
    pub fn bar_mapping(&self, index: usize) -> Option<BarMapping> {
        let bar = self.bars.get(index).copied().flatten()?;
        let off = reg::BAR0 + index * 4;
        let cmd = self.command();
        let base = match bar.kind {
            BarKind::Io => {
                if cmd & command::IO == 0 {
                    return None;
                }
                u64::from(self.u32(off) & !0x3)
            }
            BarKind::Mem32 => {
                if cmd & command::MEMORY == 0 {
                    return None;
                }
                u64::from(self.u32(off) & !0xf)
            }
            BarKind::Mem64 => {
                if cmd & command::MEMORY == 0 {
                    return None;
                }
                u64::from(self.u32(off) & !0xf) | (u64::from(self.u32(off + 4)) << 32)
            }
        };
        let limit = match bar.kind {
            BarKind::Io => 0x1_0000,
            BarKind::Mem32 => 0x1_0000_0000,
            BarKind::Mem64 => 1 << 52,
        };
        let end = base.checked_add(bar.size)?;
        // Address zero and ranges that run past the top (sizing writes of all-ones) are not
        // decoded.
        if base == 0 || end > limit || end == limit {
            return None;
        }
        Some(BarMapping { kind: bar.kind, base, size: bar.size })
    }

    /// Which BAR (if any) contains config-space `offset`.
    pub fn bar_index_at(offset: usize) -> Option<usize> {
        (reg::BAR0..reg::BAR0 + 24).contains(&offset).then(|| (offset - reg::BAR0) / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> PciConfig {
        let mut c = PciConfig::new(
            PciId { vendor: 0x1af4, device: 0x1001, class: 0x010000, ..Default::default() },
            1,
        );
        c.add_bar(0, BarKind::Io, 0x40);
        c.add_bar(1, BarKind::Mem32, 0x1000);
        c.add_bar(4, BarKind::Mem64, 0x4000);
        c
    }

    #[test]
    fn sizing_reads_back_the_size_mask() {
        let mut c = dev();
        c.write(0x10, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.u32(0x10), 0xffff_ffc1);
        c.write(0x14, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.u32(0x14), 0xffff_f000);
        c.write(0x20, &0xffff_ffffu32.to_le_bytes());
        c.write(0x24, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.u32(0x20), 0xffff_c004);
        assert_eq!(c.u32(0x24), 0xffff_ffff);
        // Unused BARs stay zero.
        c.write(0x18, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.u32(0x18), 0);
        // Vendor ID is read-only.
        c.write(0, &[0, 0]);
        assert_eq!(c.u16(0), 0x1af4);
    }

    #[test]
    fn mapping_follows_command_and_address() {
        let mut c = dev();
        c.write(0x10, &0xc040u32.to_le_bytes());
        c.write(0x14, &0xfebf_1000u32.to_le_bytes());
        assert_eq!(c.bar_mapping(0), None, "decode disabled");
        c.write(reg::COMMAND, &(command::IO | command::MEMORY).to_le_bytes());
        assert_eq!(c.bar_mapping(0), Some(BarMapping { kind: BarKind::Io, base: 0xc040, size: 0x40 }));
        assert_eq!(
            c.bar_mapping(1),
            Some(BarMapping { kind: BarKind::Mem32, base: 0xfebf_1000, size: 0x1000 })
        );
        // A sizing pattern is not a mapping.
        c.write(0x14, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.bar_mapping(1), None);
        assert_eq!(c.bar_mapping(4), None, "address zero");
        c.write(0x20, &0x8000_0000u32.to_le_bytes());
        c.write(0x24, &1u32.to_le_bytes());
        assert_eq!(
            c.bar_mapping(4),
            Some(BarMapping { kind: BarKind::Mem64, base: 0x1_8000_0000, size: 0x4000 })
        );
    }

    #[test]
    fn capabilities_are_chained() {
        let mut c = dev();
        let a = c.add_capability(0x09, &[1, 2, 3], &[0, 0, 0]);
        let b = c.add_capability(0x11, &[0; 10], &[0xff; 10]);
        assert_eq!(c.u16(reg::STATUS) & STATUS_CAP_LIST, STATUS_CAP_LIST);
        assert_eq!(c.data[reg::CAPABILITIES] as usize, a);
        assert_eq!(c.data[a + 1] as usize, b);
        assert_eq!(c.data[b + 1], 0);
        c.write(b + 2, &[0xaa]);
        assert_eq!(c.data[b + 2], 0xaa);
        c.write(a + 2, &[0xaa]);
        assert_eq!(c.data[a + 2], 1);
    }
}
