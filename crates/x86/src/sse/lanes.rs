//! Splitting 128-bit vectors into lanes and back.

#[inline]
pub(crate) fn lanes8(v: u128) -> [u8; 16] {
    v.to_le_bytes()
}
#[inline]
pub(crate) fn from8(b: [u8; 16]) -> u128 {
    u128::from_le_bytes(b)
}
#[inline]
pub(crate) fn lanes16(v: u128) -> [u16; 8] {
    std::array::from_fn(|i| (v >> (16 * i)) as u16)
}
#[inline]
pub(crate) fn from16(l: [u16; 8]) -> u128 {
    l.iter().enumerate().fold(0u128, |a, (i, x)| a | ((*x as u128) << (16 * i)))
}
#[inline]
pub(crate) fn lanes32(v: u128) -> [u32; 4] {
    std::array::from_fn(|i| (v >> (32 * i)) as u32)
}
#[inline]
pub(crate) fn from32(l: [u32; 4]) -> u128 {
    l.iter().enumerate().fold(0u128, |a, (i, x)| a | ((*x as u128) << (32 * i)))
}
#[inline]
pub(crate) fn lanes64(v: u128) -> [u64; 2] {
    [v as u64, (v >> 64) as u64]
}
#[inline]
pub(crate) fn from64(l: [u64; 2]) -> u128 {
    l[0] as u128 | ((l[1] as u128) << 64)
}
/// Lane `i` of `bits` bits.
#[inline]
pub(crate) fn lane(v: u128, bits: u32, i: usize) -> u64 {
    let m = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    (v >> (bits as usize * i)) as u64 & m
}
/// `v` with lane `i` of `bits` bits replaced by `x`.
#[inline]
pub(crate) fn with_lane(v: u128, bits: u32, i: usize, x: u64) -> u128 {
    let m: u128 = if bits == 64 { u64::MAX as u128 } else { (1u128 << bits) - 1 };
    let sh = bits as usize * i;
    (v & !(m << sh)) | (((x as u128) & m) << sh)
}
