//! Distribution points: the content library on disk (`library`), and
//! serving it over HTTP (`serve`).

pub mod library;
pub mod serve;
