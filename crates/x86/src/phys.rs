//! Guest physical memory as host pointers: RAM regions, the read-only BIOS ROM, and MMIO for
//! every address that is in no region.

use machine::memory::GuestMemory;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

#[derive(Clone, Copy)]
struct HostRegion {
    start: u64,
    len: u64,
    host: *mut u8,
    read_only: bool,
}

/// The guest's physical address space seen through host pointers.
pub struct PhysMem {
    regions: Vec<HostRegion>,
    /// Keeps the mappings behind `regions` alive.
    _mem: GuestMemory,
    /// One bit per 4 KiB page that holds decoded instructions.
    code_bits: Vec<u64>,
}

// SAFETY: the raw pointers point into mappings owned by `_mem`, which is Send + Sync; guest
// memory is shared with devices by design and accessed with unaligned raw reads and writes.
unsafe impl Send for PhysMem {}

/// The result of looking up a physical address.
pub enum Place {
    /// RAM or ROM: a host pointer and whether writes are dropped, plus bytes left in the region.
    Ram(*mut u8, bool, u64),
    /// Not memory: the access goes to the MMIO bus.
    Mmio,
}

impl PhysMem {
    /// Wraps `mem`; `rom_start` is where the read-only BIOS ROM begins (writes there are dropped).
    pub fn new(mem: &GuestMemory, rom_start: u64) -> Self {
        let mut regions = Vec::new();
        let mut top = 0u64;
        for r in mem.iter() {
            let start = r.start_addr().0;
            let len = r.len();
            let Ok(host) = r.get_host_address(MemoryRegionAddress(0)) else { continue };
            regions.push(HostRegion { start, len, host, read_only: start >= rom_start && start < 1 << 32 });
            top = top.max(start + len);
        }
        regions.sort_by_key(|r| r.start);
        let pages = (top >> 12) as usize + 1;
        Self { regions, _mem: mem.clone(), code_bits: vec![0; pages.div_ceil(64)] }
    }

    /// Finds the host location of physical `addr`.
    #[inline]
    pub fn place(&self, addr: u64) -> Place {
        for r in &self.regions {
            let off = addr.wrapping_sub(r.start);
            if off < r.len {
                // SAFETY: off < len, so the pointer stays inside the region's mapping.
                return Place::Ram(unsafe { r.host.add(off as usize) }, r.read_only, r.len - off);
            }
        }
        Place::Mmio
    }

    /// Marks the page of `addr` as holding decoded code; true when it was not marked.
    pub fn mark_code(&mut self, addr: u64) -> bool {
        let p = (addr >> 12) as usize;
        match self.code_bits.get_mut(p / 64) {
            Some(w) if *w & (1 << (p % 64)) == 0 => {
                *w |= 1 << (p % 64);
                true
            }
            _ => false,
        }
    }

    /// Whether the page of `addr` holds decoded code.
    #[inline]
    pub fn is_code(&self, addr: u64) -> bool {
        let p = (addr >> 12) as usize;
        self.code_bits.get(p / 64).is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    /// Whether the page of `addr` holds decoded code; clears the mark.
    #[inline]
    pub fn take_code(&mut self, addr: u64) -> bool {
        let p = (addr >> 12) as usize;
        match self.code_bits.get_mut(p / 64) {
            Some(w) if *w & (1 << (p % 64)) != 0 => {
                *w &= !(1 << (p % 64));
                true
            }
            _ => false,
        }
    }
}
