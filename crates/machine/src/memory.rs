//! Guest memory and the PC memory map.
//!
//! ```text
//! 0x0000_0000 - 0x0009_FFFF  RAM (conventional memory)
//! 0x000A_0000 - 0x000B_FFFF  VGA window (MMIO)
//! 0x000C_0000 - low_end      RAM; 0xE0000-0xFFFFF starts as a copy of the BIOS's last 128 KiB
//! low_end     - 0xFEBF_FFFF  PCI hole (32-bit BARs)
//! 0xFEC0_0000                IOAPIC, 0xFEE0_0000 local APIC
//! 4 GiB - bios_size - 4 GiB  BIOS ROM (read-only)
//! 0x1_0000_0000 -            RAM above 4 GiB (what did not fit below low_end)
//! ```

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory as every accelerator sees it.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Where the VGA window starts.
pub const VGA_WINDOW: u64 = 0xa_0000;
/// Where RAM resumes after the VGA window.
pub const HIGH_ISA_RAM: u64 = 0xc_0000;
/// The BIOS shadow area that SeaBIOS jumps into after reset.
pub const BIOS_SHADOW: u64 = 0xe_0000;
/// The highest address RAM below 4 GiB may reach (the PCI hole starts here at the latest).
pub const MAX_LOW_END: u64 = 0xe000_0000;
/// 4 GiB.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// The IOAPIC's MMIO base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// The local APIC's MMIO base.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Pages KVM needs for its TSS and identity map (reserved in the e820 map).
pub const KVM_IDENTITY_MAP: u64 = 0xfffb_c000;
/// The TSS follows the identity-map page.
pub const KVM_TSS: u64 = KVM_IDENTITY_MAP + 0x1000;
/// Lowest RAM size we accept (SeaBIOS and a kernel need room).
pub const MIN_RAM: u64 = 16 << 20;

/// e820 entry types.
pub mod e820 {
    /// Usable RAM.
    pub const RAM: u32 = 1;
    /// Reserved.
    pub const RESERVED: u32 = 2;
}

/// Errors building guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Too little memory was asked for.
    #[error("{0} MiB of guest memory is too little; give at least 16 MiB (CHR wants 256M or more)")]
    TooSmall(u64),
    /// The host could not map the memory.
    #[error("cannot allocate {size} MiB of guest memory: {source}. Lower --memory or free host memory")]
    Map { size: u64, source: vm_memory::mmap::FromRangesError },
    /// The firmware image has an impossible size.
    #[error("the firmware image is {0} bytes; a BIOS image must be a multiple of 64 KiB between 128 KiB and 16 MiB")]
    BadFirmwareSize(usize),
    /// Copying into guest memory failed.
    #[error("cannot write into guest memory: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
}

/// One region of guest physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Guest physical start.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Whether guest writes must be ignored (the BIOS ROM).
    pub read_only: bool,
}

/// The memory map for a given RAM size and firmware size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Total guest RAM in bytes.
    pub ram_size: u64,
    /// Where RAM below 4 GiB ends.
    pub low_end: u64,
    /// The BIOS ROM's size in bytes, mapped just below 4 GiB.
    pub bios_size: u64,
}

impl MemoryLayout {
    /// The layout for `ram_size` bytes of RAM and a BIOS of `bios_size` bytes.
    pub fn new(ram_size: u64, bios_size: u64) -> Result<Self, MemoryError> {
        if ram_size < MIN_RAM {
            return Err(MemoryError::TooSmall(ram_size >> 20));
        }
        if !bios_size.is_multiple_of(0x1_0000) || !(0x2_0000..=0x100_0000).contains(&bios_size) {
            return Err(MemoryError::BadFirmwareSize(bios_size as usize));
        }
        Ok(Self { ram_size, low_end: ram_size.min(MAX_LOW_END), bios_size })
    }

    /// RAM above 4 GiB.
    pub fn high_size(&self) -> u64 {
        self.ram_size - self.low_end
    }

    /// Where the BIOS ROM starts.
    pub fn bios_base(&self) -> u64 {
        FOUR_GIB - self.bios_size
    }

    /// Every region of guest memory, RAM and ROM, in address order.
    pub fn regions(&self) -> Vec<Region> {
        let mut v = vec![
            Region { start: 0, len: VGA_WINDOW, read_only: false },
            Region { start: HIGH_ISA_RAM, len: self.low_end - HIGH_ISA_RAM, read_only: false },
            Region { start: self.bios_base(), len: self.bios_size, read_only: true },
        ];
        if self.high_size() > 0 {
            v.push(Region { start: FOUR_GIB, len: self.high_size(), read_only: false });
        }
        v
    }

    /// Whether `addr` is in the read-only BIOS ROM.
    pub fn is_rom(&self, addr: u64) -> bool {
        (self.bios_base()..FOUR_GIB).contains(&addr)
    }

    /// The e820 map given to the firmware through fw_cfg: (start, length, type).
    pub fn e820(&self) -> Vec<(u64, u64, u32)> {
        let mut v = vec![(0, self.low_end, e820::RAM), (KVM_IDENTITY_MAP, 0x4000, e820::RESERVED)];
        if self.high_size() > 0 {
            v.push((FOUR_GIB, self.high_size(), e820::RAM));
        }
        v
    }

    /// Allocates guest memory for this layout and loads `bios` into the ROM and its last
    /// 128 KiB into the shadow area below 1 MiB.
    pub fn build(&self, bios: &[u8]) -> Result<GuestMemory, MemoryError> {
        if bios.len() as u64 != self.bios_size {
            return Err(MemoryError::BadFirmwareSize(bios.len()));
        }
        let ranges: Vec<(GuestAddress, usize)> =
            self.regions().iter().map(|r| (GuestAddress(r.start), r.len as usize)).collect();
        let mem = GuestMemoryMmap::from_ranges(&ranges)
            .map_err(|source| MemoryError::Map { size: self.ram_size >> 20, source })?;
        mem.write_slice(bios, GuestAddress(self.bios_base()))?;
        let shadow = &bios[bios.len() - 0x2_0000..];
        mem.write_slice(shadow, GuestAddress(BIOS_SHADOW))?;
        Ok(mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_fits_below_the_hole() {
        let l = MemoryLayout::new(256 << 20, 256 << 10).unwrap();
        assert_eq!(l.low_end, 256 << 20);
        assert_eq!(l.high_size(), 0);
        assert_eq!(l.regions().len(), 3);
        assert_eq!(l.e820()[0], (0, 256 << 20, e820::RAM));
        let bios: Vec<u8> = (0..(256u32 << 10)).map(|i| i as u8).collect();
        let mem = l.build(&bios).unwrap();
        // The reset vector's bytes appear both at the top of 4 GiB and at 0xFFFF0.
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        mem.read_slice(&mut a, GuestAddress(FOUR_GIB - 16)).unwrap();
        mem.read_slice(&mut b, GuestAddress(0xf_fff0)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn large_guest_splits_around_4g_and_bad_sizes_fail() {
        let l = MemoryLayout::new(4 << 30, 256 << 10).unwrap();
        assert_eq!(l.low_end, MAX_LOW_END);
        assert_eq!(l.high_size(), (4 << 30) - MAX_LOW_END);
        assert!(matches!(MemoryLayout::new(1 << 20, 256 << 10), Err(MemoryError::TooSmall(1))));
        assert!(matches!(MemoryLayout::new(256 << 20, 1000), Err(MemoryError::BadFirmwareSize(1000))));
    }
}
