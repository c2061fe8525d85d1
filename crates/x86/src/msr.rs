//! Model-specific registers: RDMSR and WRMSR.

use crate::cpu::*;

/// IA32_ARCH_CAPABILITIES: the CPU is not affected by Rogue Data Cache Load (RDCL_NO),
/// has enhanced IBRS (IBRS_ALL), no speculative store bypass (SSB_NO), no MDS (MDS_NO), no
/// machine check on page-size change (PSCHANGE_MC_NO), no TSX async abort (TAA_NO), no MMIO
/// stale data (SBDR_SSDP_NO, FBSDP_NO, PSDP_NO), no branch history injection (BHI_NO), no
/// post-barrier RSB predictions (PBRSB_NO), no gather data sampling (GDS_NO), no register file
/// data sampling (RFDS_NO). All true of an interpreter, which speculates nothing.
pub const ARCH_CAPABILITIES: u64 = 1 // RDCL_NO
    | 1 << 1 // IBRS_ALL
    | 1 << 4 // SSB_NO
    | 1 << 5 // MDS_NO
    | 1 << 6 // PSCHANGE_MC_NO
    | 1 << 8 // TAA_NO
    | 1 << 13 // SBDR_SSDP_NO
    | 1 << 14 // FBSDP_NO
    | 1 << 15 // PSDP_NO
    | 1 << 20 // BHI_NO
    | 1 << 24 // PBRSB_NO
    | 1 << 26 // GDS_NO
    | 1 << 27; // RFDS_NO

/// The bits of IA32_SPEC_CTRL that exist (IBRS, STIBP, SSBD, BHI_DIS_S): kept, and ignored.
const SPEC_CTRL_BITS: u64 = 7 | 1 << 10;

impl Cpu {
    pub fn rdmsr(&mut self, msr: u32) -> R<u64> {
        Ok(match msr {
            0x10 => self.tsc(),
            0x1b => self.apic_base,
            0x3b => self.tsc_adjust,
            0x48 => self.spec_ctrl,
            0x8b => 0,
            0xfe => 0x508,
            0x10a => ARCH_CAPABILITIES,
            0x174 => self.sysenter_cs,
            0x175 => self.sysenter_esp,
            0x176 => self.sysenter_eip,
            0x179 | 0x17a => 0,
            0x1a0 => self.misc_enable,
            0x277 => self.pat,
            0x200..=0x20f | 0x250 | 0x258 | 0x259 | 0x268..=0x26f | 0x2ff => {
                self.mtrr.get(&msr).copied().unwrap_or(0)
            }
            0xc000_0080 => self.efer,
            0xc000_0081 => self.star,
            0xc000_0082 => self.lstar,
            0xc000_0083 => self.cstar,
            0xc000_0084 => self.fmask,
            0xc000_0100 => self.segs[FS].base,
            0xc000_0101 => self.segs[GS].base,
            0xc000_0102 => self.kernel_gs_base,
            0xc000_0103 => self.tsc_aux,
            _ => {
                log::debug!("x86: rdmsr {msr:#x} -> #GP");
                return Err(gp(0));
            }
        })
    }

    pub fn wrmsr(&mut self, msr: u32, v: u64) -> R<()> {
        let canonical = |v: u64| ((v as i64) << 16 >> 16) as u64 == v;
        match msr {
            // Writing the TSC moves IA32_TSC_ADJUST by the same amount, and the other way round.
            0x10 => {
                let delta = v.wrapping_sub(self.tsc());
                self.tsc_offset = self.tsc_offset.wrapping_add(delta as i64);
                self.tsc_adjust = self.tsc_adjust.wrapping_add(delta);
            }
            0x3b => {
                self.tsc_offset = self.tsc_offset.wrapping_add(v.wrapping_sub(self.tsc_adjust) as i64);
                self.tsc_adjust = v;
            }
            0x1b => {
                self.apic_base = (v & 0xffff_f900) | (self.apic_base & 0x100);
                self.flush_tlb(true);
            }
            0x48 if v & !SPEC_CTRL_BITS == 0 => self.spec_ctrl = v,
            // IA32_PRED_CMD: IBPB (bit 0) is a no-op without branch prediction.
            0x49 if v & !1 == 0 => {}
            0x8b | 0x179 | 0x17a => {}
            0x174 => self.sysenter_cs = v & 0xffff,
            0x175 | 0x176 | 0xc000_0082 | 0xc000_0083 | 0xc000_0100..=0xc000_0102 if !canonical(v) => {
                return Err(gp(0))
            }
            0x175 => self.sysenter_esp = v,
            0x176 => self.sysenter_eip = v,
            0x1a0 => self.misc_enable = v,
            0x277 => self.pat = v,
            0x200..=0x20f | 0x250 | 0x258 | 0x259 | 0x268..=0x26f | 0x2ff => {
                self.mtrr.insert(msr, v);
            }
            0xc000_0080 => {
                let allowed = EFER_SCE | EFER_LME | EFER_NXE;
                if v & !(allowed | EFER_LMA) != 0 {
                    return Err(gp(0));
                }
                self.efer = (v & allowed) | (self.efer & EFER_LMA);
                self.flush_tlb(true);
            }
            0xc000_0081 => self.star = v,
            0xc000_0082 => self.lstar = v,
            0xc000_0083 => self.cstar = v,
            0xc000_0084 => self.fmask = v & 0xffff_ffff,
            0xc000_0100 => self.segs[FS].base = v,
            0xc000_0101 => self.segs[GS].base = v,
            0xc000_0102 => self.kernel_gs_base = v,
            0xc000_0103 => self.tsc_aux = v & 0xffff_ffff,
            _ => {
                log::debug!("x86: wrmsr {msr:#x} <- {v:#x} -> #GP");
                return Err(gp(0));
            }
        }
        Ok(())
    }
}
