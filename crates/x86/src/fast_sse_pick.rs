//! Choosing a threaded SSE handler (`fast_sse`) at decode time: the operands are picked
//! apart, and the form is matched against those the handlers take.

use crate::block::{Handler, Op, NO_REG};
use crate::fast_sse::*;
use crate::operand::gpr;
use crate::sse::{binary, shift, shuffle};
use iced_x86::{EncodingKind, Instruction, Mnemonic as M, OpKind, Register};

/// An operand as the picker sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum O {
    /// XMM n.
    X(u8),
    /// A 32- or 64-bit general register: index and size.
    G(u8, u8),
    /// Memory of this many bytes (its address is in the op's memory fields).
    Mem(usize),
    Imm,
    Other,
}

fn operand(ins: &Instruction, i: u32, mem: &mut dyn FnMut() -> bool) -> O {
    match ins.op_kind(i) {
        OpKind::Register => {
            let r = ins.op_register(i);
            if r.is_xmm() {
                return O::X((r as usize - Register::XMM0 as usize) as u8 & 15);
            }
            match gpr(r) {
                (g, s @ (4 | 8), false) => O::G(g as u8, s),
                _ => O::Other,
            }
        }
        OpKind::Memory if mem() => O::Mem(ins.memory_size().size()),
        OpKind::Immediate8 => O::Imm,
        _ => O::Other,
    }
}

/// Defines a `Lanes` type per mnemonic and the picker that maps the mnemonic to its handler.
macro_rules! lane_ops {
    ($f:ident: $($m:ident => $e:expr),* $(,)?) => {
        lane_ops!($f, |s| if s == REG { lanes::<T, REG> } else { lanes::<T, M16A> }; $($m => $e),*);
    };
    ($f:ident, |$s:ident| $h:expr; $($m:ident => $e:expr),* $(,)?) => {
        fn $f(m: M, s: u8) -> Option<Handler> {
            $(
                if m == M::$m {
                    struct T;
                    impl Lanes for T {
                        #[inline(always)]
                        fn run(a: u128, b: u128, imm: u8) -> u128 {
                            let f: fn(u128, u128, u8) -> u128 = $e;
                            f(a, b, imm)
                        }
                    }
                    let $s = s;
                    return Some($h);
                }
            )*
            None
        }
    };
}

// The integer operations go through the exact code's `binary` with the mnemonic constant.
lane_ops!(lane_op:
    Pxor => |a, b, _| binary(M::Pxor, a, b, 16).unwrap_or(a),
    Por => |a, b, _| binary(M::Por, a, b, 16).unwrap_or(a),
    Pand => |a, b, _| binary(M::Pand, a, b, 16).unwrap_or(a),
    Pandn => |a, b, _| binary(M::Pandn, a, b, 16).unwrap_or(a),
    Xorps => |a, b, _| binary(M::Xorps, a, b, 16).unwrap_or(a),
    Xorpd => |a, b, _| binary(M::Xorpd, a, b, 16).unwrap_or(a),
    Orps => |a, b, _| binary(M::Orps, a, b, 16).unwrap_or(a),
    Orpd => |a, b, _| binary(M::Orpd, a, b, 16).unwrap_or(a),
    Andps => |a, b, _| binary(M::Andps, a, b, 16).unwrap_or(a),
    Andpd => |a, b, _| binary(M::Andpd, a, b, 16).unwrap_or(a),
    Andnps => |a, b, _| binary(M::Andnps, a, b, 16).unwrap_or(a),
    Andnpd => |a, b, _| binary(M::Andnpd, a, b, 16).unwrap_or(a),
    Pcmpeqb => |a, b, _| binary(M::Pcmpeqb, a, b, 16).unwrap_or(a),
    Pcmpeqw => |a, b, _| binary(M::Pcmpeqw, a, b, 16).unwrap_or(a),
    Pcmpeqd => |a, b, _| binary(M::Pcmpeqd, a, b, 16).unwrap_or(a),
    Pcmpgtb => |a, b, _| binary(M::Pcmpgtb, a, b, 16).unwrap_or(a),
    Pcmpgtw => |a, b, _| binary(M::Pcmpgtw, a, b, 16).unwrap_or(a),
    Pcmpgtd => |a, b, _| binary(M::Pcmpgtd, a, b, 16).unwrap_or(a),
    Pminub => |a, b, _| binary(M::Pminub, a, b, 16).unwrap_or(a),
    Pmaxub => |a, b, _| binary(M::Pmaxub, a, b, 16).unwrap_or(a),
    Pminsw => |a, b, _| binary(M::Pminsw, a, b, 16).unwrap_or(a),
    Pmaxsw => |a, b, _| binary(M::Pmaxsw, a, b, 16).unwrap_or(a),
    Paddb => |a, b, _| binary(M::Paddb, a, b, 16).unwrap_or(a),
    Paddw => |a, b, _| binary(M::Paddw, a, b, 16).unwrap_or(a),
    Paddd => |a, b, _| binary(M::Paddd, a, b, 16).unwrap_or(a),
    Paddq => |a, b, _| binary(M::Paddq, a, b, 16).unwrap_or(a),
    Psubb => |a, b, _| binary(M::Psubb, a, b, 16).unwrap_or(a),
    Psubw => |a, b, _| binary(M::Psubw, a, b, 16).unwrap_or(a),
    Psubd => |a, b, _| binary(M::Psubd, a, b, 16).unwrap_or(a),
    Psubq => |a, b, _| binary(M::Psubq, a, b, 16).unwrap_or(a),
    Psubusb => |a, b, _| binary(M::Psubusb, a, b, 16).unwrap_or(a),
    Paddusb => |a, b, _| binary(M::Paddusb, a, b, 16).unwrap_or(a),
    Psadbw => |a, b, _| binary(M::Psadbw, a, b, 16).unwrap_or(a),
    Punpcklbw => |a, b, _| binary(M::Punpcklbw, a, b, 16).unwrap_or(a),
    Punpcklwd => |a, b, _| binary(M::Punpcklwd, a, b, 16).unwrap_or(a),
    Punpckldq => |a, b, _| binary(M::Punpckldq, a, b, 16).unwrap_or(a),
    Punpcklqdq => |a, b, _| binary(M::Punpcklqdq, a, b, 16).unwrap_or(a),
    Punpckhbw => |a, b, _| binary(M::Punpckhbw, a, b, 16).unwrap_or(a),
    Punpckhwd => |a, b, _| binary(M::Punpckhwd, a, b, 16).unwrap_or(a),
    Punpckhdq => |a, b, _| binary(M::Punpckhdq, a, b, 16).unwrap_or(a),
    Punpckhqdq => |a, b, _| binary(M::Punpckhqdq, a, b, 16).unwrap_or(a),
    Unpcklps => |a, b, _| binary(M::Unpcklps, a, b, 16).unwrap_or(a),
    Unpckhps => |a, b, _| binary(M::Unpckhps, a, b, 16).unwrap_or(a),
    Unpcklpd => |a, b, _| binary(M::Unpcklpd, a, b, 16).unwrap_or(a),
    Unpckhpd => |a, b, _| binary(M::Unpckhpd, a, b, 16).unwrap_or(a),
    Pmullw => |a, b, _| binary(M::Pmullw, a, b, 16).unwrap_or(a),
    Pmuludq => |a, b, _| binary(M::Pmuludq, a, b, 16).unwrap_or(a),
    Pmaddwd => |a, b, _| binary(M::Pmaddwd, a, b, 16).unwrap_or(a),
    Pavgb => |a, b, _| binary(M::Pavgb, a, b, 16).unwrap_or(a),
    Pavgw => |a, b, _| binary(M::Pavgw, a, b, 16).unwrap_or(a),
    Packuswb => |a, b, _| binary(M::Packuswb, a, b, 16).unwrap_or(a),
    Packsswb => |a, b, _| binary(M::Packsswb, a, b, 16).unwrap_or(a),
    Packssdw => |a, b, _| binary(M::Packssdw, a, b, 16).unwrap_or(a),
    Pminud => |a, b, _| binary(M::Pminud, a, b, 16).unwrap_or(a),
    Pmaxud => |a, b, _| binary(M::Pmaxud, a, b, 16).unwrap_or(a),
    Pcmpeqq => |a, b, _| binary(M::Pcmpeqq, a, b, 16).unwrap_or(a),
    Pmulld => |a, b, _| binary(M::Pmulld, a, b, 16).unwrap_or(a),
    Pshufd => |a, b, imm| shuffle(M::Pshufd, a, b, imm, 16, 0),
    Pshuflw => |a, b, imm| shuffle(M::Pshuflw, a, b, imm, 16, 0),
    Pshufhw => |a, b, imm| shuffle(M::Pshufhw, a, b, imm, 16, 0),
    Shufps => |a, b, imm| shuffle(M::Shufps, a, b, imm, 16, 0),
    Shufpd => |a, b, imm| shuffle(M::Shufpd, a, b, imm, 16, 0),
    Pshufb => |a, b, imm| shuffle(M::Pshufb, a, b, imm, 16, 0),
    Palignr => |a, b, imm| shuffle(M::Palignr, a, b, imm, 16, 0),
);

// The shifts by an immediate (`Op::imm`), through the exact code's `shift`.
lane_ops!(shift_op, |_s| lanes::<T, NONE>;
    Psrldq => |a, _, imm| shift(M::Psrldq, a, imm as u64).unwrap_or(a),
    Pslldq => |a, _, imm| shift(M::Pslldq, a, imm as u64).unwrap_or(a),
    Psrlw => |a, _, imm| shift(M::Psrlw, a, imm as u64).unwrap_or(a),
    Psrld => |a, _, imm| shift(M::Psrld, a, imm as u64).unwrap_or(a),
    Psrlq => |a, _, imm| shift(M::Psrlq, a, imm as u64).unwrap_or(a),
    Psllw => |a, _, imm| shift(M::Psllw, a, imm as u64).unwrap_or(a),
    Pslld => |a, _, imm| shift(M::Pslld, a, imm as u64).unwrap_or(a),
    Psllq => |a, _, imm| shift(M::Psllq, a, imm as u64).unwrap_or(a),
    Psraw => |a, _, imm| shift(M::Psraw, a, imm as u64).unwrap_or(a),
    Psrad => |a, _, imm| shift(M::Psrad, a, imm as u64).unwrap_or(a),
);

/// The compare handler for `m` (double, packed) from source kind `S`.
fn cmp_handler<const S: u8>(m: M) -> Option<Handler> {
    Some(match m {
        M::Comisd => comi::<true, true, S>,
        M::Ucomisd => comi::<true, false, S>,
        M::Comiss => comi::<false, true, S>,
        M::Ucomiss => comi::<false, false, S>,
        M::Cmpsd => cmp::<true, false, S>,
        M::Cmpss => cmp::<false, false, S>,
        M::Cmppd => cmp::<true, true, S>,
        M::Cmpps => cmp::<false, true, S>,
        _ => return None,
    })
}

/// The handler of a scalar conversion, if `m` is one and its operands are of a handled form.
fn cvt_handler(m: M, o0: O, o1: O) -> Option<Handler> {
    macro_rules! si {
        ($K:literal, $n:expr, $S:ident) => {
            if $n == 4 {
                cvt_si::<$K, 4, $S>
            } else {
                cvt_si::<$K, 8, $S>
            }
        };
    }
    Some(match (m, o0, o1) {
        (M::Cvtss2si, O::G(_, n), O::X(_)) => si!(0, n, REG),
        (M::Cvtss2si, O::G(_, n), O::Mem(4)) => si!(0, n, M4),
        (M::Cvttss2si, O::G(_, n), O::X(_)) => si!(1, n, REG),
        (M::Cvttss2si, O::G(_, n), O::Mem(4)) => si!(1, n, M4),
        (M::Cvtsd2si, O::G(_, n), O::X(_)) => si!(2, n, REG),
        (M::Cvtsd2si, O::G(_, n), O::Mem(8)) => si!(2, n, M8),
        (M::Cvttsd2si, O::G(_, n), O::X(_)) => si!(3, n, REG),
        (M::Cvttsd2si, O::G(_, n), O::Mem(8)) => si!(3, n, M8),
        (M::Cvtsi2sd, O::X(_), O::G(_, 4)) => cvt_from_si::<true, 4, GPR>,
        (M::Cvtsi2sd, O::X(_), O::G(_, 8)) => cvt_from_si::<true, 8, GPR>,
        (M::Cvtsi2sd, O::X(_), O::Mem(4)) => cvt_from_si::<true, 4, M4>,
        (M::Cvtsi2sd, O::X(_), O::Mem(8)) => cvt_from_si::<true, 8, M8>,
        (M::Cvtsi2ss, O::X(_), O::G(_, 4)) => cvt_from_si::<false, 4, GPR>,
        (M::Cvtsi2ss, O::X(_), O::G(_, 8)) => cvt_from_si::<false, 8, GPR>,
        (M::Cvtsi2ss, O::X(_), O::Mem(4)) => cvt_from_si::<false, 4, M4>,
        (M::Cvtsi2ss, O::X(_), O::Mem(8)) => cvt_from_si::<false, 8, M8>,
        (M::Cvtss2sd, O::X(_), O::X(_)) => cvt_fp::<true, REG>,
        (M::Cvtss2sd, O::X(_), O::Mem(4)) => cvt_fp::<true, M4>,
        (M::Cvtsd2ss, O::X(_), O::X(_)) => cvt_fp::<false, REG>,
        (M::Cvtsd2ss, O::X(_), O::Mem(8)) => cvt_fp::<false, M8>,
        _ => return None,
    })
}

/// The handler of the other float operations (`fp` takes ADD/SUB/MUL/DIV): source kind by
/// the operand's size (16: aligned).
fn float_handler(m: M, size: usize, reg: bool) -> Option<Handler> {
    macro_rules! ops {
        ($($m:ident: $n:literal),* $(,)?) => {{
            $(
                if m == M::$m {
                    struct T;
                    impl FloatOp for T {
                        const M: M = M::$m;
                    }
                    return match (reg, size) {
                        (true, _) => Some(float::<T, REG>),
                        (false, 16) if $n == 16 => Some(float::<T, M16A>),
                        (false, 8) if $n == 8 => Some(float::<T, M8>),
                        (false, 4) if $n == 4 => Some(float::<T, M4>),
                        _ => None,
                    };
                }
            )*
            None
        }};
    }
    ops!(
        Sqrtsd: 8, Sqrtss: 4, Sqrtpd: 16, Sqrtps: 16,
        Minsd: 8, Minss: 4, Minpd: 16, Minps: 16,
        Maxsd: 8, Maxss: 4, Maxpd: 16, Maxps: 16,
    )
}

/// The handler of PCMPESTRI/ESTRM/ISTRI/ISTRM (register or unaligned 16-byte source).
fn strcmp_handler(ins: &Instruction, reg: bool) -> Option<Handler> {
    use iced_x86::Code as C;
    macro_rules! pick {
        ($m:ident, $wide:literal) => {{
            struct T;
            impl FloatOp for T {
                const M: M = M::$m;
            }
            if reg {
                strcmp::<T, $wide, REG>
            } else {
                strcmp::<T, $wide, M16>
            }
        }};
    }
    Some(match ins.code() {
        C::Pcmpistri_xmm_xmmm128_imm8 => pick!(Pcmpistri, false),
        C::Pcmpistrm_xmm_xmmm128_imm8 => pick!(Pcmpistrm, false),
        C::Pcmpestri_xmm_xmmm128_imm8 => pick!(Pcmpestri, false),
        C::Pcmpestrm_xmm_xmmm128_imm8 => pick!(Pcmpestrm, false),
        C::Pcmpestri64_xmm_xmmm128_imm8 => pick!(Pcmpestri, true),
        C::Pcmpestrm64_xmm_xmmm128_imm8 => pick!(Pcmpestrm, true),
        _ => return None,
    })
}

/// The memory size of a compare's source.
fn cmp_size(m: M) -> usize {
    match m {
        M::Comisd | M::Ucomisd | M::Cmpsd => 8,
        M::Comiss | M::Ucomiss | M::Cmpss => 4,
        _ => 16,
    }
}

/// The float arithmetic: operation (0-3: ADD, SUB, MUL, DIV), double, packed.
fn fp_kind(m: M) -> Option<(u8, bool, bool)> {
    Some(match m {
        M::Addsd => (0, true, false),
        M::Subsd => (1, true, false),
        M::Mulsd => (2, true, false),
        M::Divsd => (3, true, false),
        M::Addss => (0, false, false),
        M::Subss => (1, false, false),
        M::Mulss => (2, false, false),
        M::Divss => (3, false, false),
        M::Addpd => (0, true, true),
        M::Subpd => (1, true, true),
        M::Mulpd => (2, true, true),
        M::Divpd => (3, true, true),
        M::Addps => (0, false, true),
        M::Subps => (1, false, true),
        M::Mulps => (2, false, true),
        M::Divps => (3, false, true),
        _ => return None,
    })
}

/// Picks the float handler for operation `k` with source kind `S`.
fn fp_handler<const S: u8>(k: u8, d: bool, p: bool) -> Handler {
    macro_rules! dp {
        ($K:literal) => {
            match (d, p) {
                (true, true) => fp::<$K, true, true, S>,
                (true, false) => fp::<$K, true, false, S>,
                (false, true) => fp::<$K, false, true, S>,
                (false, false) => fp::<$K, false, false, S>,
            }
        };
    }
    match k {
        0 => dp!(0),
        1 => dp!(1),
        2 => dp!(2),
        _ => dp!(3),
    }
}

/// The threaded handler for `ins`, if it is one of the hot SSE forms; `mem` fills the op's
/// memory fields (false when the address is not one the fast paths handle). The op must
/// keep the instruction for the exact path.
pub(crate) fn pick(ins: &Instruction, mut mem: impl FnMut(&mut Op) -> bool, op: &mut Op) -> Option<Handler> {
    if ins.encoding() != EncodingKind::Legacy || ins.has_lock_prefix() {
        return None;
    }
    let m = ins.mnemonic();
    let n = ins.op_count();
    let with_imm = matches!(
        m,
        M::Pshufd
            | M::Pshuflw
            | M::Pshufhw
            | M::Shufps
            | M::Shufpd
            | M::Palignr
            | M::Cmpsd
            | M::Cmpss
            | M::Cmppd
            | M::Cmpps
    ) || strcmp_handler(ins, true).is_some();
    if !(n == 2 || (n == 3 && with_imm)) {
        return None;
    }
    // Other instructions' ops are left as they are, for `compile::pick`.
    let moves = matches!(
        m,
        M::Movdqa
            | M::Movaps
            | M::Movapd
            | M::Movdqu
            | M::Movups
            | M::Movupd
            | M::Lddqu
            | M::Movd
            | M::Movq
            | M::Movsd
            | M::Movss
            | M::Pmovmskb
            | M::Movlps
            | M::Movlpd
            | M::Movhps
            | M::Movhpd
            | M::Movhlps
            | M::Movlhps
    );
    let shift_imm = n == 2 && ins.op1_kind() == OpKind::Immediate8;
    let cvt = matches!(
        m,
        M::Cvtss2si
            | M::Cvttss2si
            | M::Cvtsd2si
            | M::Cvttsd2si
            | M::Cvtsi2sd
            | M::Cvtsi2ss
            | M::Cvtss2sd
            | M::Cvtsd2ss
    );
    let other_float = float_handler(m, 0, true).is_some();
    if !moves
        && !cvt
        && !other_float
        && strcmp_handler(ins, true).is_none()
        && fp_kind(m).is_none()
        && cmp_handler::<REG>(m).is_none()
        && lane_op(m, REG).is_none()
        && !shift_imm
    {
        return None;
    }
    let (o0, o1) = {
        let mut f = || mem(op);
        (operand(ins, 0, &mut f), operand(ins, 1, &mut f))
    };
    if n == 3 {
        if ins.op2_kind() != OpKind::Immediate8 {
            return None;
        }
        op.imm = ins.immediate8() as u64;
    }
    if shift_imm {
        let O::X(d) = o0 else { return None };
        op.d = d;
        op.imm = ins.immediate8() as u64;
        return shift_op(m, REG);
    }
    let reg = |o: O| match o {
        O::X(r) | O::G(r, _) => r,
        _ => NO_REG,
    };
    op.d = reg(o0);
    op.s = reg(o1);
    let aligned = !matches!(m, M::Movdqu | M::Movups | M::Movupd | M::Lddqu);
    let h: Handler = match m {
        M::Movdqa | M::Movaps | M::Movapd | M::Movdqu | M::Movups | M::Movupd | M::Lddqu => {
            match (o0, o1, aligned) {
                (O::X(_), O::X(_), _) if m != M::Lddqu => mov_x::<FULL, REG>,
                (O::X(_), O::Mem(16), true) => mov_x::<FULL, M16A>,
                (O::X(_), O::Mem(16), false) => mov_x::<FULL, M16>,
                (O::Mem(16), O::X(_), true) if m != M::Lddqu => store_x::<16, true>,
                (O::Mem(16), O::X(_), false) if m != M::Lddqu => store_x::<16, false>,
                _ => return None,
            }
        }
        M::Movd | M::Movq => match (o0, o1) {
            (O::X(_), O::X(_)) if m == M::Movq => mov_x::<ZX64, REG>,
            (O::X(_), O::Mem(8)) => mov_x::<ZX64, M8>,
            (O::X(_), O::Mem(4)) => mov_x::<ZX32, M4>,
            (O::Mem(8), O::X(_)) => store_x::<8, false>,
            (O::Mem(4), O::X(_)) => store_x::<4, false>,
            (O::X(_), O::G(_, 4)) => gpr_to_x::<4>,
            (O::X(_), O::G(_, 8)) => gpr_to_x::<8>,
            (O::G(_, 4), O::X(_)) => x_to_gpr::<4, false>,
            (O::G(_, 8), O::X(_)) => x_to_gpr::<8, false>,
            _ => return None,
        },
        M::Movsd | M::Movss => {
            let dbl = m == M::Movsd;
            match (o0, o1) {
                (O::X(_), O::X(_)) if dbl => mov_x::<LO64, REG>,
                (O::X(_), O::X(_)) => mov_x::<LO32, REG>,
                (O::X(_), O::Mem(8)) if dbl => mov_x::<ZX64, M8>,
                (O::X(_), O::Mem(4)) if !dbl => mov_x::<ZX32, M4>,
                (O::Mem(8), O::X(_)) if dbl => store_x::<8, false>,
                (O::Mem(4), O::X(_)) if !dbl => store_x::<4, false>,
                _ => return None,
            }
        }
        M::Movlps | M::Movlpd | M::Movhps | M::Movhpd | M::Movhlps | M::Movlhps => {
            let high = matches!(m, M::Movhps | M::Movhpd | M::Movlhps);
            match (o0, o1, high) {
                (O::X(_), O::X(_), false) => mov_x::<HL, REG>,
                (O::X(_), O::X(_), true) => mov_x::<HI64, REG>,
                (O::X(_), O::Mem(8), false) => mov_x::<LO64, M8>,
                (O::X(_), O::Mem(8), true) => mov_x::<HI64, M8>,
                (O::Mem(8), O::X(_), false) => store_x::<8, false>,
                (O::Mem(8), O::X(_), true) => store_hi,
                _ => return None,
            }
        }
        M::Pmovmskb => match (o0, o1) {
            (O::G(_, 4), O::X(_)) => x_to_gpr::<4, true>,
            (O::G(_, 8), O::X(_)) => x_to_gpr::<8, true>,
            _ => return None,
        },
        _ => {
            if cvt {
                cvt_handler(m, o0, o1)?
            } else if strcmp_handler(ins, true).is_some() {
                match (o0, o1) {
                    (O::X(_), O::X(_)) => strcmp_handler(ins, true)?,
                    (O::X(_), O::Mem(16)) => strcmp_handler(ins, false)?,
                    _ => return None,
                }
            } else if other_float {
                match (o0, o1) {
                    (O::X(_), O::X(_)) => float_handler(m, 16, true)?,
                    (O::X(_), O::Mem(sz)) => float_handler(m, sz, false)?,
                    _ => return None,
                }
            } else if cmp_handler::<REG>(m).is_some() {
                match (o0, o1) {
                    (O::X(_), O::X(_)) => cmp_handler::<REG>(m)?,
                    (O::X(_), O::Mem(sz)) if sz == cmp_size(m) => match sz {
                        16 => cmp_handler::<M16A>(m)?,
                        8 => cmp_handler::<M8>(m)?,
                        _ => cmp_handler::<M4>(m)?,
                    },
                    _ => return None,
                }
            } else if let Some((k, dbl, packed)) = fp_kind(m) {
                let size = if packed {
                    16
                } else if dbl {
                    8
                } else {
                    4
                };
                match (o0, o1) {
                    (O::X(_), O::X(_)) => fp_handler::<REG>(k, dbl, packed),
                    (O::X(_), O::Mem(sz)) if sz == size => match size {
                        16 => fp_handler::<M16A>(k, dbl, packed),
                        8 => fp_handler::<M8>(k, dbl, packed),
                        _ => fp_handler::<M4>(k, dbl, packed),
                    },
                    _ => return None,
                }
            } else {
                match (o0, o1) {
                    (O::X(_), O::X(_)) => lane_op(m, REG)?,
                    (O::X(_), O::Mem(16)) => lane_op(m, M16A)?,
                    _ => return None,
                }
            }
        }
    };
    Some(h)
}
