//! Executable memory for generated code: one reservation per vCPU, filled front to back.
//! Pages are writable only while code is copied in (never while generated code runs: code
//! is added between blocks), executable otherwise.

use region::Protection;

pub(crate) struct Arena {
    mem: region::Allocation,
    used: usize,
}

// SAFETY: the arena is owned by one vCPU's `Cpu` and only touched by the thread running it.
unsafe impl Send for Arena {}

impl Arena {
    pub(crate) fn new(bytes: usize) -> Option<Self> {
        let mem = region::alloc(bytes, Protection::READ_EXECUTE).ok()?;
        Some(Self { mem, used: 0 })
    }

    /// Copies `code` in; None when it does not fit.
    pub(crate) fn add(&mut self, code: &[u8]) -> Option<*const u8> {
        let start = self.used.next_multiple_of(64);
        if code.is_empty() || start + code.len() > self.mem.len() {
            return None;
        }
        // SAFETY: start + len lies inside the allocation.
        let p = unsafe { self.mem.as_mut_ptr::<u8>().add(start) };
        // SAFETY: the pages of [p, p + len) belong to the allocation; no generated code runs
        // while they are writable (the vCPU thread is here).
        unsafe {
            region::protect(p, code.len(), Protection::READ_WRITE).ok()?;
            std::ptr::copy_nonoverlapping(code.as_ptr(), p, code.len());
            wasmtime_internal_jit_icache_coherence::clear_cache(p as *const std::ffi::c_void, code.len())
                .ok()?;
            region::protect(p, code.len(), Protection::READ_EXECUTE).ok()?;
        }
        // Other threads never run this arena's code; the flush is for this core's pipeline.
        #[cfg(target_arch = "aarch64")]
        wasmtime_internal_jit_icache_coherence::pipeline_flush_mt().ok()?;
        self.used = start + code.len();
        Some(p)
    }

    /// Forgets all code (the caller makes sure none of it is called again).
    pub(crate) fn clear(&mut self) {
        self.used = 0;
    }
}
