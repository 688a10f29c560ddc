//! Saved plans (`plan --out FILE`): exactly what `apply FILE` will do, bound
//! to the state it was made against, checksummed, optionally signed.
//!
//! The JSON shape is documented in docs/plan-json.md; `plan --format json`
//! prints the same document.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::git::Revision;
use crate::ops::distribute::{Cleanup, Distribution};
use crate::plan::{Change, Summary};
use crate::secret::Secret;

pub const FORMAT: &str = "patchops-plan/v1";

/// The state a plan was made against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRef {
    /// The store's identity (made when it was created).
    pub id: String,
    /// Where it was, without credentials.
    pub url: String,
    pub serial: i64,
    /// SHA-256 over every stored object's kind, name, hash and owner.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub dir: String,
    #[serde(flatten)]
    pub revision: Revision,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub patchops_version: String,
    pub created_at: String,
    pub state: StateRef,
    /// The site code of the manifests.
    pub site: Option<String>,
    pub source: Source,
    pub targets: Vec<String>,
    pub allow_destroy: bool,
    pub summary: Summary,
    pub changes: Vec<Change>,
    /// Package content to copy to distribution points, in sending-priority
    /// order.
    #[serde(default)]
    pub distribution: Vec<Distribution>,
    /// Distribution points apply collects garbage on though it copies
    /// nothing to them (an interrupted distribution left files there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleanup: Vec<Cleanup>,
    /// Readiness of each software update package: only a Ready one is in
    /// `distribution`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<crate::supdate::readiness::UpdateReadiness>,
    /// Objects in the state that patchops does not own, left alone.
    pub unmanaged: Vec<String>,
    /// The plan's effect on the machines of the inventory: membership and
    /// client-policy changes. None for targeted plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<crate::ops::impact::SiteImpact>,
    /// `sha256:` of the document with `checksum` and `signature` empty.
    pub checksum: String,
    /// `hmac-sha256:` over the same bytes, when signed.
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanFileError {
    #[error("the plan file is not a patchops plan: {0}")]
    Corrupt(String),
    #[error("the plan file is format {0}; this patchops reads {FORMAT}")]
    Format(String),
    #[error(
        "the plan file's checksum does not match its content: it was changed after it was made"
    )]
    Tampered,
    #[error("the plan file is not signed, and a signature is required")]
    Unsigned,
    #[error("the plan file's signature is not valid for this key")]
    BadSignature,
}

impl SavedPlan {
    /// The bytes the checksum and signature cover: the document with both
    /// emptied (taken out and put back, not cloned: plans can be large).
    fn body(&mut self) -> Vec<u8> {
        let checksum = std::mem::take(&mut self.checksum);
        let signature = self.signature.take();
        let body = serde_json::to_vec(self).unwrap_or_default();
        self.checksum = checksum;
        self.signature = signature;
        body
    }

    /// Fills in the checksum, and the signature when a key is given.
    pub fn seal(&mut self, key: Option<&Secret>) {
        let body = self.body();
        self.checksum = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        self.signature = key.map(|k| format!("hmac-sha256:{}", hex::encode(hmac(k, &body))));
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Reads and verifies a saved plan: well-formed, of our format,
    /// unchanged since it was sealed, and signed with `key` when one is given.
    pub fn load(text: &str, key: Option<&Secret>) -> Result<SavedPlan, PlanFileError> {
        // Only the format first, so a future format is named, not misread.
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
        }
        let probe: Probe =
            serde_json::from_str(text).map_err(|e| PlanFileError::Corrupt(e.to_string()))?;
        match probe.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => return Err(PlanFileError::Format(other.to_string())),
            None => return Err(PlanFileError::Corrupt("it has no `format` field".into())),
        }
        let mut plan: SavedPlan =
            serde_json::from_str(text).map_err(|e| PlanFileError::Corrupt(e.to_string()))?;
        let body = plan.body();
        if plan.checksum != format!("sha256:{}", hex::encode(Sha256::digest(&body))) {
            return Err(PlanFileError::Tampered);
        }
        if let Some(key) = key {
            let Some(signature) = plan
                .signature
                .as_deref()
                .and_then(|s| s.strip_prefix("hmac-sha256:"))
            else {
                return Err(PlanFileError::Unsigned);
            };
            let expected = hex::decode(signature).map_err(|_| PlanFileError::BadSignature)?;
            let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.expose())
                .map_err(|_| PlanFileError::BadSignature)?;
            mac.update(&body);
            mac.verify_slice(&expected)
                .map_err(|_| PlanFileError::BadSignature)?;
        }
        Ok(plan)
    }

    /// Whether applying the plan would do anything.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.distribution.is_empty() && self.cleanup.is_empty()
    }

    /// A short identity of the plan for the audit log.
    pub fn hash(&self) -> &str {
        &self.checksum
    }
}

fn hmac(key: &Secret, body: &[u8]) -> Vec<u8> {
    match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.expose()) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretSource;

    fn sample() -> SavedPlan {
        SavedPlan {
            format: FORMAT.into(),
            patchops_version: "test".into(),
            created_at: "2026-11-25T00:00:00Z".into(),
            state: StateRef {
                id: "store-1".into(),
                url: "sqlite://x.db".into(),
                serial: 3,
                fingerprint: "sha256:abc".into(),
            },
            site: Some("LAB".into()),
            source: Source {
                dir: "site".into(),
                revision: Revision::default(),
            },
            targets: vec![],
            allow_destroy: false,
            summary: Summary {
                add: 1,
                change: 0,
                destroy: 0,
            },
            changes: vec![],
            distribution: vec![],
            cleanup: vec![],
            updates: vec![],
            unmanaged: vec![],
            impact: None,
            checksum: String::new(),
            signature: None,
        }
    }

    fn key(value: &str) -> Secret {
        std::env::set_var("PATCHOPS_TEST_PLAN_KEY", value);
        SecretSource::Env("PATCHOPS_TEST_PLAN_KEY".into())
            .read()
            .unwrap()
    }

    #[test]
    fn sealed_plans_load_back_and_tampering_is_caught() {
        let mut plan = sample();
        plan.seal(None);
        let text = plan.to_json();
        assert_eq!(SavedPlan::load(&text, None).unwrap(), plan);
        let tampered = text.replace("\"serial\": 3", "\"serial\": 4");
        assert_ne!(tampered, text);
        assert_eq!(
            SavedPlan::load(&tampered, None).unwrap_err(),
            PlanFileError::Tampered
        );
        assert!(matches!(
            SavedPlan::load(&text[..text.len() / 2], None),
            Err(PlanFileError::Corrupt(_))
        ));
        assert!(matches!(
            SavedPlan::load("{\"format\": \"other/v9\"}", None),
            Err(PlanFileError::Format(_))
        ));
    }

    #[test]
    fn signatures_bind_plans_to_a_key() {
        let signing = key("correct horse");
        let mut plan = sample();
        plan.seal(Some(&signing));
        let text = plan.to_json();
        assert!(SavedPlan::load(&text, Some(&signing)).is_ok());
        assert_eq!(
            SavedPlan::load(&text, Some(&key("wrong"))).unwrap_err(),
            PlanFileError::BadSignature
        );
        let mut unsigned = sample();
        unsigned.seal(None);
        assert_eq!(
            SavedPlan::load(&unsigned.to_json(), Some(&signing)).unwrap_err(),
            PlanFileError::Unsigned
        );
    }
}
