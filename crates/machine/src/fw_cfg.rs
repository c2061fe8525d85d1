//! The QEMU firmware configuration interface (fw_cfg) that SeaBIOS reads its setup from.
//!
//! Port 0x510 (16-bit) selects an item, port 0x511 (8-bit) streams its bytes. Item 0x19 is the
//! file directory: a big-endian count, then `{be32 size, be16 select, u16 reserved,
//! char name[56]}` entries. Named files (the e820 map, ACPI tables, ...) get selectors from 0x20.

use std::collections::BTreeMap;

use crate::bus::BusDevice;

/// The selector port; the data port follows it.
pub const FW_CFG_PORT: u64 = 0x510;
/// Ports the device decodes (selector and data).
pub const FW_CFG_PORT_LEN: u64 = 2;

/// Well-known item keys.
pub mod key {
    /// "QEMU".
    pub const SIGNATURE: u16 = 0x00;
    /// Feature bitmap (bit 0: traditional interface).
    pub const ID: u16 = 0x01;
    /// RAM size (u64).
    pub const RAM_SIZE: u16 = 0x03;
    /// Number of CPUs present at boot (u16).
    pub const NB_CPUS: u16 = 0x05;
    /// Whether to show the boot menu (u16); SeaBIOS reads it as `etc/show-boot-menu`.
    pub const BOOT_MENU: u16 = 0x0e;
    /// Maximum number of CPUs (u16).
    pub const MAX_CPUS: u16 = 0x0f;
    /// The file directory.
    pub const FILE_DIR: u16 = 0x19;
    /// First selector handed to named files.
    pub const FILE_FIRST: u16 = 0x20;
}

const NAME_LEN: usize = 56;

/// Errors adding fw_cfg items.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    /// The file name does not fit.
    #[error("fw_cfg file name {0:?} is longer than 55 bytes")]
    NameTooLong(String),
    /// The file name is taken.
    #[error("fw_cfg already has a file named {0:?}")]
    Duplicate(String),
}

/// The fw_cfg device.
#[derive(Default)]
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selector: u16,
    offset: usize,
}

impl FwCfg {
    /// A device with the signature, the feature bits and an empty directory.
    pub fn new() -> Self {
        let mut cfg = Self::default();
        cfg.items.insert(key::SIGNATURE, b"QEMU".to_vec());
        cfg.items.insert(key::ID, 1u32.to_le_bytes().to_vec());
        cfg.rebuild_directory();
        cfg
    }

    /// Sets a numbered item.
    pub fn add_item(&mut self, key: u16, data: Vec<u8>) {
        self.items.insert(key, data);
    }

    /// Adds a named file and lists it in the directory.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        if name.len() >= NAME_LEN {
            return Err(FwCfgError::NameTooLong(name.to_string()));
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(FwCfgError::Duplicate(name.to_string()));
        }
        let select = key::FILE_FIRST + self.files.len() as u16;
        self.files.push((name.to_string(), select));
        self.items.insert(select, data);
        self.rebuild_directory();
        Ok(())
    }

    /// The content of the named file, if present.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let (_, sel) = self.files.iter().find(|(n, _)| n == name)?;
        self.items.get(sel).map(Vec::as_slice)
    }

    fn rebuild_directory(&mut self) {
        let mut sorted: Vec<&(String, u16)> = self.files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dir = (sorted.len() as u32).to_be_bytes().to_vec();
        for (name, select) in sorted {
            let size = self.items.get(select).map_or(0, Vec::len) as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&select.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.items.insert(key::FILE_DIR, dir);
    }

    fn next_byte(&mut self) -> u8 {
        let b = self.items.get(&self.selector).and_then(|d| d.get(self.offset)).copied().unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        b
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0 => data.fill(0),
            _ => data.iter_mut().for_each(|b| *b = self.next_byte()),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.len() == 2 {
            self.selector = u16::from_le_bytes([data[0], data[1]]);
            self.offset = 0;
        }
        // Writes to the data port are a deprecated feature we do not offer: ignored.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(cfg: &mut FwCfg, key: u16) {
        cfg.write(0, &key.to_le_bytes());
    }

    fn read_n(cfg: &mut FwCfg, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        for b in v.iter_mut() {
            let mut one = [0u8];
            cfg.read(1, &mut one);
            *b = one[0];
        }
        v
    }

    #[test]
    fn signature_directory_and_files() {
        let mut cfg = FwCfg::new();
        cfg.add_file("etc/zeta", vec![1, 2, 3]).unwrap();
        cfg.add_file("etc/alpha", vec![9; 5]).unwrap();
        assert_eq!(cfg.add_file("etc/alpha", vec![]), Err(FwCfgError::Duplicate("etc/alpha".into())));
        assert!(cfg.add_file(&"x".repeat(56), vec![]).is_err());
        select(&mut cfg, key::SIGNATURE);
        assert_eq!(read_n(&mut cfg, 4), b"QEMU");
        select(&mut cfg, key::FILE_DIR);
        let dir = read_n(&mut cfg, 4 + 2 * 64);
        assert_eq!(u32::from_be_bytes([dir[0], dir[1], dir[2], dir[3]]), 2);
        // Sorted by name: alpha first.
        let e = &dir[4..68];
        assert_eq!(u32::from_be_bytes([e[0], e[1], e[2], e[3]]), 5);
        let sel = u16::from_be_bytes([e[4], e[5]]);
        assert_eq!(&e[8..17], b"etc/alpha");
        select(&mut cfg, sel);
        assert_eq!(read_n(&mut cfg, 7), vec![9, 9, 9, 9, 9, 0, 0], "past the end reads zero");
        // A selector nobody set reads zeros, a string read streams bytes.
        select(&mut cfg, 0x7777);
        let mut four = [0xaau8; 4];
        cfg.read(1, &mut four);
        assert_eq!(four, [0; 4]);
    }
}
