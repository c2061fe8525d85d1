//! The KVM accelerator: a VM with the in-kernel irqchip and PIT, and vCPUs that hand their I/O
//! exits to the machine.
//!
//! Compiled only on x86_64 hosts; on other hosts the crate is empty and `chr-vmm` uses the
//! interpreter.

#[cfg(target_arch = "x86_64")]
mod cpuid;
#[cfg(target_arch = "x86_64")]
mod kick;
#[cfg(target_arch = "x86_64")]
mod probe;
#[cfg(target_arch = "x86_64")]
mod vcpu;
#[cfg(target_arch = "x86_64")]
mod vm;

#[cfg(target_arch = "x86_64")]
pub use probe::{probe, Usability};
#[cfg(target_arch = "x86_64")]
pub use vcpu::KvmVcpu;
#[cfg(target_arch = "x86_64")]
pub use vm::{KvmError, KvmVm};
