//! Differential test of the SSE/MMX instructions against the host CPU (x86-64 hosts only):
//! each form runs natively from an executable page with XMM/MMX state and MXCSR loaded by
//! FXRSTOR and read back by FXSAVE, and in the interpreter from the same state; registers,
//! MXCSR, RFLAGS, the x87 tags and the memory operand must agree bit for bit.

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use super::tests_forms::{forms, Data, Form, Imm, Rm};
use crate::cpu::{self, Segment};
use crate::InterpVcpu;
use machine::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The state one case starts from and ends with.
#[derive(Clone, PartialEq, Eq, Debug)]
struct State {
    xmm: [u128; 16],
    /// x87 registers (80 bits each) = MMX registers in the low 64.
    st: [u128; 8],
    mxcsr: u32,
    ftw: u8,
    top: u8,
    /// rax, rcx, rdx.
    gpr: [u64; 3],
    /// The status flags.
    flags: u64,
    mem: [u8; 32],
}

const STATUS: u64 = 0x8d5;
pub(super) const DATA: u64 = 0x3000;

pub(super) struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A single drawn heavily from special values.
    fn f32(&mut self) -> u32 {
        let r = self.next();
        let s = ((r >> 63) as u32) << 31;
        let m = (r >> 8) as u32 & 0x7f_ffff;
        match r % 12 {
            0 => {
                [
                    0,
                    1,
                    0x7f_ffff,
                    0x80_0000,
                    0x7f7f_ffff,
                    0x7f80_0000,
                    0x7fc0_0000,
                    0x7fa0_0001,
                    0x3f80_0000,
                    0x4f00_0000,
                    0x5f00_0000,
                    0x4b00_0000,
                ][(r >> 20) as usize % 12]
                    | s
            }
            1 => s | m,                                                     // denormal
            2 => s | 0x7f80_0000 | m | 1,                                   // NaN with payload
            3 => s | ((127 + (r >> 40) % 40) << 23) as u32 | m & 0x7f_0000, // near integers
            4 => s | (((r >> 40) % 6) as u32) << 23 | m,                    // tiny normals
            5 => s | ((0xfe - (r >> 40) % 4) << 23) as u32 | m,             // huge
            6 => s | 0x3f00_0000 | (m & 0x40_0003),                         // halves
            7 => s | ((120 + (r >> 40) % 16) << 23) as u32 | m,
            // Few significant bits: exact and exactly-halfway results.
            8 => s | ((100 + (r >> 40) % 60) << 23) as u32 | (m & 0x70_0001),
            _ => r as u32,
        }
    }

    fn f64(&mut self) -> u64 {
        let r = self.next();
        let s = r & (1 << 63);
        let m = self.next() & ((1 << 52) - 1);
        match r % 12 {
            0 => {
                [
                    0,
                    1,
                    (1 << 52) - 1,
                    1 << 52,
                    0x7fef_ffff_ffff_ffff,
                    0x7ff0 << 48,
                    0x7ff8 << 48,
                    0x7ff4_0000_0000_0001,
                    0x3ff0 << 48,
                    0x41e0 << 48,
                    0x43e0 << 48,
                    0x4330 << 48,
                ][(r >> 20) as usize % 12]
                    | s
            }
            1 => s | m,
            2 => s | (0x7ff << 52) | m | 1,
            3 => s | ((1023 + (r >> 40) % 70) << 52) | (m & (0xff << 44)),
            4 => s | (((r >> 40) % 6) << 52) | m,
            5 => s | ((0x7fe - (r >> 40) % 4) << 52) | m,
            6 => s | (0x3fe << 52) | (m & ((1 << 51) | 3)),
            7 => s | ((0x380 + (r >> 40) % 16) << 52) | m,
            8 => s | ((0x36a + (r >> 40) % 8) << 52) | m,
            9 => s | ((0x3c0 + (r >> 40) % 100) << 52) | (m & (0xe << 48 | 1)),
            _ => r,
        }
    }

    fn int(&mut self) -> u64 {
        let r = self.next();
        match r % 8 {
            0 => [0, 1, u64::MAX, 0x8000_0000, 0x7fff_ffff, 0x8000_0000_0000_0000, 0x80, 0x7fff]
                [(r >> 8) as usize % 8],
            1 => r >> 56,
            2 => (r >> 32) as i32 as i64 as u64,
            3 => r & 0x8080_8080_8080_8080,
            _ => self.next(),
        }
    }

    /// A vector of `data` lanes; `like` (another operand) is sometimes echoed nearby.
    fn vector(&mut self, data: Data, like: Option<u128>) -> u128 {
        if let Some(l) = like {
            match self.below(6) {
                0 => return l,
                1 => return l ^ (self.below(4) as u128) ^ ((self.below(4) as u128) << 64),
                _ => {}
            }
        }
        match data {
            Data::F32 => (0..4).fold(0, |a, i| a | (self.f32() as u128) << (32 * i)),
            Data::F64 => self.f64() as u128 | (self.f64() as u128) << 64,
            Data::Int => self.int() as u128 | (self.int() as u128) << 64,
            Data::Str => {
                let alpha = 1 + self.below(4) as u8;
                let zero_at = self.below(20) as usize;
                let mut b = [0u8; 16];
                for (i, x) in b.iter_mut().enumerate() {
                    *x = if i == zero_at { 0 } else { b'a' + (self.next() as u8) % alpha };
                }
                if self.below(3) == 0 {
                    b.iter_mut().for_each(|x| *x |= 0x80 * (self.next() as u8 & 1));
                }
                u128::from_le_bytes(b)
            }
        }
    }

    fn state(&mut self, form: &Form) -> State {
        let d = form.data;
        let x1 = self.vector(d, None);
        let x2 = self.vector(d, Some(x1));
        let mut xmm: [u128; 16] = std::array::from_fn(|_| self.vector(d, None));
        xmm[1] = x1;
        xmm[2] = x2;
        let st = std::array::from_fn(|i| {
            let v = match i {
                1 => x1 as u64,
                2 => x2 as u64,
                _ => self.next(),
            };
            v as u128 | ((self.next() as u128 & 0xffff) << 64)
        });
        let rc = self.below(4) as u32;
        let mut mxcsr = 0x1f80 | rc << 13;
        if self.below(3) == 0 {
            mxcsr |= 0x40;
        }
        if self.below(3) == 0 {
            mxcsr |= 0x8000;
        }
        if self.below(4) == 0 {
            mxcsr |= self.below(64) as u32;
        }
        let mut mem = [0u8; 32];
        let mv = self.vector(d, Some(x1));
        mem[..16].copy_from_slice(&mv.to_le_bytes());
        mem[16..].copy_from_slice(&self.next().to_le_bytes().repeat(2));
        let gpr = if d == Data::Str {
            [self.below(20).wrapping_sub(2), self.int(), self.below(20).wrapping_sub(2)]
        } else {
            [self.int(), self.int(), self.int()]
        };
        State {
            xmm,
            st,
            mxcsr,
            ftw: if self.below(2) == 0 { 0 } else { 0xff },
            top: 0,
            gpr,
            flags: self.next() & STATUS,
            mem,
        }
    }
}

/// The interpreter side: one vCPU in 64-bit mode running `code` then HLT.
pub(super) struct Interp {
    len: u64,
    pub(super) mem: GuestMemory,
    pub(super) vcpu: InterpVcpu,
}

/// 64-bit mode with SSE enabled (CR4.OSFXSR, OSXMMEXCPT), no paging.
pub(super) fn long_mode(c: &mut cpu::Cpu) {
    c.segs[cpu::CS] = Segment::real(0, 0x9b);
    c.efer = cpu::EFER_LMA | cpu::EFER_LME;
    c.cr0 |= cpu::CR0_PE;
    c.cr4 |= cpu::CR4_OSFXSR | super::mxcsr::CR4_OSXMMEXCPT;
    c.segs[cpu::CS].attr = 0xa09b;
    c.bitness = 64;
}

impl Interp {
    pub(super) fn new(code: &[u8]) -> Self {
        let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let mut full = code.to_vec();
        full.push(0xf4);
        mem.write_slice(&full, GuestAddress(0x1000)).unwrap();
        let vcpu = InterpVcpu::new(&mem, u64::MAX, 0, None);
        Self { len: code.len() as u64, mem, vcpu }
    }

    /// Runs `bytes` once by `Cpu::exec` from state `s`: the state after, and whether it
    /// raised #XM (then RIP is taken as past the instruction, as the host's handler does).
    fn exec_once(&mut self, bytes: &[u8], s: &State) -> (State, bool) {
        self.mem.write_slice(&s.mem, GuestAddress(DATA)).unwrap();
        let c = self.vcpu.cpu();
        long_mode(c);
        c.fpu.xmm = s.xmm;
        c.fpu.st = s.st;
        c.fpu.mxcsr = s.mxcsr;
        c.fpu.ftw = s.ftw;
        c.fpu.top = s.top;
        c.fpu.fsw = 0;
        c.regs[0] = s.gpr[0];
        c.regs[1] = s.gpr[1];
        c.regs[2] = s.gpr[2];
        c.regs[3] = DATA;
        c.regs[7] = DATA;
        c.set_flags(s.flags | 2);
        let ins = iced_x86::Decoder::with_ip(64, bytes, 0x1000, iced_x86::DecoderOptions::NONE).decode();
        let r = c.exec(&ins);
        let fault = match r {
            Ok(_) => false,
            Err(cpu::Fault::Exc(19, None)) => true,
            Err(f) => panic!("{bytes:02x?} raised {f:?}"),
        };
        let c = self.vcpu.cpu();
        let mut mem = [0u8; 32];
        self.mem.read_slice(&mut mem, GuestAddress(DATA)).unwrap();
        let st = State {
            xmm: c.fpu.xmm,
            st: c.fpu.st.map(|x| x & ((1u128 << 80) - 1)),
            mxcsr: c.fpu.mxcsr,
            ftw: c.fpu.ftw,
            top: c.fpu.top,
            gpr: [c.regs[0], c.regs[1], c.regs[2]],
            flags: c.flags() & STATUS,
            mem,
        };
        (st, fault)
    }

    /// The state after the snippet, or None when it faulted instead of reaching HLT.
    fn run(&mut self, s: &State) -> Option<State> {
        self.mem.write_slice(&s.mem, GuestAddress(DATA)).unwrap();
        let c = self.vcpu.cpu();
        long_mode(c);
        c.rip = 0x1000;
        c.halted = false;
        c.fpu.xmm = s.xmm;
        c.fpu.st = s.st;
        c.fpu.mxcsr = s.mxcsr;
        c.fpu.ftw = s.ftw;
        c.fpu.top = s.top;
        c.fpu.fsw = 0;
        c.regs[0] = s.gpr[0];
        c.regs[1] = s.gpr[1];
        c.regs[2] = s.gpr[2];
        c.regs[3] = DATA;
        c.regs[7] = DATA;
        c.set_flags(s.flags | 2);
        let io = crate::tests::Recorder::default();
        self.vcpu.run_for(&io, 4).unwrap();
        let c = self.vcpu.cpu();
        if !c.halted || c.rip != 0x1001 + self.len {
            return None;
        }
        let mut mem = [0u8; 32];
        self.mem.read_slice(&mut mem, GuestAddress(DATA)).unwrap();
        Some(State {
            xmm: c.fpu.xmm,
            st: c.fpu.st.map(|x| x & ((1u128 << 80) - 1)),
            mxcsr: c.fpu.mxcsr,
            ftw: c.fpu.ftw,
            top: c.fpu.top,
            gpr: [c.regs[0], c.regs[1], c.regs[2]],
            flags: c.flags() & STATUS,
            mem,
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod native {
    use super::State;

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
        page: *mut libc::c_void,
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
            // SAFETY: the page is 4096 bytes and the code far shorter; then read+execute only.
            unsafe {
                std::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
                assert_eq!(libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC), 0);
            }
            Self { page }
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
                let f: Func = std::mem::transmute::<*mut libc::c_void, Func>(self.page);
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
                flags: b.gpr[4] & super::STATUS,
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

    /// Installs the SIGFPE handler that turns an unmasked SIMD exception into a skip.
    pub fn catch_simd_exceptions() {
        // SAFETY: a plain sigaction with a handler that only touches atomics and the context.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fpe as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            assert_eq!(libc::sigaction(libc::SIGFPE, &sa, std::ptr::null_mut()), 0);
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

    impl Drop for Native {
        fn drop(&mut self) {
            // SAFETY: unmapping the page this object mapped.
            unsafe { libc::munmap(self.page, 4096) };
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
}

/// Whether two results of an approximating instruction agree: the same lanes except that
/// finite nonzero singles may differ by 1.5*2^-12 of their size.
fn approx_equal(a: &State, b: &State) -> bool {
    let close = |x: u32, y: u32| {
        let (fx, fy) = (f32::from_bits(x) as f64, f32::from_bits(y) as f64);
        x == y
            || (fx.is_finite()
                && fy.is_finite()
                && fx != 0.0
                && ((fx - fy) / fx).abs() <= 1.5 / 4096.0 + 1e-7)
    };
    let lanes_close =
        (0..16).all(|r| (0..4).all(|i| close((a.xmm[r] >> (32 * i)) as u32, (b.xmm[r] >> (32 * i)) as u32)));
    lanes_close && State { xmm: b.xmm, ..a.clone() } == *b
}

/// Runs every form `per_form` times per encoding; returns (cases, mismatch reports).
pub(super) fn run_all(seed: u64, per_form: usize) -> (usize, Vec<String>, Vec<String>) {
    let mut rng = Rng(seed);
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    #[cfg(target_arch = "x86_64")]
    for form in forms() {
        if !native::has(form.feature) {
            skipped.push(format!("{} ({} missing)", form.name, form.feature));
            continue;
        }
        let mems: &[bool] = match form.rm {
            Rm::Both => &[false, true],
            Rm::Reg | Rm::Fixed => &[false],
            Rm::Mem => &[true],
        };
        for &mem in mems {
            let imms: Vec<Option<u8>> = match form.imm {
                Imm::None => vec![None],
                Imm::Below(n) => (0..6).map(|_| Some(rng.below(n as u64) as u8)).collect(),
            };
            for imm in imms {
                let bytes = form.bytes(mem, imm);
                let nat = native::Native::new(&bytes);
                let mut interp = Interp::new(&bytes);
                for _ in 0..per_form {
                    let s = rng.state(&form);
                    let want = nat.run(&s);
                    let got = interp.run(&s);
                    cases += 1;
                    match got {
                        None => {
                            failures.push(format!("{} {:02x?}: the interpreter faulted", form.name, bytes))
                        }
                        Some(got) => {
                            let same = if form.approx { approx_equal(&want, &got) } else { want == got };
                            if !same {
                                failures.push(describe(&form, &bytes, &s, &want, &got));
                            }
                        }
                    }
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (&mut rng, forms);
    (cases, failures, skipped)
}

/// Unmasked SIMD exceptions: the same forms with random exception masks cleared; the host
/// raises SIGFPE (caught, the instruction skipped), the interpreter #XM, and the state after
/// (destination kept, MXCSR flags) must agree.
pub(super) fn run_unmasked(seed: u64, per_form: usize) -> (usize, Vec<String>) {
    let mut rng = Rng(seed);
    let mut cases = 0;
    let mut failures = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        native::catch_simd_exceptions();
        let mut it = Interp::new(&[0xf4]);
        for form in forms() {
            let float = matches!(form.data, Data::F32 | Data::F64) && !form.approx && form.name != "movmskps";
            if !float || !native::has(form.feature) || form.rm == Rm::Mem || form.rm == Rm::Fixed {
                continue;
            }
            for mem in [false, true] {
                if mem && form.rm == Rm::Reg {
                    continue;
                }
                let imm = match form.imm {
                    Imm::None => None,
                    Imm::Below(n) => Some(rng.below(n as u64) as u8),
                };
                let bytes = form.bytes(mem, imm);
                let nat = native::Native::new(&bytes);
                for _ in 0..per_form {
                    let mut s = rng.state(&form);
                    s.mxcsr &= !(((rng.next() & 0x3f) as u32) << 7);
                    let (want, host_fault) = nat.run_catching(&s, bytes.len());
                    let (got, fault) = it.exec_once(&bytes, &s);
                    cases += 1;
                    if want != got || host_fault != fault {
                        failures.push(format!(
                            "{} (host fault {host_fault}, interp fault {fault}): {}",
                            form.name,
                            describe(&form, &bytes, &s, &want, &got)
                        ));
                    }
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (&mut rng, forms);
    (cases, failures)
}

fn describe(form: &Form, bytes: &[u8], s: &State, want: &State, got: &State) -> String {
    let mut d =
        format!("{} {:02x?} mxcsr {:#x} flags {:#x} gpr {:x?}:", form.name, bytes, s.mxcsr, s.flags, s.gpr);
    d += &format!(
        "\n  in xmm1 {:#034x} xmm2 {:#034x} mem {:#034x}",
        s.xmm[1],
        s.xmm[2],
        u128::from_le_bytes(s.mem[..16].try_into().unwrap())
    );
    for i in 0..16 {
        if want.xmm[i] != got.xmm[i] {
            d += &format!(
                "\n  xmm{i} in {:#034x} host {:#034x} interp {:#034x}",
                s.xmm[i], want.xmm[i], got.xmm[i]
            );
        }
    }
    for i in 0..8 {
        if want.st[i] != got.st[i] {
            d += &format!("\n  st{i} in {:#x} host {:#x} interp {:#x}", s.st[i], want.st[i], got.st[i]);
        }
    }
    if want.mxcsr != got.mxcsr {
        d += &format!("\n  mxcsr host {:#x} interp {:#x}", want.mxcsr, got.mxcsr);
    }
    if (want.ftw, want.top) != (got.ftw, got.top) {
        d += &format!("\n  ftw/top host {:?} interp {:?}", (want.ftw, want.top), (got.ftw, got.top));
    }
    if want.gpr != got.gpr {
        d += &format!("\n  gpr host {:x?} interp {:x?}", want.gpr, got.gpr);
    }
    if want.flags != got.flags {
        d += &format!("\n  flags host {:#x} interp {:#x}", want.flags, got.flags);
    }
    if want.mem != got.mem {
        d += &format!("\n  mem host {:02x?}\n      interp {:02x?}", want.mem, got.mem);
    }
    d
}

#[test]
fn unmasked_exceptions_match_the_host_cpu() {
    #[cfg(not(target_arch = "x86_64"))]
    {
        test_support::skip(
            "unmasked_exceptions_match_the_host_cpu",
            "the differential test needs an x86-64 host",
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        let per_form = std::env::var("SSE_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
        let (cases, failures) = run_unmasked(0x0bad_5eed, per_form);
        eprintln!("sse unmasked differential: {cases} cases, {} mismatches", failures.len());
        assert!(
            failures.is_empty(),
            "{} mismatches in {cases} cases, first ones:\n{}",
            failures.len(),
            failures[..failures.len().min(10)].join("\n")
        );
    }
}

#[test]
fn sse_and_mmx_match_the_host_cpu() {
    #[cfg(not(target_arch = "x86_64"))]
    {
        test_support::skip(
            "sse_and_mmx_match_the_host_cpu",
            "the differential test needs an x86-64 host to compare with",
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SSE_DIFF_CASES=n runs n cases per encoding (400 by default).
        let per_form = std::env::var("SSE_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
        let seed =
            std::env::var("SSE_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x005e_ed0f_55e2);
        let (cases, failures, skipped) = run_all(seed, per_form);
        for s in &skipped {
            test_support::skip("sse_and_mmx_match_the_host_cpu", &format!("the host lacks a feature: {s}"));
        }
        eprintln!("sse differential: {cases} cases, {} mismatches", failures.len());
        // The first mismatch of each form, and how many each had.
        let mut by_form: Vec<(String, usize, String)> = Vec::new();
        for f in &failures {
            let key = f.split(']').next().unwrap_or("").to_string();
            match by_form.iter_mut().find(|(k, _, _)| *k == key) {
                Some(e) => e.1 += 1,
                None => by_form.push((key, 1, f.clone())),
            }
        }
        let report: Vec<String> = by_form.iter().map(|(_, n, f)| format!("[{n}x] {f}")).collect();
        assert!(
            failures.is_empty(),
            "{} mismatches in {cases} cases:\n{}",
            failures.len(),
            report.join("\n")
        );
    }
}
