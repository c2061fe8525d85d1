//! What CPUID tells the guest: exactly what the interpreter implements, and nothing that would
//! make the guest kernel turn on mitigations an interpreter does not need.
//!
//! The vendor is Intel so that leaf 0x15 can state the TSC frequency (1 GHz: host nanoseconds)
//! and Linux need not calibrate it against the PIT, which fails when the host is busy. Leaf 7
//! announces IA32_ARCH_CAPABILITIES, whose "not affected" bits (`msr::ARCH_CAPABILITIES`) keep
//! Linux from page-table isolation (Meltdown), retpolines (enhanced IBRS instead: one MSR write
//! at boot) and the branch-history clearing loop on every system call.

use crate::cpu::Cpu;

/// "GenuineIntel" as EBX, EDX, ECX.
const VENDOR: [u32; 3] = [0x756e_6547, 0x4965_6e69, 0x6c65_746e];

/// Family 15, model 6, stepping 1 (a late NetBurst, as QEMU's qemu64 is a K8).
const SIGNATURE: u32 = 0x0000_0f61;

/// Leaf 1 EDX.
const LEAF1_EDX: u32 = 1 // FPU
    | 1 << 3 // PSE
    | 1 << 4 // TSC
    | 1 << 5 // MSR
    | 1 << 6 // PAE
    | 1 << 8 // CX8
    | 1 << 9 // APIC
    | 1 << 11 // SEP: SYSENTER/SYSEXIT (the 32-bit vDSO's system call on Intel)
    | 1 << 12 // MTRR
    | 1 << 13 // PGE
    | 1 << 15 // CMOV
    | 1 << 16 // PAT
    | 1 << 17 // PSE36
    | 1 << 19 // CLFSH
    | 1 << 23 // MMX
    | 1 << 24 // FXSR
    | 1 << 25 // SSE
    | 1 << 26; // SSE2

/// Leaf 1 ECX.
const LEAF1_ECX: u32 = 1 // SSE3
    | 1 << 9 // SSSE3
    | 1 << 13 // CX16
    | 1 << 19 // SSE4.1
    | 1 << 20 // SSE4.2
    | 1 << 23 // POPCNT
    | 1 << 30; // RDRAND

/// Leaf 7 EBX: bit 1, IA32_TSC_ADJUST. With an invariant TSC (leaf 0x80000007) it lets Linux
/// trust the TSC without its clocksource watchdog, whose comparison against a slower clock
/// read through emulated I/O calls the TSC unstable.
const LEAF7_EBX: u32 = 1 << 1;

/// Leaf 7 EDX: bit 29, IA32_ARCH_CAPABILITIES is readable.
const LEAF7_EDX: u32 = 1 << 29;

/// Leaf 7 subleaf 2 EDX: bit 4, BHI_CTRL (IA32_SPEC_CTRL.BHI_DIS_S), so that Linux, which
/// treats every CPU with enhanced IBRS as exposed to branch history injection, sets one MSR
/// bit instead of running a branch-history clearing loop on every system call.
const LEAF7_2_EDX: u32 = 1 << 4;

/// Leaf 0x80000007 EDX: bit 8, the TSC runs at a constant rate in every state.
const INVARIANT_TSC: u32 = 1 << 8;

/// The highest basic leaf.
const MAX_LEAF: u32 = 0x15;

/// The processor brand string (leaves 0x80000002-4), NUL-padded to 48 bytes.
const BRAND: &[u8; 48] = b"chr-vmm x86-64 interpreter\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

impl Cpu {
    /// CPUID leaf `leaf`, subleaf `sub`: [EAX, EBX, ECX, EDX].
    pub fn cpuid(&self, leaf: u32, sub: u32) -> [u32; 4] {
        let brand = |i: usize| {
            let b = &BRAND[i * 4..i * 4 + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        match leaf {
            0 => [MAX_LEAF, VENDOR[0], VENDOR[2], VENDOR[1]],
            1 => [SIGNATURE, (self.id << 24) | (1 << 16) | (8 << 8), LEAF1_ECX, LEAF1_EDX],
            2 => [1, 0, 0, 0],
            7 => match sub {
                0 => [2, LEAF7_EBX, 0, LEAF7_EDX],
                2 => [0, 0, 0, LEAF7_2_EDX],
                _ => [0; 4],
            },
            // TSC = crystal * EBX / EAX: a 1 GHz crystal, ratio 1.
            0x15 => [1, 1, 1_000_000_000, 0],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => {
                let edx = 1 << 11 | 1 << 20 | 1 << 29; // SYSCALL (64-bit mode), NX, LM
                [0, 0, 1, edx] // ECX bit 0: LAHF/SAHF in 64-bit mode
            }
            0x8000_0002..=0x8000_0004 => {
                let b = (leaf - 0x8000_0002) as usize * 4;
                [brand(b), brand(b + 1), brand(b + 2), brand(b + 3)]
            }
            0x8000_0007 => [0, 0, 0, INVARIANT_TSC],
            0x8000_0008 => [0x3028, 0, 0, 0],
            _ => [0; 4],
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::tests::real_mode_vcpu;

    #[test]
    fn the_speculation_bits_say_not_affected_and_the_msrs_behind_them_exist() {
        let mut v = real_mode_vcpu(&[]);
        let c = v.cpu();
        assert_ne!(c.cpuid(7, 0)[3] & 1 << 29, 0, "ARCH_CAPABILITIES enumerated");
        let caps = c.rdmsr(0x10a).unwrap();
        assert_eq!(caps & 1, 1, "RDCL_NO: no page-table isolation");
        assert_ne!(caps & 2, 0, "IBRS_ALL: no retpolines");
        assert_ne!(c.cpuid(7, 2)[3] & 1 << 4, 0, "BHI_CTRL");
        c.wrmsr(0x48, 1 | 1 << 10).unwrap();
        assert_eq!(c.rdmsr(0x48).unwrap(), 1 | 1 << 10);
        assert!(c.wrmsr(0x48, 1 << 40).is_err(), "reserved SPEC_CTRL bits #GP");
        c.wrmsr(0x49, 1).unwrap();
    }

    #[test]
    fn tsc_adjust_moves_the_tsc_and_a_tsc_write_moves_tsc_adjust() {
        let mut v = real_mode_vcpu(&[]);
        let c = v.cpu();
        let t0 = c.tsc();
        c.wrmsr(0x3b, 1 << 40).unwrap();
        assert!(c.tsc() >= t0 + (1 << 40));
        c.wrmsr(0x10, 5).unwrap();
        assert!(c.tsc() < 1 << 30, "the TSC was written");
        let adjust = c.rdmsr(0x3b).unwrap();
        assert!((adjust as i64) < 0, "TSC_ADJUST moved down with the TSC write: {adjust:#x}");
    }

    #[test]
    fn the_brand_string_and_vendor_read_back() {
        let mut v = real_mode_vcpu(&[]);
        let c = v.cpu();
        let v0 = c.cpuid(0, 0);
        let vendor: Vec<u8> = [v0[1], v0[3], v0[2]].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&vendor, b"GenuineIntel");
        let brand: Vec<u8> =
            (0x8000_0002..=0x8000_0004).flat_map(|l| c.cpuid(l, 0)).flat_map(|w| w.to_le_bytes()).collect();
        assert!(brand.starts_with(b"chr-vmm x86-64 interpreter\0"));
    }
}

/// The instruction sets (as iced-x86 names them) that CPUID announces, and for each the
/// CPUID leaf, register index (EAX=0 .. EDX=3) and bit that announce it.
#[cfg(test)]
pub(crate) const ANNOUNCED: &[(iced_x86::CpuidFeature, u32, usize, u32)] = {
    use iced_x86::CpuidFeature as F;
    &[
        (F::FPU, 1, 3, 0),
        (F::FPU287, 1, 3, 0),
        (F::FPU387, 1, 3, 0),
        (F::CX8, 1, 3, 8),
        (F::SEP, 1, 3, 11),
        (F::CMOV, 1, 3, 15),
        (F::CLFSH, 1, 3, 19),
        (F::MMX, 1, 3, 23),
        (F::FXSR, 1, 3, 24),
        (F::SSE, 1, 3, 25),
        (F::SSE2, 1, 3, 26),
        (F::SSE3, 1, 2, 0),
        (F::SSSE3, 1, 2, 9),
        (F::CMPXCHG16B, 1, 2, 13),
        (F::SSE4_1, 1, 2, 19),
        (F::SSE4_2, 1, 2, 20),
        (F::POPCNT, 1, 2, 23),
        (F::RDRAND, 1, 2, 30),
        (F::SYSCALL, 0x8000_0001, 3, 11),
        (F::X64, 0x8000_0001, 3, 29),
    ]
};

#[cfg(test)]
mod truth {
    use super::ANNOUNCED;
    use crate::difftest::gen::Group;
    use crate::tests::real_mode_vcpu;
    use iced_x86::CpuidFeature as F;

    /// Instruction sets announced by CPUID whose instructions the host comparison cannot run
    /// (they change privilege or read host-private state); each has unit tests of its own.
    const TESTED_ELSEWHERE: &[(F, &str)] = &[
        (F::SEP, "fast_syscall::tests"),
        (F::SYSCALL, "fast_syscall::tests"),
        (F::RDRAND, "system: host randomness"),
    ];

    #[test]
    fn every_announced_instruction_set_is_compared_with_the_host_cpu() {
        let mut v = real_mode_vcpu(&[]);
        let c = v.cpu();
        let groups = [Group::Integer, Group::X87, Group::Mmx, Group::Sse];
        for &(feature, leaf, reg, bit) in ANNOUNCED {
            assert_ne!(c.cpuid(leaf, 0)[reg] & 1 << bit, 0, "{feature:?} is listed but not announced");
            let compared = groups.iter().any(|g| g.features().contains(&feature));
            let elsewhere = TESTED_ELSEWHERE.iter().any(|(f, _)| *f == feature);
            assert!(compared || elsewhere, "{feature:?} is announced but no differential group runs it");
        }
        // Nothing else is announced in leaf 1 ECX/EDX beyond the listed sets and the system
        // features (PSE, TSC, MSR, PAE, APIC, MTRR, PGE, PAT, PSE36; CX16's neighbours).
        let system_edx: u32 =
            1 << 3 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 9 | 1 << 12 | 1 << 13 | 1 << 16 | 1 << 17;
        let listed = |leaf: u32, reg: usize| {
            ANNOUNCED.iter().filter(|a| a.1 == leaf && a.2 == reg).fold(0u32, |m, a| m | 1 << a.3)
        };
        assert_eq!(c.cpuid(1, 0)[3] & !(listed(1, 3) | system_edx), 0, "leaf 1 EDX");
        assert_eq!(c.cpuid(1, 0)[2] & !listed(1, 2), 0, "leaf 1 ECX");
    }
}
