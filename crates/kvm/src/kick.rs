//! Stopping a vCPU that is inside KVM_RUN.
//!
//! The kicker sets a flag and sends a real-time signal to the vCPU's thread. The signal handler
//! sets `immediate_exit` in that thread's `kvm_run`, so a signal that lands just before KVM_RUN
//! still makes KVM_RUN return at once: no stop request is lost.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

use kvm_bindings::kvm_run;
use machine::vcpu::VcpuKick;

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal used to kick vCPU threads.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

extern "C" fn on_kick(_: libc::c_int) {
    KVM_RUN.with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: the pointer was set by this thread to its vCPU's mmap'd kvm_run, which
            // outlives the registration (cleared before the vCPU is dropped); a volatile byte
            // store is async-signal-safe.
            unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
        }
    });
}

/// Installs the kick signal handler once per process.
pub fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a plain handler is valid; the handler only touches a
        // thread-local pointer and a byte behind it.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(kick_signal(), &act, std::ptr::null_mut());
        }
    });
}

/// Records the calling thread's kvm_run for the signal handler (null to clear).
pub fn register_run(run: *mut kvm_run) {
    KVM_RUN.with(|p| p.set(run));
}

/// The stop handle of one vCPU.
#[derive(Default)]
pub struct Kicker {
    stop: AtomicBool,
    thread: AtomicU64,
}

impl Kicker {
    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Clears a stop request (when the vCPU runs again).
    pub fn clear(&self) {
        self.stop.store(false, Ordering::SeqCst);
    }

    /// Records the thread now running the vCPU (`false`: none runs it any more).
    pub fn set_thread(&self, running: bool) {
        let me = if running {
            // SAFETY: pthread_self has no preconditions.
            (unsafe { libc::pthread_self() }) as u64
        } else {
            0
        };
        self.thread.store(me, Ordering::SeqCst);
    }
}

impl VcpuKick for Kicker {
    fn kick(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let t = self.thread.load(Ordering::SeqCst);
        if t != 0 {
            // SAFETY: the id is set only while the vCPU thread is inside `run` (cleared before it
            // returns), so it names a live thread.
            unsafe { libc::pthread_kill(t as libc::pthread_t, kick_signal()) };
        }
    }
}
