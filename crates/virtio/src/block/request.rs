//! One virtio-blk request: a readable header {type, reserved, sector}, data buffers, and a
//! writable status byte at the very end of the chain.
//!
//! The guest is hostile: every length and address comes from it, so a request is checked before
//! anything touches the disk, data moves through a fixed-size bounce buffer, and a request that
//! cannot be understood fails with a status byte (or, without a place for one, is returned
//! unanswered) rather than stopping the device.

use std::io::{Read, Write};

use disk::{BlockDevice, SECTOR_SIZE};
use machine::memory::GuestMemory;
use virtio_queue::{DescriptorChain, Reader, Writer};

/// Request types.
pub(crate) mod kind {
    pub(crate) const IN: u32 = 0;
    pub(crate) const OUT: u32 = 1;
    pub(crate) const FLUSH: u32 = 4;
    pub(crate) const GET_ID: u32 = 8;
}

/// Status byte values.
pub(crate) mod status {
    pub(crate) const OK: u8 = 0;
    pub(crate) const IOERR: u8 = 1;
    pub(crate) const UNSUPP: u8 = 2;
}

/// The length of the request header.
const HEADER_LEN: usize = 16;
/// The length of a GET_ID answer.
pub(crate) const ID_LEN: usize = 20;
/// The longest chain served: the spec bounds a chain (indirect tables included) by the queue
/// size, and this keeps the per-request bookkeeping small whatever the guest writes.
pub(crate) const MAX_DESCRIPTORS: usize = 128;
/// How much data moves between guest memory and the disk at a time.
pub(crate) const BOUNCE_LEN: usize = 128 << 10;

/// What a request needs besides its descriptor chain.
pub(crate) struct RequestContext<'a> {
    pub(crate) memory: &'a GuestMemory,
    pub(crate) disk: &'a dyn BlockDevice,
    pub(crate) serial: &'a [u8; ID_LEN],
    pub(crate) bounce: &'a mut [u8],
}

/// Why a request failed (logged at debug level; the guest sees only the status byte).
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("the request header is shorter than 16 bytes")]
    ShortHeader,
    #[error("{0} data bytes are not a whole number of sectors")]
    PartialSector(usize),
    #[error("sector {sector} + {len} bytes passes the end of the disk")]
    OutOfRange { sector: u64, len: usize },
    #[error("the disk is read-only")]
    ReadOnly,
    #[error("a guest buffer could not be read or written")]
    GuestMemory,
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("request type {0} is not supported")]
    Unsupported(u32),
}

impl RequestError {
    fn status(&self) -> u8 {
        match self {
            Self::Unsupported(_) => status::UNSUPP,
            _ => status::IOERR,
        }
    }
}

/// Checks that `len` bytes at `sector` lie inside the disk, returning the byte offset.
fn check_range(disk: &dyn BlockDevice, sector: u64, len: usize) -> Result<u64, RequestError> {
    if len as u64 & (SECTOR_SIZE - 1) != 0 {
        return Err(RequestError::PartialSector(len));
    }
    let offset = sector.checked_mul(SECTOR_SIZE);
    match offset.and_then(|o| o.checked_add(len as u64)) {
        Some(end) if end <= disk.size() => Ok(sector * SECTOR_SIZE),
        _ => Err(RequestError::OutOfRange { sector, len }),
    }
}

fn read_into_guest(
    ctx: &mut RequestContext<'_>,
    data: &mut Writer<'_>,
    sector: u64,
) -> Result<(), RequestError> {
    let len = data.available_bytes();
    let mut offset = check_range(ctx.disk, sector, len)?;
    let mut left = len;
    while left > 0 {
        let n = left.min(ctx.bounce.len());
        let chunk = &mut ctx.bounce[..n];
        ctx.disk.read_at(chunk, offset)?;
        data.write_all(chunk).map_err(|_| RequestError::GuestMemory)?;
        offset += n as u64;
        left -= n;
    }
    Ok(())
}

fn write_from_guest(
    ctx: &mut RequestContext<'_>,
    data: &mut Reader<'_>,
    sector: u64,
) -> Result<(), RequestError> {
    if ctx.disk.read_only() {
        return Err(RequestError::ReadOnly);
    }
    let len = data.available_bytes();
    let mut offset = check_range(ctx.disk, sector, len)?;
    let mut left = len;
    while left > 0 {
        let n = left.min(ctx.bounce.len());
        let chunk = &mut ctx.bounce[..n];
        data.read_exact(chunk).map_err(|_| RequestError::GuestMemory)?;
        ctx.disk.write_at(chunk, offset)?;
        offset += n as u64;
        left -= n;
    }
    Ok(())
}

fn execute(
    ctx: &mut RequestContext<'_>,
    reader: Option<&mut Reader<'_>>,
    data_out: &mut Writer<'_>,
) -> Result<(), RequestError> {
    let reader = reader.ok_or(RequestError::GuestMemory)?;
    let mut header = [0u8; HEADER_LEN];
    reader.read_exact(&mut header).map_err(|_| RequestError::ShortHeader)?;
    let request_type = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let mut sector_bytes = [0u8; 8];
    sector_bytes.copy_from_slice(&header[8..16]);
    let sector = u64::from_le_bytes(sector_bytes);
    match request_type {
        kind::IN => read_into_guest(ctx, data_out, sector),
        kind::OUT => write_from_guest(ctx, reader, sector),
        kind::FLUSH => Ok(ctx.disk.flush()?),
        kind::GET_ID => {
            let n = data_out.available_bytes().min(ID_LEN);
            data_out.write_all(&ctx.serial[..n]).map_err(|_| RequestError::GuestMemory)
        }
        other => Err(RequestError::Unsupported(other)),
    }
}

/// Serves the request in `chain` and returns the number of bytes written into guest buffers
/// (the used length, status byte included; 0 when the chain had no usable status byte).
pub(crate) fn process(ctx: &mut RequestContext<'_>, chain: DescriptorChain<&GuestMemory>) -> u32 {
    let memory = ctx.memory;
    if chain.clone().take(MAX_DESCRIPTORS + 1).count() > MAX_DESCRIPTORS {
        log::debug!("virtio-blk: a chain of more than {MAX_DESCRIPTORS} descriptors; dropped");
        return 0;
    }
    let Ok(mut writable) = Writer::new(memory, chain.clone()) else {
        log::debug!("virtio-blk: a writable buffer lies outside guest RAM; request dropped");
        return 0;
    };
    let Some(status_at) = writable.available_bytes().checked_sub(1) else {
        log::debug!("virtio-blk: a request without a status byte; dropped");
        return 0;
    };
    let Ok(mut status_byte) = writable.split_at(status_at) else {
        return 0;
    };
    let mut reader = Reader::new(memory, chain).ok();
    let status = match execute(ctx, reader.as_mut(), &mut writable) {
        Ok(()) => status::OK,
        Err(e) => {
            log::debug!("virtio-blk: request failed: {e}");
            e.status()
        }
    };
    if status_byte.write_all(&[status]).is_err() {
        return 0;
    }
    // The chain's total length fits in a u32 (the queue crate stops a longer chain).
    u32::try_from(writable.bytes_written() + 1).unwrap_or(u32::MAX)
}
