//! Lazily computed arithmetic flags: an ALU instruction records its operands and result, and the
//! six status flags are derived only when something reads them.

pub const CF: u64 = 1;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const TF: u64 = 1 << 8;
pub const IF: u64 = 1 << 9;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
pub const IOPL: u64 = 3 << 12;
pub const NT: u64 = 1 << 14;
pub const RF: u64 = 1 << 16;
pub const VM: u64 = 1 << 17;
pub const AC: u64 = 1 << 18;
pub const ID: u64 = 1 << 21;
/// The six status flags.
pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;

/// Which operation last set the status flags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum LazyOp {
    /// The flags in `rflags` are current.
    None,
    Add,
    Adc,
    Sub,
    Sbb,
    Logic,
    /// INC and DEC keep the previous CF, which they record in `cin`.
    Inc,
    Dec,
    /// SF, ZF and PF from the result; CF, OF and AF are the bits recorded in `b` (shifts,
    /// multiplies).
    Szp,
}

/// The recorded operation.
///
/// Every field is a whole word so that reading one right after an instruction stored the
/// record is forwarded from that store (narrow fields got merged into wider loads that
/// missed store forwarding).
#[derive(Clone, Copy, Debug)]
pub struct Lazy {
    pub op: LazyOp,
    /// The operand size in bytes.
    pub size: u64,
    pub a: u64,
    pub b: u64,
    pub res: u64,
    /// The carry-in of ADC/SBB; the kept CF of INC/DEC (0 or 1).
    pub cin: u64,
}

impl Default for Lazy {
    fn default() -> Self {
        Self::new(LazyOp::None, 4, 0, 0, 0, false)
    }
}

#[inline]
pub fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

#[inline]
pub fn sign(size: u8) -> u64 {
    1u64 << (size * 8 - 1)
}

/// PF, ZF and SF for a result.
#[inline]
pub fn szp(res: u64, size: u8) -> u64 {
    let r = res & mask(size);
    let mut f = 0;
    if r == 0 {
        f |= ZF;
    }
    if r & sign(size) != 0 {
        f |= SF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    f
}

impl Lazy {
    #[inline(always)]
    pub fn new(op: LazyOp, size: u8, a: u64, b: u64, res: u64, cin: bool) -> Self {
        Self { op, size: size as u64, a, b, res, cin: cin as u64 }
    }

    /// The operand size in bytes.
    #[inline(always)]
    pub fn size(&self) -> u8 {
        self.size as u8
    }

    /// CF alone, without building the other flags; `old` supplies it for `None`.
    #[inline]
    pub fn carry(&self, old: u64) -> bool {
        let m = mask(self.size());
        let (a, b, r) = (self.a & m, self.b & m, self.res & m);
        match self.op {
            LazyOp::None => old & CF != 0,
            LazyOp::Add => r < a,
            LazyOp::Adc => r < a || (self.cin != 0 && r == a),
            LazyOp::Sub => a < b,
            LazyOp::Sbb => a < b || (self.cin != 0 && a == b),
            LazyOp::Logic => false,
            LazyOp::Inc | LazyOp::Dec => self.cin != 0,
            LazyOp::Szp => self.b & CF != 0,
        }
    }

    /// The status flags this operation produced; `old` supplies them for `None`.
    pub fn status(&self, old: u64) -> u64 {
        let m = mask(self.size());
        let s = sign(self.size());
        let (a, b, r) = (self.a & m, self.b & m, self.res & m);
        let mut f = szp(r, self.size());
        match self.op {
            LazyOp::None => return old & STATUS,
            LazyOp::Add | LazyOp::Adc | LazyOp::Inc => {
                let carry = match self.op {
                    LazyOp::Add => r < a,
                    LazyOp::Adc => r < a || (self.cin != 0 && r == a),
                    _ => self.cin != 0,
                };
                if carry {
                    f |= CF;
                }
                if (a ^ r) & (b ^ r) & s != 0 {
                    f |= OF;
                }
                f |= (a ^ b ^ r) & AF;
            }
            LazyOp::Sub | LazyOp::Sbb | LazyOp::Dec => {
                let borrow = match self.op {
                    LazyOp::Sub => a < b,
                    LazyOp::Sbb => a < b || (self.cin != 0 && a == b),
                    _ => self.cin != 0,
                };
                if borrow {
                    f |= CF;
                }
                if (a ^ b) & (a ^ r) & s != 0 {
                    f |= OF;
                }
                f |= (a ^ b ^ r) & AF;
            }
            LazyOp::Logic => {}
            LazyOp::Szp => f |= self.b & (CF | OF | AF),
        }
        f
    }
}
