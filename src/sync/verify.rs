//! Catalog verification, pure: content is used only when it matches its
//! pinned SHA-256 or its detached signature. Unverified content is never
//! stored or written.
//!
//! The signature scheme is HMAC-SHA256 under a shared key (the key comes
//! from a secret reference, `keyFrom`): the signature file holds the 64
//! lowercase or uppercase hexadecimal digits of HMAC-SHA256(key, catalog
//! bytes), optionally prefixed `hmac-sha256:`, surrounding whitespace
//! ignored — the same form as a signed plan's `signature`. Make one with
//! `openssl dgst -sha256 -hmac KEY -hex FILE` (the digits after `= `).

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::SyncError;
use crate::secret::Secret;

/// One way a catalog is verified.
pub enum Verification {
    /// The catalog's SHA-256, lowercase or uppercase hex (64 digits).
    Sha256(String),
    /// HMAC-SHA256 of the catalog under `key`; the signature is fetched
    /// from `url`.
    DetachedSignature { url: String, key: Secret },
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verification::Sha256(pin) => write!(f, "Sha256({pin})"),
            Verification::DetachedSignature { url, .. } => {
                write!(f, "DetachedSignature {{ url: {url}, key: *** }}")
            }
        }
    }
}

impl Verification {
    /// How it is verified, for messages: `sha256 pin` or `signature`.
    pub fn describe(&self) -> &'static str {
        match self {
            Verification::Sha256(_) => "sha256 pin",
            Verification::DetachedSignature { .. } => "hmac-sha256 signature",
        }
    }
}

/// Checks `bytes` (whose SHA-256 is `sha256`, lowercase hex) against one
/// verification. For a signature, `signature` is the fetched signature
/// file; None is refused.
pub fn check(
    url: &str,
    bytes: &[u8],
    sha256: &str,
    verification: &Verification,
    signature: Option<&[u8]>,
) -> Result<(), SyncError> {
    match verification {
        Verification::Sha256(pin) => {
            let pin = pin.to_ascii_lowercase();
            if crate::secret::constant_time_eq(pin.as_bytes(), sha256.as_bytes()) {
                Ok(())
            } else {
                Err(SyncError::HashMismatch {
                    url: url.to_string(),
                    expected: pin,
                    actual: sha256.to_string(),
                })
            }
        }
        Verification::DetachedSignature { url: sig_url, key } => {
            let bad = |reason: &str| SyncError::BadSignature {
                url: url.to_string(),
                signature_url: sig_url.clone(),
                reason: reason.to_string(),
            };
            let signature = signature.ok_or_else(|| bad("no signature was fetched"))?;
            let text = std::str::from_utf8(signature)
                .map_err(|_| bad("the signature file is not text"))?
                .trim();
            let digits = text.strip_prefix("hmac-sha256:").unwrap_or(text);
            let expected = hex::decode(digits)
                .ok()
                .filter(|d| d.len() == 32)
                .ok_or_else(|| {
                    bad("the signature file does not hold 64 hexadecimal digits (HMAC-SHA256)")
                })?;
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.expose())
                .map_err(|_| bad("the key cannot be used"))?;
            mac.update(bytes);
            // `verify_slice` compares in constant time.
            mac.verify_slice(&expected)
                .map_err(|_| bad("the signature does not match the catalog"))
        }
    }
}

/// HMAC-SHA256 of `bytes` under `key`, as 64 lowercase hex digits (what a
/// signature file holds).
pub fn hmac_sha256_hex(key: &[u8], bytes: &[u8]) -> String {
    match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(bytes);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn pinned_sha256_accepts_only_its_content() {
        let body = b"<BulletinDatastore/>";
        let pin = sha(body);
        let v = Verification::Sha256(pin.to_ascii_uppercase());
        assert!(check("u", body, &sha(body), &v, None).is_ok());
        let other = b"<BulletinDatastore>evil</BulletinDatastore>";
        let err = check("u", other, &sha(other), &v, None).unwrap_err();
        assert!(matches!(err, SyncError::HashMismatch { .. }));
        assert!(err.to_string().contains(&pin[..12]), "{err}");
    }

    #[test]
    fn hmac_signature_is_checked() {
        let key = Secret::new(b"shared-key".to_vec());
        let body = b"catalog";
        let good = hmac_sha256_hex(b"shared-key", body);
        let v = Verification::DetachedSignature {
            url: "http://c/sig".into(),
            key,
        };
        let digest = sha(body);
        assert!(check("u", body, &digest, &v, Some(good.as_bytes())).is_ok());
        let prefixed = format!("hmac-sha256:{}\n", good.to_ascii_uppercase());
        assert!(check("u", body, &digest, &v, Some(prefixed.as_bytes())).is_ok());
        for bad in [
            Some(hmac_sha256_hex(b"other-key", body).into_bytes()),
            Some(b"not hex".to_vec()),
            Some(vec![0xff, 0xfe]),
            None,
        ] {
            let err = check("u", body, &digest, &v, bad.as_deref()).unwrap_err();
            assert!(matches!(err, SyncError::BadSignature { .. }), "{err}");
            assert!(!err.to_string().contains("shared-key"));
        }
        assert!(!format!("{v:?}").contains("shared-key"));
    }
}
