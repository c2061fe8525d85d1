//! x86 (placeholder until its issue lands).
