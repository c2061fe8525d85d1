//! An executable page of generated host code, for the tests that run instructions on the host
//! CPU to compare with the interpreter (x86-64 hosts only).

/// One page holding `code`, mapped read+execute, unmapped when dropped.
pub(crate) struct ExecPage {
    page: *mut libc::c_void,
}

impl ExecPage {
    pub(crate) fn new(code: &[u8]) -> Self {
        assert!(code.len() <= 4096, "generated code longer than a page");
        // SAFETY: an anonymous private mapping; checked for failure below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        // SAFETY: the page is 4096 bytes and the code no longer (checked above); then it is made
        // read+execute only.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
            assert_eq!(libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC), 0);
        }
        Self { page }
    }

    /// The address of the code's first byte.
    pub(crate) fn addr(&self) -> *mut libc::c_void {
        self.page
    }
}

impl Drop for ExecPage {
    fn drop(&mut self) {
        // SAFETY: unmapping the page this object mapped.
        unsafe { libc::munmap(self.page, 4096) };
    }
}
