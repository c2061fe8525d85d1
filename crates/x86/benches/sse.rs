//! Guest instructions per second on loops of SSE code run by the interpreter: the integer
//! string-function kind (loads, byte compares, mask extraction, logic, bit scans) and the
//! float kind (packed and scalar arithmetic, moves). Run: `cargo bench -p x86 --bench sse`.
//! The machine may be shared: compare figures from one run, and take the best of a few.

#![allow(clippy::unwrap_used)]

use machine::memory::GuestMemory;
use machine::vcpu::IoHandler;
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::{InterpVcpu, Segment};

struct NoIo;

impl IoHandler for NoIo {
    fn pio_read(&self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&self, _port: u16, _data: &[u8]) {}
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) {}
}

const CODE: u64 = 0x1000;
const DATA: u64 = 0x10000;

/// A vCPU in 64-bit mode (no paging) with SSE enabled, `code` at CODE and RBX = RSI = DATA.
fn vcpu(mem: &GuestMemory, code: &[u8]) -> InterpVcpu {
    mem.write_slice(code, GuestAddress(CODE)).unwrap();
    let mut v = InterpVcpu::new(mem, u64::MAX, 0, None);
    let c = v.cpu();
    c.segs[1] = Segment::real(0, 0xa09b);
    c.efer = (1 << 8) | (1 << 10);
    c.cr0 |= 1;
    c.cr4 |= (1 << 9) | (1 << 10);
    c.rip = CODE;
    c.regs[3] = DATA;
    c.regs[6] = DATA;
    v
}

/// Runs `code` (which ends in HLT) for up to `limit` instructions, best of `reps`:
/// (instructions, M instructions/s).
fn rate(code: &[u8], setup: impl Fn(&mut x86::Cpu), limit: u64, reps: usize) -> (u64, f64) {
    let mut best = (0, 0.0f64);
    for _ in 0..reps {
        let mem: GuestMemory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let mut v = vcpu(&mem, code);
        setup(v.cpu());
        let t = Instant::now();
        v.run_for(&NoIo, limit).unwrap();
        let s = t.elapsed().as_secs_f64();
        assert!(v.cpu().halted || v.instructions >= limit, "the loop ran to its HLT or the limit");
        let r = v.instructions as f64 / s / 1e6;
        if r > best.1 {
            best = (v.instructions, r);
        }
    }
    best
}

/// strlen/memchr-like: a 16-byte step over a buffer of non-zero bytes, movdqu/movdqa
/// loads, pcmpeqb against zero, pminub, por, pmovmskb and tzcnt on the mask.
const STRING: &[u8] = &[
    0xb9, 0x40, 0x42, 0x0f, 0x00, // mov ecx, 1000000
    0x66, 0x0f, 0xef, 0xc0, // pxor xmm0, xmm0
    // l:
    0xf3, 0x0f, 0x6f, 0x0e, // movdqu xmm1, [rsi]
    0x66, 0x0f, 0x6f, 0x56, 0x10, // movdqa xmm2, [rsi+16]
    0x66, 0x0f, 0x6f, 0xd9, // movdqa xmm3, xmm1
    0x66, 0x0f, 0xda, 0xda, // pminub xmm3, xmm2
    0x66, 0x0f, 0x74, 0xd8, // pcmpeqb xmm3, xmm0
    0x66, 0x0f, 0xeb, 0xe3, // por xmm4, xmm3
    0x66, 0x0f, 0xd7, 0xc3, // pmovmskb eax, xmm3
    0xf3, 0x0f, 0xbc, 0xd0, // tzcnt edx, eax
    0x66, 0x0f, 0x7f, 0x4e, 0x20, // movdqa [rsi+32], xmm1
    0xff, 0xc9, // dec ecx
    0x75, 0xd6, // jnz l
    0xf4, // hlt
];

/// The loop of `sse::tests::sse_integer_rate_on_a_loop`.
const INTEGER: &[u8] = &[
    0xb9, 0x40, 0x42, 0x0f, 0x00, // mov ecx, 1000000
    0xf3, 0x0f, 0x6f, 0x0b, // l: movdqu xmm1, [rbx]
    0x66, 0x0f, 0x74, 0xca, // pcmpeqb xmm1, xmm2
    0x66, 0x0f, 0xd7, 0xc1, // pmovmskb eax, xmm1
    0x66, 0x0f, 0xeb, 0xd9, // por xmm3, xmm1
    0x66, 0x0f, 0xef, 0xe4, // pxor xmm4, xmm4
    0xff, 0xc9, // dec ecx
    0x75, 0xe8, // jnz l
    0xf4, // hlt
];

/// The loop of `sse::tests::sse_instruction_rate_on_a_loop`.
const FLOAT: &[u8] = &[
    0xb9, 0x40, 0x42, 0x0f, 0x00, // mov ecx, 1000000
    0x0f, 0x58, 0xc1, // l: addps xmm0, xmm1
    0x0f, 0x59, 0xc2, // mulps xmm0, xmm2
    0xf2, 0x0f, 0x58, 0xde, // addsd xmm3, xmm6
    0xf2, 0x0f, 0x5e, 0xdf, // divsd xmm3, xmm7
    0x66, 0x0f, 0x74, 0xe5, // pcmpeqb xmm4, xmm5
    0x66, 0x0f, 0xd7, 0xc4, // pmovmskb eax, xmm4
    0xff, 0xc9, // dec ecx
    0x75, 0xe6, // jnz l
    0xf4, // hlt
];

/// Scalar double code as compiled C does it: load, multiply-add, store, compare.
const SCALAR: &[u8] = &[
    0xb9, 0x40, 0x42, 0x0f, 0x00, // mov ecx, 1000000
    // l:
    0xf2, 0x0f, 0x10, 0x06, // movsd xmm0, [rsi]
    0xf2, 0x0f, 0x59, 0xc1, // mulsd xmm0, xmm1
    0xf2, 0x0f, 0x58, 0x46, 0x08, // addsd xmm0, [rsi+8]
    0xf2, 0x0f, 0x11, 0x46, 0x10, // movsd [rsi+16], xmm0
    0x66, 0x0f, 0x2f, 0xc1, // comisd xmm0, xmm1
    0xf2, 0x0f, 0x5c, 0xc1, // subsd xmm0, xmm1
    0x66, 0x0f, 0x28, 0xd0, // movapd xmm2, xmm0
    0xff, 0xc9, // dec ecx
    0x75, 0xde, // jnz l
    0xf4, // hlt
];

fn float_setup(mxcsr: u32) -> impl Fn(&mut x86::Cpu) {
    move |c| {
        c.fpu.mxcsr = mxcsr;
        let one = 1.0f32.to_bits() as u128;
        c.fpu.xmm[1] = one | one << 32 | one << 64 | one << 96;
        let near = 0.99f32.to_bits() as u128;
        c.fpu.xmm[2] = near | near << 32 | near << 64 | near << 96;
        c.fpu.xmm[6] = 1.0f64.to_bits() as u128;
        c.fpu.xmm[7] = 1.0001f64.to_bits() as u128;
    }
}

/// A loop to measure: its name, code and the state it starts from.
type Run = (&'static str, &'static [u8], Box<dyn Fn(&mut x86::Cpu)>);

fn main() {
    // Only `cargo bench` passes --bench; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (limit, reps) = if quick { (200_000, 1) } else { (20_000_000, 5) };
    let string_setup = |c: &mut x86::Cpu| {
        c.fpu.mxcsr = 0x1f80;
    };
    let runs: [Run; 5] = [
        ("string (movdqu/pminub/pcmpeqb/pmovmskb)", STRING, Box::new(string_setup)),
        ("integer (sse tests' loop)", INTEGER, Box::new(string_setup)),
        ("float, mxcsr 0x1f80", FLOAT, Box::new(float_setup(0x1f80))),
        ("float, mxcsr 0x5f80 (round up)", FLOAT, Box::new(float_setup(0x5f80))),
        (
            "scalar double (movsd/mulsd/addsd/comisd)",
            SCALAR,
            Box::new(|c: &mut x86::Cpu| {
                c.fpu.mxcsr = 0x1f80;
                c.fpu.xmm[1] = 1.0000001f64.to_bits() as u128;
            }),
        ),
    ];
    for (name, code, setup) in runs.iter() {
        let (n, r) = rate(code, setup, limit, reps);
        println!("{name:<44} {n:>10} instructions: {r:>6.1} M instructions/s");
    }
}
