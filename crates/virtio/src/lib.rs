//! virtio (placeholder until its issue lands).
