//! The tables as a guest sees them: a small interpreter runs `etc/table-loader` the way SeaBIOS
//! does (src/fw/romfile_loader.c), then the tests walk RSDP -> XSDT/RSDT -> FADT -> DSDT/FACS and
//! the MADT at their linked addresses.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use super::loader::{COMMAND_ADD_CHECKSUM, COMMAND_ADD_POINTER, COMMAND_ALLOCATE, COMMAND_LEN};
use super::*;
use crate::memory::{IOAPIC_BASE, LAPIC_BASE};

/// A file the loader placed in guest memory.
struct Placed {
    name: String,
    addr: u64,
    data: Vec<u8>,
}

/// Guest memory as far as the loader wrote it.
struct Guest {
    files: Vec<Placed>,
}

const FSEG: std::ops::Range<u64> = 0xe_0000..0x10_0000;

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |acc, x| acc.wrapping_add(*x))
}

fn c_name(field: &[u8]) -> String {
    assert_eq!(field[field.len() - 1], 0, "file name without its NUL");
    let end = field.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(field[..end].to_vec()).unwrap()
}

impl Guest {
    /// Runs the loader script in `fw_cfg`, strict where SeaBIOS would warn.
    fn load(fw_cfg: &FwCfg) -> Self {
        let script = fw_cfg.file(LOADER_FILE).expect("no table-loader");
        assert_eq!(script.len() % COMMAND_LEN, 0);
        let mut guest = Guest { files: Vec::new() };
        // Deliberately odd starting points, so that alignment requests matter.
        let (mut high, mut fseg) = (0x07ab_cd08u64, 0xf_5a48u64);
        for cmd in script.chunks(COMMAND_LEN) {
            match le32(cmd, 0) {
                COMMAND_ALLOCATE => {
                    let name = c_name(&cmd[4..60]);
                    let align = u64::from(le32(cmd, 60));
                    assert!(align.is_power_of_two());
                    assert!(guest.files.iter().all(|f| f.name != name), "{name} allocated twice");
                    let data = fw_cfg.file(&name).unwrap_or_else(|| panic!("no fw_cfg file {name}")).to_vec();
                    let cursor = match cmd[64] {
                        1 => &mut high,
                        2 => &mut fseg,
                        z => panic!("zone {z}"),
                    };
                    let addr = cursor.next_multiple_of(align.max(16));
                    *cursor = addr + data.len() as u64;
                    guest.files.push(Placed { name, addr, data });
                }
                COMMAND_ADD_POINTER => {
                    let (dest, src) = (c_name(&cmd[4..60]), c_name(&cmd[60..116]));
                    let offset = le32(cmd, 116) as usize;
                    let size = cmd[120] as usize;
                    assert!(matches!(size, 1 | 2 | 4 | 8));
                    let src_addr = guest.file(&src).addr;
                    let dest = guest.file_mut(&dest);
                    assert!(offset + size <= dest.data.len());
                    let mut value = [0u8; 8];
                    value[..size].copy_from_slice(&dest.data[offset..offset + size]);
                    let patched = u64::from_le_bytes(value) + src_addr;
                    assert!(size == 8 || patched >> (8 * size) == 0, "pointer does not fit");
                    dest.data[offset..offset + size].copy_from_slice(&patched.to_le_bytes()[..size]);
                }
                COMMAND_ADD_CHECKSUM => {
                    let file = guest.file_mut(&c_name(&cmd[4..60]));
                    let (at, start, len) =
                        (le32(cmd, 60) as usize, le32(cmd, 64) as usize, le32(cmd, 68) as usize);
                    assert!(at < file.data.len() && start + len <= file.data.len());
                    let s = sum(&file.data[start..start + len]);
                    file.data[at] = file.data[at].wrapping_sub(s);
                }
                other => panic!("unknown loader command {other}"),
            }
        }
        guest
    }

    fn file(&self, name: &str) -> &Placed {
        self.files
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} not allocated before use"))
    }

    fn file_mut(&mut self, name: &str) -> &mut Placed {
        self.files
            .iter_mut()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} not allocated before use"))
    }

    fn read(&self, addr: u64, len: usize) -> &[u8] {
        let f = self
            .files
            .iter()
            .find(|f| addr >= f.addr && addr + len as u64 <= f.addr + f.data.len() as u64)
            .unwrap_or_else(|| panic!("nothing loaded at {addr:#x}+{len}"));
        let start = (addr - f.addr) as usize;
        &f.data[start..start + len]
    }

    /// The table at `addr`: its signature is `sig` and it sums to zero.
    fn table(&self, addr: u64, sig: &[u8; 4]) -> &[u8] {
        let header = self.read(addr, 36);
        assert_eq!(&header[..4], sig, "table at {addr:#x}");
        let t = self.read(addr, le32(header, 4) as usize);
        assert_eq!(sum(t), 0, "{} checksum", String::from_utf8_lossy(sig));
        t
    }
}

/// The linked tables, found the way an OS finds them.
struct Linked<'a> {
    guest: &'a Guest,
    fadt: &'a [u8],
    madt: &'a [u8],
    dsdt: &'a [u8],
    facs_addr: u64,
}

fn walk(guest: &Guest) -> Linked<'_> {
    let rsdp_addr = guest.file(RSDP_FILE).addr;
    assert!(FSEG.contains(&rsdp_addr) && rsdp_addr.is_multiple_of(16), "RSDP at {rsdp_addr:#x}");
    let rsdp = guest.read(rsdp_addr, 36);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp[..20]), 0);
    assert_eq!(rsdp[15], 2, "RSDP revision");
    assert_eq!(le32(rsdp, 20), 36);
    assert_eq!(sum(rsdp), 0);

    let xsdt = guest.table(le64(rsdp, 24), b"XSDT");
    let rsdt = guest.table(u64::from(le32(rsdp, 16)), b"RSDT");
    let x_entries: Vec<u64> = xsdt[36..].chunks(8).map(|c| le64(c, 0)).collect();
    let r_entries: Vec<u64> = rsdt[36..].chunks(4).map(|c| u64::from(le32(c, 0))).collect();
    assert_eq!(x_entries, r_entries, "RSDT and XSDT list the same tables");

    let find = |sig: &[u8; 4]| {
        let hits: Vec<u64> = x_entries.iter().copied().filter(|&a| guest.read(a, 4) == sig).collect();
        assert_eq!(hits.len(), 1, "{} listed {} times", String::from_utf8_lossy(sig), hits.len());
        guest.table(hits[0], sig)
    };
    let fadt = find(b"FACP");
    let madt = find(b"APIC");
    assert_eq!(x_entries.len(), 2);

    let dsdt_addr = u64::from(le32(fadt, 40));
    assert_eq!(le64(fadt, 140), dsdt_addr, "X_DSDT and DSDT agree");
    let dsdt = guest.table(dsdt_addr, b"DSDT");
    let facs_addr = u64::from(le32(fadt, 36));
    Linked { guest, fadt, madt, dsdt, facs_addr }
}

fn config(cpus: u32) -> AcpiConfig {
    AcpiConfig { cpus, pci_hole_start: 0x1000_0000, pci_window64: None }
}

fn installed(config: &AcpiConfig) -> FwCfg {
    let mut fw_cfg = FwCfg::new();
    install(&mut fw_cfg, config).unwrap();
    fw_cfg
}

#[test]
fn blobs_sum_to_zero_before_linking_too() {
    let blobs = build(&config(2)).unwrap();
    assert_eq!(sum(&blobs.rsdp[..20]), 0);
    assert_eq!(sum(&blobs.rsdp), 0);
    // FACS at 0 (no checksum), then the others, each summing to zero on its own.
    assert_eq!(&blobs.tables[..4], b"FACS");
    let mut at = 64;
    let mut seen = Vec::new();
    while at < blobs.tables.len() {
        let len = le32(&blobs.tables, at + 4) as usize;
        assert_eq!(sum(&blobs.tables[at..at + len]), 0);
        seen.push(String::from_utf8_lossy(&blobs.tables[at..at + 4]).into_owned());
        // Tables after the FACS start 8-byte aligned.
        at = (at + len).next_multiple_of(8);
    }
    assert_eq!(seen, ["DSDT", "FACP", "APIC", "RSDT", "XSDT"]);
}

#[test]
fn loader_links_rsdp_xsdt_fadt_dsdt_facs() {
    let fw_cfg = installed(&config(1));
    let guest = Guest::load(&fw_cfg);
    let t = walk(&guest);

    let facs = t.guest.read(t.facs_addr, 64);
    assert!(t.facs_addr.is_multiple_of(64), "FACS must be 64-byte aligned");
    assert_eq!(&facs[..4], b"FACS");
    assert_eq!(le32(facs, 4), 64);

    let f = t.fadt;
    assert!(f.len() >= 244, "an ACPI 5+ FADT with the X_ blocks and reset register");
    assert!(f[8] >= 5, "FADT revision {}", f[8]);
    assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9, "SCI_INT");
    assert_eq!(le32(f, 48), 0, "SMI_CMD: always in ACPI mode");
    assert_eq!(le32(f, 56), 0x600, "PM1a_EVT_BLK");
    assert_eq!(le32(f, 64), 0x604, "PM1a_CNT_BLK");
    assert_eq!(le32(f, 76), 0x608, "PM_TMR_BLK");
    assert_eq!(le32(f, 80), 0x620, "GPE0_BLK");
    assert_eq!(f[88..93], [4, 2, 0, 4, 4], "PM1_EVT_LEN, PM1_CNT_LEN, PM2_CNT_LEN, PM_TMR_LEN, GPE0_BLK_LEN");
    assert_eq!(f[108], 0x32, "CMOS century register");
    assert_eq!(
        u16::from_le_bytes([f[109], f[110]]),
        0b11,
        "IAPC_BOOT_ARCH: legacy devices + 8042, VGA present"
    );
    let flags = le32(f, 112);
    assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
    assert_ne!(flags & (1 << 8), 0, "TMR_VAL_EXT: the timer is 32 bits");
    assert_eq!(flags & (1 << 4), 0, "PWR_BUTTON clear: fixed-feature power button");
    assert_eq!(flags & (1 << 20), 0, "not hardware-reduced");
    assert_eq!(f[116..120], [1, 8, 0, 1], "RESET_REG: 8-bit system I/O");
    assert_eq!(le64(f, 120), 0xcf9);
    assert_eq!(f[128], 6, "RESET_VALUE");
    // X_PM1a_EVT_BLK, X_PM1a_CNT_BLK, X_PM_TMR_BLK, X_GPE0_BLK.
    for (at, port, bits) in [(148, 0x600, 32), (172, 0x604, 16), (208, 0x608, 32), (220, 0x620, 32)] {
        assert_eq!(f[at..at + 2], [1, bits], "GAS at {at}");
        assert_eq!(le64(f, at + 4), port, "GAS at {at}");
    }
}

#[test]
fn madt_lists_every_cpu_the_ioapic_and_the_overrides() {
    for cpus in [1u32, 2, 8] {
        let fw_cfg = installed(&config(cpus));
        let guest = Guest::load(&fw_cfg);
        let m = walk(&guest).madt;
        assert_eq!(u64::from(le32(m, 36)), LAPIC_BASE);
        assert_eq!(le32(m, 40) & 1, 1, "PCAT_COMPAT");

        let (mut lapics, mut ioapics, mut overrides, mut nmis) = (Vec::new(), Vec::new(), BTreeSet::new(), 0);
        let mut at = 44;
        while at < m.len() {
            let (kind, len) = (m[at], m[at + 1] as usize);
            let e = &m[at..at + len];
            match kind {
                0 => {
                    assert_eq!(len, 8);
                    assert_eq!(le32(e, 4) & 1, 1, "CPU enabled");
                    lapics.push((e[2], e[3]));
                }
                1 => ioapics.push((e[2], le32(e, 4), le32(e, 8))),
                2 => {
                    assert_eq!((len, e[2]), (10, 0), "ISA override");
                    overrides.insert((e[3], le32(e, 4), u16::from_le_bytes([e[8], e[9]])));
                }
                4 => {
                    assert_eq!(e[2..6], [0xff, 0, 0, 1], "NMI on LINT1 of every CPU");
                    nmis += 1;
                }
                other => panic!("unexpected MADT entry type {other}"),
            }
            at += len;
        }
        assert_eq!(at, m.len());
        let expected: Vec<(u8, u8)> = (0..cpus as u8).map(|i| (i, i)).collect();
        assert_eq!(lapics, expected, "processor UID and APIC id per CPU");
        assert_eq!(ioapics, [(cpus as u8, IOAPIC_BASE as u32, 0)]);
        let level_high = 0b1101;
        let want: BTreeSet<(u8, u32, u16)> = [
            (0, 2, 0b0101),
            (5, 5, level_high),
            (9, 9, level_high),
            (10, 10, level_high),
            (11, 11, level_high),
        ]
        .into_iter()
        .collect();
        assert_eq!(overrides, want);
        assert_eq!(nmis, 1);
    }
}

/// Reads one AML integer (ZeroOp, OneOp or a Byte/Word/DWord/QWord constant) at `at`.
fn aml_integer(aml: &[u8], at: &mut usize) -> u64 {
    let (op, rest) = (aml[*at], &aml[*at + 1..]);
    let (value, len) = match op {
        0x00 => (0, 0),
        0x01 => (1, 0),
        0x0a => (u64::from(rest[0]), 1),
        0x0b => (u64::from(u16::from_le_bytes([rest[0], rest[1]])), 2),
        0x0c => (u64::from(le32(rest, 0)), 4),
        0x0e => (le64(rest, 0), 8),
        other => panic!("not an integer: opcode {other:#x}"),
    };
    *at += 1 + len;
    value
}

/// Skips an AML PkgLength at `at`, returning the length it encodes.
fn aml_pkg_length(aml: &[u8], at: &mut usize) -> usize {
    let lead = aml[*at] as usize;
    let follow = lead >> 6;
    let mut len = if follow == 0 { lead & 0x3f } else { lead & 0x0f };
    for i in 0..follow {
        len |= (aml[*at + 1 + i] as usize) << (4 + 8 * i);
    }
    *at += 1 + follow;
    len
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn dsdt_routes_every_slot_and_pin_like_the_piix3_links() {
    let guest = Guest::load(&installed(&config(1)));
    let dsdt = walk(&guest).dsdt;
    assert_eq!(dsdt[8], 2, "DSDT revision 2: 64-bit integers");

    let mut at = find(dsdt, b"_PRT").expect("_PRT") + 4;
    assert_eq!(dsdt[at], 0x12, "_PRT is a package");
    at += 1;
    aml_pkg_length(dsdt, &mut at);
    assert_eq!(dsdt[at], 128, "32 slots x 4 pins");
    at += 1;
    let mut routes = BTreeSet::new();
    for _ in 0..128 {
        assert_eq!(dsdt[at], 0x12);
        at += 1;
        aml_pkg_length(dsdt, &mut at);
        assert_eq!(dsdt[at], 4);
        at += 1;
        let address = aml_integer(dsdt, &mut at);
        let pin = aml_integer(dsdt, &mut at);
        let source = aml_integer(dsdt, &mut at);
        let gsi = aml_integer(dsdt, &mut at);
        assert_eq!(address & 0xffff, 0xffff, "any function");
        assert_eq!(source, 0, "a GSI, not a link device");
        let slot = address >> 16;
        // SeaBIOS's PIIX routing: PIRQ (pin - 1 + slot - 1) & 3 with a 1-based pin.
        assert_eq!(gsi, [10, 10, 11, 11][((pin + slot + 3) & 3) as usize], "slot {slot} pin {pin}");
        routes.insert((slot, pin));
    }
    assert_eq!(routes.len(), 128);
    assert!(routes.iter().all(|&(slot, pin)| slot < 32 && pin < 4));
}

#[test]
fn dsdt_has_s5_the_pci_root_and_the_isa_devices() {
    let guest = Guest::load(&installed(&config(1)));
    let dsdt = walk(&guest).dsdt;
    // `Name(\_S5_, Package(4) {SLP_TYP_S5, SLP_TYP_S5, 0, 0})`.
    let mut at = find(dsdt, b"\\_S5_").expect("\\_S5") + 5;
    assert_eq!(dsdt[at], 0x12);
    at += 1;
    aml_pkg_length(dsdt, &mut at);
    assert_eq!(dsdt[at], 4);
    at += 1;
    assert_eq!(aml_integer(dsdt, &mut at), u64::from(SLP_TYP_S5));
    assert_eq!(aml_integer(dsdt, &mut at), u64::from(SLP_TYP_S5));

    // `Name(_HID, EisaId(...))` as SeaBIOS and Linux look for it.
    for id in [[0x0a, 0x03], [0x03, 0x03], [0x05, 0x01], [0x0b, 0x00]] {
        let hid = [0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, id[0], id[1]];
        assert!(find(dsdt, &hid).is_some(), "PNP{:02X}{:02X}", id[0], id[1]);
    }
}

#[test]
fn the_64_bit_window_appears_only_when_given() {
    let without = build(&config(1)).unwrap().tables;
    let mut with_config = config(1);
    with_config.pci_window64 = Some(0x1_8000_0000..0x2_0000_0000);
    let with = build(&with_config).unwrap().tables;
    // A QWord address space descriptor carrying min and max.
    let mut qword = 0x1_8000_0000u64.to_le_bytes().to_vec();
    qword.extend_from_slice(&0x1_ffff_ffffu64.to_le_bytes());
    assert!(find(&with, &qword).is_some());
    assert!(find(&without, &[0x8a, 0x2b, 0x00]).is_none());
    // The whole set still links and checks out.
    let mut fw_cfg = FwCfg::new();
    install(&mut fw_cfg, &with_config).unwrap();
    walk(&Guest::load(&fw_cfg));
}

#[test]
fn bad_configs_are_refused() {
    assert_eq!(build(&config(0)).err(), Some(AcpiError::CpuCount(0)));
    assert_eq!(build(&config(255)).err(), Some(AcpiError::CpuCount(255)));
    assert_eq!(build(&config(1 << 20)).err(), Some(AcpiError::CpuCount(1 << 20)));
    assert!(build(&config(MAX_CPUS)).is_ok());
    let mut c = config(1);
    c.pci_hole_start = 0xfec0_0000;
    assert_eq!(build(&c).err(), Some(AcpiError::PciHoleStart(0xfec0_0000)));
    c.pci_hole_start = 0x8_0000;
    assert!(build(&c).is_err());
    let mut c = config(1);
    c.pci_window64 = Some(0x8000_0000..0x1_8000_0000);
    assert!(matches!(build(&c), Err(AcpiError::PciWindow64 { .. })));
    c.pci_window64 = Some(0x2_0000_0000..0x2_0000_0000);
    assert!(matches!(build(&c), Err(AcpiError::PciWindow64 { .. })));

    let mut fw_cfg = installed(&config(1));
    assert!(matches!(install(&mut fw_cfg, &config(1)), Err(AcpiError::FwCfg(_))));
}

fn skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason}");
    eprintln!("SKIPPED: {line}");
    if let Some(log) = std::env::var_os("CHR_VMM_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn run(dir: &PathBuf, args: &[&str]) -> (bool, String) {
    let out = Command::new("iasl").args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn iasl_disassembles_and_recompiles_the_dsdt_without_errors() {
    const TEST: &str = "iasl_disassembles_and_recompiles_the_dsdt_without_errors";
    if Command::new("iasl").arg("-v").output().is_err() {
        return skip(TEST, "iasl is not installed (Debian package acpica-tools)");
    }
    let mut config = config(2);
    config.pci_window64 = Some(0x1_0000_0000..0x10_0000_0000);
    let guest = Guest::load(&installed(&config));
    let dsdt = walk(&guest).dsdt.to_vec();

    let dir = std::env::temp_dir().join(format!("chr-vmm-acpi-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dsdt.aml"), &dsdt).unwrap();

    let (ok, text) = run(&dir, &["-d", "dsdt.aml"]);
    assert!(ok && !text.contains("Error"), "iasl -d failed:\n{text}");
    let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap();
    for expected in [
        "Name (\\_S5, Package (0x04)",
        "EisaId (\"PNP0A03\")",
        "EisaId (\"PNP0303\")",
        "EisaId (\"PNP0501\")",
        "EisaId (\"PNP0B00\")",
        "Name (_PRT, Package (0x80)",
        "WordBusNumber",
        "QWordMemory",
        "IRQNoFlags",
        "0xFEBFFFFF",
    ] {
        assert!(dsl.contains(expected), "{expected:?} missing from:\n{dsl}");
    }

    // Compiling the disassembly back checks the namespace and resource templates too.
    let (ok, text) = run(&dir, &["-p", "recompiled", "dsdt.dsl"]);
    assert!(ok && text.contains(" 0 Errors"), "iasl could not compile the disassembly:\n{text}\n{dsl}");
    let _ = std::fs::remove_dir_all(&dir);
}
