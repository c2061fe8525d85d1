//! A KVM vCPU's run loop: every port and MMIO exit goes to the machine's buses.

use std::sync::Arc;

use kvm_bindings::{kvm_run, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd};
use machine::vcpu::{IoHandler, Vcpu, VcpuError, VcpuExit, VcpuKick};

use crate::kick::{self, Kicker};

/// One KVM vCPU.
pub struct KvmVcpu {
    fd: VcpuFd,
    id: u8,
    kicker: Arc<Kicker>,
}

impl KvmVcpu {
    pub(crate) fn new(fd: VcpuFd, id: u8) -> Self {
        kick::install_handler();
        Self {
            fd,
            id,
            kicker: Arc::new(Kicker::default()),
        }
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
            usize::from(unsafe {
                std::ptr::addr_of!((*run_ptr).__bindgen_anon_1.io.size).read_volatile()
            })
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
                    Self::handle_io(data.len(), io_size(), |off, n| {
                        io.pio_write(port, &data[off..off + n])
                    });
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
                    return Err(VcpuError::Failed(format!(
                        "vCPU {}: unexpected KVM exit {other:?}",
                        self.id
                    )))
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                }
                Err(e) => {
                    return Err(VcpuError::Failed(format!(
                        "KVM_RUN failed on vCPU {}: {e}",
                        self.id
                    )))
                }
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
