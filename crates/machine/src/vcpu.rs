//! The seam between the machine and a CPU accelerator.
//!
//! An accelerator (KVM, or the x86 interpreter) runs guest code and hands every port or MMIO
//! access it cannot complete itself to an [`IoHandler`], which is the machine's buses. It returns
//! from [`Vcpu::run`] only when the machine must act: reset, power-off, or a stop request.

use std::sync::Arc;

/// The machine side of the seam: answers the guest's port and MMIO accesses.
pub trait IoHandler: Send + Sync {
    /// An `in` from `port`; `data.len()` is 1, 2 or 4.
    fn pio_read(&self, port: u16, data: &mut [u8]);
    /// An `out` to `port`.
    fn pio_write(&self, port: u16, data: &[u8]);
    /// A read of `data.len()` bytes from guest physical `addr` that is not RAM.
    fn mmio_read(&self, addr: u64, data: &mut [u8]);
    /// A write to guest physical `addr` that is not RAM.
    fn mmio_write(&self, addr: u64, data: &[u8]);
}

/// Why a vCPU stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuExit {
    /// The guest asked for a reset (triple fault, 0xCF9, i8042 pulse).
    Reset,
    /// The guest powered the machine off.
    PowerOff,
    /// Someone asked the vCPU to stop (see [`VcpuKick`]).
    Stopped,
}

/// Errors an accelerator can report while running a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// The host's KVM cannot run this guest: {0}
    #[error("the host's KVM cannot run this guest: {0}. Use `--accel interp` on this host")]
    UnsupportedByHost(String),
    /// The accelerator failed.
    #[error("the vCPU failed: {0}")]
    Failed(String),
}

/// Asks a running vCPU to return from [`Vcpu::run`] with [`VcpuExit::Stopped`] soon.
pub trait VcpuKick: Send + Sync {
    /// Requests the stop; safe to call from any thread, any number of times.
    fn kick(&self);
}

/// One virtual CPU of an accelerator.
pub trait Vcpu: Send {
    /// Runs guest code until the machine must act.
    fn run(&mut self, io: &dyn IoHandler) -> Result<VcpuExit, VcpuError>;
    /// A handle that stops this vCPU from another thread.
    fn kicker(&self) -> Arc<dyn VcpuKick>;
}
