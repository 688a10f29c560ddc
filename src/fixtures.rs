//! Generated sites for benchmarks and fault tests (not part of the API).
#![doc(hidden)]

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

/// Writes a valid site of `n` manifests into `dir`: a site and a
/// distribution point, a tenth collections (with queries), a tenth packages
/// (three programs each, with content), the rest advertisements, in files of
/// ten documents. `variant` changes every collection's comment, so two
/// variants differ in a tenth of the objects.
pub fn generate_site(dir: &Path, n: usize, variant: &str) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir.join("packages/content"))?;
    fs::write(dir.join("packages/content/setup.cmd"), "@echo off\r\n")?;
    // Package sources must not be group- or world-writable, whatever the umask.
    for (path, mode) in [
        ("", 0o755),
        ("packages", 0o755),
        ("packages/content", 0o755),
        ("packages/content/setup.cmd", 0o644),
    ] {
        fs::set_permissions(dir.join(path), fs::Permissions::from_mode(mode))?;
    }
    fs::write(
        dir.join("site.yaml"),
        "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n---\napiVersion: patchops/v1\nkind: DistributionPoint\nmetadata: {name: dp-hq}\nspec: {path: dp/dp-hq, url: 'http://dp-hq:8080', boundaries: [10.1.0.0/16]}\n",
    )?;
    let collections = (n / 10).max(1);
    let packages = (n / 10).max(1);
    let advertisements = n.saturating_sub(collections + packages + 2);
    let mut docs: Vec<String> = Vec::with_capacity(n);
    for i in 0..collections {
        docs.push(format!(
            "apiVersion: patchops/v1\nkind: Collection\nmetadata: {{name: Collection {i}}}\nspec:\n  comment: Machines of department {i} {variant}\n  limitingCollection: All Systems\n  membership:\n    - query: os.name like 'Microsoft Windows%' and properties.department = 'dept-{i}' and os.version >= '5.1.2600'\n    - direct: [wks-{i}-01, wks-{i}-02]\n  evaluation: {{every: 1d}}\n"
        ));
    }
    for i in 0..packages {
        docs.push(format!(
            "apiVersion: patchops/v1\nkind: Package\nmetadata: {{name: Package {i}}}\nspec:\n  version: '1.{i}'\n  manufacturer: Contoso\n  source: packages/content\n  priority: high\n  distributionPoints: [dp-hq]\n  programs:\n    - {{name: Install, commandLine: setup.exe /quiet, runMode: hidden, canRun: whetherOrNotUserLoggedOn, runWith: administrativeRights, maxRunTime: 1h}}\n    - {{name: Repair, commandLine: setup.exe /repair, maxRunTime: 30m}}\n    - {{name: Remove, commandLine: setup.exe /uninstall, afterRunning: restart}}\n"
        ));
    }
    for i in 0..advertisements {
        docs.push(format!(
            "apiVersion: patchops/v1\nkind: Advertisement\nmetadata: {{name: Advertisement {i}}}\nspec:\n  package: Package {}\n  program: Install\n  collection: Collection {}\n  schedule:\n    - {{start: 2026-11-24T02:00:00Z, every: 7d}}\n  rerun: always\n  priority: medium\n",
            i % packages,
            i % collections
        ));
    }
    for (f, chunk) in docs.chunks(10).enumerate() {
        let mut text = String::new();
        for doc in chunk {
            let _ = write!(text, "---\n{doc}");
        }
        fs::write(dir.join(format!("m{f:05}.yaml")), text)?;
    }
    Ok(())
}
