//! Direct kernel boot (`--kernel`): loads a bzImage, its initrd and command line into guest
//! memory, with the zero page, a GDT and identity-mapped page tables, and describes the 64-bit
//! entry state an accelerator must set.
//!
//! Written here rather than with linux-loader because linux-loader's bzImage loader only builds
//! on x86 hosts, and chr-vmm must boot x86 kernels on arm64 hosts with its interpreter too.

use std::path::{Path, PathBuf};

use vm_memory::{Bytes, GuestAddress};

use crate::memory::{e820, GuestMemory, MemoryLayout};

/// What to boot.
#[derive(Debug, Clone)]
pub struct KernelBoot {
    /// The bzImage.
    pub kernel: PathBuf,
    /// An optional initrd/initramfs.
    pub initrd: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
}

/// The register state the accelerator must set before the first instruction (64-bit entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongModeEntry {
    /// RIP: the kernel's 64-bit entry point.
    pub rip: u64,
    /// RSI: the zero page (boot_params).
    pub rsi: u64,
    /// RSP: a small boot stack.
    pub rsp: u64,
    /// CR3: the identity-mapped page tables (first 4 GiB, 2 MiB pages).
    pub cr3: u64,
    /// GDTR base; entries: null, null, code64 (selector 0x10), data (0x18).
    pub gdt_base: u64,
    /// GDTR limit.
    pub gdt_limit: u16,
}

/// Selectors in the boot GDT (as Linux's boot protocol expects: __BOOT_CS / __BOOT_DS).
pub const BOOT_CS: u16 = 0x10;
/// The data selector.
pub const BOOT_DS: u16 = 0x18;

const GDT: u64 = 0x500;
const ZERO_PAGE: u64 = 0x7000;
const STACK_TOP: u64 = 0x8ff0;
const PML4: u64 = 0x9000;
const PDPT: u64 = 0xa000;
const PD: u64 = 0xb000; // four pages: 0xb000-0xefff
const CMDLINE: u64 = 0x2_0000;
const CMDLINE_MAX: usize = 0x1_0000;
const KERNEL: u64 = 0x10_0000;

// Offsets in the setup header / boot_params (Documentation/arch/x86/boot.rst).
const SETUP_SECTS: usize = 0x1f1;
const VID_MODE: usize = 0x1fa;
const JUMP: usize = 0x200;
const HEADER_MAGIC: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const HEAP_END_PTR: usize = 0x224;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22c;
const XLOADFLAGS: usize = 0x236;
const CMDLINE_SIZE: usize = 0x238;
const E820_ENTRIES: usize = 0x1e8;
const E820_TABLE: usize = 0x2d0;
const E820_MAX: usize = 128;

/// Why a kernel could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Not a bzImage we can boot.
    #[error(
        "{path} is not a bootable bzImage: {why}. Pass a Linux bzImage (e.g. /boot/vmlinuz-*) to --kernel"
    )]
    NotBzImage { path: PathBuf, why: &'static str },
    /// Something does not fit in guest memory.
    #[error("the {what} does not fit in guest memory; give the guest more --memory")]
    TooBig { what: &'static str },
    /// The command line is too long.
    #[error("the kernel command line is {0} bytes; the kernel accepts at most {1}")]
    CmdlineTooLong(usize, usize),
    /// Writing guest memory failed.
    #[error("cannot write the kernel into guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

fn read(path: &Path) -> Result<Vec<u8>, BootError> {
    std::fs::read(path).map_err(|source| BootError::Read { path: path.to_path_buf(), source })
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Loads `boot` into `mem` and returns the entry state.
pub fn load(mem: &GuestMemory, layout: &MemoryLayout, boot: &KernelBoot) -> Result<LongModeEntry, BootError> {
    let image = read(&boot.kernel)?;
    let bad = |why| BootError::NotBzImage { path: boot.kernel.clone(), why };
    if image.len() < 0x1000 {
        return Err(bad("it is too short"));
    }
    if &image[HEADER_MAGIC..HEADER_MAGIC + 4] != b"HdrS" {
        return Err(bad("it has no HdrS setup header"));
    }
    let version = le16(&image, VERSION);
    if version < 0x020c {
        return Err(bad("its boot protocol is older than 2.12"));
    }
    if image[XLOADFLAGS] & 1 == 0 {
        return Err(bad("it has no 64-bit entry point"));
    }
    let setup_sects = match image[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let setup_len = (setup_sects + 1) * 512;
    let payload = image.get(setup_len..).ok_or_else(|| bad("its setup sectors pass the end of the file"))?;
    if KERNEL + payload.len() as u64 > layout.low_end {
        return Err(BootError::TooBig { what: "kernel" });
    }
    mem.write_slice(payload, GuestAddress(KERNEL))?;

    // The zero page starts as a copy of the image's setup header.
    let mut zp = vec![0u8; 4096];
    let header_end = (JUMP + 2 + usize::from(image[JUMP + 1])).min(0x290);
    zp[SETUP_SECTS..header_end].copy_from_slice(&image[SETUP_SECTS..header_end]);
    zp[VID_MODE..VID_MODE + 2].copy_from_slice(&0xffffu16.to_le_bytes());
    zp[TYPE_OF_LOADER] = 0xff;
    zp[LOADFLAGS] |= 0x01 | 0x80; // LOADED_HIGH, CAN_USE_HEAP
    zp[HEAP_END_PTR..HEAP_END_PTR + 2].copy_from_slice(&0xfe00u16.to_le_bytes());

    let max_cmdline = (le32(&image, CMDLINE_SIZE) as usize).clamp(255, CMDLINE_MAX - 1);
    if boot.cmdline.len() > max_cmdline {
        return Err(BootError::CmdlineTooLong(boot.cmdline.len(), max_cmdline));
    }
    let mut cmdline = boot.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    mem.write_slice(&cmdline, GuestAddress(CMDLINE))?;
    zp[CMD_LINE_PTR..CMD_LINE_PTR + 4].copy_from_slice(&(CMDLINE as u32).to_le_bytes());

    if let Some(path) = &boot.initrd {
        let initrd = read(path)?;
        let max = u64::from(le32(&image, INITRD_ADDR_MAX)).min(layout.low_end - 1);
        let kernel_end = KERNEL + payload.len() as u64;
        let addr = (max + 1).checked_sub(initrd.len() as u64).map(|a| a & !0xfff);
        let addr = addr.filter(|&a| a > kernel_end).ok_or(BootError::TooBig { what: "initrd" })?;
        mem.write_slice(&initrd, GuestAddress(addr))?;
        zp[RAMDISK_IMAGE..RAMDISK_IMAGE + 4].copy_from_slice(&(addr as u32).to_le_bytes());
        zp[RAMDISK_SIZE..RAMDISK_SIZE + 4].copy_from_slice(&(initrd.len() as u32).to_le_bytes());
    }

    let mut map = vec![
        (0u64, 0x9_fc00u64, e820::RAM),
        (0x9_fc00, 0x400, e820::RESERVED),
        (0xe_0000, 0x2_0000, e820::RESERVED),
    ];
    map.push((0x10_0000, layout.low_end - 0x10_0000, e820::RAM));
    map.extend(layout.e820().into_iter().skip(1));
    for (i, (start, len, kind)) in map.iter().take(E820_MAX).enumerate() {
        let off = E820_TABLE + i * 20;
        zp[off..off + 8].copy_from_slice(&start.to_le_bytes());
        zp[off + 8..off + 16].copy_from_slice(&len.to_le_bytes());
        zp[off + 16..off + 20].copy_from_slice(&kind.to_le_bytes());
    }
    zp[E820_ENTRIES] = map.len().min(E820_MAX) as u8;
    mem.write_slice(&zp, GuestAddress(ZERO_PAGE))?;

    // GDT: null, null, 64-bit code, data.
    let gdt: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT + i as u64 * 8))?;
    }
    // Identity map of the first 4 GiB with 2 MiB pages.
    mem.write_obj(PDPT | 0x3, GuestAddress(PML4))?;
    for i in 0..4u64 {
        mem.write_obj((PD + i * 0x1000) | 0x3, GuestAddress(PDPT + i * 8))?;
    }
    for i in 0..(4 * 512u64) {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PD + i * 8))?;
    }
    Ok(LongModeEntry {
        rip: KERNEL + 0x200,
        rsi: ZERO_PAGE,
        rsp: STACK_TOP,
        cr3: PML4,
        gdt_base: GDT,
        gdt_limit: (gdt.len() * 8 - 1) as u16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bzimage() -> Vec<u8> {
        let mut img = vec![0u8; 0x4000];
        img[SETUP_SECTS] = 4;
        img[JUMP + 1] = 0x6a;
        img[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        img[VERSION..VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        img[XLOADFLAGS] = 1;
        img[INITRD_ADDR_MAX..INITRD_ADDR_MAX + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        img[CMDLINE_SIZE..CMDLINE_SIZE + 4].copy_from_slice(&2048u32.to_le_bytes());
        img[0xa00] = 0xf4; // first payload byte
        img
    }

    #[test]
    fn loads_kernel_initrd_and_zero_page() {
        let dir = std::env::temp_dir().join(format!("chr-vmm-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bz"), fake_bzimage()).unwrap();
        std::fs::write(dir.join("initrd"), vec![0xab; 5000]).unwrap();
        let layout = MemoryLayout::new(64 << 20, 256 << 10).unwrap();
        let mem = layout.build(&vec![0u8; 256 << 10]).unwrap();
        let boot = KernelBoot {
            kernel: dir.join("bz"),
            initrd: Some(dir.join("initrd")),
            cmdline: "console=ttyS0".into(),
        };
        let entry = load(&mem, &layout, &boot).unwrap();
        assert_eq!(entry.rip, 0x10_0200);
        let first: u8 = mem.read_obj(GuestAddress(KERNEL)).unwrap();
        assert_eq!(first, 0xf4);
        let zp_loader: u8 = mem.read_obj(GuestAddress(ZERO_PAGE + TYPE_OF_LOADER as u64)).unwrap();
        assert_eq!(zp_loader, 0xff);
        let rd: u32 = mem.read_obj(GuestAddress(ZERO_PAGE + RAMDISK_IMAGE as u64)).unwrap();
        assert_eq!(rd % 4096, 0);
        assert!(u64::from(rd) + 5000 <= 64 << 20);
        let b: u8 = mem.read_obj(GuestAddress(u64::from(rd))).unwrap();
        assert_eq!(b, 0xab);
        let mut cl = [0u8; 14];
        mem.read_slice(&mut cl, GuestAddress(CMDLINE)).unwrap();
        assert_eq!(&cl, b"console=ttyS0\0");
        // Hostile inputs are errors.
        std::fs::write(dir.join("short"), b"nope").unwrap();
        let bad = KernelBoot { kernel: dir.join("short"), initrd: None, cmdline: String::new() };
        assert!(matches!(load(&mem, &layout, &bad), Err(BootError::NotBzImage { .. })));
        let long = KernelBoot { cmdline: "x".repeat(5000), ..boot };
        assert!(matches!(load(&mem, &layout, &long), Err(BootError::CmdlineTooLong(5000, 2048))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
