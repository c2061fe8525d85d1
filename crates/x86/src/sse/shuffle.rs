//! Shuffles, byte shifts across a register, blends, inserts and extracts, sign/zero
//! extension (PMOVSX/ZX), PHMINPOSUW and MPSADBW.

use super::lanes::*;
use crate::cpu::*;
use iced_x86::{Instruction, Mnemonic as M};

/// Sign- or zero-extends the low elements of `s` from `from` to `to` bytes.
fn extend(s: u128, from: u32, to: u32, signed: bool) -> u128 {
    let n = 16 / to as usize;
    let mut r = 0u128;
    for i in 0..n {
        let x = lane(s, from * 8, i);
        let x = if signed {
            let sh = 64 - from * 8;
            (((x << sh) as i64) >> sh) as u64
        } else {
            x
        };
        r = with_lane(r, to * 8, i, x);
    }
    r
}

impl Cpu {
    pub(super) fn simd_shuffle(&mut self, ins: &Instruction) -> R<bool> {
        let m = ins.mnemonic();
        let imm = ins.immediate8();
        match m {
            M::Pshufd
            | M::Pshufw
            | M::Pshuflw
            | M::Pshufhw
            | M::Shufps
            | M::Shufpd
            | M::Pshufb
            | M::Palignr
            | M::Blendps
            | M::Blendpd
            | M::Pblendw
            | M::Pblendvb
            | M::Blendvps
            | M::Blendvpd
            | M::Phminposuw
            | M::Mpsadbw
            | M::Insertps
            | M::Pmovsxbw
            | M::Pmovsxbd
            | M::Pmovsxbq
            | M::Pmovsxwd
            | M::Pmovsxwq
            | M::Pmovsxdq
            | M::Pmovzxbw
            | M::Pmovzxbd
            | M::Pmovzxbq
            | M::Pmovzxwd
            | M::Pmovzxwq
            | M::Pmovzxdq => {
                let d = self.vop(ins, 0);
                let mut b = self.vread(ins, 1)?;
                if m == M::Insertps && ins.op1_kind() == iced_x86::OpKind::Register {
                    // A register source gives lane imm[7:6]; a memory source is its 32 bits.
                    b = lanes32(b)[(imm >> 6) as usize] as u128;
                }
                let a = self.vget(d);
                let x0 = self.fpu.xmm[0];
                let r = shuffle(m, a, b, imm, d.width(), x0);
                self.vset(d, r);
            }
            M::Pextrb | M::Pextrw | M::Pextrd | M::Pextrq | M::Extractps => {
                let s = self.vop(ins, 1);
                let v = self.vget(s);
                let r = match m {
                    M::Pextrb => lane(v, 8, (imm & 15) as usize),
                    M::Pextrw => lane(v, 16, (imm as usize) & (s.width() / 2 - 1)),
                    M::Pextrd | M::Extractps => lane(v, 32, (imm & 3) as usize),
                    _ => lane(v, 64, (imm & 1) as usize),
                };
                self.wr(ins, 0, r)?;
            }
            M::Pinsrb | M::Pinsrw | M::Pinsrd | M::Pinsrq => {
                let d = self.vop(ins, 0);
                let v = self.rd(ins, 1)?;
                let a = self.vget(d);
                let r = match m {
                    M::Pinsrb => with_lane(a, 8, (imm & 15) as usize, v),
                    M::Pinsrw => with_lane(a, 16, (imm as usize) & (d.width() / 2 - 1), v),
                    M::Pinsrd => with_lane(a, 32, (imm & 3) as usize, v),
                    _ => with_lane(a, 64, (imm & 1) as usize, v),
                };
                self.vset(d, r);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The shuffle family: `a` the destination, `b` the source, `w` the register width.
#[inline(always)]
pub(crate) fn shuffle(m: M, a: u128, b: u128, imm: u8, w: usize, x0: u128) -> u128 {
    let sel = |i: usize| ((imm >> (2 * i)) & 3) as usize;
    match m {
        M::Pshufd => {
            let s = lanes32(b);
            from32(std::array::from_fn(|i| s[sel(i)]))
        }
        M::Pshufw => {
            let s = lanes16(b);
            from16(std::array::from_fn(|i| if i < 4 { s[sel(i)] } else { 0 }))
        }
        M::Pshuflw | M::Pshufhw => {
            let s = lanes16(b);
            let off = if m == M::Pshuflw { 0 } else { 4 };
            let mut r = s;
            for i in 0..4 {
                r[off + i] = s[off + sel(i)];
            }
            from16(r)
        }
        M::Shufps => {
            let (x, y) = (lanes32(a), lanes32(b));
            from32(std::array::from_fn(|i| if i < 2 { x[sel(i)] } else { y[sel(i)] }))
        }
        M::Shufpd => {
            let (x, y) = (lanes64(a), lanes64(b));
            from64([x[(imm & 1) as usize], y[((imm >> 1) & 1) as usize]])
        }
        M::Pshufb => {
            let (x, y) = (lanes8(a), lanes8(b));
            from8(std::array::from_fn(|i| if y[i] & 0x80 != 0 { 0 } else { x[(y[i] as usize) & (w - 1)] }))
        }
        M::Palignr => {
            // dest:src as one 2w-byte value, shifted right by imm bytes.
            let mut cat = [0u8; 32];
            cat[..w].copy_from_slice(&b.to_le_bytes()[..w]);
            cat[w..2 * w].copy_from_slice(&a.to_le_bytes()[..w]);
            from8(std::array::from_fn(|i| {
                if i < w {
                    cat.get(i + imm as usize).copied().unwrap_or(0)
                } else {
                    0
                }
            }))
        }
        M::Blendps => {
            let (x, y) = (lanes32(a), lanes32(b));
            from32(std::array::from_fn(|i| if imm >> i & 1 != 0 { y[i] } else { x[i] }))
        }
        M::Blendpd => {
            let (x, y) = (lanes64(a), lanes64(b));
            from64(std::array::from_fn(|i| if imm >> i & 1 != 0 { y[i] } else { x[i] }))
        }
        M::Pblendw => {
            let (x, y) = (lanes16(a), lanes16(b));
            from16(std::array::from_fn(|i| if imm >> i & 1 != 0 { y[i] } else { x[i] }))
        }
        M::Pblendvb => {
            let (x, y, k) = (lanes8(a), lanes8(b), lanes8(x0));
            from8(std::array::from_fn(|i| if k[i] & 0x80 != 0 { y[i] } else { x[i] }))
        }
        M::Blendvps => {
            let (x, y, k) = (lanes32(a), lanes32(b), lanes32(x0));
            from32(std::array::from_fn(|i| if k[i] >> 31 != 0 { y[i] } else { x[i] }))
        }
        M::Blendvpd => {
            let (x, y, k) = (lanes64(a), lanes64(b), lanes64(x0));
            from64(std::array::from_fn(|i| if k[i] >> 63 != 0 { y[i] } else { x[i] }))
        }
        M::Phminposuw => {
            let s = lanes16(b);
            let mut best = 0;
            for i in 1..8 {
                if s[i] < s[best] {
                    best = i;
                }
            }
            s[best] as u128 | ((best as u128) << 16)
        }
        M::Mpsadbw => {
            let (x, y) = (lanes8(a), lanes8(b));
            let ao = ((imm >> 2) & 1) as usize * 4;
            let bo = (imm & 3) as usize * 4;
            from16(std::array::from_fn(|i| (0..4).map(|k| x[ao + i + k].abs_diff(y[bo + k]) as u16).sum()))
        }
        M::Insertps => {
            // The caller has picked the source element.
            let v = b as u32;
            let mut r = lanes32(a);
            r[((imm >> 4) & 3) as usize] = v;
            for (i, l) in r.iter_mut().enumerate() {
                if imm >> i & 1 != 0 {
                    *l = 0;
                }
            }
            from32(r)
        }
        M::Pmovsxbw => extend(b, 1, 2, true),
        M::Pmovsxbd => extend(b, 1, 4, true),
        M::Pmovsxbq => extend(b, 1, 8, true),
        M::Pmovsxwd => extend(b, 2, 4, true),
        M::Pmovsxwq => extend(b, 2, 8, true),
        M::Pmovsxdq => extend(b, 4, 8, true),
        M::Pmovzxbw => extend(b, 1, 2, false),
        M::Pmovzxbd => extend(b, 1, 4, false),
        M::Pmovzxbq => extend(b, 1, 8, false),
        M::Pmovzxwd => extend(b, 2, 4, false),
        M::Pmovzxwq => extend(b, 2, 8, false),
        _ => extend(b, 4, 8, false),
    }
}
