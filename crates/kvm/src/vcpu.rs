//! A KVM vCPU's run loop: every port and MMIO exit goes to the machine's buses.

use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_run, kvm_segment, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd};
use machine::linux_boot::{LongModeEntry, BOOT_CS, BOOT_DS};
use machine::vcpu::{IoHandler, Vcpu, VcpuError, VcpuExit, VcpuKick};

use crate::kick::{self, Kicker};
use crate::vm::KvmError;

/// One KVM vCPU.
pub struct KvmVcpu {
    fd: VcpuFd,
    id: u8,
    kicker: Arc<Kicker>,
}

impl KvmVcpu {
    pub(crate) fn new(fd: VcpuFd, id: u8) -> Self {
        kick::install_handler();
        Self { fd, id, kicker: Arc::new(Kicker::default()) }
    }

    /// Puts the vCPU in 64-bit mode at a direct-boot kernel's entry point, with the local
    /// APIC's LINT0 as ExtINT and LINT1 as NMI (what firmware would have set up).
    pub fn set_long_mode_entry(&self, entry: &LongModeEntry) -> Result<(), KvmError> {
        let err = |what| move |source| KvmError::Ioctl { what, source };
        let mut sregs = self.fd.get_sregs().map_err(err("read the vCPU's special registers"))?;
        let code = kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector: BOOT_CS,
            type_: 0xb,
            present: 1,
            dpl: 0,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            ..Default::default()
        };
        let data = kvm_segment { selector: BOOT_DS, type_: 0x3, db: 1, l: 0, ..code };
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.gdt.base = entry.gdt_base;
        sregs.gdt.limit = entry.gdt_limit;
        sregs.idt.base = 0;
        sregs.idt.limit = 0;
        // PE | MP | ET | NE | WP | AM | PG; PAE; LME | LMA.
        sregs.cr0 = 0x8005_0033;
        sregs.cr3 = entry.cr3;
        sregs.cr4 = 0x20;
        sregs.efer = 0x500;
        self.fd.set_sregs(&sregs).map_err(err("set the vCPU's special registers"))?;
        let regs = kvm_regs {
            rflags: 0x2,
            rip: entry.rip,
            rsi: entry.rsi,
            rsp: entry.rsp,
            rbp: entry.rsp,
            ..Default::default()
        };
        self.fd.set_regs(&regs).map_err(err("set the vCPU's registers"))?;
        let mut lapic = self.fd.get_lapic().map_err(err("read the local APIC"))?;
        // LVT LINT0 (0x350): ExtINT; LVT LINT1 (0x360): NMI.
        for (offset, mode) in [(0x350usize, 7u32), (0x360, 4)] {
            let mut v = 0u32;
            for i in 0..4 {
                v |= u32::from(lapic.regs[offset + i] as u8) << (8 * i);
            }
            v = (v & !0x700) | (mode << 8);
            for (i, b) in v.to_le_bytes().iter().enumerate() {
                lapic.regs[offset + i] = *b as _;
            }
        }
        self.fd.set_lapic(&lapic).map_err(err("set the local APIC"))?;
        Ok(())
    }

    fn handle_io(data_len: usize, size: usize, mut each: impl FnMut(usize, usize)) {
        // String I/O arrives as `count` items of `size` bytes in one exit.
        let size = size.max(1);
        let mut off = 0;
        while off + size <= data_len {
            each(off, size);
            off += size;
        }
    }

    fn run_loop(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError> {
        let run_ptr: *const kvm_run = self.fd.get_kvm_run();
        // The access size of an I/O exit; kvm-ioctls hands us only count * size bytes.
        let io_size = || {
            // SAFETY: `run_ptr` is this vCPU's mmap'd kvm_run, alive as long as `self.fd`; after
            // an I/O exit the kernel has filled the `io` member of the union, and we read only
            // its `size` byte, which the data slice (at `data_offset`) does not overlap.
            usize::from(unsafe { std::ptr::addr_of!((*run_ptr).__bindgen_anon_1.io.size).read_volatile() })
        };
        loop {
            if self.kicker.stop_requested() {
                return Ok(VcpuExit::Stopped);
            }
            let exit = self.fd.run();
            match exit {
                Ok(KvmExit::IoIn(port, data)) => {
                    Self::handle_io(data.len(), io_size(), |off, n| {
                        io.pio_read(port, &mut data[off..off + n])
                    });
                }
                Ok(KvmExit::IoOut(port, data)) => {
                    Self::handle_io(data.len(), io_size(), |off, n| io.pio_write(port, &data[off..off + n]));
                }
                Ok(KvmExit::MmioRead(addr, data)) => io.mmio_read(addr, data),
                Ok(KvmExit::MmioWrite(addr, data)) => io.mmio_write(addr, data),
                Ok(KvmExit::Hlt) => {
                    // With the in-kernel irqchip KVM handles HLT itself; seeing it means the
                    // vCPU halted with interrupts off for good.
                    log::info!("vCPU {} halted with interrupts disabled", self.id);
                    return Ok(VcpuExit::Stopped);
                }
                Ok(KvmExit::Shutdown) => return Ok(VcpuExit::Reset),
                Ok(KvmExit::SystemEvent(kind, _)) => {
                    return Ok(match kind {
                        KVM_SYSTEM_EVENT_RESET => VcpuExit::Reset,
                        KVM_SYSTEM_EVENT_SHUTDOWN => VcpuExit::PowerOff,
                        other => {
                            log::warn!("vCPU {}: unknown KVM system event {other}", self.id);
                            VcpuExit::PowerOff
                        }
                    });
                }
                Ok(KvmExit::InternalError) => {
                    return Err(VcpuError::UnsupportedByHost(format!(
                        "KVM reported an internal error on vCPU {} (its instruction emulator gave up)",
                        self.id
                    )))
                }
                Ok(KvmExit::FailEntry(reason, cpu)) => {
                    return Err(VcpuError::UnsupportedByHost(format!(
                        "KVM could not enter the guest (hardware reason {reason:#x} on CPU {cpu})"
                    )))
                }
                Ok(other) => {
                    return Err(VcpuError::Failed(format!("vCPU {}: unexpected KVM exit {other:?}", self.id)))
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                }
                Err(e) => return Err(VcpuError::Failed(format!("KVM_RUN failed on vCPU {}: {e}", self.id))),
            }
        }
    }
}

impl Vcpu for KvmVcpu {
    fn run(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError> {
        kick::register_run(self.fd.get_kvm_run());
        self.kicker.set_thread(true);
        let result = self.run_loop(io);
        self.kicker.set_thread(false);
        kick::register_run(std::ptr::null_mut());
        self.kicker.clear();
        result
    }

    fn kicker(&self) -> Arc<dyn VcpuKick> {
        self.kicker.clone()
    }
}
