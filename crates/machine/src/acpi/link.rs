//! Runs our own table-loader script in the VMM, for boots without firmware (`--kernel`): the
//! tables go into the F segment (0xE0000-0xFFFFF), where Linux scans for the RSDP, linked and
//! checksummed exactly as SeaBIOS would do it.

use vm_memory::{Bytes, GuestAddress};

use super::loader::{COMMAND_ADD_CHECKSUM, COMMAND_ADD_POINTER, COMMAND_ALLOCATE, COMMAND_LEN};
use super::{AcpiError, LOADER_FILE};
use crate::fw_cfg::FwCfg;
use crate::memory::GuestMemory;

/// Where the linked tables go.
pub const LINK_BASE: u64 = 0xe_0000;
const LINK_END: u64 = 0x10_0000;

struct Placed {
    name: String,
    addr: u64,
    data: Vec<u8>,
}

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn name(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn find<'a>(files: &'a mut [Placed], file: &str) -> Result<&'a mut Placed, AcpiError> {
    files.iter_mut().find(|f| f.name == file).ok_or(AcpiError::Link("a command names a file never allocated"))
}

/// Places and links the tables `install` put into `fw_cfg`, writing them into guest memory at
/// [`LINK_BASE`]; returns the RSDP's address.
pub fn link_into_memory(fw_cfg: &FwCfg, mem: &GuestMemory) -> Result<u64, AcpiError> {
    let script = fw_cfg.file(LOADER_FILE).ok_or(AcpiError::Link("no table-loader script"))?;
    let mut files: Vec<Placed> = Vec::new();
    let mut cursor = LINK_BASE;
    for cmd in script.chunks_exact(COMMAND_LEN) {
        match le32(cmd, 0) as u32 {
            COMMAND_ALLOCATE => {
                let file = name(&cmd[4..60]);
                let align = (le32(cmd, 60) as u64).max(16);
                let data =
                    fw_cfg.file(&file).ok_or(AcpiError::Link("an allocated file is missing"))?.to_vec();
                let addr = cursor.next_multiple_of(align);
                cursor = addr + data.len() as u64;
                if cursor > LINK_END {
                    return Err(AcpiError::Link("the tables do not fit in the F segment"));
                }
                files.push(Placed { name: file, addr, data });
            }
            COMMAND_ADD_POINTER => {
                let src = name(&cmd[60..116]);
                let src_addr = files
                    .iter()
                    .find(|f| f.name == src)
                    .map(|f| f.addr)
                    .ok_or(AcpiError::Link("a pointer names a file never allocated"))?;
                let (offset, size) = (le32(cmd, 116), usize::from(cmd[120]));
                let dest = find(&mut files, &name(&cmd[4..60]))?;
                let field = dest
                    .data
                    .get_mut(offset..offset + size.min(8))
                    .ok_or(AcpiError::Link("a pointer lies outside its file"))?;
                let mut value = [0u8; 8];
                value[..field.len()].copy_from_slice(field);
                let patched = u64::from_le_bytes(value) + src_addr;
                let n = field.len();
                field.copy_from_slice(&patched.to_le_bytes()[..n]);
            }
            COMMAND_ADD_CHECKSUM => {
                let file = find(&mut files, &name(&cmd[4..60]))?;
                let (at, start, len) = (le32(cmd, 60), le32(cmd, 64), le32(cmd, 68));
                let range = file
                    .data
                    .get(start..start + len)
                    .ok_or(AcpiError::Link("a checksum range lies outside its file"))?;
                let sum = range.iter().fold(0u8, |a, b| a.wrapping_add(*b));
                let byte =
                    file.data.get_mut(at).ok_or(AcpiError::Link("a checksum lies outside its file"))?;
                *byte = byte.wrapping_sub(sum);
            }
            _ => return Err(AcpiError::Link("unknown table-loader command")),
        }
    }
    for f in &files {
        mem.write_slice(&f.data, GuestAddress(f.addr)).map_err(|_| AcpiError::Link("guest memory"))?;
    }
    files.iter().find(|f| f.name == super::RSDP_FILE).map(|f| f.addr).ok_or(AcpiError::Link("no RSDP"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::{install, AcpiConfig};
    use crate::memory::MemoryLayout;

    #[test]
    fn linked_rsdp_points_at_a_valid_xsdt() {
        let mut fw = FwCfg::new();
        install(&mut fw, &AcpiConfig { cpus: 2, pci_hole_start: 0x1000_0000, pci_window64: None }).unwrap();
        let layout = MemoryLayout::new(256 << 20, 256 << 10).unwrap();
        let mem = layout.build(&vec![0u8; 256 << 10]).unwrap();
        let rsdp = link_into_memory(&fw, &mem).unwrap();
        assert!((LINK_BASE..LINK_END).contains(&rsdp));
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, GuestAddress(rsdp)).unwrap();
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(r[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let xsdt = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let mut hdr = [0u8; 36];
        mem.read_slice(&mut hdr, GuestAddress(xsdt)).unwrap();
        assert_eq!(&hdr[..4], b"XSDT");
        let len = u32::from_le_bytes(hdr[4..8].try_into().unwrap()) as usize;
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(xsdt)).unwrap();
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    }
}
