//! Differential test: every x87 instruction form on the host CPU and in the interpreter,
//! from the same FXSAVE image (random registers drawn from special values, all rounding
//! and precision controls, masked and unmasked exceptions) and the same memory operand.

// Elsewhere only the skip remains.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use super::tests_gen::{image, memory, Rng};
use crate::cpu;
use crate::tests::Recorder;
use crate::InterpVcpu;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Which memory operand an instruction reads.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Mem {
    None,
    F32,
    F64,
    F80,
    I16,
    I32,
    I64,
    Bcd,
    /// Random bytes (environments, control words).
    Raw,
}

pub(super) struct Case {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub mem: Mem,
    /// Transcendental: allowed 1 ulp (microcode results differ between vendors).
    pub ulp: bool,
}

macro_rules! cases {
    ($($name:literal $mem:ident $ulp:literal [$($b:expr),*])*) => {
        vec![$(Case { name: $name, bytes: &[$($b),*], mem: Mem::$mem, ulp: $ulp }),*]
    };
}

pub(super) fn cases() -> Vec<Case> {
    cases! {
        "fadd m32" F32 false [0xd8, 0x06] "fmul m32" F32 false [0xd8, 0x0e] "fcom m32" F32 false [0xd8, 0x16]
        "fcomp m32" F32 false [0xd8, 0x1e] "fsub m32" F32 false [0xd8, 0x26] "fsubr m32" F32 false [0xd8, 0x2e]
        "fdiv m32" F32 false [0xd8, 0x36] "fdivr m32" F32 false [0xd8, 0x3e]
        "fadd m64" F64 false [0xdc, 0x06] "fmul m64" F64 false [0xdc, 0x0e] "fcom m64" F64 false [0xdc, 0x16]
        "fsub m64" F64 false [0xdc, 0x26] "fsubr m64" F64 false [0xdc, 0x2e] "fdiv m64" F64 false [0xdc, 0x36]
        "fdivr m64" F64 false [0xdc, 0x3e]
        "fiadd m32" I32 false [0xda, 0x06] "fimul m16" I16 false [0xde, 0x0e] "ficom m32" I32 false [0xda, 0x16]
        "ficomp m16" I16 false [0xde, 0x1e] "fisub m16" I16 false [0xde, 0x26] "fisubr m32" I32 false [0xda, 0x2e]
        "fidiv m32" I32 false [0xda, 0x36] "fidivr m16" I16 false [0xde, 0x3e]
        "fadd st,st1" None false [0xd8, 0xc1] "fmul st,st2" None false [0xd8, 0xca] "fcom st1" None false [0xd8, 0xd1]
        "fcomp st1" None false [0xd8, 0xd9] "fsub st,st1" None false [0xd8, 0xe1] "fsubr st,st1" None false [0xd8, 0xe9]
        "fdiv st,st1" None false [0xd8, 0xf1] "fdivr st,st1" None false [0xd8, 0xf9]
        "fadd st1,st" None false [0xdc, 0xc1] "fsubr st1,st" None false [0xdc, 0xe1] "fsub st1,st" None false [0xdc, 0xe9]
        "fdivr st1,st" None false [0xdc, 0xf1] "fdiv st1,st" None false [0xdc, 0xf9]
        "faddp" None false [0xde, 0xc1] "fmulp" None false [0xde, 0xc9] "fcompp" None false [0xde, 0xd9]
        "fsubrp" None false [0xde, 0xe1] "fsubp" None false [0xde, 0xe9] "fdivrp" None false [0xde, 0xf1]
        "fdivp" None false [0xde, 0xf9]
        "fchs" None false [0xd9, 0xe0] "fabs" None false [0xd9, 0xe1] "ftst" None false [0xd9, 0xe4]
        "fxam" None false [0xd9, 0xe5] "fld1" None false [0xd9, 0xe8] "fldl2t" None false [0xd9, 0xe9]
        "fldl2e" None false [0xd9, 0xea] "fldpi" None false [0xd9, 0xeb] "fldlg2" None false [0xd9, 0xec]
        "fldln2" None false [0xd9, 0xed] "fldz" None false [0xd9, 0xee]
        "f2xm1" None true [0xd9, 0xf0] "fyl2x" None true [0xd9, 0xf1] "fptan" None true [0xd9, 0xf2]
        "fpatan" None true [0xd9, 0xf3] "fxtract" None false [0xd9, 0xf4] "fprem1" None false [0xd9, 0xf5]
        "fdecstp" None false [0xd9, 0xf6] "fincstp" None false [0xd9, 0xf7] "fprem" None false [0xd9, 0xf8]
        "fyl2xp1" None true [0xd9, 0xf9] "fsqrt" None false [0xd9, 0xfa] "fsincos" None true [0xd9, 0xfb]
        "frndint" None false [0xd9, 0xfc] "fscale" None false [0xd9, 0xfd] "fsin" None true [0xd9, 0xfe]
        "fcos" None true [0xd9, 0xff]
        "fld st1" None false [0xd9, 0xc1] "fxch st1" None false [0xd9, 0xc9] "fst st1" None false [0xdd, 0xd1]
        "fstp st1" None false [0xdd, 0xd9] "ffree st1" None false [0xdd, 0xc1] "ffreep st1" None false [0xdf, 0xc1]
        "fucompp" None false [0xda, 0xe9] "fucom st1" None false [0xdd, 0xe1] "fucomp st1" None false [0xdd, 0xe9]
        "fucomi" None false [0xdb, 0xe9] "fcomi" None false [0xdb, 0xf1] "fucomip" None false [0xdf, 0xe9]
        "fcomip" None false [0xdf, 0xf1]
        "fcmovb" None false [0xda, 0xc1] "fcmove" None false [0xda, 0xc9] "fcmovbe" None false [0xda, 0xd1]
        "fcmovu" None false [0xda, 0xd9] "fcmovnb" None false [0xdb, 0xc1] "fcmovne" None false [0xdb, 0xc9]
        "fcmovnbe" None false [0xdb, 0xd1] "fcmovnu" None false [0xdb, 0xd9]
        "fld m32" F32 false [0xd9, 0x06] "fld m64" F64 false [0xdd, 0x06] "fld m80" F80 false [0xdb, 0x2e]
        "fild m16" I16 false [0xdf, 0x06] "fild m32" I32 false [0xdb, 0x06] "fild m64" I64 false [0xdf, 0x2e]
        "fbld" Bcd false [0xdf, 0x26]
        "fst m32" None false [0xd9, 0x16] "fstp m32" None false [0xd9, 0x1e] "fst m64" None false [0xdd, 0x16]
        "fstp m64" None false [0xdd, 0x1e] "fstp m80" None false [0xdb, 0x3e] "fist m16" None false [0xdf, 0x16]
        "fistp m16" None false [0xdf, 0x1e] "fist m32" None false [0xdb, 0x16] "fistp m32" None false [0xdb, 0x1e]
        "fistp m64" None false [0xdf, 0x3e] "fisttp m16" None false [0xdf, 0x0e] "fisttp m32" None false [0xdb, 0x0e]
        "fisttp m64" None false [0xdd, 0x0e] "fbstp" None false [0xdf, 0x36]
        "fnstsw m16" None false [0xdd, 0x3e] "fnstcw" None false [0xd9, 0x3e] "fldcw" Raw false [0xd9, 0x2e]
        "fnclex" None false [0xdb, 0xe2] "fninit" None false [0xdb, 0xe3] "fnop" None false [0xd9, 0xd0]
        "fnstenv" None false [0xd9, 0x36] "fnsave" None false [0xdd, 0x36]
        "fldenv" Raw false [0xd9, 0x26] "frstor" Raw false [0xdd, 0x26]
        "fstp1 alias" None false [0xd9, 0xd9] "fxch4 alias" None false [0xdd, 0xca] "fxch7 alias" None false [0xdf, 0xcb]
        "fstp8 alias" None false [0xdf, 0xd1] "fstp9 alias" None false [0xdf, 0xda] "fcom2 alias" None false [0xdc, 0xd1]
        "fcomp3 alias" None false [0xdc, 0xda] "fcomp5 alias" None false [0xde, 0xd1] "fneni" None false [0xdb, 0xe0]
        "fcomp m64" F64 false [0xdc, 0x1e] "ficom m16" I16 false [0xde, 0x16] "fiadd m16" I16 false [0xde, 0x06]
        "fimul m32" I32 false [0xda, 0x0e] "fisub m32" I32 false [0xda, 0x26] "fisubr m16" I16 false [0xde, 0x2e]
        "fidiv m16" I16 false [0xde, 0x36] "fidivr m32" I32 false [0xda, 0x3e] "ficomp m32" I32 false [0xda, 0x1e]
        "fxch st3" None false [0xd9, 0xcb] "fst st0" None false [0xdd, 0xd0] "fstp st0" None false [0xdd, 0xd8]
        "fld st0" None false [0xd9, 0xc0] "fucomi st0" None false [0xdb, 0xe8] "fmul st,st0" None false [0xd8, 0xc8]
    }
}

/// The FXSAVE image bytes compared: FCW, FSW, FTW, MXCSR and the ten bytes of each register
/// (FOP, FIP and FDP hold addresses that differ between the two runs).
pub(super) fn image_diff(a: &[u8], b: &[u8]) -> Vec<usize> {
    let mut d = Vec::new();
    for i in (0..5).chain(24..28).chain((0..8).flat_map(|r| 32 + 16 * r..42 + 16 * r)) {
        if a[i] != b[i] {
            d.push(i);
        }
    }
    d
}

pub(super) const IMG: u64 = 0x10000;
pub(super) const MEM: u64 = 0x20000;

/// Runs `bytes` in the interpreter in 64-bit mode between FXRSTOR64 and FXSAVE64 of `img`
/// with `mem` at [rsi]: (image after, memory after, rflags after).
pub(super) fn interp(
    bytes: &[u8],
    img: &[u8; 512],
    mem: &[u8; 128],
    flags: u64,
) -> ([u8; 512], [u8; 128], u64) {
    let mut code = vec![0x48, 0x0f, 0xae, 0x0f];
    code.extend_from_slice(bytes);
    code.extend_from_slice(&[0x48, 0x0f, 0xae, 0x07, 0xf4]);
    let gm: crate::GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    gm.write_slice(&code, GuestAddress(0x1000)).unwrap();
    gm.write_slice(img, GuestAddress(IMG)).unwrap();
    gm.write_slice(mem, GuestAddress(MEM)).unwrap();
    let mut v = InterpVcpu::new(&gm, u64::MAX, 0, None);
    let c = v.cpu();
    c.segs[cpu::CS] = cpu::Segment::real(0, 0x9b);
    c.rip = 0x1000;
    c.regs[4] = 0x8000;
    c.efer = cpu::EFER_LMA | cpu::EFER_LME;
    c.cr0 |= cpu::CR0_PE | 0x20;
    c.segs[cpu::CS].attr = 0xa09b;
    c.regs[7] = IMG;
    c.regs[6] = MEM;
    c.set_flags(flags);
    let io = Recorder::default();
    v.run_for(&io, 10).unwrap();
    let c = v.cpu();
    assert!(c.halted, "the snippet did not reach HLT");
    let f = c.flags();
    let mut out = [0u8; 512];
    gm.read_slice(&mut out, GuestAddress(IMG)).unwrap();
    let mut m = [0u8; 128];
    gm.read_slice(&mut m, GuestAddress(MEM)).unwrap();
    (out, m, f)
}

#[cfg(target_arch = "x86_64")]
pub(super) mod native {
    /// An executable page holding FXRSTOR64 [rdi]; the instruction; FXSAVE64 [rdi]; FNINIT.
    pub struct Native {
        page: crate::exec_page::ExecPage,
    }

    type Func = unsafe extern "C" fn(*mut u8, *mut u8, u64) -> u64;

    #[repr(align(16))]
    struct Aligned([u8; 512]);

    impl Native {
        pub fn new(op: &[u8]) -> Self {
            let mut code = vec![0x52, 0x9d, 0x48, 0x0f, 0xae, 0x0f];
            code.extend_from_slice(op);
            code.extend_from_slice(&[0x48, 0x0f, 0xae, 0x07, 0x9c, 0x58, 0xdb, 0xe3, 0xc3]);
            Self { page: crate::exec_page::ExecPage::new(&code) }
        }

        /// (image after, memory after, rflags after).
        pub fn call(&self, img: &[u8; 512], mem: &[u8; 128], flags: u64) -> ([u8; 512], [u8; 128], u64) {
            let mut a = Aligned(*img);
            let mut m = *mem;
            // SAFETY: the page holds a complete function with this signature that touches
            // only the image, the memory buffer, caller-saved registers and the x87/SSE
            // state, which it leaves initialised (FNINIT; MXCSR from the image).
            let f = unsafe {
                let func: Func = std::mem::transmute::<*mut libc::c_void, Func>(self.page.addr());
                func(a.0.as_mut_ptr(), m.as_mut_ptr(), flags)
            };
            (a.0, m, f)
        }
    }
}

fn reg(img: &[u8], r: usize) -> u128 {
    let mut b = [0u8; 16];
    b[..10].copy_from_slice(&img[32 + 16 * r..42 + 16 * r]);
    u128::from_le_bytes(b)
}

fn show(img: &[u8]) -> String {
    let w = |i: usize| u16::from_le_bytes([img[i], img[i + 1]]);
    let mut s = format!("fcw {:04x} fsw {:04x} ftw {:02x}", w(0), w(2), img[4]);
    for r in 0..3 {
        s += &format!(" st{r} {:020x}", reg(img, r));
    }
    s
}

/// The outcome of comparing one case over many random inputs.
#[derive(Default)]
pub(super) struct Tally {
    pub runs: usize,
    pub failures: Vec<String>,
    /// Largest register difference in ulps accepted for a transcendental.
    pub max_ulp: u128,
    /// Transcendental results off by one ulp.
    pub off_by_one: usize,
    /// Transcendental results equal but for C1.
    pub c1_only: usize,
    /// Runs of transcendentals.
    pub transcendental: usize,
}

#[cfg(target_arch = "x86_64")]
pub(super) fn run_case(case: &Case, rng: &mut Rng, n: usize, t: &mut Tally) {
    let native = native::Native::new(case.bytes);
    for _ in 0..n {
        let img = image(rng);
        let mem = memory(rng, case.mem);
        let flags_in = (rng.next() & 0x8d5) | 2;
        let h = native.call(&img, &mem, flags_in);
        let i = interp(case.bytes, &img, &mem, flags_in);
        t.runs += 1;
        t.transcendental += case.ulp as usize;
        let mut diff = image_diff(&h.0, &i.0);
        // The host (AMD) saves FOP only while an exception is pending; compare it then.
        if h.0[2] & 0x80 != 0 && (h.0[6] != i.0[6] || h.0[7] != i.0[7]) {
            diff.push(6);
        }
        let mem_range: Vec<usize> = match case.name {
            "fnstenv" => (0..12).collect(),
            "fnsave" => (0..12).chain(28..108).collect(),
            _ => (0..128).collect(),
        };
        let mem_diff = mem_range.iter().any(|&k| h.1[k] != i.1[k]);
        let flags_diff = (h.2 ^ i.2) & 0x8d5 != 0;
        if case.ulp && !diff.is_empty() && !mem_diff && !flags_diff {
            // Accept registers within one ulp, and C1 (rounded up) with them.
            let mut worst = 0;
            let mut ok = true;
            for r in 0..8 {
                let (a, b) = (reg(&h.0, r), reg(&i.0, r));
                // Finite values of one sign in order: the exponent above the fraction.
                let key = |v: u128| ((v >> 64) & 0x7fff) << 63 | (v & ((1 << 63) - 1));
                let d = if a >> 79 == b >> 79 { key(a).abs_diff(key(b)) } else { u128::MAX };
                if a != b && (d > 1 || (a >> 64) & 0x7fff == 0x7fff || (b >> 64) & 0x7fff == 0x7fff) {
                    ok = false;
                }
                worst = worst.max(if a == b { 0 } else { d });
            }
            let rest: Vec<usize> = diff.iter().copied().filter(|&k| k < 32 && k != 3).collect();
            // C1 follows the host's own approximation: it may differ even when the
            // rounded results agree (a true value within the host's error of a
            // representable one).
            let c1_only = (h.0[3] ^ i.0[3]) & !0x02 == 0;
            if ok && rest.is_empty() && c1_only && worst <= 1 {
                t.max_ulp = t.max_ulp.max(worst);
                if worst == 1 {
                    t.off_by_one += 1;
                } else {
                    t.c1_only += 1;
                }
                diff.clear();
            }
        }
        if !diff.is_empty() || mem_diff || flags_diff {
            t.failures.push(format!(
                "{}: in  {} mem {:02x?} flags {flags_in:#x}\n    host   {} mem {:02x?} flags {:#x}\n    interp {} mem {:02x?} flags {:#x}",
                case.name,
                show(&img),
                &mem[..10],
                show(&h.0),
                &h.1[..10],
                h.2 & 0x8d5,
                show(&i.0),
                &i.1[..10],
                i.2 & 0x8d5
            ));
        }
    }
}

#[test]
fn every_x87_form_matches_the_host_cpu() {
    #[cfg(not(target_arch = "x86_64"))]
    {
        test_support::skip(
            "every_x87_form_matches_the_host_cpu",
            "the differential test needs an x86-64 host to compare with",
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        let only = std::env::var("X87_CASE").ok();
        let n = std::env::var("X87_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
        let seed =
            std::env::var("X87_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_abcd_0001);
        let mut rng = Rng(seed);
        let mut total = Tally::default();
        let mut per_case = Vec::new();
        for case in cases() {
            if only.as_deref().is_some_and(|o| o != case.name) {
                continue;
            }
            let mut t = Tally::default();
            run_case(&case, &mut rng, n, &mut t);
            per_case.push(format!("{}: {}/{}", case.name, t.failures.len(), t.runs));
            total.runs += t.runs;
            total.max_ulp = total.max_ulp.max(t.max_ulp);
            total.off_by_one += t.off_by_one;
            total.c1_only += t.c1_only;
            total.transcendental += t.transcendental;
            total.failures.extend(t.failures.into_iter().take(3));
        }
        eprintln!(
            "x87 differential: {} runs; of {} transcendental runs {} off by one ulp (max {}) and {} \
             differing only in C1",
            total.runs, total.transcendental, total.off_by_one, total.max_ulp, total.c1_only
        );
        let bad: Vec<&String> = per_case.iter().filter(|s| !s.contains(": 0/")).collect();
        assert!(
            total.failures.is_empty(),
            "mismatching cases: {bad:?}\nfirst ones:\n{}",
            total.failures[..total.failures.len().min(40)].join("\n")
        );
    }
}
