//! ACPI: the power-management registers the guest drives ([`AcpiPm`]) and the tables that
//! describe the machine, handed to SeaBIOS through fw_cfg ([`install`]).
//!
//! SeaBIOS copies `etc/acpi/tables` to high memory and `etc/acpi/rsdp` to the F segment, then
//! runs `etc/table-loader` to patch the pointers between them and fix the checksums; an OS
//! finds the RSDP by scanning 0xE0000-0xFFFFF as on any PC.

mod dsdt;
mod link;
mod loader;
mod pm;
mod tables;

#[cfg(test)]
mod tests;

use std::ops::Range;

pub use dsdt::{pci_intx_gsi, PCI_HOLE_END};
pub use link::{link_into_memory, LINK_BASE};
pub use pm::{
    AcpiPm, GPE0_BLK, PM1A_CNT_BLK, PM1A_EVT_BLK, PM_BASE, PM_LEN, PM_TIMER_HZ, PM_TMR_BLK, PWRBTN_EN,
    PWRBTN_STS, SCI_IRQ, SLP_EN, SLP_TYP_S5,
};

use crate::fw_cfg::{FwCfg, FwCfgError};
use crate::memory::FOUR_GIB;

/// fw_cfg file with every table but the RSDP.
pub const TABLES_FILE: &str = "etc/acpi/tables";
/// fw_cfg file with the RSDP.
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
/// fw_cfg file with the loader script SeaBIOS runs.
pub const LOADER_FILE: &str = "etc/table-loader";

/// Most vCPUs the tables describe: APIC ids are 8 bits and the IOAPIC takes the id after them.
pub const MAX_CPUS: u32 = 254;

/// What the tables describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiConfig {
    /// vCPUs, with APIC ids 0..cpus.
    pub cpus: u32,
    /// First byte of the 32-bit PCI memory window (the end of low RAM); it ends at
    /// [`PCI_HOLE_END`].
    pub pci_hole_start: u32,
    /// The 64-bit PCI memory window above RAM, if the machine has one.
    pub pci_window64: Option<Range<u64>>,
}

/// Why the tables could not be built or installed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcpiError {
    /// The vCPU count is outside 1..=254.
    #[error("ACPI tables can describe 1 to {MAX_CPUS} vCPUs, not {0}")]
    CpuCount(u32),
    /// The 32-bit PCI window does not fit between the VGA window and the IOAPIC.
    #[error("the 32-bit PCI window cannot start at {0:#x}: it must lie within 0x100000..={PCI_HOLE_END:#x}")]
    PciHoleStart(u32),
    /// The 64-bit PCI window is empty or not above 4 GiB.
    #[error("the 64-bit PCI window {start:#x}..{end:#x} must be non-empty and above 4 GiB")]
    PciWindow64 {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// Linking the tables in the VMM (direct kernel boot) failed.
    #[error("cannot place the ACPI tables for a direct kernel boot: {0}")]
    Link(&'static str),
    /// fw_cfg refused a file (most likely the tables were installed twice).
    #[error("cannot serve the ACPI tables through fw_cfg: {0}")]
    FwCfg(#[from] FwCfgError),
}

/// Builds the ACPI tables for `config` and adds them to `fw_cfg` as `etc/acpi/tables`,
/// `etc/acpi/rsdp` and `etc/table-loader`.
pub fn install(fw_cfg: &mut FwCfg, config: &AcpiConfig) -> Result<(), AcpiError> {
    let blobs = build(config)?;
    fw_cfg.add_file(TABLES_FILE, blobs.tables)?;
    fw_cfg.add_file(RSDP_FILE, blobs.rsdp)?;
    fw_cfg.add_file(LOADER_FILE, blobs.loader)?;
    Ok(())
}

fn build(config: &AcpiConfig) -> Result<tables::Blobs, AcpiError> {
    let cpus = u8::try_from(config.cpus)
        .ok()
        .filter(|&n| n >= 1 && u32::from(n) <= MAX_CPUS)
        .ok_or(AcpiError::CpuCount(config.cpus))?;
    if !(0x10_0000..=PCI_HOLE_END).contains(&config.pci_hole_start) {
        return Err(AcpiError::PciHoleStart(config.pci_hole_start));
    }
    if let Some(w) = &config.pci_window64 {
        if w.start >= w.end || w.start < FOUR_GIB {
            return Err(AcpiError::PciWindow64 { start: w.start, end: w.end });
        }
    }
    let windows =
        dsdt::PciWindows { hole_start: config.pci_hole_start, window64: config.pci_window64.clone() };
    Ok(tables::build(cpus, &windows))
}
