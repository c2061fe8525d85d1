//! The host side of the SSE differential test: an executable page that loads the state by
//! FXRSTOR, runs one instruction and stores the state by FXSAVE, and a SIGFPE handler that
//! skips an instruction whose unmasked SIMD exception faulted.

use super::tests_values::{State, STATUS};

#[repr(C, align(16))]
struct Area([u8; 512]);

#[repr(C, align(16))]
struct Block {
    /// rax, rcx, rdx, flags in, flags out, rbx.
    gpr: [u64; 6],
    mem: [u8; 32],
}

/// An executable page: FXRSTOR the input, run the instruction, FXSAVE the output.
pub struct Native {
    page: crate::exec_page::ExecPage,
}

type Func = unsafe extern "C" fn(*const Area, *mut Area, *mut Block, *mut Area);

impl Native {
    pub fn new(op: &[u8]) -> Self {
        let mut code = vec![
            0x53, // push rbx
            0x48, 0x0f, 0xae, 0x01, // fxsave64 [rcx] (the caller's state)
            0x49, 0x89, 0xd0, // mov r8, rdx
            0x49, 0x89, 0xf3, // mov r11, rsi
            0x49, 0x89, 0xca, // mov r10, rcx
            0x48, 0x0f, 0xae, 0x0f, // fxrstor64 [rdi]
            0x41, 0xff, 0x70, 0x18, // push qword [r8+24]
            0x9d, // popfq
            0x49, 0x8b, 0x00, // mov rax, [r8]
            0x49, 0x8b, 0x48, 0x08, // mov rcx, [r8+8]
            0x49, 0x8b, 0x50, 0x10, // mov rdx, [r8+16]
            0x49, 0x8b, 0x58, 0x28, // mov rbx, [r8+40]
            0x48, 0x89, 0xdf, // mov rdi, rbx
        ];
        code.extend_from_slice(op);
        code.extend_from_slice(&[
            0x9c, // pushfq
            0x41, 0x8f, 0x40, 0x20, // pop qword [r8+32]
            0x49, 0x89, 0x00, // mov [r8], rax
            0x49, 0x89, 0x48, 0x08, // mov [r8+8], rcx
            0x49, 0x89, 0x50, 0x10, // mov [r8+16], rdx
            0x49, 0x0f, 0xae, 0x03, // fxsave64 [r11]
            0x49, 0x0f, 0xae, 0x0a, // fxrstor64 [r10]
            0x5b, // pop rbx
            0xc3, // ret
        ]);
        Self { page: crate::exec_page::ExecPage::new(&code) }
    }

    pub fn run(&self, s: &State) -> State {
        let mut input = Area([0; 512]);
        let a = &mut input.0;
        a[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        a[2..4].copy_from_slice(&((s.top as u16) << 11).to_le_bytes());
        a[4] = s.ftw;
        a[24..28].copy_from_slice(&s.mxcsr.to_le_bytes());
        for i in 0..8 {
            a[32 + 16 * i..42 + 16 * i].copy_from_slice(&s.st[i].to_le_bytes()[..10]);
        }
        for i in 0..16 {
            a[160 + 16 * i..176 + 16 * i].copy_from_slice(&s.xmm[i].to_le_bytes());
        }
        let mut out = Area([0; 512]);
        let mut saved = Area([0; 512]);
        let mut b = Block { gpr: [s.gpr[0], s.gpr[1], s.gpr[2], s.flags | 2, 0, 0], mem: s.mem };
        b.gpr[5] = b.mem.as_ptr() as u64;
        // SAFETY: the page holds a complete function with this signature that touches only
        // its arguments, caller-saved registers, rbx (saved) and the block's memory; the
        // caller's x87/SSE state is saved first and restored last.
        unsafe {
            let f: Func = std::mem::transmute::<*mut libc::c_void, Func>(self.page.addr());
            f(&input, &mut out, &mut b, &mut saved);
        }
        let o = &out.0;
        let u128_at = |off: usize| u128::from_le_bytes(o[off..off + 16].try_into().unwrap());
        State {
            xmm: std::array::from_fn(|i| u128_at(160 + 16 * i)),
            st: std::array::from_fn(|i| u128_at(32 + 16 * i) & ((1u128 << 80) - 1)),
            mxcsr: u32::from_le_bytes(o[24..28].try_into().unwrap()),
            ftw: o[4],
            top: ((u16::from_le_bytes([o[2], o[3]]) >> 11) & 7) as u8,
            gpr: [b.gpr[0], b.gpr[1], b.gpr[2]],
            flags: b.gpr[4] & STATUS,
            mem: b.mem,
        }
    }
}

/// Set by the SIGFPE handler; the faulting instruction is skipped by `SKIP` bytes.
static FAULTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SKIP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_fpe(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    use std::sync::atomic::Ordering::SeqCst;
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: the kernel passes the interrupted context; moving RIP past the faulting
    // instruction (it left the destination unchanged) resumes the snippet.
    unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] += SKIP.load(SeqCst) as i64 };
    FAULTED.store(true, SeqCst);
}

/// The SIGFPE handler that turns an unmasked SIMD exception into a skip, installed while
/// this lives (holding the process-wide lock of the signal-catching tests) and then removed.
pub struct CatchSimd {
    old: libc::sigaction,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl CatchSimd {
    pub fn new() -> Self {
        let guard = crate::difftest::native::LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: a plain sigaction with a handler that only touches atomics and the context;
        // the previous one is kept to be put back.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            let mut old: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fpe as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            assert_eq!(libc::sigaction(libc::SIGFPE, &sa, &mut old), 0);
            Self { old, _guard: guard }
        }
    }
}

impl Drop for CatchSimd {
    fn drop(&mut self) {
        // SAFETY: reinstalling the handler that was there before.
        unsafe { libc::sigaction(libc::SIGFPE, &self.old, std::ptr::null_mut()) };
    }
}

impl Native {
    /// Runs with SIMD exceptions possibly unmasked: the state, and whether #XM was raised
    /// by the instruction of `len` bytes.
    pub fn run_catching(&self, s: &State, len: usize) -> (State, bool) {
        use std::sync::atomic::Ordering::SeqCst;
        SKIP.store(len, SeqCst);
        FAULTED.store(false, SeqCst);
        let st = self.run(s);
        (st, FAULTED.load(SeqCst))
    }
}

pub fn has(feature: &str) -> bool {
    match feature {
        "sse2" => std::is_x86_feature_detected!("sse2"),
        "sse3" => std::is_x86_feature_detected!("sse3"),
        "ssse3" => std::is_x86_feature_detected!("ssse3"),
        "sse4.1" => std::is_x86_feature_detected!("sse4.1"),
        "sse4.2" => std::is_x86_feature_detected!("sse4.2"),
        _ => false,
    }
}
