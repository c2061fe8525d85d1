//! The native runner: the layout mapped at its fixed address in the test process, one
//! instruction run on the host CPU between a stub that loads the whole state and one that
//! saves it, faults caught by signal handlers that read the trap from the signal's context.

use super::{
    Outcome, State, Trap, CODE, DATA, DATA_LEN, DATA_PAGES, HOLE, INSN, LANDING, LOW_DATA, LOW_WINDOW,
    READ_ONLY, WINDOW, WINDOW_SIZE,
};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The context page: inputs, outputs and the fault record, at fixed offsets.
const CTX: u64 = WINDOW + 0x1000;
const C_IN: u64 = CTX;
const C_FLAGS_IN: u64 = CTX + 0x80;
const C_HOST_RSP: u64 = CTX + 0x88;
const C_FLAGS_OUT: u64 = CTX + 0x90;
const C_FAULTED: u64 = CTX + 0x98;
const C_TRAPNO: u64 = CTX + 0xa0;
const C_ERR: u64 = CTX + 0xa8;
const C_CR2: u64 = CTX + 0xb0;
const C_FAULT_RIP: u64 = CTX + 0xb8;
const C_FAULT_FLAGS: u64 = CTX + 0xc0;
const C_TAKEN: u64 = CTX + 0xc8;
const C_START: u64 = CTX + 0xd0;
const C_OUT: u64 = CTX + 0x100;
const C_FAULT_GPR: u64 = CTX + 0x180;
const C_FX_IN: u64 = CTX + 0x200;
const C_FX_OUT: u64 = CTX + 0x400;
const C_HOST_FX: u64 = CTX + 0x600;
const C_FAULT_FX: u64 = CTX + 0x800;

/// Stubs in the code page.
const ENTRY: u64 = CODE;
const SAVE: u64 = CODE + 0x280;
const RECOVER: u64 = CODE + 0x400;

/// The window, mapped once per process: Err says why it could not be.
static MAPPED: OnceLock<Result<(), String>> = OnceLock::new();
/// One native run at a time in the whole process (the window and the handlers are shared);
/// other tests that install signal handlers take it too.
pub(crate) static LOCK: Mutex<()> = Mutex::new(());

const SIGNALS: [libc::c_int; 5] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP];

/// The handlers that were installed before ours, to chain faults that are not ours.
struct Previous([libc::sigaction; 5]);
static mut PREVIOUS: Option<Previous> = None;

/// Runs instructions on the host; holds the process-wide lock while it lives.
pub(crate) struct Native {
    _guard: MutexGuard<'static, ()>,
    alt_old: libc::stack_t,
    _alt: Vec<u8>,
}

/// Reserves `WINDOW_SIZE` bytes at `at`, inaccessible.
fn reserve(at: u64) -> Result<(), String> {
    // SAFETY: a fresh anonymous mapping at a fixed address that must not replace anything.
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            WINDOW_SIZE as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p as u64 != at {
        if p != libc::MAP_FAILED {
            // SAFETY: unmapping what the kernel placed elsewhere (an old kernel ignoring the flag).
            unsafe { libc::munmap(p, WINDOW_SIZE as usize) };
        }
        return Err(format!("the address {at:#x} is taken in this process"));
    }
    Ok(())
}

fn map_window() -> Result<(), String> {
    reserve(WINDOW)?;
    reserve(LOW_WINDOW)?;
    // The data pages: one shared memory file mapped in both windows.
    // SAFETY: plain system calls on a file descriptor this function owns; the fixed mappings
    // replace pages of the reservations made above.
    unsafe {
        let fd = libc::memfd_create(c"chr-vmm-difftest".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 || libc::ftruncate(fd, DATA_LEN as libc::off_t) != 0 {
            return Err(format!("memfd: {}", std::io::Error::last_os_error()));
        }
        for at in [DATA, LOW_DATA] {
            let p = libc::mmap(
                at as *mut libc::c_void,
                DATA_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            );
            if p as u64 != at {
                libc::close(fd);
                return Err(format!(
                    "mapping the data pages at {at:#x}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        libc::close(fd);
    }
    let prot = |addr: u64, len: usize, prot: libc::c_int| {
        // SAFETY: changing the protection of pages inside the window mapped above.
        let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
        if r != 0 {
            return Err(format!("mprotect {addr:#x}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    };
    prot(CODE, 4096, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC)?;
    prot(CTX, 4096, libc::PROT_READ | libc::PROT_WRITE)?;
    for base in [DATA, LOW_DATA] {
        prot(base + HOLE as u64 * 4096, 4096, libc::PROT_NONE)?;
        prot(base + READ_ONLY as u64 * 4096, 4096, libc::PROT_READ)?;
    }
    // SAFETY: the code page is mapped read-write-execute above and the stubs fit in it.
    unsafe {
        let code = stubs();
        std::ptr::copy_nonoverlapping(code.as_ptr(), CODE as *mut u8, code.len());
    }
    Ok(())
}

/// A tiny assembler for the stubs: RIP-relative operands are resolved against `base`.
struct Asm {
    base: u64,
    b: Vec<u8>,
}

impl Asm {
    fn at(&mut self, addr: u64) {
        self.b.resize((addr - self.base) as usize, 0xcc);
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.b.extend_from_slice(bytes);
    }
    /// `bytes` then a disp32 to `target`, relative to the end of the instruction.
    fn rip(&mut self, bytes: &[u8], target: u64) {
        self.raw(bytes);
        let end = self.base + self.b.len() as u64 + 4;
        self.raw(&(target.wrapping_sub(end) as i32).to_le_bytes());
    }
    /// mov r64, [rip+target] (load) or mov [rip+target], r64.
    fn mov_reg(&mut self, reg: usize, target: u64, load: bool) {
        let rex = 0x48 | if reg >= 8 { 4 } else { 0 };
        let op = if load { 0x8b } else { 0x89 };
        self.rip(&[rex, op, 0x05 | ((reg as u8 & 7) << 3)], target);
    }
    /// pop r15..r12, rbp, rbx; ret.
    fn epilogue(&mut self) {
        self.raw(&[0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3]);
    }
}

/// The entry, save and recovery stubs.
fn stubs() -> Vec<u8> {
    let mut a = Asm { base: CODE, b: Vec::new() };
    // Entry (System V call, no arguments): save callee-saved registers, the host's RSP and
    // FP state, load the guest's FP state, flags and registers, jump to the instruction.
    a.raw(&[0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57]);
    a.mov_reg(4, C_HOST_RSP, false);
    a.rip(&[0x48, 0x0f, 0xae, 0x05], C_HOST_FX); // fxsave64
    a.rip(&[0x48, 0x0f, 0xae, 0x0d], C_FX_IN); // fxrstor64
    a.rip(&[0xff, 0x35], C_FLAGS_IN); // push qword
    a.raw(&[0x9d]); // popfq
    for r in 0..16 {
        a.mov_reg(r, C_IN + 8 * r as u64, true);
    }
    a.rip(&[0xff, 0x25], C_START); // jmp [rip+C_START]
                                   // A taken branch: note it (MOV changes no flag) and save.
    a.at(LANDING);
    a.raw(&[0x48, 0xc7, 0x05]); // mov qword [rip+C_TAKEN], 1
    let end = a.base + a.b.len() as u64 + 8;
    a.raw(&(C_TAKEN.wrapping_sub(end) as i32).to_le_bytes());
    a.raw(&1u32.to_le_bytes());
    a.rip(&[0xe9], SAVE);
    a.at(SAVE);
    for r in 0..16 {
        a.mov_reg(r, C_OUT + 8 * r as u64, false);
    }
    a.mov_reg(4, C_HOST_RSP, true);
    a.raw(&[0x9c]); // pushfq
    a.rip(&[0x8f, 0x05], C_FLAGS_OUT); // pop qword
    a.raw(&[0x68, 0x02, 0x02, 0, 0, 0x9d]); // push 0x202; popfq
    a.rip(&[0x48, 0x0f, 0xae, 0x05], C_FX_OUT);
    a.rip(&[0x48, 0x0f, 0xae, 0x0d], C_HOST_FX);
    a.epilogue();
    // Where the signal handler resumes after a fault (its record is already written).
    a.at(RECOVER);
    a.mov_reg(4, C_HOST_RSP, true);
    a.raw(&[0x68, 0x02, 0x02, 0, 0, 0x9d]);
    a.rip(&[0x48, 0x0f, 0xae, 0x0d], C_HOST_FX);
    a.epilogue();
    a.b
}

/// The ucontext register slots of RAX..R15, in the interpreter's order.
const GREGS: [libc::c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers; the record is
    // written to the context page, mapped for the process' life, by the one thread that
    // holds `LOCK` and faulted synchronously inside the code page.
    unsafe {
        let uc = &mut *(ctx as *mut libc::ucontext_t);
        let g = &mut uc.uc_mcontext.gregs;
        let rip = g[libc::REG_RIP as usize] as u64;
        if !(CODE..CODE + 4096).contains(&rip) {
            chain(sig, info, ctx);
            return;
        }
        let put = |addr: u64, v: u64| std::ptr::write(addr as *mut u64, v);
        put(C_FAULTED, 1);
        put(C_TRAPNO, g[libc::REG_TRAPNO as usize] as u64);
        put(C_ERR, g[libc::REG_ERR as usize] as u64);
        put(C_CR2, g[libc::REG_CR2 as usize] as u64);
        put(C_FAULT_RIP, rip);
        put(C_FAULT_FLAGS, g[libc::REG_EFL as usize] as u64);
        for (i, r) in GREGS.iter().enumerate() {
            put(C_FAULT_GPR + 8 * i as u64, g[*r as usize] as u64);
        }
        let fp = uc.uc_mcontext.fpregs as *const u8;
        if !fp.is_null() {
            std::ptr::copy_nonoverlapping(fp, C_FAULT_FX as *mut u8, 512);
        }
        g[libc::REG_RIP as usize] = RECOVER as i64;
    }
}

/// Hands a signal that did not come from the code page to the handler installed before.
///
/// # Safety
/// Called from a signal handler with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let i = SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
    // SAFETY: PREVIOUS is written before the handlers are installed and not while they are.
    let prev = unsafe { (*std::ptr::addr_of!(PREVIOUS)).as_ref().map(|p| p.0[i]) };
    let Some(old) = prev else { return };
    if old.sa_flags & libc::SA_SIGINFO != 0 && old.sa_sigaction > libc::SIG_IGN {
        // SAFETY: the previous handler was installed as an SA_SIGINFO handler.
        unsafe {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(old.sa_sigaction);
            f(sig, info, ctx);
        }
    } else {
        // The default action: reinstall it and let the instruction fault again.
        // SAFETY: restoring a previously valid action.
        unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
    }
}

impl Native {
    /// The runner, or why this process cannot have one.
    pub fn new() -> Result<Self, String> {
        MAPPED.get_or_init(map_window).clone()?;
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // An alternate signal stack: the guest's RSP may point anywhere.
        let mut alt = vec![0u8; 256 * 1024];
        let stack = libc::stack_t { ss_sp: alt.as_mut_ptr() as *mut _, ss_flags: 0, ss_size: alt.len() };
        // SAFETY: plain structs for the kernel; the buffer lives as long as the runner.
        let mut alt_old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: installing an alternate stack for this thread; the old one is restored in drop.
        if unsafe { libc::sigaltstack(&stack, &mut alt_old) } != 0 {
            return Err(format!("sigaltstack: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: zeroed sigaction structs are valid; the handler has the SA_SIGINFO signature.
        unsafe {
            let mut prev: [libc::sigaction; 5] = std::mem::zeroed();
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut act.sa_mask);
            for (i, s) in SIGNALS.iter().enumerate() {
                libc::sigaction(*s, std::ptr::null(), &mut prev[i]);
            }
            *std::ptr::addr_of_mut!(PREVIOUS) = Some(Previous(prev));
            for s in SIGNALS {
                libc::sigaction(s, &act, std::ptr::null_mut());
            }
        }
        Ok(Self { _guard: guard, alt_old, _alt: alt })
    }

    /// Runs `insn` (at `INSN`) from `s` on the host CPU, after `pre` (register-only code
    /// placed just before it).
    pub fn run(&mut self, pre: &[u8], insn: &[u8], s: &State) -> Outcome {
        let start = INSN - pre.len() as u64;
        let mut code = pre.to_vec();
        code.extend_from_slice(insn);
        // jmp rel32 to the save stub.
        let end = start + code.len() as u64 + 5;
        code.push(0xe9);
        code.extend_from_slice(&(SAVE.wrapping_sub(end) as i32).to_le_bytes());
        let w = |addr: u64, v: u64| {
            // SAFETY: the context page is mapped read-write for the process' life.
            unsafe { std::ptr::write(addr as *mut u64, v) }
        };
        let r = |addr: u64| {
            // SAFETY: as above.
            unsafe { std::ptr::read(addr as *const u64) }
        };
        let ro = DATA + READ_ONLY as u64 * 4096;
        let protect = |prot: libc::c_int| {
            // SAFETY: the read-only data page of the window, made writable while it is filled.
            let r = unsafe { libc::mprotect(ro as *mut libc::c_void, 4096, prot) };
            assert_eq!(r, 0, "mprotect of the read-only data page");
        };
        protect(libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: the code page is mapped read-write-execute and the code is shorter than the
        // room before the save stub; the data pages are mapped read-write except the hole.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), start as *mut u8, code.len());
            std::ptr::copy_nonoverlapping(s.fx.as_ptr(), C_FX_IN as *mut u8, 512);
            for i in (0..DATA_PAGES).filter(|&i| i != HOLE) {
                let off = i * 4096;
                std::ptr::copy_nonoverlapping(s.data[off..].as_ptr(), (DATA + off as u64) as *mut u8, 4096);
            }
        }
        for i in 0..16 {
            w(C_IN + 8 * i as u64, s.gpr[i]);
        }
        protect(libc::PROT_READ);
        // Linux fills page tables lazily: the low window's pages must be present, as the
        // interpreter's are, or a store to the read-only one would fault as not present.
        for i in (0..DATA_PAGES).filter(|&i| i != HOLE) {
            // SAFETY: a read of a readable page of the low window.
            unsafe { std::ptr::read_volatile((LOW_DATA + i as u64 * 4096) as *const u8) };
        }
        w(C_FLAGS_IN, s.rflags);
        w(C_FAULTED, 0);
        w(C_TAKEN, 0);
        w(C_START, start);
        // SAFETY: the entry stub saves and restores everything the C ABI needs (callee-saved
        // registers, RSP, the FP control state, DF); the instruction only touches the window
        // (the generator checks every memory operand before a case runs).
        unsafe {
            let f: extern "C" fn() = std::mem::transmute(ENTRY as usize);
            f();
        }
        let faulted = r(C_FAULTED) != 0;
        let mut out =
            State { gpr: [0; 16], rip: 0, rflags: 0, fx: Box::new([0; 512]), data: vec![0; DATA_LEN] };
        let (gpr_base, fx_base) = if faulted { (C_FAULT_GPR, C_FAULT_FX) } else { (C_OUT, C_FX_OUT) };
        for i in 0..16 {
            out.gpr[i] = r(gpr_base + 8 * i as u64);
        }
        // SAFETY: reading mapped pages of the window.
        unsafe {
            std::ptr::copy_nonoverlapping(fx_base as *const u8, out.fx.as_mut_ptr(), 512);
            for i in (0..DATA_PAGES).filter(|&i| i != HOLE) {
                let off = i * 4096;
                std::ptr::copy_nonoverlapping(
                    (DATA + off as u64) as *const u8,
                    out.data[off..].as_mut_ptr(),
                    4096,
                );
            }
        }
        let trap = if faulted {
            out.rip = r(C_FAULT_RIP);
            out.rflags = r(C_FAULT_FLAGS);
            Some(Trap { vector: r(C_TRAPNO) as u8, error: r(C_ERR) as u32, cr2: r(C_CR2) })
        } else {
            out.rip = if r(C_TAKEN) != 0 { LANDING } else { INSN + insn.len() as u64 };
            out.rflags = r(C_FLAGS_OUT);
            None
        };
        Outcome { state: out, trap }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: restoring the handlers and the alternate stack saved in `new`.
        unsafe {
            if let Some(p) = (*std::ptr::addr_of!(PREVIOUS)).as_ref() {
                for (i, s) in SIGNALS.iter().enumerate() {
                    libc::sigaction(*s, &p.0[i], std::ptr::null_mut());
                }
            }
            *std::ptr::addr_of_mut!(PREVIOUS) = None;
            libc::sigaltstack(&self.alt_old, std::ptr::null_mut());
        }
    }
}
