//! Test material: a minimal valid PE file built in code, and an
//! Authenticode signer over it with a given key and certificates (the
//! committed test keys of `tests/fixtures/authenticode/`). Used by the
//! unit and integration tests; not part of the product.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, DecodePem, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

use super::*;

/// A minimal PE file: headers, one `.text` section holding `payload`
/// (at most 512 bytes), no certificate table. `pe32_plus` makes a 64-bit
/// image.
pub fn tiny_pe(payload: &[u8], pe32_plus: bool) -> Vec<u8> {
    assert!(payload.len() <= 0x200, "the section holds 512 bytes");
    let mut b = vec![0u8; 0x400];
    let put16 =
        |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[0..2].copy_from_slice(b"MZ");
    put32(&mut b, 0x3c, 0x40);
    b[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    put16(&mut b, coff, if pe32_plus { 0x8664 } else { 0x14c });
    put16(&mut b, coff + 2, 1); // sections
    let optional_size: u16 = if pe32_plus { 0xf0 } else { 0xe0 };
    put16(&mut b, coff + 16, optional_size);
    put16(&mut b, coff + 18, 0x0102); // executable
    let oh = coff + 20;
    put16(&mut b, oh, if pe32_plus { 0x20b } else { 0x10b });
    put32(&mut b, oh + 4, 0x200); // SizeOfCode
    put32(&mut b, oh + 16, 0x1000); // AddressOfEntryPoint
    put32(&mut b, oh + 20, 0x1000); // BaseOfCode
    if pe32_plus {
        b[oh + 24..oh + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
    } else {
        put32(&mut b, oh + 28, 0x40_0000);
    }
    put32(&mut b, oh + 32, 0x1000); // SectionAlignment
    put32(&mut b, oh + 36, 0x200); // FileAlignment
    put16(&mut b, oh + 40, 4); // OS version
    put16(&mut b, oh + 48, 4); // subsystem version
    put32(&mut b, oh + 56, 0x2000); // SizeOfImage
    put32(&mut b, oh + 60, 0x200); // SizeOfHeaders
    put16(&mut b, oh + 68, 3); // console
    let (count_at, _) = if pe32_plus { (108, 112) } else { (92, 96) };
    put32(&mut b, oh + count_at, 16);
    let section = oh + optional_size as usize;
    b[section..section + 5].copy_from_slice(b".text");
    put32(&mut b, section + 8, payload.len().max(1) as u32); // VirtualSize
    put32(&mut b, section + 12, 0x1000); // VirtualAddress
    put32(&mut b, section + 16, 0x200); // SizeOfRawData
    put32(&mut b, section + 20, 0x200); // PointerToRawData
    put32(&mut b, section + 36, 0x6000_0020); // code, execute, read
    b[0x200..0x200 + payload.len()].copy_from_slice(payload);
    b
}

/// A signing key with its certificate and the certificates to include.
pub struct TestSigner {
    key: rsa::PrivateKey,
    /// The signer's certificate first, then the others to include.
    certs: Vec<Certificate>,
}

impl TestSigner {
    /// `key_pem`: PKCS#8; `certs_pem`: the signer's certificate first.
    pub fn new(key_pem: &str, certs_pem: &[&str]) -> TestSigner {
        let (label, der) = der::pem::decode_vec(key_pem.as_bytes()).expect("PEM key");
        assert_eq!(label, "PRIVATE KEY", "a PKCS#8 key");
        let key = <rsa::PrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(&der)
            .expect("test key");
        let certs = certs_pem
            .iter()
            .map(|p| Certificate::from_pem(p.as_bytes()).expect("test certificate"))
            .collect();
        TestSigner { key, certs }
    }
}

/// How to sign; the overrides make broken signatures on purpose.
#[derive(Debug, Clone)]
pub struct SignOptions {
    pub digest: DigestAlg,
    /// A `signingTime` signed attribute (Unix seconds).
    pub signing_time: Option<u64>,
    /// Sign this image digest instead of the file's.
    pub image_digest: Option<Vec<u8>>,
    /// Put this message digest in the signed attributes instead.
    pub message_digest: Option<Vec<u8>>,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            digest: DigestAlg::Sha256,
            signing_time: None,
            image_digest: None,
            message_digest: None,
        }
    }
}

fn alg_id(alg: DigestAlg) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: alg.oid(),
        parameters: Some(Any::from(der::asn1::Null)),
    }
}

/// The DER `ContentInfo` of an Authenticode signature over `image_digest`.
pub fn signed_data(signer: &TestSigner, image_digest: &[u8], opts: &SignOptions) -> Vec<u8> {
    // SpcPeImageData { flags: BIT STRING (empty), file: [0] { [2] unicode "" } }
    let pe_image_data = Any::from_der(&[
        0x30, 0x09, 0x03, 0x01, 0x00, 0xa0, 0x04, 0xa2, 0x02, 0x80, 0x00,
    ])
    .expect("static DER");
    let indirect = SpcIndirectDataContent {
        data: SpcAttributeTypeAndOptionalValue {
            kind: SPC_PE_IMAGE_DATA,
            value: Some(pe_image_data),
        },
        message_digest: DigestInfo {
            digest_algorithm: AlgorithmIdentifier {
                algorithm: opts.digest.oid(),
                parameters: Some(Any::from(der::asn1::Null)),
            },
            digest: OctetString::new(image_digest).expect("digest"),
        },
    };
    let content = Any::encode_from(&indirect).expect("content");
    let message_digest = opts
        .message_digest
        .clone()
        .unwrap_or_else(|| opts.digest.digest(&[content.value()]));
    let value = |v: Any| SetOfVec::try_from(vec![v]).expect("one value");
    let mut attrs = vec![
        Attribute {
            oid: ID_CONTENT_TYPE,
            values: value(Any::encode_from(&SPC_INDIRECT_DATA).expect("oid")),
        },
        Attribute {
            oid: ID_MESSAGE_DIGEST,
            values: value(
                Any::encode_from(&OctetString::new(message_digest).expect("digest"))
                    .expect("octets"),
            ),
        },
    ];
    if let Some(secs) = opts.signing_time {
        let t = der::asn1::UtcTime::from_unix_duration(std::time::Duration::from_secs(secs))
            .expect("time in UTCTime range");
        attrs.push(Attribute {
            oid: ID_SIGNING_TIME,
            values: value(Any::encode_from(&t).expect("time")),
        });
    }
    let attrs: x509_cert::attr::Attributes = SetOfVec::try_from(attrs).expect("attributes");
    let to_sign = attrs.to_der().expect("attributes DER");
    let signature = signer
        .key
        .sign(opts.digest.padding(), &opts.digest.digest(&[&to_sign]))
        .expect("RSA signature");
    let cert = &signer.certs[0];
    let info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate().issuer().clone(),
            serial_number: cert.tbs_certificate().serial_number().clone(),
        }),
        digest_alg: alg_id(opts.digest),
        signed_attrs: Some(attrs),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(Any::from(der::asn1::Null)),
        },
        signature: OctetString::new(signature).expect("signature"),
        unsigned_attrs: None,
    };
    let certs: Vec<CertificateChoices> = signer
        .certs
        .iter()
        .cloned()
        .map(CertificateChoices::Certificate)
        .collect();
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![alg_id(opts.digest)]).expect("algorithms"),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: SPC_INDIRECT_DATA,
            econtent: Some(content),
        },
        certificates: Some(CertificateSet::try_from(certs).expect("certificates")),
        crls: None,
        signer_infos: SignerInfos::try_from(vec![info]).expect("signer infos"),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).expect("signed data"),
    }
    .to_der()
    .expect("content info")
}

/// Puts `table` (the certificate table's bytes) at the end of `unsigned`
/// (padded to 8 bytes) and points the directory entry at it.
pub fn attach(unsigned: &[u8], table: &[u8]) -> Vec<u8> {
    let layout = pe::layout(unsigned).expect("a PE file");
    let mut out = unsigned.to_vec();
    out.resize(out.len().div_ceil(8) * 8, 0);
    let at = out.len() as u32;
    out[layout.cert_entry..layout.cert_entry + 4].copy_from_slice(&at.to_le_bytes());
    out[layout.cert_entry + 4..layout.cert_entry + 8]
        .copy_from_slice(&(table.len() as u32).to_le_bytes());
    out.extend_from_slice(table);
    out
}

/// A `WIN_CERTIFICATE` (revision 2.0, PKCS signed data) around `der`,
/// padded to 8 bytes.
pub fn win_certificate(der: &[u8]) -> Vec<u8> {
    let len = (8 + der.len()).div_ceil(8) * 8;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&pe::WIN_CERT_REVISION_2_0.to_le_bytes());
    out.extend_from_slice(&pe::WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    out.extend_from_slice(der);
    out.resize(len, 0);
    out
}

/// `unsigned` signed by `signer`, as signtool would write it.
pub fn sign(unsigned: &[u8], signer: &TestSigner, opts: &SignOptions) -> Vec<u8> {
    // The image digest covers the alignment padding the signature adds.
    let mut padded = unsigned.to_vec();
    padded.resize(padded.len().div_ceil(8) * 8, 0);
    let layout = pe::layout(&padded).expect("a PE file");
    let digest = opts
        .image_digest
        .clone()
        .unwrap_or_else(|| pe::image_digest(&padded, &layout, opts.digest));
    let der = signed_data(signer, &digest, opts);
    attach(&padded, &win_certificate(&der))
}
