//! The order in which the x87 checks its multi-byte memory operands, as the host shows it in
//! the differential tests: which fault comes first, and which byte a page fault names.

use crate::cpu::*;

impl Cpu {
    /// `len` bytes at `lin` checked like one ordinary access: both ends for canonicity, then
    /// the first page, then the second page by its first byte.
    fn x87_span(&mut self, lin: u64, len: usize, write: bool) -> R<()> {
        let last = lin.wrapping_add(len as u64 - 1);
        if self.long_mode() && !(canonical(lin) && canonical(last)) {
            return Err(gp(0));
        }
        self.tlb_lookup(lin, access(write))?;
        if (last ^ lin) >> 12 != 0 {
            self.tlb_lookup(last & !0xfff, access(write))?;
        }
        Ok(())
    }

    /// One byte checked alone: a page fault names it.
    fn x87_byte(&mut self, lin: u64, write: bool) -> R<()> {
        if self.long_mode() && !canonical(lin) {
            return Err(gp(0));
        }
        self.tlb_lookup(lin, access(write)).map(|_| ())
    }

    /// FSTP m80 and FBSTP: the first eight bytes, then the last two.
    pub(super) fn x87_probe_ten(&mut self, seg: usize, off: u64) -> R<()> {
        let lin = self.lin(seg, off);
        let r = self.x87_span(lin, 8, true).and_then(|_| self.x87_span(lin.wrapping_add(8), 2, true));
        through(seg, r)
    }

    /// Environment and state images: the first field (`field` bytes), then the image's last
    /// byte.
    pub(super) fn x87_probe_image(
        &mut self,
        seg: usize,
        off: u64,
        len: usize,
        field: usize,
        write: bool,
    ) -> R<()> {
        let lin = self.lin(seg, off);
        let last = lin.wrapping_add(len as u64 - 1);
        let r = self.x87_span(lin, field, write).and_then(|_| self.x87_byte(last, write));
        through(seg, r)
    }

    /// FXSAVE and FXRSTOR: the image's first byte for canonicity, its alignment, its last
    /// byte for canonicity, then the last byte's page and the first's.
    pub(super) fn x87_probe_fx(&mut self, seg: usize, off: u64, write: bool) -> R<()> {
        let lin = self.lin(seg, off);
        let last = lin.wrapping_add(511);
        if self.long_mode() && !canonical(lin) {
            return through(seg, Err(gp(0)));
        }
        if lin & 15 != 0 {
            return Err(gp(0));
        }
        if self.long_mode() && !canonical(last) {
            return through(seg, Err(gp(0)));
        }
        self.tlb_lookup(last, access(write))?;
        self.tlb_lookup(lin, access(write)).map(|_| ())
    }
}

fn access(write: bool) -> Access {
    if write {
        Access::Write
    } else {
        Access::Read
    }
}

/// A non-canonical access through SS raises #SS(0) instead of #GP(0).
fn through(seg: usize, r: R<()>) -> R<()> {
    r.map_err(|f| if seg == SS { on_stack(f) } else { f })
}
