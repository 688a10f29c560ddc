use std::sync::OnceLock;

use proptest::prelude::*;

use super::testing::{
    attach, sign, signed_data, tiny_pe, win_certificate, SignOptions, TestSigner,
};
use super::*;

const ROOT: &str = include_str!("../../tests/fixtures/authenticode/root.pem");
const PCA: &str = include_str!("../../tests/fixtures/authenticode/pca.pem");
const SIGNER: &str = include_str!("../../tests/fixtures/authenticode/signer.pem");
const SIGNER_EXPIRED: &str = include_str!("../../tests/fixtures/authenticode/signer-expired.pem");
const SIGNER_KEY: &str = include_str!("../../tests/fixtures/authenticode/signer.key");
const OTHER_ROOT: &str = include_str!("../../tests/fixtures/authenticode/other-root.pem");

const PUBLISHER: &str = "CN=patchops Test Publisher,O=patchops tests";

fn now() -> jiff::Timestamp {
    "2026-11-25T00:00:00Z".parse().unwrap()
}

fn trust(pem: &str) -> TrustStore {
    TrustStore::from_pem(pem.as_bytes()).unwrap()
}

fn signer() -> &'static TestSigner {
    static S: OnceLock<TestSigner> = OnceLock::new();
    S.get_or_init(|| TestSigner::new(SIGNER_KEY, &[SIGNER, PCA]))
}

/// One signed PE32 file (SHA-256), made once.
fn signed() -> &'static [u8] {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        sign(
            &tiny_pe(b"\xc3hotfix", false),
            signer(),
            &SignOptions::default(),
        )
    })
}

#[test]
fn a_signed_pe_verifies_to_the_trusted_root() {
    let v = verify(signed(), &trust(ROOT), now()).unwrap();
    assert_eq!(v.signer, PUBLISHER);
    assert_eq!(v.trusted, "CN=patchops Test Root,O=patchops tests");
    assert_eq!(v.chain.len(), 3, "{:?}", v.chain);
    assert_eq!(
        v.chain[1],
        "CN=patchops Test Code Signing PCA,O=patchops tests"
    );
    assert_eq!(v.digest, DigestAlg::Sha256);
    assert!(v.notes.is_empty(), "{:?}", v.notes);
    // The digest is the image's, over everything but the excluded parts.
    let layout = pe::layout(signed()).unwrap();
    assert_eq!(
        v.image_digest,
        hex::encode(pe::image_digest(signed(), &layout, DigestAlg::Sha256))
    );
}

#[test]
fn sha1_and_pe32_plus_verify_and_any_link_of_the_chain_can_be_trusted() {
    let file = sign(
        &tiny_pe(b"\xc3x64", true),
        signer(),
        &SignOptions {
            digest: DigestAlg::Sha1,
            ..SignOptions::default()
        },
    );
    assert!(pe::layout(&file).unwrap().pe32_plus);
    let v = verify(&file, &trust(ROOT), now()).unwrap();
    assert_eq!(v.digest, DigestAlg::Sha1);
    assert_eq!(v.image_digest.len(), 40);
    // The intermediate or the publisher itself as the trusted certificate.
    let v = verify(&file, &trust(PCA), now()).unwrap();
    assert_eq!(v.chain.len(), 2);
    let v = verify(&file, &trust(SIGNER), now()).unwrap();
    assert_eq!(v.trusted, PUBLISHER);
    assert_eq!(v.chain, [PUBLISHER]);
}

#[test]
fn a_changed_byte_is_an_image_digest_mismatch_except_in_the_checksum() {
    let mut file = signed().to_vec();
    file[0x201] ^= 0x01; // in the section
    assert_eq!(
        verify(&file, &trust(ROOT), now()),
        Err(AuthenticodeError::ImageDigestMismatch("SHA-256"))
    );
    // Headers too.
    let mut file = signed().to_vec();
    file[0x4e] ^= 0x80;
    assert_eq!(
        verify(&file, &trust(ROOT), now()),
        Err(AuthenticodeError::ImageDigestMismatch("SHA-256"))
    );
    // The checksum is left out of the digest (tools rewrite it).
    let mut file = signed().to_vec();
    let at = pe::layout(&file).unwrap().checksum;
    file[at..at + 4].copy_from_slice(&0x1234u32.to_le_bytes());
    verify(&file, &trust(ROOT), now()).unwrap();
    let msg = verify(
        &{
            let mut f = signed().to_vec();
            f[0x300] ^= 1;
            f
        },
        &trust(ROOT),
        now(),
    )
    .unwrap_err()
    .to_string();
    assert!(msg.starts_with("image digest mismatch"), "{msg}");
}

#[test]
fn an_unsigned_file_is_refused() {
    let e = verify(&tiny_pe(b"\xc3", false), &trust(ROOT), now()).unwrap_err();
    assert_eq!(e, AuthenticodeError::Unsigned);
    assert_eq!(
        e.to_string(),
        "no signature (the file has no certificate table)"
    );
}

#[test]
fn a_signer_from_another_ca_is_not_trusted() {
    let e = verify(signed(), &trust(OTHER_ROOT), now()).unwrap_err();
    assert_eq!(
        e,
        AuthenticodeError::Untrusted {
            signer: PUBLISHER.into(),
            top: "CN=patchops Test Code Signing PCA,O=patchops tests".into(),
        }
    );
    assert!(e
        .to_string()
        .starts_with("signed by CN=patchops Test Publisher,O=patchops tests, not trusted"));
    // Without the intermediate in the signature, the root alone cannot
    // reach the publisher.
    let lone = TestSigner::new(SIGNER_KEY, &[SIGNER]);
    let file = sign(&tiny_pe(b"\xc3", false), &lone, &SignOptions::default());
    assert!(matches!(
        verify(&file, &trust(ROOT), now()),
        Err(AuthenticodeError::Untrusted { top, .. }) if top == PUBLISHER
    ));
}

#[test]
fn a_certificate_checked_against_the_wrong_key_does_not_chain() {
    // The PCA's certificate checked against the publisher's key.
    let pca = <Certificate as der::DecodePem>::from_pem(PCA.as_bytes()).unwrap();
    let publisher = <Certificate as der::DecodePem>::from_pem(SIGNER.as_bytes()).unwrap();
    let e = issued_by(&pca, &publisher).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not verify with the key of CN=patchops Test Publisher"),
        "{e}"
    );
    // And a leaf may not issue: the publisher is no CA.
    assert!(may_issue(&publisher)
        .unwrap_err()
        .to_string()
        .contains("not a CA"));
}

#[test]
fn a_wrong_message_digest_or_signed_image_digest_is_refused() {
    let unsigned = tiny_pe(b"\xc3", false);
    let file = sign(
        &unsigned,
        signer(),
        &SignOptions {
            message_digest: Some(vec![0; 32]),
            ..SignOptions::default()
        },
    );
    assert_eq!(
        verify(&file, &trust(ROOT), now()),
        Err(AuthenticodeError::MessageDigestMismatch)
    );
    let file = sign(
        &unsigned,
        signer(),
        &SignOptions {
            image_digest: Some(vec![7; 32]),
            ..SignOptions::default()
        },
    );
    assert_eq!(
        verify(&file, &trust(ROOT), now()),
        Err(AuthenticodeError::ImageDigestMismatch("SHA-256"))
    );
}

#[test]
fn a_signature_by_another_key_does_not_verify() {
    // The publisher's key, but the PCA's certificate named as the signer.
    let wrong = TestSigner::new(SIGNER_KEY, &[PCA, SIGNER]);
    let file = sign(&tiny_pe(b"\xc3", false), &wrong, &SignOptions::default());
    assert_eq!(
        verify(&file, &trust(ROOT), now()),
        Err(AuthenticodeError::BadSignature(
            "CN=patchops Test Code Signing PCA,O=patchops tests".into()
        ))
    );
    // A flipped bit in the signature value (the last bytes of the DER).
    let unsigned = tiny_pe(b"\xc3", false);
    let layout = pe::layout(&unsigned).unwrap();
    let digest = pe::image_digest(&unsigned, &layout, DigestAlg::Sha256);
    let der = signed_data(signer(), &digest, &SignOptions::default());
    let mut tampered = der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let file = attach(&unsigned, &win_certificate(&tampered));
    assert_eq!(
        verify(&file, &trust(ROOT), now()),
        Err(AuthenticodeError::BadSignature(PUBLISHER.into()))
    );
}

#[test]
fn expired_certificates_are_accepted_with_a_note() {
    let old = TestSigner::new(SIGNER_KEY, &[SIGNER_EXPIRED, PCA]);
    // Signed in 2002, within the certificate's validity (2001-06-01 to 2003-06-01).
    let file = sign(
        &tiny_pe(b"\xc3", false),
        &old,
        &SignOptions {
            digest: DigestAlg::Sha1,
            signing_time: Some(1_022_000_000),
            ..SignOptions::default()
        },
    );
    let v = verify(&file, &trust(ROOT), now()).unwrap();
    assert_eq!(v.signing_time.as_deref(), Some("2002-05-21T16:53:20Z"));
    assert_eq!(
        v.notes,
        [format!(
            "certificate {PUBLISHER} expired on 2003-06-01T00:00:00Z"
        )]
    );
    // Before the expiry, nothing to say.
    let then: jiff::Timestamp = "2002-06-01T00:00:00Z".parse().unwrap();
    assert!(verify(&file, &trust(ROOT), then).unwrap().notes.is_empty());
    // A signing time after the expiry is reported.
    let file = sign(
        &tiny_pe(b"\xc3", false),
        &old,
        &SignOptions {
            signing_time: Some(1_200_000_000),
            ..SignOptions::default()
        },
    );
    let v = verify(&file, &trust(ROOT), now()).unwrap();
    assert_eq!(v.notes.len(), 2, "{:?}", v.notes);
    assert!(v.notes[0].contains("lies outside the signer certificate's validity"));
}

#[test]
fn damaged_certificate_tables_are_clear_errors() {
    let unsigned = tiny_pe(b"\xc3", false);
    let layout = pe::layout(signed()).unwrap();
    let (at, size) = layout.cert_table.unwrap();

    // Data appended after the signature.
    let mut appended = signed().to_vec();
    appended.extend_from_slice(b"payload");
    let e = verify(&appended, &trust(ROOT), now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("7 byte(s) follow the certificate table"), "{e}");

    // Truncated: the table runs past the end.
    let truncated = &signed()[..signed().len() - 100];
    let e = verify(truncated, &trust(ROOT), now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs past the end of the file"), "{e}");

    // Garbage instead of the DER.
    let garbage = attach(
        &unsigned,
        &win_certificate(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3]),
    );
    let e = verify(&garbage, &trust(ROOT), now()).unwrap_err();
    assert!(matches!(e, AuthenticodeError::SignedData(_)), "{e}");

    // A WIN_CERTIFICATE whose length exceeds the table.
    let mut table = win_certificate(&[0x30, 0x00]);
    table[0..4].copy_from_slice(&0xffffu32.to_le_bytes());
    let e = verify(&attach(&unsigned, &table), &trust(ROOT), now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("length 65535"), "{e}");

    // Another revision or type.
    let mut table = signed()[at..at + size].to_vec();
    table[4] = 0x00;
    table[5] = 0x01;
    let e = verify(&attach(&unsigned, &table), &trust(ROOT), now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("revision 0x0100"), "{e}");

    // A header shorter than 8 bytes.
    let e = verify(&attach(&unsigned, &[1, 0, 0]), &trust(ROOT), now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("a WIN_CERTIFICATE header is 8"), "{e}");
}

#[test]
fn files_that_are_not_pe_are_named_so() {
    for (bytes, want) in [
        (&b"[OHotfix]\r\nMsiUILevel=q\r\n"[..], "no MZ header"),
        (&b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"[..], "no MZ header"),
    ] {
        let e = verify(bytes, &trust(ROOT), now()).unwrap_err();
        assert!(matches!(e, AuthenticodeError::NotPe(_)), "{e}");
        assert!(e.to_string().contains(want), "{e}");
    }
    let mut dos = vec![0u8; 128];
    dos[..2].copy_from_slice(b"MZ");
    dos[0x3c] = 0x40;
    let e = verify(&dos, &trust(ROOT), now()).unwrap_err().to_string();
    assert!(e.contains("without a PE header"), "{e}");
    assert!(!looks_like_pe(b"PK\x03\x04"));
}

#[test]
fn trust_files_are_read_strictly() {
    let both = format!("Our publishers.\n\n{ROOT}\nand the PCA:\n{PCA}");
    assert_eq!(TrustStore::from_pem(both.as_bytes()).unwrap().len(), 2);
    assert_eq!(
        TrustStore::from_pem(b"nothing here\n").unwrap_err(),
        TrustError::Empty
    );
    let key = format!("{ROOT}{SIGNER_KEY}");
    let e = TrustStore::from_pem(key.as_bytes()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("a `PRIVATE KEY` block"), "{msg}");
    // The key's content never appears in the message.
    let secret_line = SIGNER_KEY.lines().nth(1).unwrap();
    assert!(!msg.contains(secret_line));
    let broken = ROOT.replace("MII", "MIX");
    let e = TrustStore::from_pem(format!("x\n{broken}").as_bytes()).unwrap_err();
    assert!(
        matches!(
            e,
            TrustError::BadCertificate {
                line: 2,
                index: 1,
                ..
            }
        ),
        "{e}"
    );
    let cut: String = ROOT.lines().take(5).collect::<Vec<_>>().join("\n");
    assert_eq!(
        TrustStore::from_pem(cut.as_bytes()).unwrap_err(),
        TrustError::Unterminated { line: 1 }
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Damage anywhere in a signed file: an error or (for bytes the digest
    /// leaves out) success — never a panic.
    #[test]
    fn damaged_signed_files_never_panic(at in 0usize..4096, byte in any::<u8>(), cut in any::<bool>()) {
        let mut file = signed().to_vec();
        let at = at % file.len();
        if cut {
            file.truncate(at);
        } else {
            file[at] = byte;
        }
        let _ = verify(&file, &trust(ROOT), now());
    }

    /// Arbitrary bytes as the certificate table.
    #[test]
    fn garbage_certificate_tables_never_panic(table in proptest::collection::vec(any::<u8>(), 0..200)) {
        let file = attach(&tiny_pe(b"\xc3", false), &table);
        prop_assert!(verify(&file, &trust(ROOT), now()).is_err());
    }
}

/// Files signed by another implementation (`osslsigncode sign -h sha1|sha256`
/// with the test publisher's key and chain): what this verifier accepts is
/// what other tools write, not only what its own test signer writes.
#[test]
fn files_signed_by_osslsigncode_verify() {
    for (bytes, digest) in [
        (
            &include_bytes!("../../tests/fixtures/authenticode/osslsigncode-sha1.exe")[..],
            DigestAlg::Sha1,
        ),
        (
            &include_bytes!("../../tests/fixtures/authenticode/osslsigncode-sha256.exe")[..],
            DigestAlg::Sha256,
        ),
    ] {
        let v = verify(bytes, &trust(ROOT), now()).unwrap();
        assert_eq!(v.signer, PUBLISHER);
        assert_eq!(v.digest, digest);
        assert_eq!(v.chain.len(), 3);
        // osslsigncode adds a signingTime signed attribute.
        assert!(v.signing_time.is_some());
        let mut changed = bytes.to_vec();
        changed[0x203] ^= 1;
        assert_eq!(
            verify(&changed, &trust(ROOT), now()),
            Err(AuthenticodeError::ImageDigestMismatch(digest.name()))
        );
        assert!(matches!(
            verify(bytes, &trust(OTHER_ROOT), now()),
            Err(AuthenticodeError::Untrusted { .. })
        ));
    }
}
