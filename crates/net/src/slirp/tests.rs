//! The slirp backend with real sockets and hand-built guest frames (no guest needed).
