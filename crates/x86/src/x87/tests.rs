//! Known-value tests of the x87: rounding and precision control, constants, FPREM, BCD,
//! environments and #MF.

use super::float::*;
use crate::cpu::{self, Cpu, TableReg};
use crate::tests::{real_mode_vcpu, Recorder};
use crate::InterpVcpu;

/// Runs real-mode `code` (at 0x1000) to HLT: the vCPU and its port writes.
pub(super) fn run(code: &[u8], setup: impl FnOnce(&mut Cpu)) -> (InterpVcpu, Vec<(u16, u32)>) {
    let mut v = real_mode_vcpu(code);
    setup(v.cpu());
    let io = Recorder::default();
    v.run_for(&io, 100).unwrap();
    assert!(v.cpu().halted, "the snippet did not reach HLT");
    let out = io.out.lock().unwrap().clone();
    (v, out)
}

/// ST(i) of a CPU.
pub(super) fn st(c: &Cpu, i: usize) -> u128 {
    c.fpu.st[(c.fpu.top as usize + i) & 7]
}

/// Code that loads the control word at 0x1100 and computes 1/3 (data at 0x1100: cw, 3).
fn one_third(cw: u16) -> Vec<u8> {
    let mut code = vec![
        0xdb, 0xe3, // fninit
        0xd9, 0x2e, 0x00, 0x11, // fldcw [0x1100]
        0xd9, 0xe8, // fld1
        0xdf, 0x06, 0x02, 0x11, // fild word [0x1102]
        0xde, 0xf9, // fdivp st1, st
        0xf4,
    ];
    code.resize(0x100, 0x90);
    code.extend_from_slice(&cw.to_le_bytes());
    code.extend_from_slice(&3u16.to_le_bytes());
    code
}

#[test]
fn one_third_in_each_precision_and_rounding_mode() {
    // 1/3 = 1.0101...b * 2^-2; per precision (PC field) and rounding mode (RC field).
    let cases: [(u16, [u64; 4]); 3] = [
        (0, [0xaaaa_ab00_0000_0000, 0xaaaa_aa00_0000_0000, 0xaaaa_ab00_0000_0000, 0xaaaa_aa00_0000_0000]),
        (2, [0xaaaa_aaaa_aaaa_a800, 0xaaaa_aaaa_aaaa_a800, 0xaaaa_aaaa_aaaa_b000, 0xaaaa_aaaa_aaaa_a800]),
        (3, [0xaaaa_aaaa_aaaa_aaab, 0xaaaa_aaaa_aaaa_aaaa, 0xaaaa_aaaa_aaaa_aaab, 0xaaaa_aaaa_aaaa_aaaa]),
    ];
    for (pc, sigs) in cases {
        for (rc, want) in sigs.into_iter().enumerate() {
            let cw = 0x7f | (pc << 8) | ((rc as u16) << 10);
            let (mut v, _) = run(&one_third(cw), |_| {});
            let c = v.cpu();
            assert_eq!(st(c, 0), pack(false, 0x3ffd, want), "pc {pc} rc {rc}");
            // Inexact, and C1 says whether it was rounded up.
            assert_eq!(c.fpu.fsw & 0x3f, PE, "pc {pc} rc {rc}");
            let truncated = sigs[3];
            let up = want != truncated;
            assert_eq!(c.fpu.fsw & super::C1 != 0, up, "C1 for pc {pc} rc {rc}");
        }
    }
}

#[test]
fn fldpi_follows_the_rounding_control() {
    // pi = 0xc90fdaa22168c234_c4c6...: nearest and up round up, down and zero do not.
    for (rc, last) in [(0u16, 0x35u64), (1, 0x34), (2, 0x35), (3, 0x34)] {
        let mut code = vec![0xdb, 0xe3, 0xd9, 0x2e, 0x00, 0x11, 0xd9, 0xeb, 0xf4];
        code.resize(0x100, 0x90);
        code.extend_from_slice(&(0x37f | (rc << 10)).to_le_bytes());
        let (mut v, _) = run(&code, |_| {});
        let c = v.cpu();
        assert_eq!(st(c, 0), pack(false, 0x4000, 0xc90f_daa2_2168_c200 | last), "rc {rc}");
        assert_eq!(c.fpu.fsw & 0x3f, 0, "FLDPI raises no exception");
    }
}

#[test]
fn fprem_reduces_two_to_the_hundred_mod_three_in_steps() {
    // fninit; fild word [3]; fld tbyte [2^100]; l: fprem; fnstsw ax; test ah, 4; jnz l; hlt
    let mut code = vec![
        0xdb, 0xe3, 0xdf, 0x06, 0x00, 0x11, 0xdb, 0x2e, 0x02, 0x11, 0xd9, 0xf8, 0xdf, 0xe0, 0xf6, 0xc4, 0x04,
        0x75, 0xf7, 0xf4,
    ];
    code.resize(0x100, 0x90);
    code.extend_from_slice(&3u16.to_le_bytes());
    code.extend_from_slice(&pack(false, 16383 + 100, 1 << 63).to_le_bytes()[..10]);
    let (mut v, _) = run(&code, |_| {});
    let c = v.cpu();
    assert_eq!(st(c, 0), one(false), "2^100 mod 3");
    // The quotient (2^100 - 1) / 3 ends in binary 101: C0 = 1, C3 = 0, C1 = 1.
    let fsw = c.fpu.fsw;
    assert_eq!((fsw & super::C0 != 0, fsw & super::C3 != 0, fsw & super::C1 != 0), (true, false, true));
    assert_eq!(fsw & super::C2, 0);
}

#[test]
fn fbstp_stores_large_integers_and_the_indefinite() {
    // fninit; fld tbyte [0x1100]; fbstp [0x1110]; hlt
    let mut cases = vec![
        (pack(true, 16383 + 56, 0xdb4d_a5d3_1879_a700), Some(0x0012_3456_7890_1234_5678)),
        (pack(false, 16383 + 59, 0xde0b_6b3a_7640_0000), None),
    ];
    // 999999999999999999 = 0xde0b6b3a763fffff (60 bits), exactly representable.
    let nines: u64 = 999_999_999_999_999_999;
    let lz = nines.leading_zeros();
    cases.push((pack(false, 16383 + 63 - lz as u16, nines << lz), Some(0x0999_9999_9999_9999_9999)));
    for (v, want) in cases {
        let mut code = vec![0xdb, 0xe3, 0xdb, 0x2e, 0x00, 0x11, 0xdf, 0x36, 0x10, 0x11, 0xf4];
        code.resize(0x100, 0x90);
        code.extend_from_slice(&v.to_le_bytes()[..10]);
        let (mut vc, _) = run(&code, |_| {});
        let c = vc.cpu();
        let lo = c.read(cpu::DS, 0x1110, 8).unwrap();
        let hi = c.read(cpu::DS, 0x1118, 2).unwrap();
        let got = lo as u128 | ((hi as u128) << 64);
        match want {
            Some(w) => {
                let sign = if sign(v) { 1u128 << 79 } else { 0 };
                let w = (w & ((1 << 72) - 1)) | sign;
                assert_eq!(got, w, "{v:#x}");
            }
            None => {
                assert_eq!(got, super::convert::BCD_INDEFINITE, "{v:#x} is too large for 18 digits");
                assert_eq!(c.fpu.fsw & IE, IE);
            }
        }
    }
}

#[test]
fn unmasked_zero_divide_raises_mf_at_the_next_fwait() {
    // fninit; fldcw [0x1900] (ZE unmasked); fld1; fldz; fdivp st1, st; out 0x11; fwait;
    // out 0x12; hlt. #MF (vector 16) handler at 0x1800: out 0x10; hlt.
    let mut code = vec![
        0xdb, 0xe3, 0xd9, 0x2e, 0x00, 0x19, 0xd9, 0xe8, 0xd9, 0xee, 0xde, 0xf9, 0xb0, 0x11, 0xe6, 0x11, 0x9b,
        0xb0, 0x12, 0xe6, 0x12, 0xf4,
    ];
    code.resize(0x800, 0x90);
    code.extend_from_slice(&[0xb0, 0x10, 0xe6, 0x10, 0xf4]);
    code.resize(0x900, 0x90);
    code.extend_from_slice(&0x37bu16.to_le_bytes());
    code.resize(0xa40, 0x90);
    code.extend_from_slice(&[0x00, 0x18, 0x00, 0x00]);
    let (mut v, out) = run(&code, |c| {
        c.idtr = TableReg { base: 0x1a00, limit: 0x3ff };
        c.cr0 |= 0x20;
    });
    assert_eq!(out, vec![(0x11, 0x11), (0x10, 0x10)], "#MF at FWAIT, not at the division");
    let c = v.cpu();
    assert_eq!(c.fpu.fsw & (ZE | super::ES | super::B), ZE | super::ES | super::B);
    // The unmasked exception left both operands on the stack.
    assert_eq!(c.fpu.top, 6);
    assert_eq!((st(c, 0), st(c, 1)), (zero(false), one(false)));
}

#[test]
fn fnstenv_in_real_mode_writes_the_16_bit_layout() {
    // fninit; fld1; fnstenv [0x1100]; hlt (16-bit operand size: 14 bytes).
    let mut code = vec![0xdb, 0xe3, 0xd9, 0xe8, 0xd9, 0x36, 0x00, 0x11, 0xf4];
    code.resize(0x100, 0x90);
    let (mut v, _) = run(&code, |_| {});
    let c = v.cpu();
    let w: Vec<u64> = (0..7).map(|i| c.read(cpu::DS, 0x1100 + 2 * i, 2).unwrap()).collect();
    // TOP 7; ST0 (physical 7) valid, the rest empty; FLD1 at linear 0x1002, opcode D9 E8.
    assert_eq!(w, vec![0x37f, 0x3800, 0x3fff, 0x1002, 0x1e8, 0, 0]);
    assert_eq!(c.fpu.fcw, 0x37f, "FNSTENV masks all exceptions");
}

#[test]
fn fxsave_alignment_and_fxrstor_reserved_mxcsr_raise_gp() {
    use iced_x86::{Decoder, DecoderOptions};
    let mut v = real_mode_vcpu(&[0xf4]);
    let c = v.cpu();
    let exec = |c: &mut Cpu, bytes: &[u8]| {
        let ins = Decoder::with_ip(16, bytes, 0x1000, DecoderOptions::NONE).decode();
        c.exec(&ins)
    };
    // fxsave [0x2008]: misaligned.
    assert_eq!(exec(c, &[0x0f, 0xae, 0x06, 0x08, 0x20]), Err(cpu::gp(0)));
    // fxsave [0x2000] then fxrstor [0x2000] with a reserved MXCSR bit.
    assert!(exec(c, &[0x0f, 0xae, 0x06, 0x00, 0x20]).is_ok());
    c.write(cpu::DS, 0x2018, 4, 0x1_1f80).unwrap();
    let before = c.fpu.fcw;
    c.write(cpu::DS, 0x2000, 2, 0x7f).unwrap();
    assert_eq!(exec(c, &[0x0f, 0xae, 0x0e, 0x00, 0x20]), Err(cpu::gp(0)));
    assert_eq!(c.fpu.fcw, before, "a faulting FXRSTOR loads nothing");
    c.write(cpu::DS, 0x2018, 4, 0x1f80).unwrap();
    assert!(exec(c, &[0x0f, 0xae, 0x0e, 0x00, 0x20]).is_ok());
    assert_eq!(c.fpu.fcw, 0x7f);
}

#[test]
fn fxam_classifies_every_kind_of_value() {
    let cases = [
        (zero(true), (true, false, false), true),
        (pack(false, 0, 5), (true, true, false), false),
        (one(false), (false, true, false), false),
        (inf(true), (false, true, true), true),
        (INDEFINITE, (false, false, true), true),
        (pack(false, 5, 5), (false, false, false), false),
    ];
    for (v, (c3, c2, c0), c1) in cases {
        // fninit; fld tbyte [0x1100]; fxam; hlt
        let mut code = vec![0xdb, 0xe3, 0xdb, 0x2e, 0x00, 0x11, 0xd9, 0xe5, 0xf4];
        code.resize(0x100, 0x90);
        code.extend_from_slice(&v.to_le_bytes()[..10]);
        let (mut vc, _) = run(&code, |_| {});
        let f = vc.cpu().fpu.fsw;
        let got = (f & super::C3 != 0, f & super::C2 != 0, f & super::C0 != 0);
        assert_eq!((got, f & super::C1 != 0), ((c3, c2, c0), c1), "{v:#x}");
    }
}

#[test]
fn a_page_fault_on_the_memory_operand_leaves_the_fpu_unchanged() {
    use iced_x86::{Decoder, DecoderOptions};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
    // Long mode with 4 KiB pages: 0x20000 read-only, 0x21000 not present, the rest identity.
    let gm: crate::GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    gm.write_obj(0x41003u64, GuestAddress(0x40000)).unwrap();
    gm.write_obj(0x42003u64, GuestAddress(0x41000)).unwrap();
    gm.write_obj(0x43003u64, GuestAddress(0x42000)).unwrap();
    for i in 0..512u64 {
        let pte = match i {
            0x20 => (i << 12) | 1,
            0x21 => 0,
            _ => (i << 12) | 3,
        };
        gm.write_obj(pte, GuestAddress(0x43000 + 8 * i)).unwrap();
    }
    let mut v = InterpVcpu::new(&gm, u64::MAX, 0, None);
    let c = v.cpu();
    c.cr3 = 0x40000;
    c.cr4 |= cpu::CR4_PAE;
    c.efer = cpu::EFER_LMA | cpu::EFER_LME;
    c.cr0 = cpu::CR0_PE | cpu::CR0_PG | cpu::CR0_WP | 0x20;
    c.segs[cpu::CS] = cpu::Segment::real(0, 0x9b);
    c.segs[cpu::CS].attr = 0xa09b;
    c.regs[6] = 0x20000;
    c.regs[7] = 0x21000;
    // Two values on the stack, an exception flag and a code set.
    c.fpu.top = 6;
    c.fpu.ftw = 0xc0;
    c.fpu.st[6] = pack(false, 16383 + 3, 0xa000_0000_0000_0000);
    c.fpu.st[7] = one(true);
    c.fpu.fsw = PE | super::C1;
    c.fpu.fcw = 0x37f;
    let before = format!("{:?}", c.fpu);
    let forms: [&[u8]; 10] = [
        &[0xdd, 0x1e],             // fstp qword [rsi] (read-only)
        &[0xdf, 0x3e],             // fistp qword [rsi]
        &[0xdf, 0x36],             // fbstp [rsi]
        &[0xdb, 0x3e],             // fstp tbyte [rsi]
        &[0xdd, 0x36],             // fnsave [rsi]
        &[0xd9, 0x36],             // fnstenv [rsi]
        &[0xdd, 0x07],             // fld qword [rdi] (not present)
        &[0xdc, 0x07],             // fadd qword [rdi]
        &[0xdd, 0x27],             // frstor [rdi]
        &[0x48, 0x0f, 0xae, 0x0f], // fxrstor64 [rdi]
    ];
    for bytes in forms {
        let ins = Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode();
        let r = c.exec(&ins);
        assert!(matches!(r, Err(cpu::Fault::Exc(cpu::PF_V, Some(_)))), "{bytes:02x?}: {r:?}");
        assert_eq!(format!("{:?}", c.fpu), before, "{bytes:02x?} changed the FPU before faulting");
    }
}
