//! The CPUID a vCPU sees: what KVM supports, with this vCPU's APIC ID, the hypervisor bit and
//! KVM's signature leaf (RouterOS's guest agent starts only when it finds "KVMKVMKVM").

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];
const HYPERVISOR_BIT: u32 = 1 << 31;

/// Adjusts KVM's supported CPUID for vCPU `id` of `count`.
pub fn for_vcpu(mut cpuid: CpuId, id: u8, count: u8) -> CpuId {
    let mut has_signature = false;
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | u32::from(id) << 24 | u32::from(count.max(1)) << 16;
                e.ecx |= HYPERVISOR_BIT;
                // Hyper-threading flag: set when there is more than one logical CPU.
                if count > 1 {
                    e.edx |= 1 << 28;
                }
            }
            0xb | 0x1f => e.edx = u32::from(id),
            KVM_SIGNATURE_LEAF => {
                has_signature = true;
                e.ebx = KVM_SIGNATURE[0];
                e.ecx = KVM_SIGNATURE[1];
                e.edx = KVM_SIGNATURE[2];
            }
            _ => {}
        }
    }
    if !has_signature {
        let entry = kvm_cpuid_entry2 {
            function: KVM_SIGNATURE_LEAF,
            eax: KVM_SIGNATURE_LEAF + 1,
            ebx: KVM_SIGNATURE[0],
            ecx: KVM_SIGNATURE[1],
            edx: KVM_SIGNATURE[2],
            ..Default::default()
        };
        if cpuid.push(entry).is_err() {
            log::warn!("CPUID table full: the KVM signature leaf is missing");
        }
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_spells_kvmkvmkvm() {
        let mut bytes = Vec::new();
        for w in KVM_SIGNATURE {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(&bytes[..9], b"KVMKVMKVM");
        let cpuid = CpuId::from_entries(&[kvm_cpuid_entry2 { function: 1, ..Default::default() }]).unwrap();
        let out = for_vcpu(cpuid, 3, 4);
        let leaf1 = out.as_slice()[0];
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_ne!(leaf1.ecx & HYPERVISOR_BIT, 0);
        assert!(out.as_slice().iter().any(|e| e.function == KVM_SIGNATURE_LEAF && e.ebx == KVM_SIGNATURE[0]));
    }
}
