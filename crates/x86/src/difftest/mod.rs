//! Instruction-level differential testing against the host CPU: one generated instruction at
//! a time runs natively (x86-64 hosts) and in the interpreter (through the decoded-block path
//! and the single-step path) from the same state, and everything it leaves behind is compared:
//! registers, flags, memory, the FXSAVE image and the fault it raised.
//!
//! A third of the cases run a register-only flag-setting instruction first, so that the
//! instruction starts from lazily computed flags.
//!
//! Running: `cargo test -p x86 --lib difftest -- --nocapture` prints a summary per mnemonic;
//! `CHR_VMM_DIFF_CASES=N` sets the cases per instruction form (100 by default, 24 for x87),
//! `CHR_VMM_DIFF_REPORT=dir` writes each
//! group's summary and every difference found (two examples per form) to `dir/<group>.txt`.
//! `CHR_VMM_DIFF_RECORD=dir` and `CHR_VMM_DIFF_REPLAY=dir` measure another CPU (QEMU TCG,
//! through `qemu-x86_64`) against the host's recorded outcomes (see `record`);
//! `benches/conformance.sh` uses them.
//!
//! The layout is shared by both runners: a 1 MiB window at `WINDOW` that holds the code page,
//! and five data pages, the third of which is inaccessible and the fifth read-only, so that
//! memory operands cross page boundaries and fault on either side of them, not present or
//! write-protected. A second window below 4 GiB aliases the same data pages for 32-bit
//! addressing (a 67 prefix).

// Elsewhere the interpreter is compared with outcomes an x86-64 host recorded (`record`).
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

pub(crate) mod compare;
pub(crate) mod gen;
pub(crate) mod interp;
#[cfg(target_arch = "x86_64")]
pub(crate) mod native;
mod record;
#[cfg(test)]
mod regress;
mod tests;

/// Where the layout lives, in the test process and in the guest's linear address space.
pub(crate) const WINDOW: u64 = 0x5a_0000_0000;
/// The size of the window: everything in it that is not mapped faults.
pub(crate) const WINDOW_SIZE: u64 = 1 << 20;
/// The page holding the instruction.
pub(crate) const CODE: u64 = WINDOW;
/// The instruction's address.
pub(crate) const INSN: u64 = CODE + 0x200;
/// Where the generator aims branches: taken branches land here (fall-through lands after the
/// instruction), within reach of a rel8 displacement.
pub(crate) const LANDING: u64 = INSN + 0x40;
/// A second window below 4 GiB for 32-bit addressing (67 prefix): its data pages are the
/// same memory as the first window's (an alias), so one image describes both.
pub(crate) const LOW_WINDOW: u64 = 0x5a00_0000;
pub(crate) const LOW_DATA: u64 = LOW_WINDOW + (DATA - WINDOW);
/// The first data page.
pub(crate) const DATA: u64 = WINDOW + 0x10000;
/// Data pages; `HOLE` of them is inaccessible (not present), `READ_ONLY` read-only.
pub(crate) const DATA_PAGES: usize = 5;
pub(crate) const HOLE: usize = 2;
pub(crate) const READ_ONLY: usize = 4;
pub(crate) const DATA_LEN: usize = DATA_PAGES * 4096;

/// Where linear address `ea` is in the data image (either window), if it is.
pub(crate) fn data_offset(ea: u64) -> Option<usize> {
    [DATA, LOW_DATA].iter().find(|&&b| (b..b + DATA_LEN as u64).contains(&ea)).map(|b| (ea - b) as usize)
}

/// The machine state before (and after) one instruction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct State {
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8-R15.
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    /// x87, MMX and SSE state as a 64-bit FXSAVE image.
    pub fx: Box<[u8; 512]>,
    /// The data pages (the inaccessible one's bytes are ignored).
    pub data: Vec<u8>,
}

/// A fault: vector, error code (0 when it has none), CR2 (page faults only).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Trap {
    pub vector: u8,
    pub error: u32,
    pub cr2: u64,
}

/// What one instruction left behind: the state after it (at the fault, if it faulted).
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub state: State,
    pub trap: Option<Trap>,
}

/// Xorshift: reproducible cases from a seed.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// An operand value with the edge cases weighted in.
    pub fn operand(&mut self) -> u64 {
        let r = self.next();
        match r % 8 {
            0 => [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 0x80, 0x7f, 0xffff, 0x8000_0000, 0xffff_ffff]
                [(r >> 8) as usize % 10],
            1 => r >> 56,
            2 => r >> 48,
            3 => r >> 32,
            4 => (r >> 60).wrapping_sub(8),
            _ => self.next(),
        }
    }
}

/// Per-case budget: `CHR_VMM_DIFF_CASES` cases per instruction form (default `default`).
pub(crate) fn cases_per_form(default: usize) -> usize {
    std::env::var("CHR_VMM_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
