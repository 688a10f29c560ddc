//! Content: the package files a program needs, verified before it runs.
//!
//! For each distribution point, in the policy's order (local ones first):
//! fetch `<dp>/packages/<packageId>/versions/<version>.json`, recompute the
//! version from the manifest's file list exactly as the site server does
//! ([`ContentManifest::new`]: SHA-256 over every file's path, size, mode and
//! hash) and refuse it unless it equals the policy's `version`; then fetch
//! every file into the single-instance cache `<state>/content/<sha256>`,
//! resuming a partial `.part` file with `Range`, and verify each file's size
//! and SHA-256. A file that does not match is deleted and the next
//! distribution point is tried. Only when every file is verified is the
//! package tree materialized (paths from the manifest, modes applied) in a
//! per-run work directory. Paths that are absolute, contain `..`, `.`,
//! empty segments, backslashes or NUL are refused.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use super::client::{read_limited, reason, ReadError};
use crate::content::{hash_file, ContentManifest};
use crate::policy::{PolicyContent, PolicyDistributionPoint};

/// The largest content manifest accepted.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Where the content came from.
#[derive(Debug)]
pub struct Fetched {
    pub dp: String,
    pub manifest: ContentManifest,
    /// Files taken from the cache without a download.
    pub cached: usize,
}

/// Every distribution point failed; one reason each.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.summary())]
pub struct DownloadError {
    pub failures: Vec<(String, String)>,
}

impl DownloadError {
    fn summary(&self) -> String {
        if self.failures.is_empty() {
            return "no distribution point is usable for this content".into();
        }
        let each: Vec<String> = self
            .failures
            .iter()
            .map(|(dp, why)| format!("{dp}: {why}"))
            .collect();
        format!("content not downloaded: {}", each.join("; "))
    }
}

/// Fetches and verifies `content` into `cache` from the first
/// distribution point that delivers it whole and correct.
pub async fn fetch(
    http: &reqwest::Client,
    content: &PolicyContent,
    dps: &[&PolicyDistributionPoint],
    cache: &Path,
) -> Result<Fetched, DownloadError> {
    let mut failures = Vec::new();
    for dp in dps {
        match fetch_from(http, content, dp, cache).await {
            Ok((manifest, cached)) => {
                return Ok(Fetched {
                    dp: dp.name.clone(),
                    manifest,
                    cached,
                })
            }
            Err(why) => {
                tracing::warn!(dp = %dp.name, "content: {why}");
                failures.push((dp.name.clone(), why));
            }
        }
    }
    Err(DownloadError { failures })
}

async fn fetch_from(
    http: &reqwest::Client,
    content: &PolicyContent,
    dp: &PolicyDistributionPoint,
    cache: &Path,
) -> Result<(ContentManifest, usize), String> {
    let base = dp.url.trim_end_matches('/');
    // Content is fetched without credentials (it follows redirects, and is
    // verified by its hash): a DP URL with `user:password@` is refused.
    if reqwest::Url::parse(base).is_ok_and(|u| crate::tls::has_credentials(&u)) {
        return Err("the DP URL carries credentials; content is fetched without them".into());
    }
    if !is_hex(&content.version, 64) || !is_hex(&content.package_id, 16) {
        return Err("the policy's content reference is malformed".into());
    }
    let url = format!(
        "{base}/packages/{}/versions/{}.json",
        content.package_id, content.version
    );
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("manifest: {}", reason(&e)))?;
    if !response.status().is_success() {
        return Err(format!("manifest: the DP answered {}", response.status()));
    }
    let bytes = read_limited(response, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => format!("manifest: larger than {MAX_MANIFEST_BYTES} bytes"),
            ReadError::Http(e) => format!("manifest: {}", reason(&e)),
        })?;
    let manifest = verify_manifest(&bytes, &content.version)?;
    let mut cached = 0;
    for file in &manifest.files {
        let target = cache.join(&file.sha256);
        if target.exists() {
            if verify_file(&target, file.size, &file.sha256).is_ok() {
                cached += 1;
                continue;
            }
            let _ = fs::remove_file(&target);
        }
        download_file(http, base, &file.sha256, file.size, cache)
            .await
            .map_err(|e| format!("{}: {e}", file.path))?;
    }
    Ok((manifest, cached))
}

/// Parses a content manifest and checks that it is the version asked for
/// and that every path is safe.
pub fn verify_manifest(bytes: &[u8], version: &str) -> Result<ContentManifest, String> {
    let manifest: ContentManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest: malformed: {e}"))?;
    let recomputed = ContentManifest::new(&manifest.package, manifest.files.clone());
    if recomputed.version != version || manifest.version != version {
        return Err(format!(
            "manifest: hash mismatch: the policy names version {version}, the manifest hashes to {}",
            recomputed.version
        ));
    }
    for f in &manifest.files {
        safe_relative(&f.path)?;
        if !is_hex(&f.sha256, 64) {
            return Err(format!("manifest: {}: malformed sha256", f.path));
        }
    }
    Ok(manifest)
}

/// A manifest path as a relative path that stays in its directory.
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let refuse =
        || format!("manifest: unsafe path {path:?} (it would leave the package directory)");
    if path.is_empty() || path.contains('\\') || path.contains('\0') || path.starts_with('/') {
        return Err(refuse());
    }
    let mut out = PathBuf::new();
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(refuse());
        }
        out.push(segment);
    }
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse());
    }
    Ok(out)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a file's size and SHA-256.
pub fn verify_file(path: &Path, size: u64, sha256: &str) -> Result<(), String> {
    let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len != size {
        return Err(format!("size mismatch: expected {size} bytes, got {len}"));
    }
    let actual = hash_file(path).map_err(|e| e.to_string())?;
    if actual != sha256 {
        return Err(format!(
            "hash mismatch: expected sha256 {sha256}, got {actual}"
        ));
    }
    Ok(())
}

/// Downloads one blob into `<cache>/<sha>`, resuming `<sha>.part`.
async fn download_file(
    http: &reqwest::Client,
    base: &str,
    sha256: &str,
    size: u64,
    cache: &Path,
) -> Result<(), String> {
    let part = cache.join(format!("{sha256}.part"));
    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let have = if have > size {
        let _ = fs::remove_file(&part);
        0
    } else {
        have
    };
    if have < size || size == 0 {
        let mut request = http.get(format!("{base}/files/{sha256}"));
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().await.map_err(|e| reason(&e))?;
        let status = response.status();
        let mut file = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let expected = format!("bytes {have}-");
                let ok = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(&expected));
                if !ok {
                    let _ = fs::remove_file(&part);
                    return Err("the DP answered a range that was not asked for".into());
                }
                fs::OpenOptions::new()
                    .append(true)
                    .open(&part)
                    .map_err(|e| e.to_string())?
            }
            StatusCode::OK => fs::File::create(&part).map_err(|e| e.to_string())?,
            other => return Err(format!("the DP answered {other}")),
        };
        let mut written = if status == StatusCode::OK { 0 } else { have };
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                // Keep what arrived: the next attempt resumes it.
                Err(e) => return Err(format!("interrupted: {}", reason(&e))),
            };
            written += chunk.len() as u64;
            if written > size {
                drop(file);
                let _ = fs::remove_file(&part);
                return Err(format!(
                    "size mismatch: the DP sent more than the {size} bytes the manifest lists"
                ));
            }
            file.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        file.sync_all().map_err(|e| e.to_string())?;
    }
    if let Err(why) = verify_file(&part, size, sha256) {
        let _ = fs::remove_file(&part);
        return Err(format!("{why}; the file was deleted"));
    }
    let target = cache.join(sha256);
    fs::rename(&part, &target).map_err(|e| e.to_string())?;
    Ok(())
}

/// Builds the package tree of `manifest` under `dir` from verified cache
/// files: each file copied to its path, with its mode (owner read and
/// write always kept, no set-id bits).
pub fn materialize(manifest: &ContentManifest, cache: &Path, dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for f in &manifest.files {
        let relative = safe_relative(&f.path)?;
        let target = dir.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let source = cache.join(&f.sha256);
        copy_verified(&source, &target, f.size, &f.sha256)
            .map_err(|e| format!("{}: {e}", f.path))?;
        let mode = (f.mode & 0o777) | 0o600;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", f.path))?;
    }
    Ok(())
}

/// Copies and checks the copy (the cache could have changed underneath).
fn copy_verified(source: &Path, target: &Path, size: u64, sha256: &str) -> io::Result<()> {
    fs::copy(source, target)?;
    verify_file(target, size, sha256).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentFile;

    fn manifest(paths: &[&str]) -> ContentManifest {
        ContentManifest::new(
            "P",
            paths
                .iter()
                .map(|p| ContentFile {
                    path: p.to_string(),
                    size: 0,
                    mode: 0o644,
                    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                        .into(),
                })
                .collect(),
        )
    }

    #[test]
    fn paths_that_escape_are_refused() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/.",
            "",
            "a\\b",
            "a\0b",
        ] {
            assert!(safe_relative(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_relative("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
        let m = manifest(&["ok.txt", "../escape"]);
        let bytes = serde_json::to_vec(&m).unwrap();
        let err = verify_manifest(&bytes, &m.version).unwrap_err();
        assert!(err.contains("unsafe path"), "{err}");
    }

    #[test]
    fn the_manifest_must_hash_to_the_policys_version() {
        let m = manifest(&["run.sh"]);
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        assert!(verify_manifest(&bytes, &m.version).is_ok());
        let mut forged = m.clone();
        forged.files[0].size = 1;
        let bytes = serde_json::to_vec(&forged).unwrap();
        let err = verify_manifest(&bytes, &m.version).unwrap_err();
        assert!(err.contains("hash mismatch"), "{err}");
        assert!(verify_manifest(b"{", &m.version)
            .unwrap_err()
            .contains("malformed"));
    }

    #[test]
    fn materialized_trees_have_their_modes_and_verified_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir_all(&cache).unwrap();
        let data = b"echo hi\n";
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        fs::write(cache.join(&sha), data).unwrap();
        let m = ContentManifest::new(
            "P",
            vec![ContentFile {
                path: "bin/run.sh".into(),
                size: data.len() as u64,
                mode: 0o4755,
                sha256: sha.clone(),
            }],
        );
        let work = dir.path().join("work");
        materialize(&m, &cache, &work).unwrap();
        let meta = fs::metadata(work.join("bin/run.sh")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        // A cache file changed underneath is caught at the copy.
        fs::write(cache.join(&sha), b"rm -rf /\n").unwrap();
        let err = materialize(&m, &cache, &dir.path().join("work2")).unwrap_err();
        assert!(err.contains("mismatch"), "{err}");
    }

    /// A DP library holding one package version, served on loopback.
    async fn served_dp(
        files: &[(&str, &[u8])],
    ) -> (tempfile::TempDir, String, PolicyContent, ContentManifest) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dp");
        fs::create_dir_all(root.join("files")).unwrap();
        fs::write(root.join(crate::dp::library::MARKER), b"").unwrap();
        let mut entries = Vec::new();
        for (path, data) in files {
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
            let blob_dir = root.join("files").join(&sha[..2]);
            fs::create_dir_all(&blob_dir).unwrap();
            fs::write(blob_dir.join(&sha), data).unwrap();
            entries.push(ContentFile {
                path: path.to_string(),
                size: data.len() as u64,
                mode: 0o644,
                sha256: sha,
            });
        }
        let manifest = ContentManifest::new("P", entries);
        let package_id = "0123456789abcdef";
        let versions = root.join("packages").join(package_id).join("versions");
        fs::create_dir_all(&versions).unwrap();
        fs::write(
            versions.join(format!("{}.json", manifest.version)),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = crate::dp::serve::app(crate::dp::serve::ServeConfig {
            root,
            connections: Default::default(),
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let content = PolicyContent {
            package_id: package_id.into(),
            version: manifest.version.clone(),
            files: files.len() as u64,
            bytes: manifest.total_bytes(),
        };
        (dir, url, content, manifest)
    }

    fn dp(name: &str, url: &str) -> PolicyDistributionPoint {
        PolicyDistributionPoint {
            name: name.into(),
            url: url.into(),
            local: true,
        }
    }

    #[tokio::test]
    async fn partial_files_are_resumed_with_range_and_verified() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (dir, url, content, manifest) =
            served_dp(&[("setup.bin", &big), ("run.sh", b"exit 0\n")]).await;
        let cache = dir.path().join("cache");
        fs::create_dir_all(&cache).unwrap();
        let sha = &manifest
            .files
            .iter()
            .find(|f| f.path == "setup.bin")
            .unwrap()
            .sha256;
        // An interrupted earlier download: the first 100,000 bytes.
        fs::write(cache.join(format!("{sha}.part")), &big[..100_000]).unwrap();
        let http = crate::tls::client_builder(None).unwrap().build().unwrap();
        let good = dp("dp-hq", &url);
        let fetched = fetch(&http, &content, &[&good], &cache).await.unwrap();
        assert_eq!((fetched.dp.as_str(), fetched.cached), ("dp-hq", 0));
        assert_eq!(fs::read(cache.join(sha)).unwrap(), big);
        assert!(!cache.join(format!("{sha}.part")).exists());
        // Again: everything from the cache (verified again).
        let again = fetch(&http, &content, &[&good], &cache).await.unwrap();
        assert_eq!(again.cached, 2);

        // A partial file with wrong bytes: the whole file fails its hash,
        // is deleted, and the next DP is tried.
        fs::remove_file(cache.join(sha)).unwrap();
        let mut wrong = big[..100_000].to_vec();
        wrong[5] ^= 0xff;
        fs::write(cache.join(format!("{sha}.part")), &wrong).unwrap();
        let err = fetch(&http, &content, &[&good], &cache).await.unwrap_err();
        assert!(err.to_string().contains("hash mismatch"), "{err}");
        assert!(!cache.join(format!("{sha}.part")).exists());
        let fetched = fetch(
            &http,
            &content,
            &[&dp("down", "http://127.0.0.1:9"), &good],
            &cache,
        )
        .await
        .unwrap();
        assert_eq!(fetched.dp, "dp-hq");

        // A version the DP does not have, or a forged version id.
        let mut missing = content.clone();
        missing.version = "f".repeat(64);
        let err = fetch(&http, &missing, &[&good], &cache).await.unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
    }

    /// A loopback server redirecting every request to the same path on `to`.
    async fn redirect_server(to: String) -> String {
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let to = to.clone();
            async move { axum::response::Redirect::temporary(&format!("{to}{}", uri.path())) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn dp_downloads_follow_redirects_without_credentials_and_verify_every_hash() {
        let data = b"the real content".to_vec();
        let (dir, url, content, manifest) = served_dp(&[("setup.bin", &data)]).await;
        let sha = manifest.files[0].sha256.clone();
        // A second origin that serves the right manifest but forged bytes
        // for the blob, behind a redirector on a third origin.
        let real = url.clone();
        let forged = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let real = real.clone();
            async move {
                if uri.path().starts_with("/files/") {
                    axum::response::Response::new(axum::body::Body::from("THE REAL CONTENT"))
                } else {
                    use axum::response::IntoResponse;
                    axum::response::Redirect::temporary(&format!("{real}{}", uri.path()))
                        .into_response()
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forged_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, forged).await });
        let via_forged = redirect_server(forged_url).await;
        let via_real = redirect_server(redirect_server(url.clone()).await).await;
        let http = crate::tls::client_builder(None)
            .unwrap()
            .redirect(crate::tls::content_redirects(5))
            .build()
            .unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir_all(&cache).unwrap();
        // Two hops to the real DP, on other origins: followed, verified.
        let fetched = fetch(&http, &content, &[&dp("via", &via_real)], &cache)
            .await
            .unwrap();
        assert_eq!(fs::read(cache.join(&sha)).unwrap(), data);
        assert_eq!(fetched.cached, 0);
        fs::remove_file(cache.join(&sha)).unwrap();
        // Redirected to forged bytes: refused by their hash, nothing kept.
        let err = fetch(&http, &content, &[&dp("forged", &via_forged)], &cache)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("hash mismatch"), "{err}");
        assert!(!cache.join(&sha).exists());
        // A DP URL with credentials is refused before any request.
        let with_user = url.replace("http://", "http://user:secret@");
        let err = fetch(&http, &content, &[&dp("creds", &with_user)], &cache)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("carries credentials"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
