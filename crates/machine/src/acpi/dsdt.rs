//! The DSDT's AML: `\_S5`, the PCI root bridge with its windows and interrupt routing, and the
//! ISA devices behind the PIIX3 (keyboard, COM1, RTC).
//!
//! The power button is a fixed feature (FADT PWR_BUTTON clear), so it needs no device here.
//! SeaBIOS parses this AML too (src/fw/dsdt_parser.c): it looks for the PS/2 keyboard by its
//! EISA id and gives up on a scope at the first opcode it does not know, so the AML stays plain
//! (Scope, Device, Name, Package, Buffer).

use std::ops::Range;

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Name, Package, ResourceTemplate, Scope, IO,
};
use acpi_tables::{Aml, AmlSink};

use super::pm::SLP_TYP_S5;

/// The last byte of the 32-bit PCI window: the IOAPIC, HPET-less chipset space and the LAPIC
/// follow.
pub const PCI_HOLE_END: u32 = 0xfebf_ffff;

/// GSIs of PIRQA-D as SeaBIOS programs the PIIX3 (0x60-0x63 = 10, 10, 11, 11).
const PIRQ_GSI: [u32; 4] = [10, 10, 11, 11];

/// The GSI that interrupt pin `pin` (0 = INTA) of a device in PCI slot `slot` on bus 0 reaches.
///
/// The PIIX3 links rotate with the slot: INTA of slot 1 is PIRQA, of slot 2 PIRQB, and so on
/// (SeaBIOS's `piix_pci_slot_get_irq` uses `(pin - 1 + slot - 1) & 3` with a 1-based pin, and
/// writes the result to each device's Interrupt Line; QEMU's PIIX3 wires the same way). The
/// `_PRT`, SeaBIOS's PIR/MP tables and the device model agree only if all use this function.
pub fn pci_intx_gsi(slot: u32, pin: u32) -> u32 {
    PIRQ_GSI[((slot & 31) + (pin & 3) + 3) as usize & 3]
}

/// What the PCI root bridge decodes.
pub(crate) struct PciWindows {
    /// First byte of the 32-bit memory window (it ends at [`PCI_HOLE_END`]).
    pub hole_start: u32,
    /// The 64-bit memory window, if any.
    pub window64: Option<Range<u64>>,
}

/// Already-encoded AML, to nest pieces built by separate functions.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

fn encode(aml: &dyn Aml) -> Raw {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    Raw(bytes)
}

/// A short IRQ descriptor with one ISA IRQ (ASL `IRQNoFlags () {n}`): edge, active high,
/// exclusive, as ISA devices are.
struct IrqNoFlags(u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let mask = 1u16 << (self.0 & 15);
        sink.byte(0x22); // Small item 0x04 (IRQ), two bytes long.
        sink.word(mask);
    }
}

/// The body of the DSDT (everything after its 36-byte header).
pub(crate) fn body(windows: &PciWindows) -> Vec<u8> {
    let s5_typ = u32::from(SLP_TYP_S5);
    let s5 = Name::new("\\_S5_".into(), &Package::new(vec![&s5_typ, &s5_typ, &0u32, &0u32]));
    let pci0 = pci_root(windows);
    let sb = Scope::new("\\_SB_".into(), vec![&pci0]);
    let mut aml = Vec::new();
    s5.to_aml_bytes(&mut aml);
    sb.to_aml_bytes(&mut aml);
    aml
}

fn pci_root(windows: &PciWindows) -> Raw {
    let bus = AddressSpace::<u16>::new_bus_number(0, 0xff);
    let config_ports = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::<u16>::new_io(0, 0xcf7, None);
    let io_high = AddressSpace::<u16>::new_io(0xd00, 0xffff, None);
    let vga =
        AddressSpace::<u32>::new_memory(AddressSpaceCacheable::Cacheable, true, 0xa_0000, 0xb_ffff, None);
    let hole = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        windows.hole_start,
        PCI_HOLE_END,
        None,
    );
    let window64 = windows.window64.as_ref().map(|w| {
        AddressSpace::<u64>::new_memory(AddressSpaceCacheable::Cacheable, true, w.start, w.end - 1, None)
    });
    let mut resources: Vec<&dyn Aml> = vec![&bus, &config_ports, &io_low, &io_high, &vga, &hole];
    if let Some(w) = &window64 {
        resources.push(w);
    }
    let crs = ResourceTemplate::new(resources);

    encode(&Device::new(
        "PCI0".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A03")),
            &Name::new("_ADR".into(), &0u32),
            &Name::new("_BBN".into(), &0u32),
            &Name::new("_UID".into(), &0u32),
            &Name::new("_CRS".into(), &crs),
            &Name::new("_PRT".into(), &routing_table()),
            &isa_bridge(),
        ],
    ))
}

/// `_PRT`: every slot's INTA-D straight to its GSI (no link devices: SeaBIOS fixes the PIRQ routing).
fn routing_table() -> Raw {
    let entries: Vec<[u32; 4]> = (0..32u32)
        .flat_map(|slot| (0..4u32).map(move |pin| [(slot << 16) | 0xffff, pin, 0, pci_intx_gsi(slot, pin)]))
        .collect();
    let packages: Vec<Raw> =
        entries.iter().map(|e| encode(&Package::new(e.iter().map(|v| v as &dyn Aml).collect()))).collect();
    encode(&Package::new(packages.iter().map(|p| p as &dyn Aml).collect()))
}

/// The PIIX3 function 0 (00:01.0) and the legacy devices it decodes.
fn isa_bridge() -> Raw {
    let keyboard = isa_device(
        "KBD_",
        "PNP0303",
        None,
        &[&IO::new(0x60, 0x60, 1, 1), &IO::new(0x64, 0x64, 1, 1), &IrqNoFlags(1)],
    );
    let com1 = isa_device("COM1", "PNP0501", Some(1), &[&IO::new(0x3f8, 0x3f8, 1, 8), &IrqNoFlags(4)]);
    let rtc = isa_device("RTC_", "PNP0B00", None, &[&IO::new(0x70, 0x70, 1, 2), &IrqNoFlags(8)]);
    encode(&Device::new(
        "ISA_".into(),
        vec![&Name::new("_ADR".into(), &0x0001_0000u32), &keyboard, &com1, &rtc],
    ))
}

fn isa_device(name: &str, hid: &str, uid: Option<u32>, resources: &[&dyn Aml]) -> Raw {
    let hid = Name::new("_HID".into(), &EISAName::new(hid));
    let uid = uid.map(|u| Name::new("_UID".into(), &u));
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(resources.to_vec()));
    let mut children: Vec<&dyn Aml> = vec![&hid];
    if let Some(uid) = &uid {
        children.push(uid);
    }
    children.push(&crs);
    encode(&Device::new(name.into(), children))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsi_rotation_matches_seabios_pirq_links() {
        // SeaBIOS: pci_irqs[(pin1 - 1 + slot - 1) & 3] with pci_irqs = {10, 10, 11, 11}.
        for slot in 0..32u32 {
            for pin in 0..4u32 {
                let pin1 = pin + 1;
                let seabios = [10, 10, 11, 11][((pin1 - 1 + slot + 4 - 1) & 3) as usize];
                assert_eq!(pci_intx_gsi(slot, pin), seabios, "slot {slot} pin {pin}");
            }
        }
        assert_eq!(pci_intx_gsi(1, 0), 10, "PIIX3 INTA: PIRQA");
        assert_eq!(pci_intx_gsi(3, 0), 11, "the boot disk's slot");
        assert_eq!(pci_intx_gsi(4, 0), 11);
        assert_eq!(pci_intx_gsi(5, 0), 10);
        assert_eq!(pci_intx_gsi(4, 2), 10);
    }

    #[test]
    fn keyboard_is_findable_the_way_seabios_looks() {
        let aml = body(&PciWindows { hole_start: 0xe000_0000, window64: None });
        // SeaBIOS matches `Name(_HID, DWordConst 0x41 0xd0 0x03 0x03)`.
        let hid = [0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x03, 0x03];
        assert!(aml.windows(hid.len()).any(|w| w == hid));
    }
}
