//! Differential test of the SSE/MMX instructions against the host CPU (x86-64 hosts only):
//! each form runs natively from an executable page with XMM/MMX state and MXCSR loaded by
//! FXRSTOR and read back by FXSAVE, and in the interpreter from the same state; registers,
//! MXCSR, RFLAGS, the x87 tags and the memory operand must agree bit for bit.

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports, unused_mut, unused_variables))]

use super::tests_forms::{forms, Data, Form, Imm, Rm};
#[cfg(target_arch = "x86_64")]
use super::tests_native as native;
pub(super) use super::tests_values::{Rng, State, DATA, STATUS};
use crate::cpu::{self, Segment};
use crate::InterpVcpu;
use machine::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

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
        let _catch = native::CatchSimd::new();
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
