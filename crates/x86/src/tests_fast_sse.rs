//! The threaded SSE handlers (`fast_sse`) against the exact path: every form, from random
//! states, runs once from the block cache and once by `Cpu::exec`, and registers, MXCSR,
//! memory, CR2 and the fault must agree. Addresses are chosen to hit the fast path, to be
//! misaligned, to cross pages and to fault at page boundaries (a missing page, a read-only
//! one), with the TLB warm or cold, and SSE sometimes disabled (CR0.TS/EM, CR4.OSFXSR).

use crate::cpu::{self, Cpu, Fault, Segment};
use crate::InterpVcpu;
use iced_x86::{Decoder, DecoderOptions};
use machine::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Page tables at 1 MiB; data pages: 0x2f000 and 0x30000 present and writable, 0x31000
/// missing, 0x32000 read-only.
const TABLES: u64 = 0x10_0000;
const DATA: u64 = 0x2f000;
const DATA_END: u64 = 0x33000;
const CODE: u64 = 0x1000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn memory() -> GuestMemory {
    let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    // 4-level paging, identity for the first 2 MiB in 4 KiB pages.
    let w = |a: u64, v: u64| mem.write_obj(v, GuestAddress(a)).unwrap();
    w(TABLES, (TABLES + 0x1000) | 7);
    w(TABLES + 0x1000, (TABLES + 0x2000) | 7);
    w(TABLES + 0x2000, (TABLES + 0x3000) | 7);
    for i in 0..512u64 {
        let pte = match i << 12 {
            0x31000 => 0,
            0x32000 => (i << 12) | 5,
            a => a | 7,
        };
        w(TABLES + 0x3000 + i * 8, pte);
    }
    mem
}

/// Everything an instruction may change.
#[derive(Debug, PartialEq)]
struct After {
    fault: Option<Fault>,
    regs: [u64; 16],
    xmm: [u128; 16],
    mxcsr: u32,
    flags: u64,
    cr2: u64,
    mem: Vec<u8>,
}

/// The random state a case starts from.
struct Start {
    regs: [u64; 16],
    xmm: [u128; 16],
    mxcsr: u32,
    cr0: u64,
    cr4: u64,
    warm: bool,
    /// The FS base, for operands with an FS override.
    fs: u64,
    status: u64,
    mem: Vec<u8>,
}

fn float_lane(rng: &mut Rng, double: bool) -> u64 {
    let v: [f64; 10] = [1.0, -2.5, 0.0, -0.0, f64::INFINITY, f64::NAN, 1e-310, 3.0e38, 1e-40, 7.25];
    let x = v[rng.below(10) as usize];
    if double {
        x.to_bits()
    } else {
        (x as f32).to_bits() as u64
    }
}

fn start(rng: &mut Rng) -> Start {
    let xmm = std::array::from_fn(|_| match rng.below(3) {
        0 => rng.next() as u128 | (rng.next() as u128) << 64,
        1 => float_lane(rng, true) as u128 | (float_lane(rng, true) as u128) << 64,
        _ => (0..4).fold(0u128, |a, i| a | (float_lane(rng, false) as u128) << (32 * i)),
    });
    let mut regs: [u64; 16] = std::array::from_fn(|_| rng.next());
    regs[4] = 0x8000;
    // Small string lengths for PCMPESTRx in EAX/EDX (with random upper halves).
    for r in [0, 2] {
        if rng.below(2) == 0 {
            regs[r] = (rng.next() & !0xffff_ffff) | (rng.below(40) as i64 - 20) as u32 as u64;
        }
    }
    regs[3] = match rng.below(7) {
        0 => 0x30000 + rng.below(0x100) * 16,
        1 => 0x30000 + rng.below(0x1000),
        2 => 0x30ff0 + rng.below(16),
        3 => 0x2fff0 + rng.below(16),
        4 => 0x32000 + rng.below(0x100) * 16,
        5 => 0x31000 + rng.below(0x100) * 16,
        _ => rng.next(),
    };
    let mxcsr = match rng.below(4) {
        0 => rng.next() as u32 & 0xffff,
        _ => 0x1f80,
    };
    let (mut cr0, mut cr4) = (cpu::CR0_PE | cpu::CR0_PG, cpu::CR4_PAE | cpu::CR4_OSFXSR | (1 << 10));
    match rng.below(30) {
        0 => cr0 |= cpu::CR0_TS,
        1 => cr0 |= cpu::CR0_EM,
        2 => cr4 &= !cpu::CR4_OSFXSR,
        _ => {}
    }
    let mem = (0..DATA_END - DATA).map(|_| rng.next() as u8).collect();
    Start {
        regs,
        xmm,
        mxcsr,
        cr0,
        cr4,
        warm: rng.below(4) != 0,
        fs: [0, 0x10, 0x1000][rng.below(3) as usize],
        status: rng.next(),
        mem,
    }
}

/// Runs `code` from `s`: from the block cache (`block`) or by `Cpu::exec`.
fn run(mem: &GuestMemory, code: &[u8], s: &Start, bits: u32, block: bool) -> After {
    mem.write_slice(&s.mem, GuestAddress(DATA)).unwrap();
    let mut full = code.to_vec();
    full.push(0xf4);
    mem.write_slice(&full, GuestAddress(CODE)).unwrap();
    let mut v = InterpVcpu::new(mem, u64::MAX, 0, None);
    let c: &mut Cpu = v.cpu();
    // 64-bit mode, or compatibility mode (32-bit code, segment bases apply).
    c.segs[cpu::CS] = Segment::real(0, if bits == 64 { 0xa09b } else { 0xc09b });
    c.efer = cpu::EFER_LMA | cpu::EFER_LME;
    c.cr3 = TABLES;
    c.cr0 = s.cr0 & !(cpu::CR0_TS | cpu::CR0_EM);
    c.cr4 = s.cr4 | cpu::CR4_OSFXSR;
    c.bitness = bits;
    c.cpl = 0;
    c.flush_tlb(true);
    if s.warm {
        // Fill the TLB (fast writes too) for the pages that can be.
        for p in [0x2f000u64, 0x30000, 0x32000] {
            if let Ok(b) = c.lin_read(p, 1) {
                let _ = c.lin_write(p, 1, b);
            }
        }
        let _ = c.lin_read(0x31000, 1);
    }
    c.cr0 = s.cr0;
    c.cr4 = s.cr4;
    c.regs = s.regs;
    c.fpu.xmm = s.xmm;
    c.fpu.mxcsr = s.mxcsr;
    c.set_status(crate::flags::STATUS, s.status);
    c.segs[cpu::FS].base = s.fs;
    if bits == 32 {
        c.segs[cpu::DS].base = s.fs;
    }
    c.rip = CODE;
    let fault = if block {
        let b = c.find_block().unwrap().unwrap();
        c.run_blocks(b, 1, false).1.err()
    } else {
        let ins = Decoder::with_ip(bits, code, CODE, DecoderOptions::NONE).decode();
        c.cur_ip = CODE;
        c.rip = ins.next_ip();
        c.exec(&ins).err()
    };
    let mut m = vec![0u8; (DATA_END - DATA) as usize];
    mem.read_slice(&mut m, GuestAddress(DATA)).unwrap();
    After { fault, regs: c.regs, xmm: c.fpu.xmm, mxcsr: c.fpu.mxcsr, flags: c.flags(), cr2: c.cr2, mem: m }
}

/// One family's opcodes: (mandatory prefix, opcode after 0F, REX.W, has imm8).
/// An opcode above 0xff is a three-byte one (0F 38 xx, 0F 3A xx).
type Forms<'a> = &'a [(Option<u8>, u16, bool, bool)];

/// Every form of `forms`, register and memory, from `cases` random states: the block path
/// agrees with `Cpu::exec`, and every form that decodes got a threaded handler.
fn check(name: &str, forms: Forms, cases: usize) {
    let mem = memory();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let mut fast = 0;
    for (bits, &(pre, opc, w, imm)) in [64, 32].into_iter().flat_map(|b| forms.iter().map(move |f| (b, f))) {
        for memory_form in [false, true] {
            for _ in 0..cases {
                let (reg, rm) = (rng.below(16) as u8, rng.below(16) as u8);
                // Sometimes an FS override: the segment base is added.
                let fs = (memory_form && rng.below(4) == 0).then_some(0x64u8);
                let mut code: Vec<u8> = fs.into_iter().chain(pre).collect();
                if bits == 64 {
                    let rex = 0x40 | (w as u8) << 3 | (reg >> 3) << 2 | if memory_form { 0 } else { rm >> 3 };
                    code.push(rex);
                }
                code.push(0x0f);
                if opc > 0xff {
                    code.push((opc >> 8) as u8);
                }
                code.push(opc as u8);
                if memory_form {
                    // [rbx] or [rbx + disp8]
                    match rng.below(2) {
                        0 => code.push((reg & 7) << 3 | 3),
                        _ => code.extend_from_slice(&[0x40 | (reg & 7) << 3 | 3, rng.below(64) as u8 * 4]),
                    }
                } else {
                    code.push(0xc0 | (reg & 7) << 3 | (rm & 7));
                }
                if imm {
                    code.push(rng.next() as u8);
                }
                let ins = Decoder::with_ip(bits, &code, CODE, DecoderOptions::NONE).decode();
                if ins.is_invalid() {
                    continue;
                }
                let op = crate::compile::compile(&ins, bits, ins.next_ip());
                if op.run as usize == crate::compile::generic as *const () as usize {
                    panic!("{name}: {ins} got no threaded handler");
                }
                fast += 1;
                let s = start(&mut rng);
                let a = run(&mem, &code, &s, bits, true);
                let b = run(&mem, &code, &s, bits, false);
                assert_eq!(
                    a, b,
                    "{name}: {ins} ({code:02x?}) from rbx {:#x}, mxcsr {:#x}",
                    s.regs[3], s.mxcsr
                );
            }
        }
    }
    // Some forms only exist with a register operand, or for some ModRM.reg values.
    assert!(fast >= 2 * forms.len() * cases / 6, "{name}: {fast} cases ran");
}

#[test]
fn moves_agree_with_the_exact_path() {
    let (p66, f2, f3) = (Some(0x66), Some(0xf2), Some(0xf3));
    check(
        "moves",
        &[
            (p66, 0x6f, false, false),
            (p66, 0x7f, false, false),
            (f3, 0x6f, false, false),
            (f3, 0x7f, false, false),
            (None, 0x28, false, false),
            (None, 0x29, false, false),
            (None, 0x10, false, false),
            (None, 0x11, false, false),
            (p66, 0x28, false, false),
            (p66, 0x29, false, false),
            (p66, 0x10, false, false),
            (p66, 0x11, false, false),
            (p66, 0x6e, false, false),
            (p66, 0x6e, true, false),
            (p66, 0x7e, false, false),
            (p66, 0x7e, true, false),
            (f3, 0x7e, false, false),
            (p66, 0xd6, false, false),
            (f2, 0x10, false, false),
            (f2, 0x11, false, false),
            (f3, 0x10, false, false),
            (f3, 0x11, false, false),
            (p66, 0xd7, false, false),
            (p66, 0xd7, true, false),
            (None, 0x12, false, false),
            (None, 0x13, false, false),
            (None, 0x16, false, false),
            (None, 0x17, false, false),
            (p66, 0x12, false, false),
            (p66, 0x13, false, false),
            (p66, 0x16, false, false),
            (p66, 0x17, false, false),
        ],
        60,
    );
}

#[test]
fn integer_lane_operations_agree_with_the_exact_path() {
    let p = Some(0x66);
    let ops = [
        0xef, 0xeb, 0xdb, 0xdf, 0x74, 0x75, 0x76, 0x64, 0x65, 0x66, 0xda, 0xde, 0xea, 0xee, 0xfc, 0xfd, 0xfe,
        0xd4, 0xf8, 0xf9, 0xfa, 0xfb, 0xd8, 0xdc, 0xf6, 0x60, 0x61, 0x62, 0x6c, 0x68, 0x69, 0x6a, 0x6d, 0x14,
        0x15, 0xd5, 0xf4, 0xf5, 0xe0, 0xe3, 0x67, 0x63, 0x6b, 0x383b, 0x383f, 0x3829, 0x3840, 0x3800,
    ];
    let shuffles = [
        (p, 0x70, false, true),
        (Some(0xf2), 0x70, false, true),
        (Some(0xf3), 0x70, false, true),
        (None, 0xc6, false, true),
        (p, 0xc6, false, true),
        (None, 0x14, false, false),
        (None, 0x15, false, false),
        (p, 0x3a0f, false, true),
    ];
    let forms: Vec<_> = ops.iter().map(|&o| (p, o, false, false)).chain(shuffles).collect();
    check("integer", &forms, 25);
    check(
        "logic",
        &[
            (None, 0x57, false, false),
            (None, 0x56, false, false),
            (None, 0x54, false, false),
            (None, 0x55, false, false),
            (p, 0x57, false, false),
            (p, 0x56, false, false),
            (p, 0x54, false, false),
            (p, 0x55, false, false),
        ],
        25,
    );
}

#[test]
fn float_arithmetic_agrees_with_the_exact_path() {
    let mut forms = Vec::new();
    for pre in [None, Some(0x66), Some(0xf2), Some(0xf3)] {
        for o in [0x58, 0x5c, 0x59, 0x5e, 0x51, 0x5d, 0x5f] {
            forms.push((pre, o, false, false));
        }
    }
    check("float", &forms, 80);
    let (p66, f2, f3) = (Some(0x66), Some(0xf2), Some(0xf3));
    check(
        "compare",
        &[
            (p66, 0x2f, false, false),
            (p66, 0x2e, false, false),
            (None, 0x2f, false, false),
            (None, 0x2e, false, false),
            (None, 0xc2, false, true),
            (p66, 0xc2, false, true),
            (f2, 0xc2, false, true),
            (f3, 0xc2, false, true),
        ],
        80,
    );
}

#[test]
fn scalar_conversions_agree_with_the_exact_path() {
    let (f2, f3) = (Some(0xf2), Some(0xf3));
    let mut forms = Vec::new();
    for pre in [f2, f3] {
        for w in [false, true] {
            // cvtsi2s*, cvtts*2si, cvts*2si
            forms.extend([(pre, 0x2a, w, false), (pre, 0x2c, w, false), (pre, 0x2d, w, false)]);
        }
        // cvtss2sd / cvtsd2ss
        forms.push((pre, 0x5a, false, false));
    }
    check("convert", &forms, 80);
}

#[test]
fn string_compares_agree_with_the_exact_path() {
    let p = Some(0x66);
    // pcmpestrm, pcmpestri, pcmpistrm, pcmpistri (REX.W: 64-bit lengths)
    let forms: Vec<_> = [0x3a60, 0x3a61, 0x3a62, 0x3a63]
        .into_iter()
        .flat_map(|o| [(p, o, false, true), (p, o, true, true)])
        .collect();
    check("strcmp", &forms, 60);
}

#[test]
fn shifts_by_an_immediate_agree_with_the_exact_path() {
    let p = Some(0x66);
    check("shift", &[(p, 0x71, false, true), (p, 0x72, false, true), (p, 0x73, false, true)], 150);
}

/// A threaded store into the block's own code (MOVDQU [rip], xmm0 over the next
/// instruction) goes through the exact path, which drops the block: the new code runs.
#[test]
fn a_store_over_the_next_instruction_runs_the_new_code() {
    let mem = memory();
    let mut code = vec![0xf3, 0x0f, 0x7f, 0x05, 0, 0, 0, 0]; // movdqu [rip], xmm0
    code.extend_from_slice(&[0xb8, 1, 0, 0, 0, 0xf4]); // mov eax, 1; hlt
    code.extend_from_slice(&[0x90; 10]);
    mem.write_slice(&code, GuestAddress(CODE)).unwrap();
    // mov eax, 42; hlt; nops
    let new = u128::from_le_bytes([
        0xb8, 42, 0, 0, 0, 0xf4, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
    ]);
    let mut v = InterpVcpu::new(&mem, u64::MAX, 0, None);
    let c = v.cpu();
    c.segs[cpu::CS] = Segment::real(0, 0xa09b);
    c.efer = cpu::EFER_LMA | cpu::EFER_LME;
    c.cr3 = TABLES;
    c.cr0 = cpu::CR0_PE | cpu::CR0_PG;
    c.cr4 = cpu::CR4_PAE | cpu::CR4_OSFXSR;
    c.fpu.xmm[0] = new;
    c.rip = CODE;
    c.flush_tlb(true);
    v.run_for(&crate::tests::Recorder::default(), 100).unwrap();
    assert!(v.cpu().halted);
    assert_eq!(v.cpu().regs[0], 42, "the stored code ran, not the decoded mov eax, 1");
    let mut b = [0u8; 16];
    mem.read_slice(&mut b, GuestAddress(CODE + 8)).unwrap();
    assert_eq!(u128::from_le_bytes(b), new);
}
