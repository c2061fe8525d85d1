//! The virtio-net header in front of each frame, checked against the negotiated offloads.
//!
//! A header from the guest goes to the host kernel (through the tap) only after
//! [`VnetHeader::check_tx`] has accepted it, rebuilt from its checked fields; a header from the
//! backend reaches the guest only if it asks for nothing the guest did not accept
//! ([`VnetHeader::check_rx`]). Offloads are bits of the acked features, reduced by
//! [`effective_offloads`] to those whose prerequisites were acked too.

use super::features;

/// NEEDS_CSUM: the checksum from `csum_start` is still to be computed, into `csum_offset`.
pub(crate) const F_NEEDS_CSUM: u8 = 1;
/// DATA_VALID: the frame's checksums were verified (device to driver only).
pub(crate) const F_DATA_VALID: u8 = 2;
/// No segmentation.
pub(crate) const GSO_NONE: u8 = 0;
/// TCP over IPv4 segmentation.
pub(crate) const GSO_TCPV4: u8 = 1;
/// TCP over IPv6 segmentation.
pub(crate) const GSO_TCPV6: u8 = 4;
/// With GSO_TCPV4/6: the TCP stream uses ECN (its CWR flag goes on the first segment only).
pub(crate) const GSO_ECN: u8 = 0x80;

/// Every offload feature the card may offer.
pub(crate) const OFFLOAD_FEATURES: u64 = features::CSUM
    | features::GUEST_CSUM
    | features::GUEST_TSO4
    | features::GUEST_TSO6
    | features::GUEST_ECN
    | features::HOST_TSO4
    | features::HOST_TSO6
    | features::HOST_ECN;

/// The offload bits of `acked` that can be honoured: segmentation needs checksum offload in the
/// same direction, and ECN needs segmentation (the spec's dependencies, which a hostile driver
/// may ignore).
pub(crate) fn effective_offloads(acked: u64) -> u64 {
    let mut f = acked & OFFLOAD_FEATURES;
    if f & features::CSUM == 0 {
        f &= !(features::HOST_TSO4 | features::HOST_TSO6);
    }
    if f & (features::HOST_TSO4 | features::HOST_TSO6) == 0 {
        f &= !features::HOST_ECN;
    }
    if f & features::GUEST_CSUM == 0 {
        f &= !(features::GUEST_TSO4 | features::GUEST_TSO6);
    }
    if f & (features::GUEST_TSO4 | features::GUEST_TSO6) == 0 {
        f &= !features::GUEST_ECN;
    }
    f
}

/// What the backend may hand the guest unfinished, from [`effective_offloads`].
pub(crate) fn guest_offloads(offloads: u64) -> ::net::GuestOffloads {
    ::net::GuestOffloads {
        csum: offloads & features::GUEST_CSUM != 0,
        tso4: offloads & features::GUEST_TSO4 != 0,
        tso6: offloads & features::GUEST_TSO6 != 0,
        tso_ecn: offloads & features::GUEST_ECN != 0,
    }
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderError {
    /// Flags outside NEEDS_CSUM (and DATA_VALID towards the guest).
    #[error("unknown header flags {0:#04x}")]
    UnknownFlags(u8),
    /// NEEDS_CSUM without checksum offload negotiated in that direction.
    #[error("a checksum offload that was not negotiated")]
    ChecksumNotNegotiated,
    /// `csum_start + csum_offset + 2` past the frame's end.
    #[error("checksum at {start}+{offset} outside a {len}-byte frame")]
    ChecksumOutsideFrame {
        /// csum_start.
        start: u16,
        /// csum_offset.
        offset: u16,
        /// The frame's length.
        len: usize,
    },
    /// A gso_type the card does not know (UDP fragmentation and USO are never offered).
    #[error("unknown segmentation type {0:#04x}")]
    UnknownGsoType(u8),
    /// A known gso_type whose feature was not negotiated.
    #[error("segmentation type {0:#04x} was not negotiated")]
    GsoNotNegotiated(u8),
    /// Segmentation without NEEDS_CSUM, which the spec requires of a driver.
    #[error("segmentation without a checksum offload")]
    GsoWithoutChecksum,
    /// Segmentation into segments of 0 bytes.
    #[error("segmentation with gso_size 0")]
    GsoSizeZero,
    /// Segments longer than the card's largest frame.
    #[error("segments of {0} bytes, longer than the MTU allows")]
    GsoSizeTooLarge(u16),
    /// `hdr_len` past the frame's end.
    #[error("hdr_len {hdr_len} past the end of a {len}-byte frame")]
    HeaderLengthOutsideFrame {
        /// hdr_len.
        hdr_len: u16,
        /// The frame's length.
        len: usize,
    },
}

/// The fields of a virtio-net header (`num_buffers` is the device's to set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VnetHeader {
    pub(crate) flags: u8,
    pub(crate) gso_type: u8,
    pub(crate) hdr_len: u16,
    pub(crate) gso_size: u16,
    pub(crate) csum_start: u16,
    pub(crate) csum_offset: u16,
}

impl VnetHeader {
    /// Reads a 10- or 12-byte header (little-endian: virtio 1.0, and legacy on x86 guests).
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        let word = |at: usize| {
            u16::from_le_bytes([bytes.get(at).copied().unwrap_or(0), bytes.get(at + 1).copied().unwrap_or(0)])
        };
        Self {
            flags: bytes.first().copied().unwrap_or(0),
            gso_type: bytes.get(1).copied().unwrap_or(0),
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        }
    }

    /// The 12-byte header with `num_buffers` (a 10-byte header is its first 10 bytes).
    pub(crate) fn to_bytes(self, num_buffers: u16) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&num_buffers.to_le_bytes());
        b
    }

    /// Whether the frame is to be segmented.
    pub(crate) fn is_gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }

    /// Checks a header from the guest for a frame of `len` bytes against `offloads`
    /// ([`effective_offloads`]); `max_frame` bounds the segments. Returns the header to pass on.
    pub(crate) fn check_tx(self, len: usize, offloads: u64, max_frame: usize) -> Result<Self, HeaderError> {
        if self.flags & !F_NEEDS_CSUM != 0 {
            return Err(HeaderError::UnknownFlags(self.flags));
        }
        self.check_csum(len, offloads & features::CSUM != 0)?;
        let tso = [
            (GSO_TCPV4, offloads & features::HOST_TSO4 != 0),
            (GSO_TCPV6, offloads & features::HOST_TSO6 != 0),
        ];
        self.check_gso(&tso, offloads & features::HOST_ECN != 0)?;
        if !self.is_gso() {
            // gso_size means nothing without segmentation; do not hand it on.
            return Ok(Self { gso_size: 0, ..self });
        }
        if self.flags & F_NEEDS_CSUM == 0 {
            return Err(HeaderError::GsoWithoutChecksum);
        }
        if usize::from(self.gso_size) > max_frame {
            return Err(HeaderError::GsoSizeTooLarge(self.gso_size));
        }
        Ok(self)
    }

    /// Checks a header from the backend for a frame of `len` bytes against `offloads`. Returns
    /// the header to give the guest (DATA_VALID kept only if it accepted checksum offload).
    pub(crate) fn check_rx(self, len: usize, offloads: u64) -> Result<Self, HeaderError> {
        let guest_csum = offloads & features::GUEST_CSUM != 0;
        let flags = self.flags & !F_DATA_VALID;
        if flags & !F_NEEDS_CSUM != 0 {
            return Err(HeaderError::UnknownFlags(self.flags));
        }
        self.check_csum(len, guest_csum)?;
        let tso = [
            (GSO_TCPV4, offloads & features::GUEST_TSO4 != 0),
            (GSO_TCPV6, offloads & features::GUEST_TSO6 != 0),
        ];
        self.check_gso(&tso, offloads & features::GUEST_ECN != 0)?;
        let flags = if guest_csum { self.flags } else { flags };
        Ok(Self { flags, gso_size: if self.is_gso() { self.gso_size } else { 0 }, ..self })
    }

    /// NEEDS_CSUM only if `allowed`, with the checksum field inside the frame; `hdr_len` inside
    /// the frame.
    fn check_csum(&self, len: usize, allowed: bool) -> Result<(), HeaderError> {
        if usize::from(self.hdr_len) > len {
            return Err(HeaderError::HeaderLengthOutsideFrame { hdr_len: self.hdr_len, len });
        }
        if self.flags & F_NEEDS_CSUM == 0 {
            return Ok(());
        }
        if !allowed {
            return Err(HeaderError::ChecksumNotNegotiated);
        }
        let end = usize::from(self.csum_start) + usize::from(self.csum_offset) + 2;
        if end > len {
            return Err(HeaderError::ChecksumOutsideFrame {
                start: self.csum_start,
                offset: self.csum_offset,
                len,
            });
        }
        Ok(())
    }

    /// A gso_type among `tso` (type, negotiated) that was negotiated, ECN only if `ecn`; a
    /// nonzero gso_size with segmentation.
    fn check_gso(&self, tso: &[(u8, bool); 2], ecn: bool) -> Result<(), HeaderError> {
        if self.gso_type == GSO_NONE {
            return Ok(());
        }
        let base = self.gso_type & !GSO_ECN;
        let Some(&(_, allowed)) = tso.iter().find(|(t, _)| *t == base) else {
            return Err(HeaderError::UnknownGsoType(self.gso_type));
        };
        if !allowed || (self.gso_type & GSO_ECN != 0 && !ecn) {
            return Err(HeaderError::GsoNotNegotiated(self.gso_type));
        }
        if self.gso_size == 0 {
            return Err(HeaderError::GsoSizeZero);
        }
        Ok(())
    }
}
