//! Randomness a failing test can replay.

/// A small deterministic generator for fault tests; print the seed so a
/// failure can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    /// Seeded from `var` when set, else from the clock.
    pub fn from_env(var: &str) -> Lcg {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{var}={seed}");
        Lcg(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
