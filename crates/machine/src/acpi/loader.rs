//! The `etc/table-loader` script that tells SeaBIOS where to put our ACPI blobs and how to link
//! them.
//!
//! Each command is 128 bytes, little endian: a u32 command number, then its arguments. SeaBIOS
//! (src/fw/romfile_loader.c) runs them in order:
//! - ALLOCATE {file[56], align u32, zone u8}: copy the fw_cfg file into memory (zone HIGH: top of
//!   RAM, FSEG: 0xE0000-0xFFFFF, where an OS scans for the RSDP).
//! - ADD_POINTER {dest[56], src[56], offset u32, size u8}: add the address where `src` landed to
//!   the `size`-byte little-endian value at `offset` in `dest`. Pointers in the blobs therefore
//!   hold offsets into the file they point into.
//! - ADD_CHECKSUM {file[56], offset u32, start u32, length u32}: subtract the byte sum of
//!   `start..start+length` from the byte at `offset`, so that the range sums to zero.

/// Length of one command.
pub(crate) const COMMAND_LEN: usize = 128;
/// Length of a file-name field, including its terminating NUL.
pub(crate) const FILE_NAME_LEN: usize = 56;

pub(crate) const COMMAND_ALLOCATE: u32 = 1;
pub(crate) const COMMAND_ADD_POINTER: u32 = 2;
pub(crate) const COMMAND_ADD_CHECKSUM: u32 = 3;

/// Where SeaBIOS places an allocated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Zone {
    /// High memory, below the top of RAM under 4 GiB.
    High = 1,
    /// The F segment (0xE0000-0xFFFFF).
    FSeg = 2,
}

/// A table-loader script under construction.
#[derive(Default)]
pub(crate) struct TableLoader {
    script: Vec<u8>,
}

impl TableLoader {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Copies `file` into memory aligned to `align` (a power of two) in `zone`.
    pub(crate) fn allocate(&mut self, file: &str, align: u32, zone: Zone) {
        let mut cmd = Command::new(COMMAND_ALLOCATE);
        cmd.name(4, file);
        cmd.put(60, &align.to_le_bytes());
        cmd.put(64, &[zone as u8]);
        self.script.extend_from_slice(&cmd.0);
    }

    /// Adds the address of `src` to the `size`-byte value at `offset` in `dest`.
    pub(crate) fn add_pointer(&mut self, dest: &str, offset: usize, size: u8, src: &str) {
        let mut cmd = Command::new(COMMAND_ADD_POINTER);
        cmd.name(4, dest);
        cmd.name(60, src);
        cmd.put(116, &offset_u32(offset).to_le_bytes());
        cmd.put(120, &[size]);
        self.script.extend_from_slice(&cmd.0);
    }

    /// Makes `start..start+len` of `file` sum to zero by adjusting the byte at `at`.
    pub(crate) fn add_checksum(&mut self, file: &str, at: usize, start: usize, len: usize) {
        let mut cmd = Command::new(COMMAND_ADD_CHECKSUM);
        cmd.name(4, file);
        cmd.put(60, &offset_u32(at).to_le_bytes());
        cmd.put(64, &offset_u32(start).to_le_bytes());
        cmd.put(68, &offset_u32(len).to_le_bytes());
        self.script.extend_from_slice(&cmd.0);
    }

    /// The script, ready to be served as `etc/table-loader`.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.script
    }
}

/// Offsets and lengths inside our blobs (a few KiB); saturate rather than wrap if one ever grew.
fn offset_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

struct Command([u8; COMMAND_LEN]);

impl Command {
    fn new(command: u32) -> Self {
        let mut cmd = Self([0; COMMAND_LEN]);
        cmd.put(0, &command.to_le_bytes());
        cmd
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A NUL-terminated name; ours are constants far shorter than the field.
    fn name(&mut self, at: usize, name: &str) {
        let bytes = name.as_bytes();
        let len = bytes.len().min(FILE_NAME_LEN - 1);
        self.put(at, &bytes[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_have_seabios_layout() {
        let mut loader = TableLoader::new();
        loader.allocate("etc/acpi/rsdp", 16, Zone::FSeg);
        loader.add_pointer("etc/acpi/rsdp", 24, 8, "etc/acpi/tables");
        loader.add_checksum("etc/acpi/tables", 0x49, 0x40, 0x24);
        let s = loader.into_bytes();
        assert_eq!(s.len(), 3 * COMMAND_LEN);

        let alloc = &s[..COMMAND_LEN];
        assert_eq!(alloc[0..4], 1u32.to_le_bytes());
        assert_eq!(&alloc[4..17], b"etc/acpi/rsdp");
        assert!(alloc[17..60].iter().all(|&b| b == 0));
        assert_eq!(alloc[60..64], 16u32.to_le_bytes());
        assert_eq!(alloc[64], 2);

        let ptr = &s[COMMAND_LEN..2 * COMMAND_LEN];
        assert_eq!(ptr[0..4], 2u32.to_le_bytes());
        assert_eq!(&ptr[4..17], b"etc/acpi/rsdp");
        assert_eq!(&ptr[60..75], b"etc/acpi/tables");
        assert_eq!(ptr[116..120], 24u32.to_le_bytes());
        assert_eq!(ptr[120], 8);

        let sum = &s[2 * COMMAND_LEN..];
        assert_eq!(sum[0..4], 3u32.to_le_bytes());
        assert_eq!(&sum[4..19], b"etc/acpi/tables");
        assert_eq!(sum[60..64], 0x49u32.to_le_bytes());
        assert_eq!(sum[64..68], 0x40u32.to_le_bytes());
        assert_eq!(sum[68..72], 0x24u32.to_le_bytes());
    }

    #[test]
    fn long_names_keep_their_terminator() {
        let mut loader = TableLoader::new();
        loader.allocate(&"x".repeat(80), 1, Zone::High);
        let s = loader.into_bytes();
        assert_eq!(s[4 + FILE_NAME_LEN - 1], 0);
    }
}
