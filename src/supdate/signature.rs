//! `verifySignature`: the package's trusted signers read from the
//! repository, and the policy for each update file — PE files must carry a
//! valid Authenticode signature chaining to them; other files cannot be
//! checked by this build and are not accepted under `verifySignature`.

use std::path::Path;

use crate::authenticode::{self, TrustStore, Verified};
use crate::manifest::software_update_package::SoftwareUpdatePackageSpec;

/// Largest trust file read (a few certificates are a few KiB).
pub const MAX_TRUST_FILE_BYTES: u64 = 1024 * 1024;

/// The trust store of `trusted_signers` (a repository path), or why not.
pub fn load_trust(dir: &Path, trusted_signers: &str) -> Result<TrustStore, String> {
    let path = crate::load::resolve_repo_path(dir, trusted_signers)
        .map_err(|e| format!("invalid path `{trusted_signers}`: {e}"))?;
    let meta =
        std::fs::metadata(&path).map_err(|_| format!("file `{trusted_signers}` does not exist"))?;
    if !meta.is_file() {
        return Err(format!("`{trusted_signers}` is not a file"));
    }
    if meta.len() > MAX_TRUST_FILE_BYTES {
        return Err(format!(
            "`{trusted_signers}` is larger than {MAX_TRUST_FILE_BYTES} bytes (expected a PEM file of certificates)"
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("reading `{trusted_signers}`: {e}"))?;
    TrustStore::from_pem(&bytes).map_err(|e| format!("`{trusted_signers}`: {e}"))
}

/// What a package's signature checks need: none when `verifySignature` is
/// false; an error when the trusted signers cannot be read.
pub fn package_trust(
    dir: &Path,
    spec: &SoftwareUpdatePackageSpec,
) -> Result<Option<TrustStore>, String> {
    if !spec.verify_signature {
        return Ok(None);
    }
    let Some(file) = &spec.trusted_signers else {
        return Err(
            "`verifySignature` is true but no `trustedSigners` names the certificates to trust"
                .into(),
        );
    };
    load_trust(dir, file.as_str())
        .map(Some)
        .map_err(|e| format!("trustedSigners: {e}"))
}

/// Windows Installer files (and other containers) whose signatures live
/// outside a PE certificate table.
fn installer_kind(file_name: &str) -> Option<&'static str> {
    let lower = file_name.to_ascii_lowercase();
    [
        (".msi", "a Windows Installer package (.msi)"),
        (".msp", "a Windows Installer patch (.msp)"),
        (".msu", "a Windows update package (.msu)"),
        (".cab", "a cabinet file (.cab)"),
    ]
    .into_iter()
    .find(|(ext, _)| lower.ends_with(ext))
    .map(|(_, kind)| kind)
}

/// The signature check of one update file's bytes: the accepted signature,
/// or why the file is not accepted ("Authenticode: …").
pub fn check(file_name: &str, bytes: &[u8], trust: &TrustStore) -> Result<Verified, String> {
    if !authenticode::looks_like_pe(bytes) {
        if let Some(kind) = installer_kind(file_name) {
            return Err(format!(
                "Authenticode: {kind} is not a PE file; its signature is not checked by this build, so `verifySignature: true` cannot accept it (set `verifySignature: false` to distribute it on its recorded SHA-256 alone)"
            ));
        }
    }
    authenticode::verify(bytes, trust, jiff::Timestamp::now())
        .map_err(|e| format!("Authenticode: {e}"))
}
