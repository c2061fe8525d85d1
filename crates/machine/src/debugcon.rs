//! The 0x402 debug port where SeaBIOS writes its log.

use std::io::Write;

use crate::bus::BusDevice;

/// The port SeaBIOS logs to.
pub const DEBUGCON_PORT: u64 = 0x402;

/// Collects firmware log bytes into an optional writer.
pub struct DebugCon {
    out: Option<Box<dyn Write + Send>>,
}

impl DebugCon {
    /// A port whose output goes to `out`, or nowhere.
    pub fn new(out: Option<Box<dyn Write + Send>>) -> Self {
        Self { out }
    }
}

impl BusDevice for DebugCon {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // SeaBIOS keeps logging here only if a read answers 0xE9.
        data.fill(0xe9);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(out) = self.out.as_mut() {
            if let Some(&b) = data.first() {
                let _ = out.write_all(&[b]);
                if b == b'\n' {
                    let _ = out.flush();
                }
            }
        }
    }
}
