//! Authenticode signatures of PE files (Windows executables: the hotfix
//! `.exe` files software update packages distribute), checked without any
//! I/O beyond the bytes given (`docs/software-updates.md`, "Signatures").
//!
//! [`verify`] parses the PE headers ([`pe`]), computes the image digest
//! (everything except the checksum, the certificate table's directory
//! entry and the certificate table), reads the `WIN_CERTIFICATE`
//! (revision 2.0, `PKCS_SIGNED_DATA`) as CMS `SignedData` holding an
//! `SpcIndirectDataContent`, and checks in turn: the signed image digest
//! equals the file's; the signer's `messageDigest` attribute equals the
//! hash of the content (over its value without the outer SEQUENCE tag and
//! length, as Authenticode does); the RSA PKCS#1 v1.5 signature over the
//! DER signed attributes verifies with the signer certificate's key; and
//! the chain from the signer through the certificates in the signature
//! reaches a certificate of the [`TrustStore`].
//!
//! Time policy: expired certificates are accepted (hotfixes from 2001 are
//! signed by certificates that expired long ago) and each expiry is
//! reported as a note, as is a signing time outside the signer's validity.
//! Revocation is not checked. MD5 signatures are refused.

pub mod pe;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use der::asn1::{Any, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Reader, Sequence, SliceReader};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::Certificate;

/// `SPC_INDIRECT_DATA_OBJID`.
pub const SPC_INDIRECT_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.4");
/// `SPC_PE_IMAGE_DATAOBJ`.
pub const SPC_PE_IMAGE_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.15");
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
pub const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
pub const ID_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
pub const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
pub const ID_COUNTERSIGNATURE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.6");
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const MD5_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.4");
pub const SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
pub const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const MD5: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.5");
pub const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const EKU_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
const EKU_ANY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// Longest chain followed from the signer to a trusted certificate.
const MAX_CHAIN: usize = 8;

/// Why a file's signature is not accepted. Messages name what was found
/// and what was expected; they never quote the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthenticodeError {
    #[error("not a PE file: {0}")]
    NotPe(String),
    #[error("malformed PE file: {0}")]
    Malformed(String),
    #[error("no signature (the file has no certificate table)")]
    Unsigned,
    #[error("the certificate table is damaged: {0}")]
    CertificateTable(String),
    #[error("the signature cannot be read: {0}")]
    SignedData(String),
    #[error("unsupported signature: {0}")]
    Unsupported(String),
    #[error("image digest mismatch: the file's {0} digest differs from the signed one (the file was changed after signing)")]
    ImageDigestMismatch(&'static str),
    #[error("the signed message digest does not match the signed content (the signature was tampered with)")]
    MessageDigestMismatch,
    #[error("the signature does not verify with the key of {0}")]
    BadSignature(String),
    #[error("signed by {signer}, not trusted (its chain ends at {top}; trust that certificate or its issuer in trustedSigners)")]
    Untrusted { signer: String, top: String },
    #[error("certificate chain: {0}")]
    Chain(String),
}

/// A digest algorithm Authenticode signatures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    fn from_oid(oid: &ObjectIdentifier) -> Result<DigestAlg, AuthenticodeError> {
        Ok(match *oid {
            SHA1 => DigestAlg::Sha1,
            SHA256 => DigestAlg::Sha256,
            SHA384 => DigestAlg::Sha384,
            SHA512 => DigestAlg::Sha512,
            MD5 => {
                return Err(AuthenticodeError::Unsupported(
                    "the digest algorithm is MD5, which is not accepted (it is broken)".into(),
                ))
            }
            other => {
                return Err(AuthenticodeError::Unsupported(format!(
                    "digest algorithm {other} (expected SHA-1, SHA-256, SHA-384 or SHA-512)"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha1 => "SHA-1",
            DigestAlg::Sha256 => "SHA-256",
            DigestAlg::Sha384 => "SHA-384",
            DigestAlg::Sha512 => "SHA-512",
        }
    }

    pub fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlg::Sha1 => SHA1,
            DigestAlg::Sha256 => SHA256,
            DigestAlg::Sha384 => SHA384,
            DigestAlg::Sha512 => SHA512,
        }
    }

    /// The digest of the concatenated parts.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            DigestAlg::Sha1 => run::<Sha1>(parts),
            DigestAlg::Sha256 => run::<Sha256>(parts),
            DigestAlg::Sha384 => run::<Sha384>(parts),
            DigestAlg::Sha512 => run::<Sha512>(parts),
        }
    }

    fn padding(self) -> rsa::Pkcs1v15Sign {
        match self {
            DigestAlg::Sha1 => rsa::Pkcs1v15Sign::new::<Sha1>(),
            DigestAlg::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
            DigestAlg::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
            DigestAlg::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
        }
    }
}

/// `SpcAttributeTypeAndOptionalValue`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct SpcAttributeTypeAndOptionalValue {
    pub kind: ObjectIdentifier,
    pub value: Option<Any>,
}

/// `AlgorithmIdentifier` as Authenticode's `DigestInfo` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct AlgorithmIdentifier {
    pub algorithm: ObjectIdentifier,
    pub parameters: Option<Any>,
}

/// `DigestInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct DigestInfo {
    pub digest_algorithm: AlgorithmIdentifier,
    pub digest: OctetString,
}

/// `SpcIndirectDataContent`: what an Authenticode signature signs.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct SpcIndirectDataContent {
    pub data: SpcAttributeTypeAndOptionalValue,
    pub message_digest: DigestInfo,
}

/// The certificates a site trusts to sign update files: publishers or the
/// CAs that issue their certificates.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    certs: Vec<Certificate>,
    /// Each certificate's DER, to recognize it in a signature.
    ders: Vec<Vec<u8>>,
}

/// A trust file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("line {line}: certificate {index} cannot be read: {why}")]
    BadCertificate {
        line: usize,
        index: usize,
        why: String,
    },
    #[error("line {line}: a `{label}` block; a trust file holds certificates only (`-----BEGIN CERTIFICATE-----`)")]
    NotACertificate { line: usize, label: String },
    #[error("line {line}: `-----BEGIN CERTIFICATE-----` without its `-----END CERTIFICATE-----`")]
    Unterminated { line: usize },
    #[error("it holds no certificate (expected PEM blocks `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----`)")]
    Empty,
    #[error("it is not UTF-8 text (expected PEM)")]
    NotText,
}

impl TrustStore {
    /// Reads PEM text: every `CERTIFICATE` block; text outside blocks is
    /// ignored. Any other block (a private key, say) is an error, and its
    /// content is never quoted.
    pub fn from_pem(bytes: &[u8]) -> Result<TrustStore, TrustError> {
        let text = std::str::from_utf8(bytes).map_err(|_| TrustError::NotText)?;
        let mut store = TrustStore::default();
        let mut block: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            match &mut block {
                None => {
                    if let Some(label) = trimmed
                        .strip_prefix("-----BEGIN ")
                        .and_then(|l| l.strip_suffix("-----"))
                    {
                        if label != "CERTIFICATE" {
                            return Err(TrustError::NotACertificate {
                                line: line_no,
                                label: label.to_string(),
                            });
                        }
                        block = Some((line_no, format!("{trimmed}\n")));
                    }
                }
                Some((start, pem)) => {
                    pem.push_str(trimmed);
                    pem.push('\n');
                    if trimmed == "-----END CERTIFICATE-----" {
                        let index = store.certs.len() + 1;
                        let cert = <Certificate as der::DecodePem>::from_pem(pem.as_bytes())
                            .map_err(|e| TrustError::BadCertificate {
                                line: *start,
                                index,
                                why: e.to_string(),
                            })?;
                        store.add(cert).map_err(|why| TrustError::BadCertificate {
                            line: *start,
                            index,
                            why,
                        })?;
                        block = None;
                    }
                }
            }
        }
        if let Some((line, _)) = block {
            return Err(TrustError::Unterminated { line });
        }
        if store.certs.is_empty() {
            return Err(TrustError::Empty);
        }
        Ok(store)
    }

    fn add(&mut self, cert: Certificate) -> Result<(), String> {
        let der = cert.to_der().map_err(|e| e.to_string())?;
        self.certs.push(cert);
        self.ders.push(der);
        Ok(())
    }

    /// The subjects of the trusted certificates.
    pub fn subjects(&self) -> Vec<String> {
        self.certs.iter().map(subject).collect()
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// An accepted signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The signer certificate's subject.
    pub signer: String,
    /// Subjects from the signer to the trusted certificate, in order.
    pub chain: Vec<String>,
    /// The trusted certificate the chain ends at.
    pub trusted: String,
    /// The image digest's algorithm.
    pub digest: DigestAlg,
    /// The image digest (lowercase hex).
    pub image_digest: String,
    /// The signing time the signature states (RFC 3339), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<String>,
    /// Expired certificates and the like: reported, not refused.
    pub notes: Vec<String>,
}

fn subject(c: &Certificate) -> String {
    c.tbs_certificate().subject().to_string()
}

fn sd_err(why: impl std::fmt::Display) -> AuthenticodeError {
    AuthenticodeError::SignedData(why.to_string())
}

/// Whether the bytes start like a PE file (an `MZ` header).
pub fn looks_like_pe(bytes: &[u8]) -> bool {
    bytes.starts_with(b"MZ")
}

/// Checks the Authenticode signature of the PE file `image` against
/// `trust`; `now` only decides which certificates are reported expired.
pub fn verify(
    image: &[u8],
    trust: &TrustStore,
    now: jiff::Timestamp,
) -> Result<Verified, AuthenticodeError> {
    let layout = pe::layout(image)?;
    let Some((at, size)) = layout.cert_table else {
        return Err(AuthenticodeError::Unsigned);
    };
    let entries = pe::win_certificates(&image[at..at + size])?;
    let entry = entries
        .iter()
        .find(|e| {
            e.revision == pe::WIN_CERT_REVISION_2_0
                && e.kind == pe::WIN_CERT_TYPE_PKCS_SIGNED_DATA
        })
        .ok_or_else(|| {
            AuthenticodeError::CertificateTable(format!(
                "no PKCS#7 signature in it (the first entry has revision 0x{:04x} and type 0x{:04x}; expected revision 0x0200, type 0x0002)",
                entries[0].revision, entries[0].kind
            ))
        })?;
    // The DER may be followed by alignment padding inside the entry.
    let der = {
        let mut reader = SliceReader::new(entry.data).map_err(sd_err)?;
        reader.tlv_bytes().map_err(sd_err)?
    };
    let info = cms::content_info::ContentInfo::from_der(der).map_err(sd_err)?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(sd_err(format!(
            "content type {} (expected signedData {ID_SIGNED_DATA})",
            info.content_type
        )));
    }
    let signed: cms::signed_data::SignedData = info.content.decode_as().map_err(sd_err)?;
    let encap = &signed.encap_content_info;
    if encap.econtent_type != SPC_INDIRECT_DATA {
        return Err(sd_err(format!(
            "signed content type {} (expected SpcIndirectDataContent {SPC_INDIRECT_DATA})",
            encap.econtent_type
        )));
    }
    let content = encap
        .econtent
        .as_ref()
        .ok_or_else(|| sd_err("the signed content is missing"))?;
    let indirect: SpcIndirectDataContent = content.decode_as().map_err(sd_err)?;
    if indirect.data.kind != SPC_PE_IMAGE_DATA {
        return Err(AuthenticodeError::Unsupported(format!(
            "the signed data is of type {} (expected a PE image, {SPC_PE_IMAGE_DATA})",
            indirect.data.kind
        )));
    }

    // 1. The image digest.
    let image_alg = DigestAlg::from_oid(&indirect.message_digest.digest_algorithm.algorithm)?;
    let digest = pe::image_digest(image, &layout, image_alg);
    if digest.as_slice() != indirect.message_digest.digest.as_bytes() {
        return Err(AuthenticodeError::ImageDigestMismatch(image_alg.name()));
    }

    // 2. The signer and its message digest.
    let signers: Vec<_> = signed.signer_infos.0.iter().collect();
    let [signer] = signers.as_slice() else {
        return Err(sd_err(format!(
            "{} signers (Authenticode has exactly one)",
            signers.len()
        )));
    };
    let certs: Vec<&Certificate> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    let signer_cert = find_signer(&signer.sid, &certs)?;
    let signer_name = subject(signer_cert);
    let signer_alg = DigestAlg::from_oid(&signer.digest_alg.oid)?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| sd_err("the signer has no signed attributes"))?;
    let mut message_digest = None;
    let mut content_type = None;
    let mut signing_time = None;
    for attr in attrs.iter() {
        let mut values = attr.values.iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(sd_err(format!(
                "signed attribute {} has {} values (expected one)",
                attr.oid,
                attr.values.len()
            )));
        };
        match attr.oid {
            ID_MESSAGE_DIGEST => {
                message_digest = Some(value.decode_as::<OctetString>().map_err(sd_err)?)
            }
            ID_CONTENT_TYPE => {
                content_type = Some(value.decode_as::<ObjectIdentifier>().map_err(sd_err)?)
            }
            ID_SIGNING_TIME => {
                signing_time = value.decode_as::<x509_cert::time::Time>().ok();
            }
            _ => {}
        }
    }
    if content_type != Some(SPC_INDIRECT_DATA) {
        return Err(sd_err(
            "the signed attributes do not name SpcIndirectDataContent as the content type",
        ));
    }
    let message_digest =
        message_digest.ok_or_else(|| sd_err("the signed attributes have no message digest"))?;
    // Authenticode hashes the content's value without its SEQUENCE header.
    if signer_alg.digest(&[content.value()]) != message_digest.as_bytes() {
        return Err(AuthenticodeError::MessageDigestMismatch);
    }

    // 3. The signature over the DER signed attributes.
    let sig_alg = &signer.signature_algorithm.oid;
    if let Some(implied) = rsa_signature_digest(sig_alg)? {
        if implied != signer_alg {
            return Err(sd_err(format!(
                "the signature algorithm uses {} but the signer's digest is {}",
                implied.name(),
                signer_alg.name()
            )));
        }
    }
    let signed_bytes = attrs.to_der().map_err(sd_err)?;
    let key = rsa_key(signer_cert)?;
    key.verify(
        signer_alg.padding(),
        &signer_alg.digest(&[&signed_bytes]),
        signer.signature.as_bytes(),
    )
    .map_err(|_| AuthenticodeError::BadSignature(signer_name.clone()))?;

    // 4. The signer may sign code.
    signer_may_sign_code(signer_cert)?;

    // 5. The chain to a trusted certificate.
    let chain = build_chain(signer_cert, &certs, trust)?;

    // Times: reported, not refused.
    let mut notes = Vec::new();
    let signing_time = signing_time
        .map(|t| (time_text(t), t.to_unix_duration().as_secs(), true))
        .or_else(|| {
            countersigned_time(signer)
                .map(|t| (time_text(t), t.to_unix_duration().as_secs(), false))
        });
    let now_secs = now.as_second().max(0) as u64;
    if let Some((text, secs, authenticated)) = &signing_time {
        let v = signer_cert.tbs_certificate().validity();
        let from = v.not_before.to_unix_duration().as_secs();
        let until = v.not_after.to_unix_duration().as_secs();
        let source = if *authenticated {
            "signed attribute"
        } else {
            "countersignature, not verified"
        };
        if *secs < from || *secs > until {
            notes.push(format!(
                "the signing time {text} ({source}) lies outside the signer certificate's validity"
            ));
        }
    }
    for c in &chain.certs {
        let until = c.tbs_certificate().validity().not_after;
        if until.to_unix_duration().as_secs() < now_secs {
            notes.push(format!(
                "certificate {} expired on {}",
                subject(c),
                time_text(until)
            ));
        }
    }
    Ok(Verified {
        signer: signer_name,
        chain: chain.certs.iter().map(|c| subject(c)).collect(),
        trusted: chain.trusted,
        digest: image_alg,
        image_digest: hex::encode(&digest),
        signing_time: signing_time.map(|(t, _, _)| t),
        notes,
    })
}

fn time_text(t: x509_cert::time::Time) -> String {
    jiff::Timestamp::from_second(t.to_unix_duration().as_secs() as i64)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| "(out of range)".into())
}

/// The signing time of a PKCS#9 countersignature (a time-stamp), read but
/// not verified: it is only reported.
fn countersigned_time(signer: &cms::signed_data::SignerInfo) -> Option<x509_cert::time::Time> {
    let unsigned = signer.unsigned_attrs.as_ref()?;
    let attr = unsigned.iter().find(|a| a.oid == ID_COUNTERSIGNATURE)?;
    let counter: cms::signed_data::SignerInfo = attr.values.iter().next()?.decode_as().ok()?;
    counter
        .signed_attrs?
        .iter()
        .find(|a| a.oid == ID_SIGNING_TIME)?
        .values
        .iter()
        .next()?
        .decode_as()
        .ok()
}

fn find_signer<'a>(
    sid: &cms::signed_data::SignerIdentifier,
    certs: &[&'a Certificate],
) -> Result<&'a Certificate, AuthenticodeError> {
    use cms::signed_data::SignerIdentifier;
    let found = certs.iter().copied().find(|c| {
        let tbs = c.tbs_certificate();
        match sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                tbs.issuer() == &ias.issuer && tbs.serial_number() == &ias.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                matches!(
                    tbs.get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>(),
                    Ok(Some((_, k))) if &k == ski
                )
            }
        }
    });
    found.ok_or_else(|| sd_err("the signer's certificate is not in the signature"))
}

/// The digest an RSA signature algorithm implies (none for plain
/// `rsaEncryption`); MD5 and non-RSA algorithms are refused.
fn rsa_signature_digest(oid: &ObjectIdentifier) -> Result<Option<DigestAlg>, AuthenticodeError> {
    Ok(match *oid {
        RSA_ENCRYPTION => None,
        SHA1_WITH_RSA => Some(DigestAlg::Sha1),
        SHA256_WITH_RSA => Some(DigestAlg::Sha256),
        SHA384_WITH_RSA => Some(DigestAlg::Sha384),
        SHA512_WITH_RSA => Some(DigestAlg::Sha512),
        MD5_WITH_RSA => {
            return Err(AuthenticodeError::Unsupported(
                "an MD5 RSA signature, which is not accepted (MD5 is broken)".into(),
            ))
        }
        other => {
            return Err(AuthenticodeError::Unsupported(format!(
                "signature algorithm {other} (only RSA PKCS#1 v1.5 with SHA-1 or SHA-2 is checked)"
            )))
        }
    })
}

fn rsa_key(cert: &Certificate) -> Result<rsa::PublicKey, AuthenticodeError> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(AuthenticodeError::Unsupported(format!(
            "the key of {} is not RSA ({}); only RSA keys are checked",
            subject(cert),
            spki.algorithm.oid
        )));
    }
    let der = spki.to_der().map_err(sd_err)?;
    <rsa::PublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der).map_err(|e| {
        AuthenticodeError::Unsupported(format!("the RSA key of {}: {e}", subject(cert)))
    })
}

fn signer_may_sign_code(cert: &Certificate) -> Result<(), AuthenticodeError> {
    use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage};
    let tbs = cert.tbs_certificate();
    let name = subject(cert);
    if let Ok(Some((_, eku))) = tbs.get_extension::<ExtendedKeyUsage>() {
        if !eku
            .0
            .iter()
            .any(|o| *o == EKU_CODE_SIGNING || *o == EKU_ANY)
        {
            return Err(AuthenticodeError::Chain(format!(
                "the signer {name} is not allowed to sign code (its extended key usage lacks code signing)"
            )));
        }
    }
    if let Ok(Some((_, ku))) = tbs.get_extension::<KeyUsage>() {
        if !ku.digital_signature() {
            return Err(AuthenticodeError::Chain(format!(
                "the signer {name} is not allowed to sign (its key usage lacks digitalSignature)"
            )));
        }
    }
    Ok(())
}

/// Whether `cert` may issue certificates: when it says (basic constraints,
/// key usage), it must say so; certificates without these extensions
/// (old version 1 CAs) are taken as CAs.
fn may_issue(cert: &Certificate) -> Result<(), AuthenticodeError> {
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
    let tbs = cert.tbs_certificate();
    if let Ok(Some((_, bc))) = tbs.get_extension::<BasicConstraints>() {
        if !bc.ca {
            return Err(AuthenticodeError::Chain(format!(
                "{} issued a certificate but is not a CA (basic constraints)",
                subject(cert)
            )));
        }
    }
    if let Ok(Some((_, ku))) = tbs.get_extension::<KeyUsage>() {
        if !ku.key_cert_sign() {
            return Err(AuthenticodeError::Chain(format!(
                "{} issued a certificate but its key usage lacks keyCertSign",
                subject(cert)
            )));
        }
    }
    Ok(())
}

/// Whether `issuer`'s key made `cert`'s signature.
fn issued_by(cert: &Certificate, issuer: &Certificate) -> Result<(), AuthenticodeError> {
    let alg = match rsa_signature_digest(&cert.signature_algorithm().oid) {
        Ok(Some(alg)) => alg,
        Ok(None) => {
            return Err(AuthenticodeError::Unsupported(format!(
                "certificate {} names no digest in its signature algorithm",
                subject(cert)
            )))
        }
        Err(AuthenticodeError::Unsupported(why)) => {
            return Err(AuthenticodeError::Unsupported(format!(
                "certificate {} carries {why}; trust that certificate itself instead of its issuer",
                subject(cert)
            )))
        }
        Err(e) => return Err(e),
    };
    let tbs = cert.tbs_certificate().to_der().map_err(sd_err)?;
    let signature = cert.signature().as_bytes().ok_or_else(|| {
        sd_err(format!(
            "the signature of {} is not whole bytes",
            subject(cert)
        ))
    })?;
    rsa_key(issuer)?
        .verify(alg.padding(), &alg.digest(&[&tbs]), signature)
        .map_err(|_| {
            AuthenticodeError::Chain(format!(
                "the signature of certificate {} does not verify with the key of {}",
                subject(cert),
                subject(issuer)
            ))
        })
}

struct Chain<'a> {
    /// From the signer to the trusted certificate.
    certs: Vec<&'a Certificate>,
    trusted: String,
}

fn build_chain<'a>(
    signer: &'a Certificate,
    pool: &[&'a Certificate],
    trust: &'a TrustStore,
) -> Result<Chain<'a>, AuthenticodeError> {
    let mut certs = vec![signer];
    let mut current = signer;
    for _ in 0..MAX_CHAIN {
        let der = current.to_der().map_err(sd_err)?;
        if trust.ders.contains(&der) {
            return Ok(Chain {
                trusted: subject(current),
                certs,
            });
        }
        let issuer_name = current.tbs_certificate().issuer();
        let mut failure = None;
        for t in trust
            .certs
            .iter()
            .filter(|t| t.tbs_certificate().subject() == issuer_name)
        {
            match issued_by(current, t).and_then(|()| may_issue(t)) {
                Ok(()) => {
                    certs.push(t);
                    return Ok(Chain {
                        trusted: subject(t),
                        certs,
                    });
                }
                Err(e) => failure = Some(e),
            }
        }
        let mut next = None;
        for c in pool.iter().copied().filter(|c| {
            c.tbs_certificate().subject() == issuer_name && !certs.iter().any(|seen| seen == c)
        }) {
            match issued_by(current, c).and_then(|()| may_issue(c)) {
                Ok(()) => {
                    next = Some(c);
                    break;
                }
                Err(e) => failure = Some(e),
            }
        }
        match (next, failure) {
            (Some(c), _) => {
                certs.push(c);
                current = c;
            }
            (None, Some(e)) => return Err(e),
            (None, None) => {
                return Err(AuthenticodeError::Untrusted {
                    signer: subject(signer),
                    top: subject(current),
                })
            }
        }
    }
    Err(AuthenticodeError::Chain(format!(
        "no trusted certificate within {MAX_CHAIN} certificates of {}",
        subject(signer)
    )))
}

#[cfg(test)]
mod tests;
