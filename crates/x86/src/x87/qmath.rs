//! Elementary functions in IEEE quad precision (113-bit significand, rustc_apfloat), so the
//! x87 transcendentals can round once to 64 bits from a result good to about 105 bits.

use rustc_apfloat::ieee::Quad;
use rustc_apfloat::{Float, Round};

/// A quad value with plain arithmetic (round to nearest even, status ignored: the callers
/// track the x87 flags themselves).
#[derive(Clone, Copy, Debug)]
pub struct Q(pub Quad);

impl std::ops::Add for Q {
    type Output = Q;
    fn add(self, o: Q) -> Q {
        Q((self.0 + o.0).value)
    }
}
impl std::ops::Sub for Q {
    type Output = Q;
    fn sub(self, o: Q) -> Q {
        Q((self.0 - o.0).value)
    }
}
impl std::ops::Mul for Q {
    type Output = Q;
    fn mul(self, o: Q) -> Q {
        Q((self.0 * o.0).value)
    }
}
impl std::ops::Div for Q {
    type Output = Q;
    fn div(self, o: Q) -> Q {
        Q((self.0 / o.0).value)
    }
}
impl std::ops::Neg for Q {
    type Output = Q;
    fn neg(self) -> Q {
        Q(-self.0)
    }
}

impl Q {
    pub fn int(i: i64) -> Q {
        Q(Quad::from_i128(i as i128).value)
    }
    /// `(-1)^s * m * 2^(e - 63)`, exactly.
    pub fn from_parts(s: bool, e: i32, m: u64) -> Q {
        let v = Quad::from_u128(m as u128).value.scalbn(e - 63);
        Q(if s { -v } else { v })
    }
    /// `sig * 2^(e - 127)` for a 128-bit constant, rounded to quad.
    pub fn from_wide(e: i32, sig: u128) -> Q {
        Q(Quad::from_u128_r(sig, Round::NearestTiesToEven).value.scalbn(e - 127))
    }
    pub fn scale(self, n: i32) -> Q {
        Q(self.0.scalbn(n))
    }
    pub fn abs(self) -> Q {
        Q(self.0.abs())
    }
    pub fn is_neg(self) -> bool {
        self.0.is_negative()
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
    /// The same value, bit for bit.
    pub fn same(self, o: Q) -> bool {
        self.0.bitwise_eq(o.0)
    }
    pub fn lt(self, o: Q) -> bool {
        self.0 < o.0
    }
    /// (sign, exponent of bit 127, significand) of a finite value, for `float::round`.
    pub fn parts(self) -> (bool, i32, u128) {
        let b = self.0.to_bits();
        let s = b >> 127 != 0;
        let e = ((b >> 112) & 0x7fff) as i32;
        let frac = b & ((1u128 << 112) - 1);
        if e == 0 {
            (s, -16382 - 112 + 127, frac)
        } else {
            (s, e - 16383, (frac | (1 << 112)) << 15)
        }
    }
    /// The integer nearest to the value (|value| < 2^100).
    pub fn round_int(self) -> (Q, i128) {
        let r = self.0.round_to_integral(Round::NearestTiesToEven).value;
        let mut exact = false;
        let i = r.to_i128_r(128, Round::TowardZero, &mut exact).value;
        (Q(r), i)
    }
}

fn one() -> Q {
    Q::int(1)
}

/// pi/2 as the x87 reduces by it (pi to 66 significant bits, as Intel documents and the
/// host's results show), in two pieces whose products with any quotient are exact in quad.
fn pio2_parts() -> [Q; 2] {
    // The first 68 bits of pi (the 67th and 68th are zero): 0xc90fdaa22168c234c.
    const PI68: u128 = 0xc_90fd_aa22_168c_234c;
    let hi = PI68 >> 18;
    let lo = PI68 & ((1 << 18) - 1);
    // pi/2 = PI68 * 2^-67: the high piece's last bit weighs 2^-49, the low one's 2^-67.
    [Q::from_wide(127 - 49, hi), Q::from_wide(127 - 67, lo)]
}

pub fn pi() -> Q {
    Q::from_wide(1, 0xc90fdaa22168c234c4c6628b80dc1cd1)
}

/// x reduced by multiples of pi/2: (r, k mod 4) with x = r + k*pi/2, |r| <= about pi/4.
pub fn reduce(x: Q) -> (Q, u32) {
    let two_over_pi = Q::from_wide(-1, 0xa2f9836e4e441529fc2757d1f534ddc0);
    let (k, ki) = (x * two_over_pi).round_int();
    // Subtract k * piece one piece at a time, largest first (the first step is exact).
    let mut r = x;
    for p in pio2_parts() {
        r = Q(k.0.mul_add_r(-p.0, r.0, Round::NearestTiesToEven).value);
    }
    (r, (ki & 3) as u32)
}

/// sin and cos of |r| <= pi/4 + a little, by their Taylor series.
pub fn sin_cos_small(r: Q) -> (Q, Q) {
    let r2 = r * r;
    let mut term = r;
    let mut s = r;
    let mut n = 1;
    for _ in 0..30 {
        term = -(term * r2) / Q::int((n + 1) * (n + 2));
        n += 2;
        s = s + term;
    }
    let mut term = one();
    let mut c = one();
    let mut n = 0;
    for _ in 0..30 {
        term = -(term * r2) / Q::int((n + 1) * (n + 2));
        n += 2;
        c = c + term;
    }
    (s, c)
}

pub fn sin_cos(x: Q) -> (Q, Q) {
    let (r, k) = reduce(x);
    let (s, c) = sin_cos_small(r);
    match k {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// Square root by Newton's method from a double estimate.
pub fn sqrt(x: Q) -> Q {
    if x.is_zero() {
        return x;
    }
    let (_, e, _) = x.parts();
    // Scale into [1, 4) so the double estimate is in range.
    let half = e.div_euclid(2);
    let y = x.scale(-2 * half);
    let yd = quad_to_f64(y).sqrt();
    let mut g = Q(Quad::from_bits(f64_to_quad_bits(yd)));
    for _ in 0..3 {
        g = (g + y / g).scale(-1);
    }
    g.scale(half)
}

fn quad_to_f64(q: Q) -> f64 {
    let (s, e, m) = q.parts();
    let v = (m >> 64) as f64 * 2f64.powi(e - 63);
    if s {
        -v
    } else {
        v
    }
}

fn f64_to_quad_bits(d: f64) -> u128 {
    let b = d.to_bits();
    let s = (b >> 63) as u128;
    let e = ((b >> 52) & 0x7ff) as u128;
    let f = (b & ((1 << 52) - 1)) as u128;
    (s << 127) | ((e + 16383 - 1023) << 112) | (f << 60)
}

/// atan(t) for any finite t.
pub fn atan(t: Q) -> Q {
    let neg = t.is_neg();
    let mut t = t.abs();
    let mut add = Q::int(0);
    if one().lt(t) {
        // atan(t) = pi/2 - atan(1/t)
        add = pi().scale(-1);
        t = one() / t;
    }
    // Three halvings: atan(t) = 2 atan(t / (1 + sqrt(1 + t^2))).
    for _ in 0..3 {
        t = t / (one() + sqrt(one() + t * t));
    }
    let t2 = t * t;
    let mut p = t;
    let mut s = t;
    for n in 1..40 {
        p = -(p * t2);
        s = s + p / Q::int(2 * n + 1);
    }
    let mut r = s.scale(3);
    if !add.is_zero() {
        r = add - r;
    }
    if neg {
        -r
    } else {
        r
    }
}

/// 2 atanh(s) = ln((1 + s) / (1 - s)) for small |s|.
fn atanh2(s: Q) -> Q {
    let s2 = s * s;
    let mut p = s;
    let mut sum = s;
    for n in 1..60 {
        p = p * s2;
        sum = sum + p / Q::int(2 * n + 1);
    }
    sum.scale(1)
}

pub fn ln2() -> Q {
    Q::from_wide(-1, 0xb17217f7d1cf79abc9e3b39803f2f6af)
}

/// log2 of a positive finite value given as (exponent, significand).
pub fn log2_parts(e: i32, m: u64) -> Q {
    log2(Q::from_parts(false, e, m))
}

/// log2 of a positive finite quad value.
pub fn log2(x: Q) -> Q {
    let (_, e, sig) = x.parts();
    let lz = sig.leading_zeros() as i32;
    let mut e = e - lz;
    // The significand in [1, 2), moved to [sqrt(1/2), sqrt(2)).
    let mut mant = x.scale(-e);
    if (sig << lz) > 0xb504_f333_f9de_6484_u128 << 64 {
        mant = mant.scale(-1);
        e += 1;
    }
    let s = (mant - one()) / (mant + one());
    Q::int(e as i64) + atanh2(s) / ln2()
}

/// log2(1 + x) for x > -1.
pub fn log2_1p(x: Q) -> Q {
    if x.abs().lt(Q::int(1).scale(-2)) {
        let s = x / (Q::int(2) + x);
        atanh2(s) / ln2()
    } else {
        log2(one() + x)
    }
}

/// e^y - 1.
pub fn expm1(y: Q) -> Q {
    let mut k = 0;
    let mut z = y;
    let half = Q::int(1).scale(-2);
    while half.lt(z.abs()) && k < 64 {
        z = z.scale(-1);
        k += 1;
    }
    let mut term = z;
    let mut sum = z;
    for n in 2..40 {
        term = term * z / Q::int(n);
        sum = sum + term;
    }
    for _ in 0..k {
        sum = sum * (sum + Q::int(2));
    }
    sum
}
