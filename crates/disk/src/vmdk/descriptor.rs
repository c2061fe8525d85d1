//! The VMDK text descriptor: `key=value` lines and one line per extent.

use crate::DiskError;

/// The largest descriptor we read (VMware writes well under 20 KiB).
pub(crate) const MAX_DESCRIPTOR: u64 = 1 << 20;

/// What kind of storage an extent line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExtentType {
    /// A hosted sparse extent (its own `KDMV` header).
    Sparse,
    /// Raw data at a sector offset in a file.
    Flat { offset_sectors: u64 },
    /// Reads as zeros.
    Zero,
}

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtentLine {
    pub read_only: bool,
    pub sectors: u64,
    pub kind: ExtentType,
    pub file: String,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub create_type: String,
    pub extents: Vec<ExtentLine>,
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(s)
}

/// Parses descriptor text, rejecting the features we do not implement by name.
pub(crate) fn parse(text: &str) -> Result<Descriptor, DiskError> {
    let mut create_type = None;
    let mut extents = Vec::new();
    for raw_line in text.lines() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            let value = unquote(value);
            match key {
                "createType" => create_type = Some(value.to_string()),
                "parentCID" if !value.eq_ignore_ascii_case("ffffffff") => {
                    return Err(DiskError::Unsupported(
                        "a VMDK child disk (parentCID names a parent image)".into(),
                    ))
                }
                "parentFileNameHint" => {
                    return Err(DiskError::Unsupported(format!(
                        "a VMDK child disk (parentFileNameHint=\"{value}\")"
                    )))
                }
                _ => {}
            }
            continue;
        }
        extents.push(parse_extent(line)?);
    }
    let create_type =
        create_type.ok_or_else(|| DiskError::Corrupt("the VMDK descriptor has no createType line".into()))?;
    match create_type.as_str() {
        "monolithicSparse"
        | "monolithicFlat"
        | "twoGbMaxExtentSparse"
        | "twoGbMaxExtentFlat"
        | "streamOptimized"
        | "vmfs"
        | "custom" => {}
        other => return Err(DiskError::Unsupported(format!("the VMDK subformat createType=\"{other}\""))),
    }
    if extents.is_empty() {
        return Err(DiskError::Corrupt("the VMDK descriptor lists no extents".into()));
    }
    Ok(Descriptor { create_type, extents })
}

/// Parses `RW 2048 SPARSE "name.vmdk"` or `RW 2048 FLAT "name-flat.vmdk" 0`.
fn parse_extent(line: &str) -> Result<ExtentLine, DiskError> {
    let bad = || DiskError::Corrupt(format!("the VMDK descriptor line `{line}` is not an extent"));
    let mut rest = line;
    let mut word = || -> Option<&str> {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (w, r) = t.split_at(end);
        rest = r;
        (!w.is_empty()).then_some(w)
    };
    let access = word().ok_or_else(bad)?;
    let sectors: u64 = word().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
    let kind = word().ok_or_else(bad)?;
    let read_only = match access {
        "RW" => false,
        "RDONLY" => true,
        "NOACCESS" => return Err(DiskError::Unsupported("VMDK extents marked NOACCESS".into())),
        _ => return Err(bad()),
    };
    let tail = rest.trim();
    let (file, after) = if let Some(t) = tail.strip_prefix('"') {
        let end = t.find('"').ok_or_else(bad)?;
        (t[..end].to_string(), t[end + 1..].trim())
    } else {
        (String::new(), tail)
    };
    let kind = match kind {
        "SPARSE" => ExtentType::Sparse,
        "FLAT" | "VMFS" => ExtentType::Flat {
            offset_sectors: if after.is_empty() { 0 } else { after.parse().map_err(|_| bad())? },
        },
        "ZERO" => ExtentType::Zero,
        other => {
            return Err(DiskError::Unsupported(format!("VMDK extents of type {other}")));
        }
    };
    if kind != ExtentType::Zero && file.is_empty() {
        return Err(bad());
    }
    Ok(ExtentLine { read_only, sectors, kind, file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_descriptor() {
        let d = parse(
            "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
             createType=\"twoGbMaxExtentFlat\"\n\n# Extent description\n\
             RW 4194240 FLAT \"a-f001.vmdk\" 0\nRW 2048 FLAT \"a f002.vmdk\" 7\nRDONLY 8 ZERO\n\
             ddb.virtualHWVersion = \"4\"\n",
        )
        .expect("parses");
        assert_eq!(d.create_type, "twoGbMaxExtentFlat");
        assert_eq!(d.extents.len(), 3);
        assert_eq!(d.extents[1].file, "a f002.vmdk");
        assert_eq!(d.extents[1].kind, ExtentType::Flat { offset_sectors: 7 });
        assert_eq!(d.extents[2].kind, ExtentType::Zero);
    }

    #[test]
    fn names_unsupported_features() {
        let e = parse("createType=\"seSparse\"\nRW 8 SESPARSE \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("SESPARSE") || e.to_string().contains("seSparse"));
        let e = parse("parentFileNameHint=\"base.vmdk\"\ncreateType=\"monolithicSparse\"\n").unwrap_err();
        assert!(e.to_string().contains("parentFileNameHint"));
        assert!(parse("createType=\"monolithicSparse\"\nRW x SPARSE \"a\"\n").is_err());
    }
}
