//! X11 keysyms (as RFB key events carry them) to PS/2 scancode set 1, US layout.
//!
//! The client has already applied Shift: it sends Shift_L and then `A` or `!`, so shifted
//! characters map to the scancode of their unshifted key.

/// A set-1 key: its make code and whether it carries the 0xE0 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Make code (the break code adds 0x80).
    pub code: u8,
    /// Extended key (0xE0 prefix).
    pub extended: bool,
}

const fn k(code: u8) -> Option<Key> {
    Some(Key { code, extended: false })
}

const fn e(code: u8) -> Option<Key> {
    Some(Key { code, extended: true })
}

/// The set-1 key for an ASCII character on a US keyboard.
fn ascii(c: u8) -> Option<Key> {
    const ROW_QWERTY: &[u8] = b"qwertyuiop";
    const ROW_ASDF: &[u8] = b"asdfghjkl";
    const ROW_ZXCV: &[u8] = b"zxcvbnm";
    let c = c.to_ascii_lowercase();
    let pos = |row: &[u8], base: u8| row.iter().position(|&x| x == c).map(|i| base + i as u8);
    if let Some(code) = pos(ROW_QWERTY, 0x10).or_else(|| pos(ROW_ASDF, 0x1e)).or_else(|| pos(ROW_ZXCV, 0x2c))
    {
        return k(code);
    }
    match c {
        b'1'..=b'9' => k(c - b'1' + 0x02),
        b'0' | b')' => k(0x0b),
        b'!' => k(0x02),
        b'@' => k(0x03),
        b'#' => k(0x04),
        b'$' => k(0x05),
        b'%' => k(0x06),
        b'^' => k(0x07),
        b'&' => k(0x08),
        b'*' => k(0x09),
        b'(' => k(0x0a),
        b'-' | b'_' => k(0x0c),
        b'=' | b'+' => k(0x0d),
        b'[' | b'{' => k(0x1a),
        b']' | b'}' => k(0x1b),
        b';' | b':' => k(0x27),
        b'\'' | b'"' => k(0x28),
        b'`' | b'~' => k(0x29),
        b'\\' | b'|' => k(0x2b),
        b',' | b'<' => k(0x33),
        b'.' | b'>' => k(0x34),
        b'/' | b'?' => k(0x35),
        b' ' => k(0x39),
        _ => None,
    }
}

/// The set-1 key for an X11 keysym, if the US keyboard has one.
pub fn keysym_to_key(keysym: u32) -> Option<Key> {
    match keysym {
        0x20..=0x7e => ascii(keysym as u8),
        0xff08 => k(0x0e),          // BackSpace
        0xff09 | 0xfe20 => k(0x0f), // Tab, ISO_Left_Tab
        0xff0d => k(0x1c),          // Return
        0xff1b => k(0x01),          // Escape
        0xff14 => k(0x46),          // Scroll_Lock
        0xff50 => e(0x47),          // Home
        0xff51 => e(0x4b),          // Left
        0xff52 => e(0x48),          // Up
        0xff53 => e(0x4d),          // Right
        0xff54 => e(0x50),          // Down
        0xff55 => e(0x49),          // Page_Up
        0xff56 => e(0x51),          // Page_Down
        0xff57 => e(0x4f),          // End
        0xff63 => e(0x52),          // Insert
        0xffff => e(0x53),          // Delete
        0xff67 => e(0x5d),          // Menu
        0xff7f => k(0x45),          // Num_Lock
        0xff8d => e(0x1c),          // KP_Enter
        0xffaa => k(0x37),          // KP_Multiply
        0xffab => k(0x4e),          // KP_Add
        0xffad => k(0x4a),          // KP_Subtract
        0xffae => k(0x53),          // KP_Decimal
        0xffaf => e(0x35),          // KP_Divide
        0xffb0 => k(0x52),          // KP_0
        0xffb1..=0xffb3 => k(0x4f + (keysym - 0xffb1) as u8),
        0xffb4..=0xffb6 => k(0x4b + (keysym - 0xffb4) as u8),
        0xffb7..=0xffb9 => k(0x47 + (keysym - 0xffb7) as u8),
        0xffbe..=0xffc7 => k(0x3b + (keysym - 0xffbe) as u8), // F1-F10
        0xffc8 => k(0x57),                                    // F11
        0xffc9 => k(0x58),                                    // F12
        0xffe1 => k(0x2a),                                    // Shift_L
        0xffe2 => k(0x36),                                    // Shift_R
        0xffe3 => k(0x1d),                                    // Control_L
        0xffe4 => e(0x1d),                                    // Control_R
        0xffe5 => k(0x3a),                                    // Caps_Lock
        0xffe7 | 0xffe9 => k(0x38),                           // Meta_L, Alt_L
        0xffe8 | 0xffea | 0xfe03 => e(0x38),                  // Meta_R, Alt_R, AltGr
        0xffeb => e(0x5b),                                    // Super_L
        0xffec => e(0x5c),                                    // Super_R
        _ => None,
    }
}

/// Whether a keysym is a character typed with Shift on a US keyboard. Some clients (e.g.
/// vncdotool's `type`) send `A` or `!` without a Shift press; the server then adds one.
pub fn needs_shift(keysym: u32) -> bool {
    match keysym {
        0x41..=0x5a => true,
        0x20..=0x7e => b"~!@#$%^&*()_+{}|:\"<>?".contains(&(keysym as u8)),
        _ => false,
    }
}

/// Left Shift, for the presses the server adds.
pub const LEFT_SHIFT: Key = Key { code: 0x2a, extended: false };

/// Whether `key` is either Shift.
pub fn is_shift(key: Key) -> bool {
    !key.extended && (key.code == 0x2a || key.code == 0x36)
}

/// The bytes a key press (`down`) or release sends: `[E0,] code` or `[E0,] code | 0x80`.
pub fn scancodes(key: Key, down: bool) -> ([u8; 2], usize) {
    let code = if down { key.code } else { key.code | 0x80 };
    if key.extended {
        ([0xe0, code], 2)
    } else {
        ([code, 0], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(keysym: u32, down: bool) -> Vec<u8> {
        let key = keysym_to_key(keysym).expect("mapped");
        let (b, n) = scancodes(key, down);
        b[..n].to_vec()
    }

    #[test]
    fn letters_digits_and_punctuation() {
        assert_eq!(bytes(u32::from(b'a'), true), [0x1e]);
        assert_eq!(bytes(u32::from(b'A'), true), [0x1e]);
        assert_eq!(bytes(u32::from(b'q'), false), [0x90]);
        assert_eq!(bytes(u32::from(b'p'), true), [0x19]);
        assert_eq!(bytes(u32::from(b'l'), true), [0x26]);
        assert_eq!(bytes(u32::from(b'z'), true), [0x2c]);
        assert_eq!(bytes(u32::from(b'm'), true), [0x32]);
        assert_eq!(bytes(u32::from(b'1'), true), [0x02]);
        assert_eq!(bytes(u32::from(b'0'), true), [0x0b]);
        assert_eq!(bytes(u32::from(b'!'), true), [0x02]);
        assert_eq!(bytes(u32::from(b'|'), true), [0x2b]);
        assert_eq!(bytes(u32::from(b'/'), true), [0x35]);
        assert_eq!(bytes(u32::from(b' '), true), [0x39]);
        assert_eq!(keysym_to_key(0xe9), None, "é is not on a US keyboard");
    }

    #[test]
    fn shifted_characters() {
        for c in b"AZ!@|?~\":{}<>_+" {
            assert!(needs_shift(u32::from(*c)), "{}", *c as char);
        }
        for c in b"az19-=[];',./`\\ " {
            assert!(!needs_shift(u32::from(*c)), "{}", *c as char);
        }
        assert!(!needs_shift(0xff0d));
        assert!(is_shift(keysym_to_key(0xffe2).expect("Shift_R")));
        assert!(!is_shift(keysym_to_key(0xffe3).expect("Control_L")));
    }

    #[test]
    fn control_keys_and_e0_prefixes() {
        assert_eq!(bytes(0xff0d, true), [0x1c]);
        assert_eq!(bytes(0xff08, true), [0x0e]);
        assert_eq!(bytes(0xff09, true), [0x0f]);
        assert_eq!(bytes(0xff1b, false), [0x81]);
        assert_eq!(bytes(0xff52, true), [0xe0, 0x48]);
        assert_eq!(bytes(0xff54, false), [0xe0, 0xd0]);
        assert_eq!(bytes(0xff51, true), [0xe0, 0x4b]);
        assert_eq!(bytes(0xff53, true), [0xe0, 0x4d]);
        assert_eq!(bytes(0xff50, true), [0xe0, 0x47]);
        assert_eq!(bytes(0xff57, true), [0xe0, 0x4f]);
        assert_eq!(bytes(0xff55, true), [0xe0, 0x49]);
        assert_eq!(bytes(0xff56, true), [0xe0, 0x51]);
        assert_eq!(bytes(0xff63, true), [0xe0, 0x52]);
        assert_eq!(bytes(0xffff, false), [0xe0, 0xd3]);
        assert_eq!(bytes(0xffbe, true), [0x3b]);
        assert_eq!(bytes(0xffc7, true), [0x44]);
        assert_eq!(bytes(0xffc8, true), [0x57]);
        assert_eq!(bytes(0xffc9, true), [0x58]);
        assert_eq!(bytes(0xffe1, true), [0x2a]);
        assert_eq!(bytes(0xffe3, true), [0x1d]);
        assert_eq!(bytes(0xffe4, true), [0xe0, 0x1d]);
        assert_eq!(bytes(0xffe9, true), [0x38]);
        assert_eq!(bytes(0xffea, false), [0xe0, 0xb8]);
        assert_eq!(bytes(0xffb7, true), [0x47]);
        assert_eq!(bytes(0xffb1, true), [0x4f]);
    }
}
