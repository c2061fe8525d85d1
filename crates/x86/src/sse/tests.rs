//! Unit tests of the SSE/MMX instructions: that every legacy encoding CPUID promises is
//! implemented, SIMD exceptions, the MMX/x87 interplay and stores run from the block cache.

use super::softfloat::{self as sf, Env, Op, F32, F64};
use super::tests_diff::{long_mode, Interp, DATA};
use crate::cpu::{Cpu, Fault};
use iced_x86::{CpuidFeature as F, Decoder, DecoderOptions, EncodingKind};
use vm_memory::{Bytes, GuestAddress};

/// Every legacy MMX/SSE..SSE4.2 instruction that decodes from a sweep of the 0F, 0F 38 and
/// 0F 3A maps (register and memory forms, all mandatory prefixes, with and without REX.W)
/// runs without #UD.
#[test]
fn every_promised_encoding_is_implemented() {
    let mut it = Interp::new(&[0xf4]);
    let mut rng = super::tests_diff::Rng(0x2545_f491_4f6c_dd1d);
    let mut missing = Vec::new();
    let mut seen = 0;
    for pre in [None, Some(0x66u8), Some(0xf2), Some(0xf3)] {
        for rex in [None, Some(0x48u8)] {
            for map in [&[0x0fu8][..], &[0x0f, 0x38], &[0x0f, 0x3a]] {
                for op in 0..=255u8 {
                    for (modrm, imm) in [(0xcau8, 0x01u8), (0x0b, 0x01), (0xca, 0xff), (0x0b, 0x5a)] {
                        let mut b: Vec<u8> = pre.into_iter().chain(rex).collect();
                        b.extend_from_slice(map);
                        b.extend_from_slice(&[op, modrm, imm, 0, 0, 0, 0]);
                        let ins = Decoder::with_ip(64, &b, 0x1000, DecoderOptions::NONE).decode();
                        let simd = ins.cpuid_features().iter().any(|f| {
                            matches!(
                                f,
                                F::MMX | F::SSE | F::SSE2 | F::SSE3 | F::SSSE3 | F::SSE4_1 | F::SSE4_2
                            )
                        });
                        if ins.is_invalid() || ins.encoding() != EncodingKind::Legacy || !simd {
                            continue;
                        }
                        if matches!(ins.mnemonic(), iced_x86::Mnemonic::Monitor | iced_x86::Mnemonic::Mwait) {
                            continue;
                        }
                        seen += 1;
                        let c = it.vcpu.cpu();
                        long_mode(c);
                        // Random register contents and MXCSR: no input may panic.
                        c.fpu = Default::default();
                        c.fpu.xmm = std::array::from_fn(|_| rng.next() as u128 | (rng.next() as u128) << 64);
                        c.fpu.st = std::array::from_fn(|_| rng.next() as u128);
                        c.fpu.mxcsr = rng.next() as u32 & 0xffff;
                        for r in [0, 1, 2] {
                            c.regs[r] = rng.next() >> (rng.next() % 64);
                        }
                        c.regs[3] = DATA;
                        c.regs[7] = DATA;
                        if let Err(crate::cpu::Fault::Exc(6, _)) = c.exec(&ins) {
                            missing.push(format!("{:?} {:02x?}", ins.code(), &b[..ins.len()]));
                        }
                    }
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    eprintln!("{seen} encodings run");
    assert!(seen > 500, "only {seen} encodings decoded");
    assert!(missing.is_empty(), "{} of {seen} raise #UD:\n{}", missing.len(), missing.join("\n"));
}

/// Decodes `bytes` as one 64-bit instruction and runs it on `c`.
fn exec(c: &mut Cpu, bytes: &[u8]) -> Result<(), Fault> {
    let ins = Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode();
    assert!(!ins.is_invalid(), "{bytes:02x?} does not decode");
    c.exec(&ins).map(|_| ())
}

fn cpu(it: &mut Interp) -> &mut Cpu {
    let c = it.vcpu.cpu();
    long_mode(c);
    c.regs[3] = DATA;
    c
}

/// `movsd [mem], xmm` (F2 0F 11) is the SSE2 store, not the string MOVSD, also when it runs
/// from the block cache among other instructions.
#[test]
fn movsd_stores_a_double_from_the_block_cache() {
    let code = [
        0xf2, 0x0f, 0x11, 0x0b, // movsd [rbx], xmm1
        0xf2, 0x0f, 0x10, 0x13, // movsd xmm2, [rbx]
        0xf2, 0x0f, 0x58, 0xd1, // addsd xmm2, xmm1
        0xf2, 0x0f, 0x11, 0x53, 0x08, // movsd [rbx+8], xmm2
        0xf4,
    ];
    let mut it = Interp::new(&code[..code.len() - 1]);
    let c = cpu(&mut it);
    c.rip = 0x1000;
    c.fpu.xmm[1] = 1.5f64.to_bits() as u128 | (7u128 << 64);
    c.regs[6] = 0x5000;
    c.regs[7] = 0x6000;
    c.regs[1] = 3;
    let io = crate::tests::Recorder::default();
    it.vcpu.run_for(&io, 100).unwrap();
    let c = it.vcpu.cpu();
    assert!(c.halted);
    assert_eq!((c.regs[6], c.regs[7], c.regs[1]), (0x5000, 0x6000, 3), "ran as the string MOVSD");
    let mut m = [0u8; 16];
    it.mem.read_slice(&mut m, GuestAddress(DATA)).unwrap();
    assert_eq!(f64::from_bits(u64::from_le_bytes(m[..8].try_into().unwrap())), 1.5);
    assert_eq!(f64::from_bits(u64::from_le_bytes(m[8..].try_into().unwrap())), 3.0);
    assert_eq!(c.fpu.xmm[2], 3.0f64.to_bits() as u128, "movsd xmm, m64 zeroes the high half");
}

/// An unmasked SIMD exception raises #XM (#UD without CR4.OSXMMEXCPT), sets its flag and
/// leaves the destination as it was.
#[test]
fn unmasked_exceptions_fault_and_keep_the_destination() {
    let mut it = Interp::new(&[0xf4]);
    let c = cpu(&mut it);
    let divss = [0xf3, 0x0f, 0x5e, 0xca]; // divss xmm1, xmm2
    c.fpu.xmm[1] = 1.0f32.to_bits() as u128;
    c.fpu.xmm[2] = 0;
    c.fpu.mxcsr = 0x1f80 & !(1 << 9); // ZE unmasked
    assert_eq!(exec(c, &divss), Err(Fault::Exc(19, None)));
    assert_eq!(c.fpu.xmm[1], 1.0f32.to_bits() as u128);
    assert_eq!(c.fpu.mxcsr & 0x3f, 0x4);
    c.cr4 &= !super::mxcsr::CR4_OSXMMEXCPT;
    assert_eq!(exec(c, &divss), Err(Fault::Exc(6, None)));
    // Masked, the same division gives infinity.
    c.fpu.mxcsr = 0x1f80;
    exec(c, &divss).unwrap();
    assert_eq!(c.fpu.xmm[1], f32::INFINITY.to_bits() as u128);
    // Unmasked precision: 1/3 is inexact.
    c.cr4 |= super::mxcsr::CR4_OSXMMEXCPT;
    c.fpu.xmm[1] = 1.0f32.to_bits() as u128;
    c.fpu.xmm[2] = 3.0f32.to_bits() as u128;
    c.fpu.mxcsr = 0x1f80 & !(1 << 12);
    assert_eq!(exec(c, &divss), Err(Fault::Exc(19, None)));
    assert_eq!((c.fpu.xmm[1], c.fpu.mxcsr & 0x3f), (1.0f32.to_bits() as u128, 0x20));
    // An unmasked invalid in one lane: the inexact lane's PE is not recorded.
    let divps = [0x0f, 0x5e, 0xca];
    c.fpu.xmm[1] = 0;
    c.fpu.xmm[2] = 3.0f32.to_bits() as u128;
    c.fpu.xmm[1] |= (1.0f32.to_bits() as u128) << 32;
    c.fpu.xmm[2] |= (3.0f32.to_bits() as u128) << 32;
    let before = c.fpu.xmm[1];
    c.fpu.mxcsr = 0x1f80 & !(1 << 7);
    c.fpu.xmm[2] &= !(u32::MAX as u128); // lane 0: 0/0
    assert_eq!(exec(c, &divps), Err(Fault::Exc(19, None)));
    assert_eq!((c.fpu.xmm[1], c.fpu.mxcsr & 0x3f), (before, 0x1));
}

/// Misaligned 16-byte operands fault (#GP(0)) except for the unaligned moves; reserved MXCSR
/// bits fault in LDMXCSR.
#[test]
fn alignment_and_mxcsr_checks() {
    let mut it = Interp::new(&[0xf4]);
    let c = cpu(&mut it);
    c.regs[3] = DATA + 4;
    assert_eq!(exec(c, &[0x0f, 0x28, 0x0b]), Err(Fault::Exc(13, Some(0)))); // movaps xmm1, [rbx]
    assert_eq!(exec(c, &[0x66, 0x0f, 0xfe, 0x0b]), Err(Fault::Exc(13, Some(0)))); // paddd
    exec(c, &[0x0f, 0x10, 0x0b]).unwrap(); // movups
    exec(c, &[0xf3, 0x0f, 0x58, 0x0b]).unwrap(); // addss (32-bit operand)
    exec(c, &[0x66, 0x0f, 0x3a, 0x63, 0x0b, 0x00]).unwrap(); // pcmpistri
    it.mem.write_slice(&0x1_0000u32.to_le_bytes(), GuestAddress(DATA)).unwrap();
    let c = cpu(&mut it);
    assert_eq!(exec(c, &[0x0f, 0xae, 0x13]), Err(Fault::Exc(13, Some(0)))); // ldmxcsr [rbx]
    c.cr4 &= !crate::cpu::CR4_OSFXSR;
    assert_eq!(exec(c, &[0x0f, 0x58, 0xca]), Err(Fault::Exc(6, None)));
    c.cr4 |= crate::cpu::CR4_OSFXSR;
    c.cr0 |= crate::cpu::CR0_TS;
    assert_eq!(exec(c, &[0x0f, 0x58, 0xca]), Err(Fault::Exc(7, None)));
    // MOVNTI and CRC32 are integer instructions: CR0.TS does not stop them.
    exec(c, &[0x0f, 0xc3, 0x03]).unwrap(); // movnti [rbx], eax
    exec(c, &[0xf2, 0x0f, 0x38, 0xf1, 0xc2]).unwrap(); // crc32 eax, edx
}

/// MMX instructions use the x87 registers: TOP 0, all tags valid, exponent bits all ones;
/// EMMS empties the tags; CR0.EM, CR0.TS and a pending x87 exception fault.
#[test]
fn mmx_shares_the_x87_registers() {
    let mut it = Interp::new(&[0xf4]);
    let c = cpu(&mut it);
    c.fpu.top = 5;
    c.fpu.ftw = 0x01;
    c.fpu.st[1] = 0x1234_0000_0000_0000_0005;
    c.fpu.st[2] = 0x0000_0000_0000_0000_0003;
    exec(c, &[0x0f, 0xfe, 0xca]).unwrap(); // paddd mm1, mm2
    assert_eq!(c.fpu.st[1], 0xffff_0000_0000_0000_0008);
    assert_eq!((c.fpu.top, c.fpu.ftw), (0, 0xff));
    c.fpu.top = 3;
    exec(c, &[0x0f, 0x77]).unwrap(); // emms
    assert_eq!((c.fpu.top, c.fpu.ftw), (0, 0));
    // CVTPI2PS from memory is not an MMX instruction: the tags stay.
    exec(c, &[0x0f, 0x2a, 0x0b]).unwrap();
    assert_eq!(c.fpu.ftw, 0);
    // A faulting memory access leaves the x87 unit alone; an unmasked SIMD exception does not.
    c.regs[3] = 0x8000_0000_0000_0000;
    assert_eq!(exec(c, &[0x0f, 0x6f, 0x0b]), Err(Fault::Exc(13, Some(0)))); // movq mm1, [rbx]
    assert_eq!((c.fpu.top, c.fpu.ftw), (0, 0));
    c.fpu.xmm[6] = 0x7fc0_0000; // a NaN
    c.fpu.mxcsr = 0x1f80 & !(1 << 7);
    assert_eq!(exec(c, &[0x0f, 0x2c, 0xee]), Err(Fault::Exc(19, None))); // cvttps2pi mm5, xmm6
    assert_eq!((c.fpu.top, c.fpu.ftw, c.fpu.mxcsr & 1), (0, 0xff, 1));
    c.fpu.fsw = 0x81;
    exec(c, &[0x0f, 0xfe, 0xca]).unwrap(); // CR0.NE clear: no #MF
    c.cr0 |= 1 << 5;
    assert_eq!(exec(c, &[0x0f, 0xfe, 0xca]), Err(Fault::Exc(16, None)));
    c.fpu.fsw = 0;
    c.cr0 |= crate::cpu::CR0_TS;
    assert_eq!(exec(c, &[0x0f, 0xfe, 0xca]), Err(Fault::Exc(7, None)));
    c.cr0 |= crate::cpu::CR0_EM;
    assert_eq!(exec(c, &[0x0f, 0xfe, 0xca]), Err(Fault::Exc(6, None)));
}

/// Known results of the soft-float core in each rounding mode (these hold on any host).
#[test]
fn softfloat_rounds_in_every_mode() {
    let env = |rc: u32| Env { rc, ..Env::from_mxcsr(0x1f80) };
    let (one, three) = (1.0f32.to_bits() as u64, 3.0f32.to_bits() as u64);
    for (rc, want) in [(0, 0x3eaa_aaab), (1, 0x3eaa_aaaa), (2, 0x3eaa_aaab), (3, 0x3eaa_aaaa)] {
        let mut e = env(rc);
        assert_eq!(sf::arith(F32, &mut e, Op::Div, one, three), want, "1/3 rc {rc}");
        assert_eq!(e.flags, sf::PE);
    }
    // Half the smallest denormal: a tie to even (zero), or up to the denormal.
    let (tiny, half) = (1u64, 0.5f64.to_bits());
    let mut e = env(0);
    assert_eq!(sf::arith(F64, &mut e, Op::Mul, tiny, half), 0);
    assert_eq!(e.flags, sf::DE | sf::UE | sf::PE);
    let mut e = env(2);
    assert_eq!(sf::arith(F64, &mut e, Op::Mul, tiny, half), 1);
    // FTZ flushes, DAZ reads denormals as zero.
    let mut e = Env { ftz: true, ..env(2) };
    assert_eq!(sf::arith(F64, &mut e, Op::Mul, tiny, half), 0);
    let mut e = Env { daz: true, ..env(0) };
    assert_eq!(sf::arith(F64, &mut e, Op::Add, tiny, tiny), 0);
    assert_eq!(e.flags, 0);
    // Overflow: infinity, or the largest finite toward zero.
    let max = f64::MAX.to_bits();
    let mut e = env(3);
    assert_eq!(sf::arith(F64, &mut e, Op::Add, max, max), max);
    assert_eq!(e.flags, sf::OE | sf::PE);
    let mut e = env(0);
    assert_eq!(sf::arith(F64, &mut e, Op::Add, max, max), f64::INFINITY.to_bits());
    // NaNs: the first operand's wins, quieted; invalid gives the default NaN.
    let mut e = env(0);
    assert_eq!(sf::arith(F32, &mut e, Op::Add, 0x7f80_0001, 0x7fc0_0002), 0x7fc0_0001);
    assert_eq!(e.flags, sf::IE);
    assert_eq!(sf::arith(F32, &mut e, Op::Mul, 0, 0x7f80_0000), 0xffc0_0000);
    assert_eq!(sf::to_int(F64, &mut e, f64::NAN.to_bits(), 32, 0), 0x8000_0000);
    // x - x is -0 only rounding down.
    let mut e = env(1);
    assert_eq!(sf::arith(F64, &mut e, Op::Sub, half, half), 1 << 63);
}

/// The host fast path agrees with the integer path for ordinary operands in every mode.
#[test]
fn fast_path_agrees_with_the_integer_path() {
    let mut rng = super::tests_diff::Rng(0x1357_9bdf_2468_ace0);
    for i in 0..200_000u32 {
        let rc = i & 3;
        let (f, a, b) = if i & 4 == 0 {
            let e = |r: u64| (((r >> 40) % 40 + 100) << 23) | (r & 0x7f_ffff) | (r >> 63) << 31;
            (F32, e(rng.next()), e(rng.next()))
        } else {
            let e = |r: u64| ((r >> 55) % 200 + 900) << 52 | (r & ((1 << 52) - 1)) | (r >> 54 & 1) << 63;
            (F64, e(rng.next()), e(rng.next()))
        };
        for op in [Op::Add, Op::Sub, Op::Mul, Op::Div] {
            let mut fast = Env { rc, ..Env::from_mxcsr(0x1f80) };
            let mut slow = fast;
            let r = sf::arith(f, &mut fast, op, a, b);
            let s = sf::arith_exact(f, &mut slow, op, a, b);
            assert_eq!((r, fast.flags), (s, slow.flags), "{op:?} {a:#x} {b:#x} rc {rc}");
        }
        let mut fast = Env { rc, ..Env::from_mxcsr(0x1f80) };
        let mut slow = fast;
        let a = a & !f.sign_bit();
        assert_eq!(
            (sf::sqrt(f, &mut fast, a), fast.flags),
            (sf::sqrt_exact(f, &mut slow, a), slow.flags),
            "sqrt {a:#x} rc {rc}"
        );
    }
}

/// A loop of float and integer SSE instructions runs to its end from the block cache, in
/// round-to-nearest and rounding up (its rate is in `benches/sse.rs`).
#[test]
fn a_float_sse_loop_runs_from_the_block_cache() {
    let code = [
        0xb9, 0x40, 0x42, 0x0f, 0x00, // mov ecx, 1000000
        0x0f, 0x58, 0xc1, // l: addps xmm0, xmm1
        0x0f, 0x59, 0xc2, // mulps xmm0, xmm2
        0xf2, 0x0f, 0x58, 0xde, // addsd xmm3, xmm6
        0xf2, 0x0f, 0x5e, 0xdf, // divsd xmm3, xmm7
        0x66, 0x0f, 0x74, 0xe5, // pcmpeqb xmm4, xmm5
        0x66, 0x0f, 0xd7, 0xc4, // pmovmskb eax, xmm4
        0xff, 0xc9, // dec ecx
        0x75, 0xe6, // jnz l
    ];
    for mxcsr in [0x1f80, 0x5f80] {
        let mut it = Interp::new(&code);
        let c = cpu(&mut it);
        c.rip = 0x1000;
        c.fpu.mxcsr = mxcsr;
        let one = 1.0f32.to_bits() as u128;
        c.fpu.xmm[1] = one | one << 32 | one << 64 | one << 96;
        let near = 0.99f32.to_bits() as u128;
        c.fpu.xmm[2] = near | near << 32 | near << 64 | near << 96;
        c.fpu.xmm[6] = 1.0f64.to_bits() as u128;
        c.fpu.xmm[7] = 1.0001f64.to_bits() as u128;
        let io = crate::tests::Recorder::default();
        it.vcpu.run_for(&io, 10_000_000).unwrap();
        assert!(it.vcpu.cpu().halted);
        assert!(f64::from_bits(it.vcpu.cpu().fpu.xmm[3] as u64) > 9000.0);
        assert_eq!(it.vcpu.instructions, 8_000_002, "mxcsr {mxcsr:#x}");
    }
}

/// A loop of the integer SSE instructions string functions use runs to its end from the block
/// cache (its rate is in `benches/sse.rs`).
#[test]
fn an_integer_sse_loop_runs_from_the_block_cache() {
    let code = [
        0xb9, 0x40, 0x42, 0x0f, 0x00, // mov ecx, 1000000
        0xf3, 0x0f, 0x6f, 0x0b, // l: movdqu xmm1, [rbx]
        0x66, 0x0f, 0x74, 0xca, // pcmpeqb xmm1, xmm2
        0x66, 0x0f, 0xd7, 0xc1, // pmovmskb eax, xmm1
        0x66, 0x0f, 0xeb, 0xd9, // por xmm3, xmm1
        0x66, 0x0f, 0xef, 0xe4, // pxor xmm4, xmm4
        0xff, 0xc9, // dec ecx
        0x75, 0xe8, // jnz l
    ];
    let mut it = Interp::new(&code);
    let c = cpu(&mut it);
    c.rip = 0x1000;
    let io = crate::tests::Recorder::default();
    it.vcpu.run_for(&io, 10_000_000).unwrap();
    assert!(it.vcpu.cpu().halted);
    assert_eq!(it.vcpu.cpu().regs[0], 0xffff);
    assert_eq!(it.vcpu.instructions, 7_000_002);
}
