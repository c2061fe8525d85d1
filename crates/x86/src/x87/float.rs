//! 80-bit extended-precision values: their classes, and the one rounding step every
//! computed result goes through (rounding control, precision, exponent range, x87 flags).

/// Exception flags of the status word (and masks of the control word).
pub const IE: u16 = 0x01;
pub const DE: u16 = 0x02;
pub const ZE: u16 = 0x04;
pub const OE: u16 = 0x08;
pub const UE: u16 = 0x10;
pub const PE: u16 = 0x20;
/// Stack fault (with IE).
pub const SF: u16 = 0x40;

/// The default quiet NaN ("real indefinite").
pub const INDEFINITE: u128 = 0xffff_c000_0000_0000_0000;
/// Bias added to or taken from the exponent of an unmasked overflow or underflow.
const WRAP: i32 = 24576;

pub fn sign(v: u128) -> bool {
    (v >> 79) & 1 != 0
}
pub fn exp_field(v: u128) -> u16 {
    ((v >> 64) & 0x7fff) as u16
}
pub fn sig(v: u128) -> u64 {
    v as u64
}
pub fn pack(sign: bool, exp: u16, sig: u64) -> u128 {
    ((sign as u128) << 79) | (((exp & 0x7fff) as u128) << 64) | sig as u128
}
pub fn neg(v: u128) -> u128 {
    v ^ (1 << 79)
}
pub fn zero(sign: bool) -> u128 {
    pack(sign, 0, 0)
}
pub fn inf(sign: bool) -> u128 {
    pack(sign, 0x7fff, 1 << 63)
}
pub fn one(sign: bool) -> u128 {
    pack(sign, 16383, 1 << 63)
}
/// A NaN made quiet.
pub fn quiet(v: u128) -> u128 {
    v | (1 << 62)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    Zero,
    /// Exponent field 0 with a nonzero significand (pseudo-denormals included).
    Denormal,
    Normal,
    Inf,
    QNan,
    SNan,
    /// Unnormals, pseudo-NaNs and pseudo-infinities: invalid operands.
    Unsupported,
}

pub fn class(v: u128) -> Class {
    let e = exp_field(v);
    let m = sig(v);
    let j = m >> 63 != 0;
    match e {
        0 if m == 0 => Class::Zero,
        0 => Class::Denormal,
        0x7fff if !j => Class::Unsupported,
        0x7fff if m << 1 == 0 => Class::Inf,
        0x7fff if (m >> 62) & 1 != 0 => Class::QNan,
        0x7fff => Class::SNan,
        _ if !j => Class::Unsupported,
        _ => Class::Normal,
    }
}

pub fn is_nan(c: Class) -> bool {
    matches!(c, Class::QNan | Class::SNan)
}

/// A finite nonzero value as (sign, exponent of bit 63, normalized significand).
pub fn unpack(v: u128) -> (bool, i32, u64) {
    let e = exp_field(v) as i32;
    let m = sig(v);
    if e == 0 {
        let lz = m.leading_zeros() as i32;
        (sign(v), -16382 - lz, m << lz)
    } else {
        (sign(v), e - 16383, m)
    }
}

/// A destination format: significand bits and the normal exponent range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fmt {
    pub prec: u32,
    pub emin: i32,
    pub emax: i32,
}
pub const F32: Fmt = Fmt { prec: 24, emin: -126, emax: 127 };
pub const F64: Fmt = Fmt { prec: 53, emin: -1022, emax: 1023 };
pub const F80: Fmt = Fmt { prec: 64, emin: -16382, emax: 16383 };

/// The rounding environment of the control word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ctl {
    /// 0 nearest, 1 down, 2 up, 3 toward zero.
    pub rc: u8,
    /// The significand width the precision control asks for.
    pub prec: u32,
    pub masks: u16,
}

impl Ctl {
    pub fn from_fcw(fcw: u16) -> Self {
        let prec = match (fcw >> 8) & 3 {
            0 => 24,
            2 => 53,
            _ => 64,
        };
        Self { rc: ((fcw >> 10) & 3) as u8, prec, masks: fcw & 0x3f }
    }
    /// The 80-bit register format with the precision control applied.
    pub fn fmt(&self) -> Fmt {
        Fmt { prec: self.prec, ..F80 }
    }
}

/// A rounded result: the fields of the destination format and what happened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rounded {
    pub sign: bool,
    /// The biased exponent field.
    pub exp: i32,
    /// The significand, its integer bit at bit 63.
    pub sig: u64,
    pub flags: u16,
    /// Rounded away from zero (C1).
    pub up: bool,
}

impl Rounded {
    pub fn ext(&self) -> u128 {
        pack(self.sign, self.exp as u16, self.sig)
    }
    pub fn f64(&self) -> u64 {
        ((self.sign as u64) << 63) | ((self.exp as u64 & 0x7ff) << 52) | ((self.sig << 1) >> 12)
    }
    pub fn f32(&self) -> u32 {
        ((self.sign as u32) << 31) | ((self.exp as u32 & 0xff) << 23) | (((self.sig << 1) >> 41) as u32)
    }
}

/// `sig >> n` with the shifted-out bits folded into a sticky flag.
pub fn shr_jam(sig: u128, n: u32, sticky: bool) -> (u128, bool) {
    if n == 0 {
        (sig, sticky)
    } else if n >= 128 {
        (0, sticky || sig != 0)
    } else {
        (sig >> n, sticky || sig << (128 - n) != 0)
    }
}

/// Rounds `sig` (plus a sticky bit below it) to the bits above bit `g`: (kept bits,
/// rounded up, inexact).
pub fn round_bits(rc: u8, sign: bool, sig: u128, sticky: bool, g: u32) -> (u128, bool, bool) {
    let k = sig >> g;
    let rem = sig & ((1u128 << g) - 1);
    let half = 1u128 << (g - 1);
    let inexact = rem != 0 || sticky;
    let up = match rc {
        0 => rem > half || (rem == half && (sticky || k & 1 != 0)),
        1 => inexact && sign,
        2 => inexact && !sign,
        _ => false,
    };
    (k + up as u128, up, inexact)
}

/// Rounds `(-1)^sign * sig * 2^(exp - 127)` (with a sticky bit below `sig`) into format `f`.
/// `wrap`: the destination is a register, where an unmasked overflow or underflow delivers
/// the rounded value with its exponent biased by 24576; for memory the caller stores
/// nothing then.
pub fn round(ctl: Ctl, f: Fmt, wrap: bool, sign: bool, exp: i32, sig: u128, sticky: bool) -> Rounded {
    if sig == 0 {
        let flags = if sticky { PE } else { 0 };
        return Rounded { sign, exp: 0, sig: 0, flags, up: false };
    }
    let lz = sig.leading_zeros();
    let sig = sig << lz;
    let mut e = exp - lz as i32;
    let g = 128 - f.prec;
    let bias = f.emax;
    let (mut k, mut up, inexact) = round_bits(ctl.rc, sign, sig, sticky, g);
    let carry = k >> f.prec != 0;
    // Tininess is detected after rounding (as if the exponent were unbounded).
    let tiny = e < f.emin && !(e == f.emin - 1 && carry);
    let mut flags = 0;
    let ue_unmasked = ctl.masks & UE == 0;
    if tiny && !(wrap && ue_unmasked) {
        let (s, st) = shr_jam(sig, (f.emin - e) as u32, sticky);
        let (k, up, inexact) = round_bits(ctl.rc, sign, s, st, g);
        if inexact {
            flags |= PE | UE;
        } else if ue_unmasked {
            flags |= UE;
        }
        let exp = (k >> (f.prec - 1) != 0) as i32;
        return Rounded { sign, exp, sig: (k << (64 - f.prec)) as u64, flags, up };
    }
    if carry {
        k >>= 1;
        e += 1;
    }
    let mut be = e + bias;
    if tiny {
        flags |= UE;
        be += WRAP;
        if be < 1 {
            // Too small even for the biased exponent: zero.
            return Rounded { sign, exp: 0, sig: 0, flags: UE | PE, up: false };
        }
    }
    if inexact {
        flags |= PE;
    }
    let mut sig64 = (k << (64 - f.prec)) as u64;
    if be > 2 * bias {
        flags |= OE;
        if ctl.masks & OE == 0 && !(wrap && be - WRAP > 2 * bias) {
            if wrap {
                be -= WRAP;
            }
        } else if ctl.masks & OE == 0 {
            // Too large even for the biased exponent: infinity.
            flags |= PE;
            be = 2 * bias + 1;
            sig64 = 1 << 63;
            up = true;
        } else {
            flags |= PE;
            let to_inf = match ctl.rc {
                0 => true,
                1 => sign,
                2 => !sign,
                _ => false,
            };
            if to_inf {
                be = 2 * bias + 1;
                sig64 = 1 << 63;
            } else {
                be = 2 * bias;
                sig64 = !0u64 << (64 - f.prec);
            }
            up = to_inf;
        }
    }
    Rounded { sign, exp: be, sig: sig64, flags, up }
}

/// The NaN two operands give, by the x87 rules: an SNaN is made quiet (IE), a QNaN wins over
/// an SNaN, and between two NaNs of the same kind the larger significand wins.
pub fn pick_nan(a: u128, b: u128) -> (u128, u16) {
    let (ca, cb) = (class(a), class(b));
    let flags = if ca == Class::SNan || cb == Class::SNan { IE } else { 0 };
    let r = match (is_nan(ca), is_nan(cb)) {
        (true, false) => a,
        (false, true) => b,
        _ if ca == Class::QNan && cb == Class::SNan => a,
        _ if ca == Class::SNan && cb == Class::QNan => b,
        _ => {
            if sig(a) > sig(b) || (sig(a) == sig(b) && !sign(a)) {
                a
            } else {
                b
            }
        }
    };
    (quiet(r), flags)
}
