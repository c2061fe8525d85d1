//! irqchip (placeholder until its issue lands).
