//! The x87 transcendental instructions: special operands by Intel's tables, finite ones
//! computed in quad precision and rounded once to 64 bits.

use super::arith::{precheck, with, Res};
use super::float::*;
use super::qmath::{self, Q};
use super::C2;
use crate::cpu::*;
use iced_x86::{Instruction, Mnemonic as M};

/// Where the true result lies from the quad one, when that one is exact in 64 bits (a sin
/// of a tiny x is x in quad, but a little less in magnitude).
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Exact,
    Above,
    Below,
}

/// A quad result rounded to the 64-bit register format.
fn finish(ctl: Ctl, q: Q, dir: Dir) -> Res {
    finish_scaled(ctl, q, dir, 0)
}

/// `q * 2^scale` rounded to the register format (results beyond the quad range are
/// computed on scaled operands).
fn finish_scaled(ctl: Ctl, q: Q, dir: Dir, scale: i32) -> Res {
    if q.is_zero() {
        return Res::exact(zero(q.is_neg()));
    }
    let (s, e, m) = q.parts();
    let lz = m.leading_zeros();
    let (e, m) = (e - lz as i32 + scale, m << lz);
    let (m, sticky) = match dir {
        Dir::Exact => (m, false),
        Dir::Above => (m, true),
        Dir::Below => (m - 1, true),
    };
    Res::rounded(round(Ctl { prec: 64, ..ctl }, F80, true, s, e, m, sticky))
}

fn to_q(v: u128) -> Q {
    let (s, e, m) = unpack(v);
    Q::from_parts(s, e, m)
}

/// A finite nonzero value as (value in [1, 2), its exponent).
fn to_q_scaled(v: u128) -> (Q, i32) {
    let (s, e, m) = unpack(v);
    (Q::from_parts(s, 0, m), e)
}

/// A finite nonzero 80-bit value itself, a hair above or below in magnitude (sin x, tan x
/// and the like for tiny x).
fn nearly(ctl: Ctl, v: u128, dir: Dir) -> Res {
    let (s, e, m) = unpack(v);
    let m = (m as u128) << 64;
    let (m, sticky) = if dir == Dir::Below { (m - 1, true) } else { (m, dir == Dir::Above) };
    Res::rounded(round(Ctl { prec: 64, ..ctl }, F80, true, s, e, m, sticky))
}

/// A constant (pi, pi/2...) with a sign, rounded by the control word.
fn constant(ctl: Ctl, q: Q, neg: bool) -> Res {
    finish(ctl, if neg { -q } else { q }, Dir::Above)
}

/// FSIN, FCOS, FPTAN, FSINCOS on x: (first result, second result) or None when |x| >= 2^63
/// (C2 set, nothing changes).
fn trig(ctl: Ctl, m: M, x: u128) -> Option<(Res, Res)> {
    let f = match precheck(ctl, x, None, false) {
        Ok(f) => f,
        Err(r) => return Some((r, r)),
    };
    let onev = Res::exact(one(false));
    match class(x) {
        Class::Inf => return Some((Res::invalid(), Res::invalid())),
        Class::Zero => {
            return Some(match m {
                M::Fcos => (onev, onev),
                M::Fsincos => (Res::exact(x), onev),
                _ => (Res::exact(x), onev),
            })
        }
        _ => {}
    }
    let (_, e, _) = unpack(x);
    if e >= 63 {
        return None;
    }
    if e < -40 {
        let one_below = nearly(ctl, one(false), Dir::Below);
        return Some(match m {
            M::Fsin => (with(ctl, f, nearly(ctl, x, Dir::Below)), onev),
            M::Fcos => (with(ctl, f, one_below), onev),
            M::Fptan => (with(ctl, f, nearly(ctl, x, Dir::Above)), onev),
            _ => (with(ctl, f, nearly(ctl, x, Dir::Below)), with(ctl, f, one_below)),
        });
    }
    let (s, c) = qmath::sin_cos(to_q(x));
    Some(match m {
        M::Fsin => (with(ctl, f, finish(ctl, s, Dir::Below)), onev),
        M::Fcos => (with(ctl, f, finish(ctl, c, Dir::Below)), onev),
        M::Fptan => (with(ctl, f, finish(ctl, s / c, Dir::Above)), onev),
        _ => (with(ctl, f, finish(ctl, s, Dir::Below)), with(ctl, f, finish(ctl, c, Dir::Below))),
    })
}

/// FPATAN: atan2(y, x).
fn patan(ctl: Ctl, y: u128, x: u128) -> Res {
    let f = match precheck(ctl, y, Some(x), false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (cy, cx) = (class(y), class(x));
    let (sy, sx) = (sign(y), sign(x));
    let pi = qmath::pi();
    let r = match (cy, cx) {
        (Class::Zero, _) if !sx => Res::exact(y),
        (Class::Zero, _) => constant(ctl, pi, sy),
        (_, Class::Zero) => constant(ctl, pi.scale(-1), sy),
        (Class::Inf, Class::Inf) => {
            let q = if sx { pi.scale(-2) * Q::int(3) } else { pi.scale(-2) };
            constant(ctl, q, sy)
        }
        (Class::Inf, _) => constant(ctl, pi.scale(-1), sy),
        (_, Class::Inf) if !sx => Res::exact(zero(sy)),
        (_, Class::Inf) => constant(ctl, pi, sy),
        _ if !sx && unpack(y).1 - unpack(x).1 < -60 => {
            // atan(t) = t - t^3/3...: t alone, a hair below.
            let ((qy, ey), (qx, ex)) = (to_q_scaled(y), to_q_scaled(x));
            finish_scaled(ctl, qy / qx, Dir::Below, ey - ex)
        }
        _ => {
            let (qy, qx) = (to_q(y), to_q(x));
            let a = qmath::atan(qy / qx);
            let q = if !sx {
                a
            } else if sy {
                a - pi
            } else {
                a + pi
            };
            finish(ctl, q, Dir::Below)
        }
    };
    with(ctl, f, r)
}

/// y * log2(x) when the logarithm is an integer: exact, but reported inexact all the same
/// (and so a tiny result underflows).
fn exact_product(ctl: Ctl, q: Q, scale: i32) -> Res {
    let mut r = finish_scaled(ctl, q, Dir::Exact, scale);
    r.flags |= PE;
    if exp_field(r.v) == 0 && r.v & ((1 << 79) - 1) != 0 {
        r.flags |= UE;
    }
    r
}

/// log2(sum) when `sum` = 1 + x was computed exactly and is a power of two.
fn exact_log2(sum: Q, x: Q) -> Option<i32> {
    let (s, e, m) = sum.parts();
    let exact = (sum - Q::int(1)).same(x);
    (exact && !s && m == 1 << 127).then_some(e)
}

/// FYL2X: y * log2(x).
fn yl2x(ctl: Ctl, y: u128, x: u128) -> Res {
    let f = match precheck(ctl, x, Some(y), false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (cy, cx) = (class(y), class(x));
    let (sy, sx) = (sign(y), sign(x));
    if sx && cx != Class::Zero {
        return Res::invalid();
    }
    let r = match (cx, cy) {
        (Class::Zero, Class::Zero) => Res::invalid(),
        (Class::Zero, Class::Inf) => Res::exact(inf(!sy)),
        (Class::Zero, _) => Res { v: inf(!sy), flags: ZE, up: false },
        (Class::Inf, Class::Zero) => Res::invalid(),
        (Class::Inf, _) => Res::exact(inf(sy)),
        _ => {
            let (_, e, m) = unpack(x);
            let l = if m == 1 << 63 { Q::int(e as i64) } else { qmath::log2_parts(e, m) };
            match cy {
                Class::Inf if l.is_zero() => Res::invalid(),
                Class::Inf => Res::exact(inf(sy != l.is_neg())),
                Class::Zero => Res::exact(zero(sy != l.is_neg())),
                _ if l.is_zero() => Res::exact(zero(sy)),
                // log2 of a power of two is exact, and so is the product (PE all the same).
                _ if m == 1 << 63 => {
                    let (qy, ey) = to_q_scaled(y);
                    exact_product(ctl, qy * l, ey)
                }
                _ => {
                    let (qy, ey) = to_q_scaled(y);
                    finish_scaled(ctl, qy * l, Dir::Above, ey)
                }
            }
        }
    };
    with(ctl, f, r)
}

/// FYL2XP1: y * log2(x + 1).
fn yl2xp1(ctl: Ctl, y: u128, x: u128) -> Res {
    let f = match precheck(ctl, x, Some(y), false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (cy, cx) = (class(y), class(x));
    let (sy, sx) = (sign(y), sign(x));
    let r = match (cx, cy) {
        (Class::Zero, Class::Inf) => Res::invalid(),
        (Class::Zero, _) => Res::exact(zero(sx != sy)),
        (Class::Inf, Class::Zero) => Res::invalid(),
        (Class::Inf, _) if sx => Res::invalid(),
        (Class::Inf, _) => Res::exact(inf(sy)),
        (_, Class::Inf) => Res::exact(inf(sy != sx)),
        (_, Class::Zero) => Res::exact(zero(sy != sx)),
        _ => {
            let qx = to_q(x);
            if sx && !(Q::int(-1).lt(qx)) {
                // Outside the domain the result is undefined; the x87 returns x, inexact.
                Res { v: x, flags: PE, up: false }
            } else {
                let (qy, ey) = to_q_scaled(y);
                let (xs, ex) = to_q_scaled(x);
                if ex < -120 {
                    // log2(1 + x) = (x - x^2/2...) / ln 2: x / ln 2, a hair toward -inf.
                    let dir = if sx { Dir::Above } else { Dir::Below };
                    finish_scaled(ctl, qy * (xs / qmath::ln2()), dir, ey + ex)
                } else if let Some(k) = exact_log2(Q::int(1) + qx, qx) {
                    exact_product(ctl, qy * Q::int(k as i64), ey)
                } else {
                    finish_scaled(ctl, qy * qmath::log2_1p(qx), Dir::Above, ey)
                }
            }
        }
    };
    with(ctl, f, r)
}

/// F2XM1: 2^x - 1.
fn f2xm1(ctl: Ctl, x: u128) -> Res {
    let f = match precheck(ctl, x, None, false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let r = match class(x) {
        Class::Zero => Res::exact(x),
        Class::Inf if sign(x) => Res::exact(one(true)),
        Class::Inf => Res::exact(x),
        // Outside [-1, 1] the result is undefined; the x87 returns the operand, inexact.
        _ if unpack(x).1 >= 0 && x & ((1 << 79) - 1) != one(false) => Res { v: x, flags: PE, up: false },
        _ if unpack(x).1 < -120 => {
            // 2^x - 1 = x ln 2 (1 + x ln 2 / 2...).
            let (xs, ex) = to_q_scaled(x);
            let dir = if sign(x) { Dir::Below } else { Dir::Above };
            finish_scaled(ctl, xs * qmath::ln2(), dir, ex)
        }
        _ => finish(ctl, qmath::expm1(to_q(x) * qmath::ln2()), Dir::Above),
    };
    with(ctl, f, r)
}

impl Cpu {
    pub(super) fn x87_trans(&mut self, ins: &Instruction) -> R<()> {
        let m = ins.mnemonic();
        let ctl = self.ctl();
        match m {
            M::Fsin | M::Fcos | M::Fptan | M::Fsincos => {
                let pushes = matches!(m, M::Fptan | M::Fsincos);
                self.set_cc(C2, false);
                let Some(x) = self.st_get(0) else {
                    if self.stack_underflow() {
                        self.st_set(0, INDEFINITE);
                        if pushes {
                            self.x87_push(INDEFINITE);
                        }
                    }
                    return Ok(());
                };
                if pushes && self.push_overflows() {
                    if self.stack_overflow() {
                        self.st_set(0, INDEFINITE);
                        self.x87_push(INDEFINITE);
                    }
                    return Ok(());
                }
                let Some((a, b)) = trig(ctl, m, x) else {
                    self.set_cc(C2, true);
                    self.set_c1(false);
                    return Ok(());
                };
                let flags = a.flags | if pushes { b.flags } else { 0 };
                if self.fp_raise(flags) {
                    return Ok(());
                }
                self.st_set(0, a.v);
                // C1 tells how the first result (the tangent, the sine) was rounded.
                self.set_c1(a.up);
                if pushes {
                    self.x87_push(b.v);
                }
            }
            M::F2xm1 => {
                let Some(x) = self.st_get(0) else {
                    if self.stack_underflow() {
                        self.st_set(0, INDEFINITE);
                    }
                    return Ok(());
                };
                let r = f2xm1(ctl, x);
                if !self.fp_raise(r.flags) {
                    self.st_set(0, r.v);
                    self.set_c1(r.up);
                }
            }
            _ => {
                let (Some(x), Some(y)) = (self.st_get(0), self.st_get(1)) else {
                    if self.stack_underflow() {
                        self.st_set(1, INDEFINITE);
                        self.x87_pop();
                    }
                    return Ok(());
                };
                let r = match m {
                    M::Fpatan => patan(ctl, y, x),
                    M::Fyl2x => yl2x(ctl, y, x),
                    _ => yl2xp1(ctl, y, x),
                };
                if !self.fp_raise(r.flags) {
                    self.st_set(1, r.v);
                    self.set_c1(r.up);
                    self.x87_pop();
                }
            }
        }
        Ok(())
    }
}
