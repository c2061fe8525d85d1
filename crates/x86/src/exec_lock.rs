//! One vCPU at a time: the interpreter's vCPUs of one machine take turns, a batch of
//! instructions each, so that guest instructions never interleave inside one another. That is
//! what makes LOCK-prefixed read-modify-writes and XCHG with memory atomic across vCPUs, as the
//! guest's spinlocks, atomics and reference counts need, while the interpreter executes them as
//! plain reads and writes (QEMU's TCG did the same before its multi-threaded mode). Turns are
//! handed out in ticket order, so no vCPU starves another; a halted vCPU holds none.
//!
//! The cost is parallelism: a machine with several vCPUs runs their code one at a time. A
//! machine with one vCPU does not take turns at all.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The turn-taking shared by the vCPUs of one machine.
#[derive(Debug, Default)]
pub struct ExecLock {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The next ticket to hand out.
    next: u64,
    /// The ticket whose holder may run.
    serving: u64,
    /// vCPUs waiting for their turn.
    waiting: usize,
}

/// A vCPU's turn; the next vCPU's starts when it is dropped.
#[derive(Debug)]
pub struct Turn<'a>(&'a ExecLock);

impl ExecLock {
    /// Turn-taking for one machine's vCPUs.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for this vCPU's turn, after every vCPU that asked before it.
    pub fn take(&self) -> Turn<'_> {
        let mut s = self.state();
        let ticket = s.next;
        s.next += 1;
        if s.serving != ticket {
            s.waiting += 1;
            while s.serving != ticket {
                s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.waiting -= 1;
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.serving += 1;
        let waiting = s.waiting > 0;
        drop(s);
        if waiting {
            self.0.cv.notify_all();
        }
    }
}
