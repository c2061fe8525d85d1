//! Differential test against the host x87.
