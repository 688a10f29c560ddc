//! Agent tokens: random, handed out once at registration, stored only as
//! their SHA-256, and cached for a short time after a successful check so
//! that a policy poll needs no database round trip.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A fresh token: 256 random bits, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    bytes[..16].copy_from_slice(a.as_bytes());
    bytes[16..].copy_from_slice(b.as_bytes());
    // Two v4 UUIDs carry 244 random bits; hashing spreads them over the
    // whole token.
    hex::encode(Sha256::digest(bytes))
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub struct TokenCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, (String, Instant)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The machine key of a token hash checked less than the TTL ago.
    pub fn get(&self, hash: &str) -> Option<String> {
        let entries = self.entries.read().ok()?;
        let (machine, checked) = entries.get(hash)?;
        (checked.elapsed() < self.ttl).then(|| machine.clone())
    }

    pub fn put(&self, hash: String, machine: String) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() > 1_000_000 {
                entries.retain(|_, (_, checked)| checked.elapsed() < self.ttl);
            }
            entries.insert(hash, (machine, Instant::now()));
        }
    }

    /// Forgets every token of a machine (revoked here, or re-registered).
    pub fn forget_machine(&self, machine: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (m, _)| m != machine);
        }
    }

    /// Forgets every token of these machines, in one pass over the cache.
    pub fn forget_machines(&self, machines: &HashSet<String>) {
        if machines.is_empty() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, (m, _)| !machines.contains(m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(token_hash(&a), a);
    }

    #[test]
    fn cache_expires_and_forgets() {
        let cache = TokenCache::new(Duration::from_secs(60));
        cache.put("h".into(), "wks-1".into());
        assert_eq!(cache.get("h").as_deref(), Some("wks-1"));
        cache.forget_machine("wks-1");
        assert_eq!(cache.get("h"), None);
        cache.put("h1".into(), "wks-1".into());
        cache.put("h2".into(), "wks-2".into());
        cache.put("h3".into(), "wks-3".into());
        cache.forget_machines(&["wks-1".to_string(), "wks-3".to_string()].into());
        assert_eq!(cache.get("h1"), None);
        assert_eq!(cache.get("h2").as_deref(), Some("wks-2"));
        assert_eq!(cache.get("h3"), None);
        let off = TokenCache::new(Duration::ZERO);
        off.put("h".into(), "wks-1".into());
        assert_eq!(off.get("h"), None);
    }
}
