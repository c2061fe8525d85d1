//! The ACPI tables as two fw_cfg blobs plus the loader script that links them.
//!
//! `etc/acpi/tables` holds FACS, DSDT, FADT, MADT, RSDT and XSDT back to back; `etc/acpi/rsdp`
//! the RSDP. Every pointer inside them holds the offset of its target within `etc/acpi/tables`;
//! the loader script has SeaBIOS add the blob's final address to each and then fix every
//! checksum. Each table's checksum is also right as built, so the blobs read well unlinked.

use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, IoApic, ProcessorLocalApic};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

use super::dsdt::{self, PciWindows};
use super::loader::{TableLoader, Zone};
use super::pm;
use super::{RSDP_FILE, TABLES_FILE};
use crate::memory::{IOAPIC_BASE, LAPIC_BASE};

pub(crate) const OEM_ID: [u8; 6] = *b"CHRVMM";
pub(crate) const OEM_TABLE_ID: [u8; 8] = *b"CHRVMMPC";
const OEM_REVISION: u32 = 1;

/// Every ACPI table starts with this many header bytes; the checksum is byte 9.
pub(crate) const HEADER_LEN: usize = 36;
const CHECKSUM_AT: usize = 9;

// FADT field offsets that hold pointers.
pub(crate) const FADT_FIRMWARE_CTRL: usize = 36;
pub(crate) const FADT_DSDT: usize = 40;
pub(crate) const FADT_X_DSDT: usize = 140;
// RSDP field offsets.
pub(crate) const RSDP_RSDT: usize = 16;
pub(crate) const RSDP_XSDT: usize = 24;

/// The I/O port and value that reset the machine (the PIIX3 reset control register).
const RESET_PORT: u64 = 0xcf9;
const RESET_VALUE: u8 = 0x06;
/// The CMOS register that holds the century.
const CMOS_CENTURY: u8 = 0x32;
/// IAPC_BOOT_ARCH: ISA devices that are not enumerated over PCI exist, and so does an i8042.
const BOOT_ARCH_LEGACY_DEVICES: u16 = 1 << 0;
const BOOT_ARCH_8042: u16 = 1 << 1;

/// MADT flags: the machine also has dual 8259 PICs.
const MADT_PCAT_COMPAT: u32 = 1;
/// MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3.
const INTI_EDGE_HIGH: u16 = 0b01 | (0b01 << 2);
const INTI_LEVEL_HIGH: u16 = 0b01 | (0b11 << 2);
/// ISA IRQs that PCI devices and the SCI share, level-triggered active high as on QEMU's i440FX.
pub(crate) const LEVEL_IRQS: [u8; 4] = [5, 9, 10, 11];

/// What `install` serves through fw_cfg.
pub(crate) struct Blobs {
    pub tables: Vec<u8>,
    pub rsdp: Vec<u8>,
    pub loader: Vec<u8>,
}

/// The tables for `cpus` vCPUs (APIC ids 0..cpus, the IOAPIC's id is `cpus`).
pub(crate) fn build(cpus: u8, windows: &PciWindows) -> Blobs {
    let mut tables = Vec::new();
    let mut loader = TableLoader::new();
    loader.allocate(RSDP_FILE, 16, Zone::FSeg);
    loader.allocate(TABLES_FILE, 64, Zone::High);

    // The FACS has no checksum and must be 64-byte aligned: first in a 64-aligned blob.
    let facs = append(&mut tables, &aml_bytes(&FACS::new()), 64);
    let dsdt = append(&mut tables, &dsdt_table(windows), 8);
    let fadt = append(&mut tables, &fadt_table(facs, dsdt), 8);
    loader.add_pointer(TABLES_FILE, fadt + FADT_FIRMWARE_CTRL, 4, TABLES_FILE);
    loader.add_pointer(TABLES_FILE, fadt + FADT_DSDT, 4, TABLES_FILE);
    loader.add_pointer(TABLES_FILE, fadt + FADT_X_DSDT, 8, TABLES_FILE);
    let madt = append(&mut tables, &madt_table(cpus), 8);

    let pointed = [fadt, madt];
    let rsdt = append(&mut tables, &rsdt_table(&pointed), 8);
    for i in 0..pointed.len() {
        loader.add_pointer(TABLES_FILE, rsdt + HEADER_LEN + 4 * i, 4, TABLES_FILE);
    }
    let xsdt = append(&mut tables, &xsdt_table(&pointed), 8);
    for i in 0..pointed.len() {
        loader.add_pointer(TABLES_FILE, xsdt + HEADER_LEN + 8 * i, 8, TABLES_FILE);
    }

    // Checksums last: they cover the pointers just patched.
    for start in [dsdt, fadt, madt, rsdt, xsdt] {
        loader.add_checksum(TABLES_FILE, start + CHECKSUM_AT, start, table_len(&tables, start));
    }

    let rsdp = rsdp(rsdt, xsdt);
    loader.add_pointer(RSDP_FILE, RSDP_RSDT, 4, TABLES_FILE);
    loader.add_pointer(RSDP_FILE, RSDP_XSDT, 8, TABLES_FILE);
    // The ACPI 1.0 checksum covers the first 20 bytes, the extended one all 36 (and so the first).
    loader.add_checksum(RSDP_FILE, 8, 0, 20);
    loader.add_checksum(RSDP_FILE, 32, 0, rsdp.len());

    Blobs { tables, rsdp, loader: loader.into_bytes() }
}

fn aml_bytes(aml: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    bytes
}

/// Appends `table` at the next multiple of `align` and returns its offset.
fn append(blob: &mut Vec<u8>, table: &[u8], align: usize) -> usize {
    let start = blob.len().next_multiple_of(align);
    blob.resize(start, 0);
    blob.extend_from_slice(table);
    start
}

/// The length field of the table at `start`.
fn table_len(blob: &[u8], start: usize) -> usize {
    let mut len = [0u8; 4];
    len.copy_from_slice(&blob[start + 4..start + 8]);
    u32::from_le_bytes(len) as usize
}

/// Sets the byte at `at` so that `bytes` sums to zero.
fn set_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    bytes[at] = sum.wrapping_neg();
}

fn offset_u32(offset: usize) -> u32 {
    // The blob is a few KiB; an offset past 4 GiB cannot happen.
    u32::try_from(offset).unwrap_or(u32::MAX)
}

fn dsdt_table(windows: &PciWindows) -> Vec<u8> {
    // Revision 2: integers are 64 bits wide (the 64-bit PCI window needs them).
    let mut dsdt = Sdt::new(*b"DSDT", HEADER_LEN as u32, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&dsdt::body(windows));
    dsdt.as_slice().to_vec()
}

fn io_block(port: u16, len: u8) -> GAS {
    GAS::new(AddressSpace::SystemIo, len * 8, 0, AccessSize::Undefined, u64::from(port))
}

fn fadt_table(facs: usize, dsdt: usize) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        // No fixed sleep button; PWR_BUTTON stays clear: the power button is a fixed feature.
        .flag(Flags::SlpButton)
        .flag(Flags::TmrValExt)
        .flag(Flags::ResetRegSup);
    f.firmware_ctrl = offset_u32(facs).into();
    f.dsdt = offset_u32(dsdt).into();
    f.x_dsdt = (dsdt as u64).into();
    f.sci_int = (pm::SCI_IRQ as u16).into();
    // SMI_CMD stays 0: the machine is always in ACPI mode.
    f.pm1a_evt_blk = u32::from(pm::PM1A_EVT_BLK).into();
    f.pm1a_cnt_blk = u32::from(pm::PM1A_CNT_BLK).into();
    f.pm_tmr_blk = u32::from(pm::PM_TMR_BLK).into();
    f.gpe0_blk = u32::from(pm::GPE0_BLK).into();
    f.pm1_evt_len = pm::PM1_EVT_LEN;
    f.pm1_cnt_len = pm::PM1_CNT_LEN;
    f.pm_tmr_len = pm::PM_TMR_LEN;
    f.gpe0_blk_len = pm::GPE0_BLK_LEN;
    f.x_pm1a_evt_blk = io_block(pm::PM1A_EVT_BLK, pm::PM1_EVT_LEN);
    f.x_pm1a_cnt_blk = io_block(pm::PM1A_CNT_BLK, pm::PM1_CNT_LEN);
    f.x_pm_tmr_blk = io_block(pm::PM_TMR_BLK, pm::PM_TMR_LEN);
    f.x_gpe0_blk = io_block(pm::GPE0_BLK, pm::GPE0_BLK_LEN);
    // Latencies above 100 and 1000 us say C2 and C3 are not supported.
    f.p_lvl2_lat = 101u16.into();
    f.p_lvl3_lat = 1001u16.into();
    f.century = CMOS_CENTURY;
    f.iapc_boot_arch = (BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042).into();
    f.reset_reg = GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, RESET_PORT);
    f.reset_value = RESET_VALUE;
    aml_bytes(&f.finalize())
}

fn madt_table(cpus: u8) -> Vec<u8> {
    let mut madt = Sdt::new(*b"APIC", HEADER_LEN as u32 + 8, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    madt.write_u32(HEADER_LEN, LAPIC_BASE as u32);
    madt.write_u32(HEADER_LEN + 4, MADT_PCAT_COMPAT);
    for cpu in 0..cpus {
        madt.append_slice(&aml_bytes(&ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled)));
    }
    madt.append_slice(&aml_bytes(&IoApic::new(cpus, IOAPIC_BASE as u32, 0)));
    madt.append_slice(&interrupt_override(0, 2, INTI_EDGE_HIGH));
    for irq in LEVEL_IRQS {
        madt.append_slice(&interrupt_override(irq, u32::from(irq), INTI_LEVEL_HIGH));
    }
    // LINT1 of every processor (UID 0xff) is the NMI input; flags 0: as the bus conforms.
    madt.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    madt.as_slice().to_vec()
}

/// MADT type 2: ISA `irq` arrives on `gsi` with `flags`.
fn interrupt_override(irq: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut entry = vec![2, 10, 0, irq];
    entry.extend_from_slice(&gsi.to_le_bytes());
    entry.extend_from_slice(&flags.to_le_bytes());
    entry
}

fn rsdt_table(entries: &[usize]) -> Vec<u8> {
    let mut rsdt = Sdt::new(*b"RSDT", HEADER_LEN as u32, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &entry in entries {
        rsdt.append_slice(&offset_u32(entry).to_le_bytes());
    }
    rsdt.as_slice().to_vec()
}

fn xsdt_table(entries: &[usize]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &entry in entries {
        xsdt.add_entry(entry as u64);
    }
    aml_bytes(&xsdt)
}

/// A revision 2 RSDP that points at both the RSDT (for ACPI 1.0 readers) and the XSDT.
fn rsdp(rsdt: usize, xsdt: usize) -> Vec<u8> {
    let mut rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt as u64));
    rsdp[RSDP_RSDT..RSDP_RSDT + 4].copy_from_slice(&offset_u32(rsdt).to_le_bytes());
    set_checksum(&mut rsdp[..20], 8);
    set_checksum(&mut rsdp, 32);
    rsdp
}
