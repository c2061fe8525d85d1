//! A KVM virtual machine: memory slots, the in-kernel irqchip and PIT, and interrupt injection.

use std::sync::Arc;

use kvm_bindings::{
    kvm_msi, kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, NoDatamatch, VmFd};
use machine::irq::InterruptController;
use machine::memory::{GuestMemory, MemoryLayout, KVM_IDENTITY_MAP, KVM_TSS};
use machine::pci::{BarIoEvent, IoEventAddress, IoEventBinder};
use vm_memory::{GuestAddress, GuestMemoryBackend};

use crate::cpuid;
use crate::vcpu::KvmVcpu;

/// What can go wrong setting up KVM.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0}. Run with access to /dev/kvm (e.g. `--device /dev/kvm`) or use `--accel interp`")]
    Open(kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM refused to {what}: {source}")]
    Ioctl { what: &'static str, source: kvm_ioctls::Error },
    /// Guest memory has a region KVM cannot map.
    #[error("guest memory region at {0:#x} is not mapped in the VMM")]
    Memory(u64),
}

fn ioctl(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { what, source }
}

/// Raises interrupts through KVM's in-kernel irqchip.
struct KvmInterrupts {
    vm: Arc<VmFd>,
}

impl InterruptController for KvmInterrupts {
    fn set_level(&self, gsi: u32, level: bool) {
        if let Err(e) = self.vm.set_irq_line(gsi, level) {
            log::warn!("KVM could not set IRQ {gsi}: {e}");
        }
    }

    fn signal_msi(&self, address: u64, data: u32) {
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        if let Err(e) = self.vm.signal_msi(msi) {
            log::warn!("KVM could not deliver MSI {address:#x}/{data:#x}: {e}");
        }
    }
}

/// Binds PCI doorbells as KVM ioeventfds, so queue notifications never leave the kernel.
struct KvmIoEvents {
    vm: Arc<VmFd>,
}

fn kvm_address(at: IoEventAddress) -> kvm_ioctls::IoEventAddress {
    match at {
        IoEventAddress::Pio(p) => kvm_ioctls::IoEventAddress::Pio(p),
        IoEventAddress::Mmio(m) => kvm_ioctls::IoEventAddress::Mmio(m),
    }
}

impl IoEventBinder for KvmIoEvents {
    fn bind(&self, at: IoEventAddress, ev: &BarIoEvent) -> Result<(), String> {
        let addr = kvm_address(at);
        let r = match (ev.len, ev.datamatch) {
            (2, Some(v)) => self.vm.register_ioevent(&ev.event, &addr, v as u16),
            (4, Some(v)) => self.vm.register_ioevent(&ev.event, &addr, v as u32),
            (_, None) => self.vm.register_ioevent(&ev.event, &addr, NoDatamatch),
            (len, Some(_)) => return Err(format!("no datamatch of {len} bytes")),
        };
        r.map_err(|e| e.to_string())
    }

    fn unbind(&self, at: IoEventAddress, ev: &BarIoEvent) {
        let addr = kvm_address(at);
        let r = match (ev.len, ev.datamatch) {
            (2, Some(v)) => self.vm.unregister_ioevent(&ev.event, &addr, v as u16),
            (4, Some(v)) => self.vm.unregister_ioevent(&ev.event, &addr, v as u32),
            (_, None) => self.vm.unregister_ioevent(&ev.event, &addr, NoDatamatch),
            _ => Ok(()),
        };
        if let Err(e) = r {
            log::debug!("KVM could not unbind a doorbell at {at:?}: {e}");
        }
    }
}

/// A VM with its memory mapped and its interrupt controllers created.
pub struct KvmVm {
    kvm: Kvm,
    vm: Arc<VmFd>,
}

impl KvmVm {
    /// Creates the VM, maps `memory` as laid out by `layout`, and creates the in-kernel
    /// PIC/IOAPIC/LAPIC and PIT.
    pub fn new(memory: &GuestMemory, layout: &MemoryLayout) -> Result<Self, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let vm = kvm.create_vm().map_err(ioctl("create a VM"))?;
        vm.set_tss_address(KVM_TSS as usize).map_err(ioctl("set the TSS address"))?;
        vm.set_identity_map_address(KVM_IDENTITY_MAP).map_err(ioctl("set the identity map address"))?;
        vm.create_irq_chip().map_err(ioctl("create the in-kernel irqchip"))?;
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(ioctl("create the in-kernel PIT"))?;
        for (slot, region) in layout.regions().iter().enumerate() {
            let host = memory
                .get_host_address(GuestAddress(region.start))
                .map_err(|_| KvmError::Memory(region.start))?;
            let mem_region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: if region.read_only { KVM_MEM_READONLY } else { 0 },
                guest_phys_addr: region.start,
                memory_size: region.len,
                userspace_addr: host as u64,
            };
            // SAFETY: the host range [host, host + len) is a live mapping owned by `memory`,
            // which the caller keeps alive as long as this VM (the machine owns both).
            unsafe { vm.set_user_memory_region(mem_region) }.map_err(ioctl("map guest memory"))?;
        }
        Ok(Self { kvm, vm: Arc::new(vm) })
    }

    /// The interrupt controller devices use to raise lines and MSIs.
    pub fn interrupts(&self) -> Arc<dyn InterruptController> {
        Arc::new(KvmInterrupts { vm: self.vm.clone() })
    }

    /// Binds PCI doorbells as ioeventfds.
    pub fn ioevent_binder(&self) -> Arc<dyn IoEventBinder> {
        Arc::new(KvmIoEvents { vm: self.vm.clone() })
    }

    /// Creates vCPU `id` of `count`, with CPUID set up for it.
    pub fn create_vcpu(&self, id: u8, count: u8) -> Result<KvmVcpu, KvmError> {
        let fd = self.vm.create_vcpu(u64::from(id)).map_err(ioctl("create a vCPU"))?;
        let supported =
            self.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(ioctl("report its CPUID"))?;
        fd.set_cpuid2(&cpuid::for_vcpu(supported, id, count)).map_err(ioctl("set the CPUID"))?;
        Ok(KvmVcpu::new(fd, id))
    }
}
