//! The PC that chr-vmm builds: guest memory and its map, the port and MMIO buses, PCI, the
//! firmware interface (fw_cfg, CMOS, ACPI tables) and the legacy devices a BIOS boot needs.
//!
//! The machine never runs guest code itself: an accelerator implementing [`vcpu::Vcpu`] does,
//! and hands every I/O exit back through [`vcpu::IoHandler`].

pub mod acpi;
pub mod bus;
pub mod cmos;
pub mod debugcon;
pub mod fw_cfg;
pub mod i8042;
pub mod io;
pub mod irq;
pub mod linux_boot;
pub mod memory;
pub mod pci;
pub mod port92;
pub mod power;
pub mod serial;
pub mod vcpu;
