//! Distribution points: the content library on disk (`library`, with the
//! stat fingerprints of its files in `fingerprint`), and serving it over
//! HTTP (`serve`).

pub mod fingerprint;
pub mod library;
pub mod serve;
