//! The PE layout Authenticode needs: where the checksum, the certificate
//! table's directory entry and the certificate table are, and the image
//! digest over everything else. Bounds are checked before every read; a
//! hostile file yields an error, never a panic.

use super::{AuthenticodeError, DigestAlg};

/// `IMAGE_DIRECTORY_ENTRY_SECURITY`: the certificate table's index among
/// the data directories.
const CERT_DIRECTORY: usize = 4;
/// `WIN_CERT_REVISION_2_0`.
pub const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

/// Where the parts that the image digest leaves out are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// File offset of the optional header's `CheckSum` (4 bytes).
    pub checksum: usize,
    /// File offset of the certificate table's data directory entry (8 bytes).
    pub cert_entry: usize,
    /// The certificate table (file offset, size); none: not signed.
    pub cert_table: Option<(usize, usize)>,
    /// `PE32+` (64-bit) rather than `PE32`.
    pub pe32_plus: bool,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn not_pe(why: impl Into<String>) -> AuthenticodeError {
    AuthenticodeError::NotPe(why.into())
}

fn malformed(why: impl Into<String>) -> AuthenticodeError {
    AuthenticodeError::Malformed(why.into())
}

/// Reads the headers of a PE file.
pub fn layout(b: &[u8]) -> Result<Layout, AuthenticodeError> {
    if b.len() < 64 || &b[..2] != b"MZ" {
        return Err(not_pe("no MZ header (expected a Windows executable)"));
    }
    let e_lfanew = u32_at(b, 0x3c).expect("length checked") as usize;
    match b.get(e_lfanew..e_lfanew.saturating_add(4)) {
        Some(sig) if sig == b"PE\0\0" => {}
        Some(_) => return Err(not_pe("an MZ file without a PE header (a DOS program?)")),
        None => {
            return Err(not_pe(format!(
                "the PE header offset {e_lfanew} lies past the end of the file"
            )))
        }
    }
    let coff = e_lfanew + 4;
    let optional_size = u16_at(b, coff + 16)
        .ok_or_else(|| malformed("the file ends inside the COFF header"))?
        as usize;
    let optional = coff + 20;
    let magic =
        u16_at(b, optional).ok_or_else(|| malformed("the file ends before the optional header"))?;
    let (pe32_plus, count_at, directories) = match magic {
        0x10b => (false, 92, 96),
        0x20b => (true, 108, 112),
        other => {
            return Err(malformed(format!(
                "optional header magic 0x{other:04x} (expected 0x10b for PE32 or 0x20b for PE32+)"
            )))
        }
    };
    let count = u32_at(b, optional + count_at)
        .ok_or_else(|| malformed("the file ends inside the optional header"))?
        as usize;
    if count <= CERT_DIRECTORY {
        return Err(malformed(format!(
            "the optional header has {count} data directories; the certificate table is the 5th"
        )));
    }
    let cert_entry = optional + directories + CERT_DIRECTORY * 8;
    if cert_entry + 8 > optional + optional_size {
        return Err(malformed(format!(
            "the certificate table's directory entry lies outside the optional header ({optional_size} bytes)"
        )));
    }
    let (Some(address), Some(size)) = (u32_at(b, cert_entry), u32_at(b, cert_entry + 4)) else {
        return Err(malformed("the file ends inside the data directories"));
    };
    let (address, size) = (address as usize, size as usize);
    let cert_table = if address == 0 && size == 0 {
        None
    } else {
        if address < cert_entry + 8 {
            return Err(malformed(format!(
                "the certificate table at offset {address} overlaps the headers"
            )));
        }
        let end = address
            .checked_add(size)
            .filter(|&e| e <= b.len())
            .ok_or_else(|| {
                malformed(format!(
                    "the certificate table ({size} bytes at offset {address}) runs past the end of the file ({} bytes)",
                    b.len()
                ))
            })?;
        if end != b.len() {
            return Err(malformed(format!(
                "{} byte(s) follow the certificate table; it must end the file (data appended after signing is not covered by the signature)",
                b.len() - end
            )));
        }
        Some((address, size))
    };
    Ok(Layout {
        checksum: optional + 64,
        cert_entry,
        cert_table,
        pe32_plus,
    })
}

/// The Authenticode image digest: the whole file except the checksum, the
/// certificate table's directory entry and the certificate table — the
/// bytes Windows hashes (for a file whose sections follow its headers this
/// equals the section-by-section order of the specification).
pub fn image_digest(b: &[u8], layout: &Layout, alg: DigestAlg) -> Vec<u8> {
    let end = layout.cert_table.map_or(b.len(), |(at, _)| at);
    alg.digest(&[
        &b[..layout.checksum],
        &b[layout.checksum + 4..layout.cert_entry],
        &b[layout.cert_entry + 8..end],
    ])
}

/// One `WIN_CERTIFICATE` entry of the certificate table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinCertificate<'a> {
    pub revision: u16,
    pub kind: u16,
    pub data: &'a [u8],
}

/// The entries of a certificate table (each 8-byte aligned).
pub fn win_certificates(table: &[u8]) -> Result<Vec<WinCertificate<'_>>, AuthenticodeError> {
    let bad = |why: String| AuthenticodeError::CertificateTable(why);
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < table.len() {
        let rest = &table[at..];
        if rest.iter().all(|&b| b == 0) && !out.is_empty() {
            break; // alignment padding
        }
        let (Some(length), Some(revision), Some(kind)) =
            (u32_at(rest, 0), u16_at(rest, 4), u16_at(rest, 6))
        else {
            return Err(bad(format!(
                "entry at offset {at}: {} byte(s) left, a WIN_CERTIFICATE header is 8",
                rest.len()
            )));
        };
        let length = length as usize;
        if length < 8 || length > rest.len() {
            return Err(bad(format!(
                "entry at offset {at}: length {length} (expected 8 to {} bytes)",
                rest.len()
            )));
        }
        out.push(WinCertificate {
            revision,
            kind,
            data: &rest[8..length],
        });
        at += length.div_ceil(8) * 8;
    }
    if out.is_empty() {
        return Err(bad("it is empty".into()));
    }
    Ok(out)
}
