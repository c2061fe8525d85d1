//! What the VMM's main thread waits for.

use machine::vcpu::{VcpuError, VcpuExit};

/// An event for the main loop.
#[derive(Debug)]
pub enum Event {
    /// A vCPU thread returned from its run loop.
    VcpuDone(u8, Result<VcpuExit, VcpuError>),
    /// The user asked to quit (Ctrl-A x on the console).
    Quit,
    /// A termination signal arrived.
    Signal(i32),
}
