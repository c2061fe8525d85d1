//! kvm (placeholder).
