//! Floating-point compares: CMPPS/PD/SS/SD with the eight predicates of imm8[2:0], and
//! COMISS/UCOMISS/COMISD/UCOMISD into ZF/PF/CF.

use super::lanes::{lane, with_lane};
use super::softfloat::{self as sf, Cmp, Fmt, F32, F64};
use crate::cpu::*;
use crate::flags::{CF, PF, STATUS, ZF};
use iced_x86::{Instruction, Mnemonic as M};

/// Predicate `p` (0-7: EQ, LT, LE, UNORD, NEQ, NLT, NLE, ORD) of a compare's outcome.
fn holds(p: u8, c: Cmp) -> bool {
    match p & 7 {
        0 => c == Cmp::Eq,
        1 => c == Cmp::Lt,
        2 => c == Cmp::Lt || c == Cmp::Eq,
        3 => c == Cmp::Un,
        4 => c != Cmp::Eq,
        5 => c != Cmp::Lt,
        6 => !(c == Cmp::Lt || c == Cmp::Eq),
        _ => c != Cmp::Un,
    }
}

impl Cpu {
    pub(super) fn simd_compare(&mut self, ins: &Instruction) -> R<bool> {
        let m = ins.mnemonic();
        let (f, n) = match m {
            M::Cmpps => (F32, 4),
            M::Cmppd => (F64, 2),
            M::Cmpss | M::Comiss | M::Ucomiss => (F32, 1),
            M::Cmpsd | M::Comisd | M::Ucomisd => (F64, 1),
            _ => return Ok(false),
        };
        let d = self.vop(ins, 0);
        let a = self.vget(d);
        let b = self.vread(ins, 1)?;
        if matches!(m, M::Comiss | M::Ucomiss | M::Comisd | M::Ucomisd) {
            self.comi(f, matches!(m, M::Comiss | M::Comisd), a, b)?;
            return Ok(true);
        }
        let r = self.cmp_lanes(f, n, ins.immediate8(), a, b)?;
        self.vset(d, r);
        Ok(true)
    }

    /// (U)COMISS/SD of the low lanes of `a` and `b` (`signaling`: COMIS*) into ZF, PF and CF.
    #[inline]
    pub(crate) fn comi(&mut self, f: Fmt, signaling: bool, a: u128, b: u128) -> R<()> {
        let mut env = self.fp_env();
        let bits = f.bits();
        let c = sf::compare(f, &mut env, lane(a, bits, 0), lane(b, bits, 0), signaling);
        self.fp_commit(&env)?;
        let fl = match c {
            Cmp::Un => ZF | PF | CF,
            Cmp::Lt => CF,
            Cmp::Eq => ZF,
            Cmp::Gt => 0,
        };
        // OF, SF and AF are cleared.
        self.set_status(STATUS, fl);
        Ok(())
    }

    /// CMPPS/PD/SS/SD: the low `n` lanes of `a` compared with `b` by predicate `imm` & 7.
    #[inline]
    pub(crate) fn cmp_lanes(&mut self, f: Fmt, n: usize, imm: u8, a: u128, b: u128) -> R<u128> {
        let mut env = self.fp_env();
        let bits = f.bits();
        let p = imm & 7;
        // LT, LE, NLT and NLE signal on QNaN too.
        let signaling = matches!(p, 1 | 2 | 5 | 6);
        let mut r = a;
        for i in 0..n {
            let c = sf::compare(f, &mut env, lane(a, bits, i), lane(b, bits, i), signaling);
            r = with_lane(r, bits, i, if holds(p, c) { u64::MAX } else { 0 });
        }
        self.fp_commit(&env)?;
        Ok(r)
    }
}
