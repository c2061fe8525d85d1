//! Differential test: random operands through ALU, shift, multiply, divide and bit
//! instructions, in the interpreter and on the host CPU (x86-64 hosts only).

// Elsewhere only the skip message and the condition test remain.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::*;
use crate::flags::{AF, CF, OF, PF, SF, ZF};

/// One instruction form: its bytes (operating on rax/eax/ax/al with rsi/cl as the source),
/// and the flags the architecture defines for it given the count/operands.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    kind: Kind,
    size: u8,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Alu,
    IncDec,
    Not,
    Shift,
    /// A shift by this immediate count.
    ShiftBy(u64),
    Rotate,
    DoubleShift,
    Mul,
    Div,
    Bit,
    Scan,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    let alu = [
        ("add", 0x01u8),
        ("or", 0x09),
        ("adc", 0x11),
        ("sbb", 0x19),
        ("and", 0x21),
        ("sub", 0x29),
        ("xor", 0x31),
        ("cmp", 0x39),
        ("test", 0x85),
    ];
    for (name, op) in alu {
        v.push(Case { name, bytes: vec![0x48, op, 0xf0], kind: Kind::Alu, size: 8 });
        v.push(Case { name, bytes: vec![op, 0xf0], kind: Kind::Alu, size: 4 });
        v.push(Case { name, bytes: vec![0x66, op, 0xf0], kind: Kind::Alu, size: 2 });
        v.push(Case { name, bytes: vec![0x40, op - 1, 0xf0], kind: Kind::Alu, size: 1 });
    }
    for (name, modrm, kind) in [("inc", 0xc0u8, Kind::IncDec), ("dec", 0xc8, Kind::IncDec)] {
        v.push(Case { name, bytes: vec![0x48, 0xff, modrm], kind, size: 8 });
        v.push(Case { name, bytes: vec![0xff, modrm], kind, size: 4 });
        v.push(Case { name, bytes: vec![0xfe, modrm], kind, size: 1 });
    }
    v.push(Case { name: "neg", bytes: vec![0x48, 0xf7, 0xd8], kind: Kind::Alu, size: 8 });
    v.push(Case { name: "neg", bytes: vec![0xf6, 0xd8], kind: Kind::Alu, size: 1 });
    v.push(Case { name: "not", bytes: vec![0x66, 0xf7, 0xd0], kind: Kind::Not, size: 2 });
    for (name, modrm, kind) in [
        ("rol", 0xc0u8, Kind::Rotate),
        ("ror", 0xc8, Kind::Rotate),
        ("rcl", 0xd0, Kind::Rotate),
        ("rcr", 0xd8, Kind::Rotate),
        ("shl", 0xe0, Kind::Shift),
        ("shr", 0xe8, Kind::Shift),
        ("sar", 0xf8, Kind::Shift),
    ] {
        v.push(Case { name, bytes: vec![0x48, 0xd3, modrm], kind, size: 8 });
        v.push(Case { name, bytes: vec![0xd3, modrm], kind, size: 4 });
        v.push(Case { name, bytes: vec![0x66, 0xd3, modrm], kind, size: 2 });
        v.push(Case { name, bytes: vec![0xd2, modrm], kind, size: 1 });
    }
    v.push(Case { name: "shld", bytes: vec![0x48, 0x0f, 0xa5, 0xf0], kind: Kind::DoubleShift, size: 8 });
    v.push(Case { name: "shrd", bytes: vec![0x48, 0x0f, 0xad, 0xf0], kind: Kind::DoubleShift, size: 8 });
    v.push(Case { name: "shld", bytes: vec![0x0f, 0xa5, 0xf0], kind: Kind::DoubleShift, size: 4 });
    v.push(Case { name: "shrd", bytes: vec![0x0f, 0xad, 0xf0], kind: Kind::DoubleShift, size: 4 });
    for (name, modrm) in [("mul", 0xe6u8), ("imul", 0xee)] {
        v.push(Case { name, bytes: vec![0x48, 0xf7, modrm], kind: Kind::Mul, size: 8 });
        v.push(Case { name, bytes: vec![0xf7, modrm], kind: Kind::Mul, size: 4 });
        v.push(Case { name, bytes: vec![0x66, 0xf7, modrm], kind: Kind::Mul, size: 2 });
        v.push(Case { name, bytes: vec![0x40, 0xf6, modrm], kind: Kind::Mul, size: 1 });
    }
    v.push(Case { name: "imul2", bytes: vec![0x48, 0x0f, 0xaf, 0xc6], kind: Kind::Mul, size: 8 });
    v.push(Case { name: "imul2", bytes: vec![0x0f, 0xaf, 0xc6], kind: Kind::Mul, size: 4 });
    v.push(Case { name: "div", bytes: vec![0x48, 0xf7, 0xf6], kind: Kind::Div, size: 8 });
    v.push(Case { name: "div", bytes: vec![0xf7, 0xf6], kind: Kind::Div, size: 4 });
    v.push(Case { name: "idiv", bytes: vec![0x48, 0x99, 0x48, 0xf7, 0xfe], kind: Kind::Div, size: 8 });
    for (name, op) in [("bt", 0xa3u8), ("bts", 0xab), ("btr", 0xb3), ("btc", 0xbb)] {
        v.push(Case { name, bytes: vec![0x48, 0x0f, op, 0xf0], kind: Kind::Bit, size: 8 });
        v.push(Case { name, bytes: vec![0x0f, op, 0xf0], kind: Kind::Bit, size: 4 });
    }
    // Immediate forms, and flag-preserving moves, reach the block engine's specialised
    // handlers (register forms above do too).
    let alu_imm = ["add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"];
    for (ext, name) in alu_imm.iter().enumerate() {
        let modrm = 0xc0 | (ext as u8) << 3;
        v.push(Case { name, bytes: vec![0x48, 0x83, modrm, 0x85], kind: Kind::Alu, size: 8 });
        v.push(Case { name, bytes: vec![0x48, 0x81, modrm, 0x01, 0, 0, 0x80], kind: Kind::Alu, size: 8 });
        v.push(Case { name, bytes: vec![0x83, modrm, 0x7f], kind: Kind::Alu, size: 4 });
        v.push(Case { name, bytes: vec![0x66, 0x83, modrm, 0xff], kind: Kind::Alu, size: 2 });
        v.push(Case { name, bytes: vec![0x80, modrm, 0x80], kind: Kind::Alu, size: 1 });
    }
    v.push(Case {
        name: "test-imm",
        bytes: vec![0x48, 0xf7, 0xc0, 0x00, 0x80, 0, 0],
        kind: Kind::Alu,
        size: 8,
    });
    v.push(Case { name: "imul3", bytes: vec![0x48, 0x6b, 0xc6, 0xf3], kind: Kind::Mul, size: 8 });
    v.push(Case { name: "imul3", bytes: vec![0x69, 0xc6, 0x01, 0x00, 0x01, 0x00], kind: Kind::Mul, size: 4 });
    v.push(Case { name: "imul2", bytes: vec![0x66, 0x0f, 0xaf, 0xc6], kind: Kind::Mul, size: 2 });
    for (name, modrm, n) in [("shl-imm", 0xe0u8, 5u8), ("shr-imm", 0xe8, 33), ("sar-imm", 0xf8, 1)] {
        let kind = Kind::ShiftBy(n as u64);
        v.push(Case { name, bytes: vec![0x48, 0xc1, modrm, n], kind, size: 8 });
        v.push(Case { name, bytes: vec![0xc1, modrm, n], kind, size: 4 });
        v.push(Case { name, bytes: vec![0xc0, modrm, n], kind, size: 1 });
    }
    for (name, bytes) in [
        ("mov", vec![0x48, 0x89, 0xf0]),
        ("mov32", vec![0x89, 0xf0]),
        ("movzx8", vec![0x48, 0x0f, 0xb6, 0xc6]),
        ("movzx16", vec![0x0f, 0xb7, 0xc6]),
        ("movsx8", vec![0x48, 0x0f, 0xbe, 0xc6]),
        ("movsx16", vec![0x48, 0x0f, 0xbf, 0xc6]),
        ("movsxd", vec![0x48, 0x63, 0xc6]),
        ("lea", vec![0x48, 0x8d, 0x44, 0x30, 0x07]),
        ("lea32", vec![0x8d, 0x44, 0x30, 0xf9]),
        ("cmove", vec![0x48, 0x0f, 0x44, 0xc6]),
        ("cmovb32", vec![0x0f, 0x42, 0xc6]),
        ("cmovl", vec![0x48, 0x0f, 0x4c, 0xc6]),
        ("seta", vec![0x0f, 0x97, 0xc0]),
        ("setle", vec![0x0f, 0x9e, 0xc0]),
        ("not64", vec![0x48, 0xf7, 0xd0]),
    ] {
        v.push(Case { name, bytes, kind: Kind::Not, size: 8 });
    }
    v.push(Case { name: "bsf", bytes: vec![0x48, 0x0f, 0xbc, 0xc6], kind: Kind::Scan, size: 8 });
    v.push(Case { name: "bsr", bytes: vec![0x48, 0x0f, 0xbd, 0xc6], kind: Kind::Scan, size: 8 });
    v
}

/// The flags the architecture defines after `case` with these operands.
fn defined(case: &Case, b: u64) -> u64 {
    let all = CF | PF | AF | ZF | SF | OF;
    let bits = case.size as u64 * 8;
    let count = if let Kind::ShiftBy(n) = case.kind { n } else { b };
    let cnt = count & if case.size == 8 { 63 } else { 31 };
    match case.kind {
        Kind::Alu | Kind::IncDec | Kind::Not => all,
        Kind::Shift | Kind::ShiftBy(_) => match cnt {
            0 => all,
            1 => all & !AF,
            c if c >= bits => PF | ZF | SF,
            _ => CF | PF | ZF | SF,
        },
        Kind::Rotate => {
            if cnt == 0 {
                all
            } else if cnt == 1 {
                all & !AF
            } else {
                CF | PF | ZF | SF
            }
        }
        Kind::DoubleShift => match cnt {
            0 => all,
            1 => all & !AF,
            _ => CF | PF | ZF | SF,
        },
        Kind::Mul => CF | OF,
        Kind::Div => 0,
        Kind::Bit => CF,
        Kind::Scan => ZF,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn operand(&mut self) -> u64 {
        let r = self.next();
        match r % 8 {
            0 => [0, 1, u64::MAX, 0x8000_0000_0000_0000, 0x7fff_ffff_ffff_ffff, 0x80, 0x7f, 0xffff]
                [(r >> 8) as usize % 8],
            1 => r >> 56,
            2 => r >> 48,
            3 => r >> 32,
            _ => self.next(),
        }
    }
}

fn interp(code: &[u8], a: u64, b: u64, d: u64, flags_in: u64) -> (u64, u64, u64) {
    let mut full = code.to_vec();
    full.push(0xf4);
    let mut v = tests::real_mode_vcpu(&full);
    let c = v.cpu();
    c.efer = cpu::EFER_LMA | cpu::EFER_LME;
    c.cr0 |= cpu::CR0_PE;
    c.segs[cpu::CS].attr = 0xa09b;
    c.regs[0] = a;
    c.regs[6] = b;
    c.regs[1] = b;
    c.regs[2] = d;
    c.set_flags(flags_in);
    let io = tests::Recorder::default();
    v.run_for(&io, 10).unwrap();
    let c = v.cpu();
    assert!(c.halted, "the snippet did not reach HLT");
    (c.regs[0], c.flags(), c.regs[2])
}

#[cfg(target_arch = "x86_64")]
mod native {
    /// An executable page holding one generated function.
    pub struct Native {
        page: crate::exec_page::ExecPage,
    }

    type Func = unsafe extern "C" fn(u64, u64, u64, *mut u64, u64);

    impl Native {
        /// rdi = a, rsi = b, rdx = flags, rcx = out, r8 = rdx input.
        pub fn new(op: &[u8]) -> Self {
            let mut code = vec![
                0x49, 0x89, 0xca, // mov r10, rcx (out)
                0x48, 0x89, 0xf1, // mov rcx, rsi
                0x52, 0x9d, // push rdx; popfq
                0x48, 0x89, 0xf8, // mov rax, rdi
                0x4c, 0x89, 0xc2, // mov rdx, r8
            ];
            code.extend_from_slice(op);
            code.extend_from_slice(&[
                0x9c, 0x41, 0x59, // pushfq; pop r9
                0x49, 0x89, 0x02, // mov [r10], rax
                0x4d, 0x89, 0x4a, 0x08, // mov [r10+8], r9
                0x49, 0x89, 0x52, 0x10, // mov [r10+16], rdx
                0xc3,
            ]);
            Self { page: crate::exec_page::ExecPage::new(&code) }
        }

        pub fn call(&self, a: u64, b: u64, flags: u64, d: u64) -> (u64, u64, u64) {
            let mut out = [0u64; 3];
            // SAFETY: the page holds a complete function with this signature that only
            // touches its arguments, caller-saved registers and `out`.
            unsafe {
                let f: Func = std::mem::transmute::<*mut libc::c_void, Func>(self.page.addr());
                f(a, b, flags, out.as_mut_ptr(), d);
            }
            (out[0], out[1], out[2])
        }
    }
}

#[test]
fn alu_shift_mul_div_bit_match_the_host_cpu() {
    #[cfg(not(target_arch = "x86_64"))]
    {
        test_support::skip(
            "alu_shift_mul_div_bit_match_the_host_cpu",
            "the differential test needs an x86-64 host to compare with",
        );
    }
    #[cfg(target_arch = "x86_64")]
    {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut failures = Vec::new();
        for case in cases() {
            let native = native::Native::new(&case.bytes);
            for _ in 0..400 {
                let a = rng.operand();
                let mut b = rng.operand();
                let flags_in = (rng.next() & (CF | PF | AF | ZF | SF | OF)) | 2;
                let mut d = 0;
                if matches!(case.kind, Kind::Shift | Kind::Rotate | Kind::DoubleShift) {
                    b = (b & !0xff) | (rng.next() % 70);
                }
                if case.kind == Kind::Div {
                    let m = flags::mask(case.size);
                    if b & m == 0 {
                        b = 3;
                    }
                    if case.name == "idiv" && (b & m == m || a == 1 << 63) {
                        b = 7;
                    }
                    d = 0;
                }
                let n = native.call(a, b, flags_in, d);
                let i = interp(&case.bytes, a, b, d, flags_in);
                let mask = defined(&case, b);
                let scan_zero = case.kind == Kind::Scan && b == 0;
                if (n.0 != i.0 && !scan_zero)
                    || (n.1 & mask) != (i.1 & mask)
                    || (case.kind == Kind::Div || case.kind == Kind::Mul) && n.2 != i.2
                {
                    failures.push(format!(
                        "{} size {} a={a:#x} b={b:#x} flags_in={flags_in:#x}: host ({:#x}, {:#x}, {:#x}) interp ({:#x}, {:#x}, {:#x}) mask {mask:#x}",
                        case.name, case.size, n.0, n.1, n.2, i.0, i.1, i.2
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} mismatches, first ones:\n{}",
            failures.len(),
            failures[..failures.len().min(15)].join("\n")
        );
    }
}

#[test]
fn condition_fast_paths_agree_with_the_flags() {
    use iced_x86::ConditionCode as C;
    let mut v = tests::real_mode_vcpu(&[0xf4]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ops =
        [iced_x86::Mnemonic::Cmp, iced_x86::Mnemonic::Add, iced_x86::Mnemonic::And, iced_x86::Mnemonic::Sbb];
    let ccs = [
        C::o,
        C::no,
        C::b,
        C::ae,
        C::e,
        C::ne,
        C::be,
        C::a,
        C::s,
        C::ns,
        C::p,
        C::np,
        C::l,
        C::ge,
        C::le,
        C::g,
    ];
    for i in 0..20000 {
        let size = [1u8, 2, 4, 8][i % 4];
        let (a, b) = (rng.operand(), rng.operand());
        let c = v.cpu();
        c.alu(ops[(i / 4) % ops.len()], size, a, b);
        for cc in ccs {
            assert_eq!(
                c.cond(cc),
                c.cond_from_flags(cc),
                "{cc:?} after {:?} size {size} a={a:#x} b={b:#x}",
                ops[(i / 4) % ops.len()]
            );
        }
    }
}
