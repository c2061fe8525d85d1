//! Builds the PC for one boot: memory, buses, legacy devices, PCI, firmware tables and vCPUs.
//! Read top to bottom, it is the machine's parts list.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use disk::BlockDevice;
use machine::acpi::{self, AcpiConfig, AcpiPm, PM_BASE, PM_LEN, SCI_IRQ};
use machine::bus::{Offset, SharedDevice};
use machine::cmos::{Cmos, CMOS_PORT};
use machine::debugcon::{DebugCon, DEBUGCON_PORT};
use machine::fw_cfg::{key, FwCfg, FW_CFG_PORT, FW_CFG_PORT_LEN};
use machine::i8042::{I8042, I8042_PORT, KEYBOARD_IRQ};
use machine::io::IoBuses;
use machine::irq::{InterruptController, IrqLine};
use machine::linux_boot::{self, KernelBoot};
use machine::memory::{GuestMemory, MemoryLayout};
use machine::pci::{HostBridge, PciRoot, Piix3, PCI_CONFIG_PORT};
use machine::port92::{Port92, PORT92};
use machine::power::PowerControl;
use machine::serial::{SerialPort, COM1_IRQ, COM1_PORT};
use machine::vcpu::Vcpu;
use virtio::pci::VirtioPci;
use vm_memory::{Bytes, GuestAddress};

use crate::console::ConsoleOut;
use crate::VmError;

/// Which accelerator runs the vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelKind {
    /// KVM (x86_64 hosts only: arm64 builds never choose it).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Kvm,
    /// The interpreter.
    Interp,
}

/// Everything needed to build the machine, kept across resets.
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub memory: u64,
    /// vCPU count.
    pub cpus: u8,
    /// The accelerator.
    pub accel: AccelKind,
    /// SeaBIOS.
    pub bios: Arc<Vec<u8>>,
    /// Where SeaBIOS's debug log goes.
    pub firmware_log: Option<PathBuf>,
    /// The serial console's output.
    pub console_out: ConsoleOut,
    /// A kernel to boot directly instead of through the firmware.
    pub kernel: Option<KernelBoot>,
    /// The boot disk and its virtio-blk serial number.
    pub disk: (Arc<dyn BlockDevice>, String),
    /// Network cards, in guest order.
    pub nets: Vec<net::NetSpec>,
    /// The VGA adapter (kept across resets so a VNC server keeps its view), the keyboard link
    /// its VNC server types into, and the VGA BIOS.
    pub vga: Option<(display::StdVga, display::KeyboardLink, Arc<Vec<u8>>)>,
}

/// QEMU's pc machine puts VGA at 00:02.0 too.
const VGA_SLOT: usize = 2;

/// The first NIC's slot; further NICs follow it.
const FIRST_NIC_SLOT: usize = 4;
/// How many NICs fit on bus 0 after the fixed devices.
pub const MAX_NICS: usize = 32 - FIRST_NIC_SLOT;

/// Where PCI devices go: slot 2 is kept for VGA, as on QEMU's pc machine.
const DISK_SLOT: usize = 3;

/// The ISA IRQ that SeaBIOS routes INTA of `slot` to (PIRQA-D = 10, 10, 11, 11), the same
/// mapping the ACPI _PRT describes.
fn intx_gsi(slot: usize) -> u32 {
    acpi::pci_intx_gsi(slot as u32, 0)
}

/// One boot's machine.
pub struct Machine {
    /// The buses every vCPU's exits go to.
    pub buses: IoBuses,
    /// Reset and power-off requests.
    pub power: Arc<PowerControl>,
    /// The vCPUs, taken by their threads.
    pub vcpus: Vec<Box<dyn Vcpu>>,
    /// COM1, for the console's input.
    pub serial: Arc<Mutex<SerialPort>>,
    /// The ACPI power-management registers, for the power button.
    pub acpi_pm: Arc<Mutex<AcpiPm>>,
    /// Guest memory; kept alive as long as the accelerator maps it.
    pub _memory: GuestMemory,
    #[cfg(target_arch = "x86_64")]
    _kvm: Option<kvm::KvmVm>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Drop every device now (stopping virtio workers and freeing backends such as port
        // forwards) rather than leaking them through the PCI root <-> bus reference cycle.
        self.buses.pio.clear();
        self.buses.mmio.clear();
    }
}

fn shared<T: machine::bus::BusDevice + 'static>(dev: T) -> Arc<Mutex<T>> {
    Arc::new(Mutex::new(dev))
}

fn add_pio(buses: &IoBuses, base: u64, len: u64, dev: SharedDevice) -> Result<(), VmError> {
    buses.pio.insert(base, len, dev).map_err(|e| VmError::Build(format!("port {base:#x}: {e}")))
}

fn format_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Builds the machine described by `cfg`.
pub fn build(cfg: &MachineConfig) -> Result<Machine, VmError> {
    let layout = MemoryLayout::new(cfg.memory, cfg.bios.len() as u64)?;
    let memory = layout.build(&cfg.bios)?;
    let kernel_entry = cfg.kernel.as_ref().map(|k| linux_boot::load(&memory, &layout, k)).transpose()?;
    let power = Arc::new(PowerControl::new());
    let buses = IoBuses::default();

    #[cfg(target_arch = "x86_64")]
    let kvm_vm = match cfg.accel {
        AccelKind::Kvm => Some(kvm::KvmVm::new(&memory, &layout)?),
        AccelKind::Interp => None,
    };
    // The interpreter brings its own PIC, PIT, IOAPIC and local APICs.
    let platform = match cfg.accel {
        AccelKind::Interp => {
            let platform = irqchip::Platform::new(usize::from(cfg.cpus));
            let devices = platform.bus_devices();
            for r in devices.pio {
                add_pio(&buses, r.base, r.len, r.device)?;
            }
            for r in devices.mmio {
                buses.mmio.insert(r.base, r.len, r.device).map_err(|e| VmError::Build(format!("{e}")))?;
            }
            Some(platform)
        }
        AccelKind::Kvm => None,
    };
    let irq: Arc<dyn InterruptController> = match &platform {
        Some(p) => p.clone(),
        #[cfg(target_arch = "x86_64")]
        None => kvm_vm.as_ref().map(|vm| vm.interrupts()).ok_or(VmError::NoInterpreter)?,
        #[cfg(not(target_arch = "x86_64"))]
        None => return Err(VmError::NoInterpreter),
    };

    // Legacy devices.
    add_pio(&buses, CMOS_PORT, 2, shared(Cmos::new(layout.low_end, layout.high_size(), cfg.cpus)))?;
    let debug_out: Option<Box<dyn std::io::Write + Send>> = match &cfg.firmware_log {
        Some(path) => Some(Box::new(
            std::fs::File::create(path)
                .map_err(|e| VmError::Build(format!("cannot create {}: {e}", path.display())))?,
        )),
        None => None,
    };
    add_pio(&buses, DEBUGCON_PORT, 1, shared(DebugCon::new(debug_out)))?;
    let serial =
        shared(SerialPort::new(IrqLine::new(irq.clone(), COM1_IRQ), Box::new(cfg.console_out.clone())));
    add_pio(&buses, COM1_PORT, 8, serial.clone())?;
    let keyboard = shared(I8042::new(IrqLine::new(irq.clone(), KEYBOARD_IRQ), power.clone()));
    let i8042: SharedDevice = keyboard.clone();
    add_pio(&buses, I8042_PORT, 1, i8042.clone())?;
    add_pio(&buses, I8042_PORT + 4, 1, shared(Offset::new(i8042, 4)))?;
    add_pio(&buses, PORT92, 1, shared(Port92::new(power.clone())))?;
    let acpi_pm = shared(AcpiPm::new(IrqLine::new(irq.clone(), SCI_IRQ), power.clone()));
    add_pio(&buses, u64::from(PM_BASE), PM_LEN, acpi_pm.clone())?;

    // PCI: the i440FX host bridge and the PIIX3 ISA bridge at the slots SeaBIOS expects.
    let mut pci = PciRoot::new(buses.pio.clone(), buses.mmio.clone(), power.clone());
    #[cfg(target_arch = "x86_64")]
    if let Some(vm) = &kvm_vm {
        pci.set_ioevent_binder(vm.ioevent_binder());
    }
    pci.add(0, Arc::new(Mutex::new(HostBridge::new())));
    pci.add(1, Arc::new(Mutex::new(Piix3::new())));
    if let Some((vga, link, _)) = &cfg.vga {
        vga.reset();
        pci.add(VGA_SLOT, vga.pci_device());
        add_pio(&buses, display::VGA_PORT_BASE, display::VGA_PORT_LEN, vga.vga_ports())?;
        add_pio(&buses, display::VBE_PORT_BASE, display::VBE_PORT_LEN, vga.vbe_ports())?;
        buses
            .mmio
            .insert(display::VGA_WINDOW_BASE, display::VGA_WINDOW_LEN, vga.vga_window())
            .map_err(|e| VmError::Build(format!("VGA window: {e}")))?;
        link.attach(keyboard.clone());
    }
    let (disk, disk_serial) = &cfg.disk;
    let block = virtio::block::Block::new(disk.clone(), disk_serial);
    let blk = VirtioPci::new(
        Box::new(block),
        memory.clone(),
        IrqLine::new(irq.clone(), intx_gsi(DISK_SLOT)),
        irq.clone(),
    )
    .map_err(|e| VmError::Build(format!("virtio-blk: {e}")))?;
    pci.add(DISK_SLOT, Arc::new(Mutex::new(blk)));
    for (i, spec) in cfg.nets.iter().enumerate().take(MAX_NICS) {
        let slot = FIRST_NIC_SLOT + i;
        let backend = net::open(spec)?;
        log::info!("NIC {} ({}): {}", i + 1, format_mac(spec.mac_for(i)), backend.describe());
        let card = virtio::net::Net::new(backend, spec.mac_for(i), spec.mtu);
        let intx = IrqLine::new(irq.clone(), intx_gsi(slot));
        let nic = VirtioPci::new(Box::new(card), memory.clone(), intx, irq.clone())
            .map_err(|e| VmError::Build(format!("virtio-net: {e}")))?;
        pci.add(slot, Arc::new(Mutex::new(nic)));
    }
    add_pio(&buses, PCI_CONFIG_PORT, 8, shared(pci))?;

    // Firmware configuration.
    let mut fw = FwCfg::new();
    fw.add_item(key::NB_CPUS, u16::from(cfg.cpus).to_le_bytes().to_vec());
    fw.add_item(key::MAX_CPUS, u16::from(cfg.cpus).to_le_bytes().to_vec());
    fw.add_item(key::RAM_SIZE, cfg.memory.to_le_bytes().to_vec());
    fw.add_item(key::BOOT_MENU, 0u16.to_le_bytes().to_vec());
    let mut e820 = Vec::new();
    for (start, len, kind) in layout.e820() {
        e820.extend_from_slice(&start.to_le_bytes());
        e820.extend_from_slice(&len.to_le_bytes());
        e820.extend_from_slice(&kind.to_le_bytes());
    }
    fw.add_file("etc/e820", e820)?;
    if let Some((_, _, rom)) = &cfg.vga {
        fw.add_file(display::ROM_FW_CFG_NAME, rom.to_vec())?;
    }
    // Without a display, SeaBIOS mirrors the BIOS and boot loader text screen onto COM1. With
    // one (`--vnc`), the screen is the console, as on QEMU: mirroring would print every boot
    // loader line twice on a serial console that the loader also writes to itself.
    if cfg.vga.is_none() {
        fw.add_file("etc/sercon-port", (COM1_PORT as u16).to_le_bytes().to_vec())?;
    }
    let acpi =
        AcpiConfig { cpus: u32::from(cfg.cpus), pci_hole_start: layout.low_end as u32, pci_window64: None };
    acpi::install(&mut fw, &acpi).map_err(|e| VmError::Build(format!("ACPI tables: {e}")))?;
    if kernel_entry.is_some() {
        // No firmware will run: clear the BIOS shadow and place the tables ourselves.
        memory
            .write_slice(&[0u8; 0x2_0000], GuestAddress(acpi::LINK_BASE))
            .map_err(|e| VmError::Build(format!("cannot clear the F segment: {e}")))?;
        acpi::link_into_memory(&fw, &memory).map_err(|e| VmError::Build(e.to_string()))?;
    }
    add_pio(&buses, FW_CFG_PORT, FW_CFG_PORT_LEN, shared(fw))?;

    // vCPUs.
    let mut vcpus: Vec<Box<dyn Vcpu>> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    if let Some(vm) = &kvm_vm {
        for id in 0..cfg.cpus {
            let vcpu = vm.create_vcpu(id, cfg.cpus)?;
            if let (0, Some(entry)) = (id, &kernel_entry) {
                vcpu.set_long_mode_entry(entry)?;
            }
            power.add_vcpu(vcpu.kicker());
            vcpus.push(Box::new(vcpu));
        }
    }

    if let Some(p) = &platform {
        // Several interpreted vCPUs take turns, so that locked instructions stay atomic.
        let exec_lock = (cfg.cpus > 1).then(x86::ExecLock::new);
        for id in 0..cfg.cpus {
            let mut vcpu = x86::InterpVcpu::new(&memory, layout.bios_base(), u32::from(id), Some(p.clone()));
            if let Some(lock) = &exec_lock {
                vcpu.share_execution(lock.clone());
            }
            if let (0, Some(entry)) = (id, &kernel_entry) {
                vcpu.set_long_mode_entry(entry);
            }
            power.add_vcpu(vcpu.kicker());
            vcpus.push(Box::new(vcpu));
        }
    }

    Ok(Machine {
        buses,
        power,
        vcpus,
        serial,
        acpi_pm,
        _memory: memory,
        #[cfg(target_arch = "x86_64")]
        _kvm: kvm_vm,
    })
}
