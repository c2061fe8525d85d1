//! The x86-64 interpreter accelerator: a portable CPU decoded with `iced-x86` that runs
//! behind the same [`machine::vcpu::Vcpu`] seam as KVM.
//!
//! Speed comes from the data structures: decoded instructions are cached per guest physical
//! page (dropped when the page is written), linear addresses go through a software TLB that
//! maps straight to host pointers, arithmetic flags are computed lazily, REP MOVS/STOS copy a
//! page at a time, and interrupts are checked between blocks of instructions.
//!
//! Wiring (the machine builder, `--accel interp`):
//! ```ignore
//! let platform = irqchip::Platform::new(cpus);            // PIC, PIT, IOAPIC, LAPICs
//! let irq: Arc<dyn InterruptController> = platform.clone(); // for every device's IrqLine
//! let devs = platform.bus_devices();
//! for r in devs.pio { buses.pio.insert(r.base, r.len, r.device)?; }   // 0x20, 0xa0, 0x4d0, 0x40, 0x61
//! for r in devs.mmio { buses.mmio.insert(r.base, r.len, r.device)?; } // IOAPIC at 0xfec00000
//! for id in 0..cpus {
//!     let mut v = x86::InterpVcpu::new(&memory, layout.bios_base(), id, Some(platform.clone()));
//!     if let (0, Some(entry)) = (id, &kernel_entry) { v.set_long_mode_entry(entry); }
//!     power.add_vcpu(v.kicker());
//!     vcpus.push(Box::new(v));
//! }
//! ```
//! The local APIC page (0xfee00000) is handled inside each vCPU; everything else that is not
//! RAM goes to the `IoHandler` given to `run`.

mod block;
mod compile;
mod cpu;
mod cpuid;
mod decode;
mod exec;
mod exec_lock;
#[cfg(all(test, target_arch = "x86_64"))]
mod exec_page;
mod fast_alu;
mod fast_flow;
mod fast_sse;
mod fast_sse_pick;
mod fast_syscall;
mod flags;
#[cfg(feature = "jit")]
mod jit;
mod msr;
mod operand;
mod phys;
mod sse;
mod system;
mod x87;

pub use cpu::{Cpu, Fault, Segment, TableReg};
#[cfg(feature = "jit")]
pub use jit::{jit_stats, jit_threshold, set_jit, JitStats, DEFAULT_THRESHOLD};
pub use phys::PhysMem;

use machine::memory::GuestMemory;
use machine::vcpu::{IoHandler, Vcpu, VcpuError, VcpuExit, VcpuKick};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use exec_lock::ExecLock;

/// Instructions run between two checks for interrupts, timers and stop requests.
const BLOCK: u64 = 2048;

/// Batches of `BLOCK` instructions in one slice, at most: code written behind the CPU's back
/// (device DMA, other vCPUs) is seen in the next slice (`Cpu::new_slice`). Interrupts and
/// device I/O start a new slice at once.
const SLICE_BLOCKS: u64 = 16;

/// Wakes a vCPU: a stop request, or a reason to leave HLT.
#[derive(Default)]
pub struct Stop {
    requested: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl VcpuKick for Stop {
    fn kick(&self) {
        self.requested.store(true, Ordering::SeqCst);
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }
}

/// One vCPU of the interpreter.
pub struct InterpVcpu {
    cpu: Box<Cpu>,
    stop: Arc<Stop>,
    platform: Option<Arc<irqchip::Platform>>,
    /// An application processor waits for INIT/SIPI before running.
    wait_sipi: bool,
    /// Instructions executed so far.
    pub instructions: u64,
    /// Batches of instructions run (every `SLICE_BLOCKS` starts a new slice).
    slices: u64,
    /// The turn-taking with the machine's other vCPUs, if it has any.
    exec_lock: Option<Arc<ExecLock>>,
}

impl InterpVcpu {
    /// vCPU `id` over `mem`, in the reset state. `rom_start` is where the read-only BIOS ROM
    /// begins (`MemoryLayout::bios_base()`); `platform` supplies the local APIC and interrupts
    /// (None runs without interrupt controllers, for tests).
    pub fn new(mem: &GuestMemory, rom_start: u64, id: u32, platform: Option<Arc<irqchip::Platform>>) -> Self {
        let mut cpu = Box::new(Cpu::new(PhysMem::new(mem, rom_start), id));
        if let Some(p) = &platform {
            cpu.apic = p.lapic(id as usize);
        }
        let wait_sipi = id != 0 && platform.is_some();
        Self {
            cpu,
            stop: Arc::new(Stop::default()),
            platform,
            wait_sipi,
            instructions: 0,
            slices: 0,
            exec_lock: None,
        }
    }

    /// Makes this vCPU take turns with the others given the same `lock` (every vCPU of a
    /// machine with more than one): see [`ExecLock`].
    pub fn share_execution(&mut self, lock: Arc<ExecLock>) {
        self.exec_lock = Some(lock);
    }

    /// Turns this vCPU's compiled tier on (compiling blocks after `threshold` runs) or off,
    /// whatever `set_jit` says; false when this host or build has none.
    pub fn set_jit_threshold(&mut self, threshold: Option<u32>) -> bool {
        #[cfg(feature = "jit")]
        {
            self.cpu.jit = threshold.and_then(jit::Jit::new);
            threshold.is_none() || self.cpu.jit.is_some()
        }
        #[cfg(not(feature = "jit"))]
        threshold.is_none()
    }

    /// The CPU state (registers, segments, control registers) for tests and direct boot.
    pub fn cpu(&mut self) -> &mut Cpu {
        &mut self.cpu
    }

    /// Starts in 64-bit mode at a direct-boot kernel's entry (`--kernel`): long mode with the
    /// loader's identity-mapped page tables and boot GDT, RSI at the zero page.
    pub fn set_long_mode_entry(&mut self, e: &machine::linux_boot::LongModeEntry) {
        let c = &mut *self.cpu;
        c.gdtr = TableReg { base: e.gdt_base, limit: e.gdt_limit as u32 };
        c.cr3 = e.cr3;
        c.cr4 = cpu::CR4_PAE;
        c.efer = cpu::EFER_LME | cpu::EFER_LMA;
        c.cr0 = cpu::CR0_PE | cpu::CR0_PG | 0x10 | 0x20 | 0x2;
        let code =
            Segment { selector: machine::linux_boot::BOOT_CS, base: 0, limit: 0xffff_ffff, attr: 0xa09b };
        let data =
            Segment { selector: machine::linux_boot::BOOT_DS, base: 0, limit: 0xffff_ffff, attr: 0xc093 };
        c.segs = [data, code, data, data, data, data];
        c.tr = Segment { selector: 0, base: 0, limit: 0xffff, attr: 0x8b };
        c.cpl = 0;
        c.rip = e.rip;
        c.regs = [0; 16];
        c.regs[6] = e.rsi;
        c.regs[4] = e.rsp;
        c.set_flags(2);
        c.flush_tlb(true);
    }

    /// Runs at most `limit` instructions, returning early at HLT (after one idle wait, or at
    /// once with interrupts off); for tests and harnesses.
    pub fn run_for(&mut self, io: &dyn IoHandler, limit: u64) -> Result<VcpuExit, VcpuError> {
        self.run_inner(io, Some(limit))
    }

    fn run_inner(&mut self, io: &dyn IoHandler, limit: Option<u64>) -> Result<VcpuExit, VcpuError> {
        // SAFETY: the reference only lives in `cpu.io` for the duration of this call; it is
        // cleared below before returning, so the 'static lifetime is never observed.
        let io_static: &'static dyn IoHandler =
            unsafe { std::mem::transmute::<&dyn IoHandler, &'static dyn IoHandler>(io) };
        self.cpu.io = Some(io_static as *const _);
        self.cpu.new_slice();
        let r = self.run_loop(limit);
        self.cpu.io = None;
        r
    }

    fn run_loop(&mut self, limit: Option<u64>) -> Result<VcpuExit, VcpuError> {
        let start = self.instructions;
        loop {
            if self.stop.requested.swap(false, Ordering::SeqCst) {
                return Ok(VcpuExit::Stopped);
            }
            if let Some(l) = limit {
                if self.instructions - start >= l {
                    return Ok(VcpuExit::Stopped);
                }
            }
            if let Some(p) = &self.platform {
                p.poll();
            }
            if let Some(a) = self.cpu.apic.clone() {
                let (init, sipi) = a.take_init_sipi();
                if init && self.cpu.id != 0 {
                    self.cpu.reset();
                    self.wait_sipi = true;
                }
                if let (Some(v), true) = (sipi, self.wait_sipi) {
                    // Start-up IPI: real mode at vector * 0x1000.
                    let c = &mut *self.cpu;
                    c.segs[cpu::CS] = Segment::real((v as u16) << 8, 0x9b);
                    c.rip = 0;
                    c.halted = false;
                    self.wait_sipi = false;
                }
                if self.wait_sipi {
                    a.wait(None, false, &|| self.stop.requested.load(Ordering::SeqCst));
                    continue;
                }
            }
            let c = &mut *self.cpu;
            if c.flag(flags::IF) && !c.inhibit_irq {
                if let Some(a) = &c.apic {
                    if let Some(v) = a.take_interrupt() {
                        c.new_slice();
                        c.halted = false;
                        c.cur_ip = c.rip;
                        let ret = c.rip;
                        if let Err(f) = c.deliver(v, None, system::IntKind::External, ret) {
                            if c.raise(f).is_err() {
                                return self.triple_fault();
                            }
                        }
                    }
                }
            }
            if c.halted {
                if limit.is_some() && !c.flag(flags::IF) {
                    return Ok(VcpuExit::Stopped);
                }
                self.wait_halted();
                if limit.is_some() {
                    // Tests and harnesses get control back at every idle wake-up.
                    return Ok(VcpuExit::Stopped);
                }
                continue;
            }
            self.slices += 1;
            if self.slices.is_multiple_of(SLICE_BLOCKS) {
                c.new_slice();
            }
            let mut left = BLOCK;
            if let Some(l) = limit {
                left = left.min(l - (self.instructions - start));
            }
            // The batch runs in this vCPU's turn (halting and waiting for SIPI are outside it).
            let exec_lock = self.exec_lock.clone();
            let _turn = exec_lock.as_deref().map(ExecLock::take);
            while left > 0 {
                let c = &mut *self.cpu;
                // STI and MOV/POP SS hold interrupts off for exactly one instruction: the next
                // one, run alone. Once it has run, end the block so that a pending interrupt
                // is taken at once, as on a real CPU (`sti; nop; cli` must let one in).
                let shadowed = std::mem::take(&mut c.inhibit_irq);
                let max = if shadowed { 1 } else { left };
                let (n, r) = match c.find_block() {
                    Ok(Some(b)) => c.run_blocks(b, max, shadowed || limit.is_some()),
                    Ok(None) => (1, c.step_uncached()),
                    Err(f) => {
                        c.cur_ip = c.rip;
                        (1, Err(f))
                    }
                };
                self.instructions += n;
                left = left.saturating_sub(n);
                let end_of_shadow = shadowed && c.flag(flags::IF);
                match r {
                    Ok(exec::Flow::Next) if end_of_shadow => break,
                    Ok(exec::Flow::Next) => {}
                    Ok(exec::Flow::Branch) => {
                        // A spinning vCPU gives the others their turn at once: the one it
                        // waits for may hold the lock it spins on.
                        let yields = std::mem::take(&mut c.paused) && exec_lock.is_some();
                        if c.halted || c.inhibit_irq || end_of_shadow || yields {
                            break;
                        }
                    }
                    Err(f) => {
                        c.rip = c.cur_ip;
                        c.inhibit_irq = false;
                        if c.raise(f).is_err() {
                            return self.triple_fault();
                        }
                    }
                }
            }
        }
    }

    fn triple_fault(&mut self) -> Result<VcpuExit, VcpuError> {
        log::warn!(
            "x86: triple fault at {:04x}:{:x}; resetting",
            self.cpu.segs[cpu::CS].selector,
            self.cpu.cur_ip
        );
        self.cpu.reset();
        Ok(VcpuExit::Reset)
    }

    /// Sleeps in HLT until an interrupt, the next timer deadline or a kick.
    fn wait_halted(&mut self) {
        match (&self.platform, &self.cpu.apic) {
            (Some(p), Some(a)) => {
                let deadline = p.next_deadline();
                let int_on = self.cpu.flag(flags::IF);
                a.wait(deadline, int_on, &|| self.stop.requested.load(Ordering::SeqCst));
            }
            _ => {
                let g = self.stop.lock.lock().unwrap_or_else(|e| e.into_inner());
                if !self.stop.requested.load(Ordering::SeqCst) {
                    let _ = self.stop.cv.wait_timeout(g, Duration::from_millis(100));
                }
            }
        }
    }
}

/// Wakes a vCPU both from its stop flag and from HLT inside its local APIC.
struct Kicker {
    stop: Arc<Stop>,
    apic: Option<Arc<irqchip::LocalApic>>,
}

impl VcpuKick for Kicker {
    fn kick(&self) {
        self.stop.kick();
        if let Some(a) = &self.apic {
            a.wake();
        }
    }
}

impl Vcpu for InterpVcpu {
    fn run(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError> {
        self.run_inner(io, None)
    }

    fn kicker(&self) -> Arc<dyn VcpuKick> {
        Arc::new(Kicker { stop: self.stop.clone(), apic: self.cpu.apic.clone() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod difftest;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_diff;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_fast_sse;
