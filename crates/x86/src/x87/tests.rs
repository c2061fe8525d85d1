//! Known-value tests of the x87.
