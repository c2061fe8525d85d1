//! The pieces every soft-float operation shares: the formats, the MXCSR state of one
//! instruction (rounding control, DAZ/FTZ, masks, the flags it raises) and `round_pack`,
//! the one routine that rounds an exact result into a format, with overflow, tininess after
//! rounding, FTZ and the unmasked-exception rules.

/// MXCSR exception flag bits.
pub(crate) const IE: u32 = 1;
pub(crate) const DE: u32 = 2;
pub(crate) const ZE: u32 = 4;
pub(crate) const OE: u32 = 8;
pub(crate) const UE: u32 = 0x10;
pub(crate) const PE: u32 = 0x20;

/// A binary floating-point format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Fmt {
    /// Stored fraction bits.
    pub frac: u32,
    /// Exponent bits.
    pub ebits: u32,
}

pub(crate) const F32: Fmt = Fmt { frac: 23, ebits: 8 };
pub(crate) const F64: Fmt = Fmt { frac: 52, ebits: 11 };

impl Fmt {
    pub fn bits(self) -> u32 {
        self.frac + self.ebits + 1
    }
    pub fn bias(self) -> i32 {
        (1 << (self.ebits - 1)) - 1
    }
    pub fn exp_max(self) -> u64 {
        (1 << self.ebits) - 1
    }
    pub fn sign_bit(self) -> u64 {
        1 << (self.frac + self.ebits)
    }
    pub fn frac_mask(self) -> u64 {
        (1 << self.frac) - 1
    }
    pub fn exp_field(self, x: u64) -> u64 {
        (x >> self.frac) & self.exp_max()
    }
    pub fn sign(self, x: u64) -> bool {
        x & self.sign_bit() != 0
    }
    pub fn is_nan(self, x: u64) -> bool {
        self.exp_field(x) == self.exp_max() && x & self.frac_mask() != 0
    }
    pub fn is_snan(self, x: u64) -> bool {
        self.is_nan(x) && x & (1 << (self.frac - 1)) == 0
    }
    pub fn is_inf(self, x: u64) -> bool {
        self.exp_field(x) == self.exp_max() && x & self.frac_mask() == 0
    }
    pub fn is_zero(self, x: u64) -> bool {
        x & !self.sign_bit() == 0
    }
    pub fn is_denormal(self, x: u64) -> bool {
        self.exp_field(x) == 0 && x & self.frac_mask() != 0
    }
    pub fn quiet(self, x: u64) -> u64 {
        x | (1 << (self.frac - 1))
    }
    /// The QNaN indefinite (negative, only the quiet bit set).
    pub fn default_nan(self) -> u64 {
        self.sign_bit() | (self.exp_max() << self.frac) | (1 << (self.frac - 1))
    }
    pub fn zero(self, neg: bool) -> u64 {
        if neg {
            self.sign_bit()
        } else {
            0
        }
    }
    pub fn inf(self, neg: bool) -> u64 {
        self.zero(neg) | (self.exp_max() << self.frac)
    }
    pub fn max_finite(self, neg: bool) -> u64 {
        self.inf(neg) - 1
    }
    /// (sign, exp, sig) with the value `sig * 2^exp` of a finite `x`.
    pub fn unpack(self, x: u64) -> (bool, i32, u64) {
        let e = self.exp_field(x);
        let f = x & self.frac_mask();
        let min = 1 - self.bias() - self.frac as i32;
        if e == 0 {
            (self.sign(x), min, f)
        } else {
            (self.sign(x), e as i32 - 1 + min, f | (1 << self.frac))
        }
    }
}

/// Rounding and flag state for one instruction (from MXCSR).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Env {
    /// 0 nearest, 1 down, 2 up, 3 toward zero.
    pub rc: u32,
    pub daz: bool,
    pub ftz: bool,
    /// Underflow is unmasked: exact tiny results raise it too, and PE is not recorded.
    pub ue_unmasked: bool,
    /// Overflow is unmasked: PE is not recorded with it.
    pub oe_unmasked: bool,
    /// Flags raised by the current stage of the instruction.
    pub flags: u32,
    /// MXCSR's exception masks (bits 0-5).
    pub masks: u32,
    /// Flags recorded by the stages already ended.
    pub done: u32,
    /// An unmasked exception ended a stage: the instruction faults.
    pub fault: bool,
}

impl Env {
    pub fn from_mxcsr(m: u32) -> Self {
        Self {
            rc: (m >> 13) & 3,
            daz: m & 0x40 != 0,
            ftz: m & 0x8000 != 0,
            ue_unmasked: m & 0x800 == 0,
            oe_unmasked: m & 0x400 == 0,
            flags: 0,
            masks: (m >> 7) & 0x3f,
            done: 0,
            fault: false,
        }
    }

    /// Ends a stage of computation (every lane of it): an unmasked IE/DE/ZE in any lane
    /// keeps OE/UE/PE from being recorded; an unmasked exception makes the instruction fault.
    pub fn end_stage(&mut self) {
        let pre = self.flags & (IE | DE | ZE);
        if pre & !self.masks != 0 {
            self.done |= pre;
            self.fault = true;
        } else {
            self.done |= self.flags;
            self.fault |= self.flags & !self.masks != 0;
        }
        self.flags = 0;
    }

    /// DAZ: a denormal operand reads as a zero of its sign.
    #[inline]
    pub fn daz(&self, f: Fmt, x: u64) -> u64 {
        if self.daz && f.is_denormal(x) {
            x & f.sign_bit()
        } else {
            x
        }
    }

    /// The NaN result of a two-operand op where `a` or `b` is a NaN: the first NaN, quieted.
    pub fn nan2(&mut self, f: Fmt, a: u64, b: u64) -> u64 {
        if f.is_snan(a) || f.is_snan(b) {
            self.flags |= IE;
        }
        if f.is_nan(a) {
            f.quiet(a)
        } else {
            f.quiet(b)
        }
    }

    pub fn invalid(&mut self, f: Fmt) -> u64 {
        self.flags |= IE;
        f.default_nan()
    }

    pub fn denormal_check(&mut self, f: Fmt, a: u64, b: u64) {
        if f.is_denormal(a) || f.is_denormal(b) {
            self.flags |= DE;
        }
    }
}

/// Where the dropped bits of a rounding lie: exact, below half, exactly half, above half.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Rem {
    Exact,
    Below,
    Half,
    Above,
}

/// `sig >> shift` and what was dropped (`sticky`: nonzero bits below `sig` already).
pub(super) fn split(sig: u128, shift: i32, sticky: bool) -> (u128, Rem) {
    if shift <= 0 {
        return (sig << (-shift) as u32, if sticky { Rem::Below } else { Rem::Exact });
    }
    if shift > 128 {
        return (0, Rem::Below);
    }
    let s = shift as u32;
    let kept = if s == 128 { 0 } else { sig >> s };
    let rem = if s == 128 { sig } else { sig & ((1u128 << s) - 1) };
    let half = 1u128 << (s - 1);
    let r = if rem == 0 && !sticky {
        Rem::Exact
    } else if rem < half {
        Rem::Below
    } else if rem == half && !sticky {
        Rem::Half
    } else {
        Rem::Above
    };
    (kept, r)
}

pub(super) fn increment(kept: u128, r: Rem, rc: u32, neg: bool) -> bool {
    match rc {
        0 => r == Rem::Above || (r == Rem::Half && kept & 1 == 1),
        1 => r != Rem::Exact && neg,
        2 => r != Rem::Exact && !neg,
        _ => false,
    }
}

/// Rounds `(-1)^neg * (sig + sticky fraction) * 2^exp` (sig nonzero) to format `f`.
pub(crate) fn round_pack(f: Fmt, env: &mut Env, neg: bool, exp: i32, sig: u128, sticky: bool) -> u64 {
    let p = 127 - sig.leading_zeros() as i32;
    let frac = f.frac as i32;
    let emin = 1 - f.bias();
    // Rounded to the format's precision with an unbounded exponent: overflow and tininess.
    let (mut k, r) = split(sig, p - frac, sticky);
    let mut e = exp + p;
    if increment(k, r, env.rc, neg) {
        k += 1;
        if k >> (frac + 1) != 0 {
            k >>= 1;
            e += 1;
        }
    }
    if e > f.bias() {
        // Unmasked, the exponent-adjusted result would be delivered: PE only if it is inexact.
        env.flags |= if !env.oe_unmasked || r != Rem::Exact { OE | PE } else { OE };
        let to_inf = match env.rc {
            0 => true,
            1 => neg,
            2 => !neg,
            _ => false,
        };
        return if to_inf { f.inf(neg) } else { f.max_finite(neg) };
    }
    if e >= emin {
        if r != Rem::Exact {
            env.flags |= PE;
        }
        return f.zero(neg) | ((((e + f.bias() - 1) as u64) << f.frac) + k as u64);
    }
    // Tiny: the result is denormal (or zero) with its last bit at 2^(emin - frac).
    if env.ue_unmasked {
        // Raised whether exact or not; PE only if the exponent-adjusted result is inexact.
        env.flags |= if r != Rem::Exact { UE | PE } else { UE };
        return f.zero(neg);
    }
    if env.ftz {
        env.flags |= UE | PE;
        return f.zero(neg);
    }
    let (mut k, r) = split(sig, emin - frac - exp, sticky);
    if increment(k, r, env.rc, neg) {
        k += 1;
    }
    if r != Rem::Exact {
        env.flags |= UE | PE;
    }
    f.zero(neg) | k as u64
}
