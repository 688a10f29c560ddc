//! `plan`: manifests and state → a sealed plan.

use std::borrow::Cow;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::distribute::SourceReader;
use super::impact::{site_impact, SiteImpact};
use super::OpError;
use crate::content::ContentSummary;
use crate::git;
use crate::manifest::Kind;
use crate::ops::planfile::{SavedPlan, Source, StateRef, FORMAT};
use crate::plan::{self, applied_site, canonical_objects, ActualObject, PlanOptions};
use crate::records::{Owner, StoredObject};
use crate::secret::Secret;
use crate::site::Site;
use crate::validate::{validate_dir, Options};

pub struct Request<'a> {
    pub dir: &'a Path,
    pub options: PlanOptions,
    pub sign_key: Option<&'a Secret>,
    /// Re-hash the content on distribution points (`plan --validate`)
    /// instead of trusting names and sizes.
    pub validate_content: bool,
}

/// Validates the manifests, reads the state and plans. Nothing is written.
pub async fn make(store: &Site, request: &Request<'_>) -> Result<SavedPlan, OpError> {
    // The state is read while the manifests are validated: validation
    // leaves a core idle for much of its time, and decoding the stored
    // objects takes that core instead of following it.
    let dir = request.dir.to_path_buf();
    let validating = tokio::task::spawn_blocking(move || validate_dir(&dir, Options::default()));
    let reading = async { Ok::<_, OpError>((store.info().await?, store.objects().await?)) };
    let (validated, read) = tokio::join!(validating, reading);
    let mut report = validated
        .map_err(|e| OpError::Input(format!("validation stopped: {e}")))?
        .map_err(|d| OpError::Input(d.message))?;
    if !report.is_valid() {
        return Err(OpError::Invalid(Box::new(report)));
    }
    let (info, stored) = read?;
    // The manifests' texts serve diagnostics only; a valid site needs
    // none, and at 100,000 objects they are tens of megabytes.
    drop(std::mem::take(&mut report.files));
    let mut sources = SourceReader::new(request.dir);
    let content = super::distribute::package_content(&mut sources, &report.desired)?;
    let missing = missing_states(store, &report.desired).await?;
    let mut catalogs = std::mem::take(&mut report.catalogs);
    let updates =
        crate::supdate::readiness_all(request.dir, &report.desired, &missing, &mut catalogs);
    let ready: Vec<String> = updates
        .iter()
        .filter(|u| u.ready)
        .map(|u| u.package.clone())
        .collect();
    let update_content = super::distribute::update_content(&mut sources, &report.desired, &ready)?;
    sources.save();
    drop(sources);
    let builds = crate::supdate::builds(
        request.dir,
        &report.desired,
        &update_content,
        &missing,
        &mut catalogs,
    );
    drop(catalogs);
    let desired = canonical_objects(&report.desired, &content, &builds);
    let site = report
        .desired
        .site
        .as_ref()
        .map(|s| s.spec.site_code.clone());

    if let (Some(state_site), Some(planned)) = (&info.site, &site) {
        if state_site != planned {
            return Err(OpError::OtherSite {
                state: state_site.clone(),
                planned: planned.clone(),
            });
        }
    }
    let fingerprint = fingerprint(&stored);
    let actual = stored
        .iter()
        .map(actual_object)
        .collect::<Result<Vec<_>, _>>()?;
    let planned = plan::plan(&desired, &report.desired, &actual, &request.options)?;
    drop(actual);
    // A targeted plan changes only some objects; the impact of the whole
    // desired site would overstate it.
    let impact = if !request.options.targets.is_empty() {
        None
    } else if planned.changes.is_empty() {
        // Every desired object is stored with equal text and no managed
        // object is left to delete, so the applied site (the managed
        // objects) is the desired one: no machine's membership or policy
        // changes, and neither site needs evaluating.
        Some(SiteImpact::unchanged(store.machine_count().await?))
    } else {
        let applied = applied_site(&stored).map_err(|e| OpError::Input(e.to_string()))?;
        let machines = store.machines().await?;
        let summaries = content
            .iter()
            .map(|(name, m)| (name.clone(), ContentSummary::of(m)))
            .collect();
        Some(
            site_impact(machines, &applied, &report.desired, &summaries, &builds)
                .map_err(|e| OpError::Input(e.to_string()))?,
        )
    };
    drop(stored);
    let super::distribute::ContentPlan {
        mut distribution,
        mut cleanup,
    } = super::distribute::plan_distribution(
        request.dir,
        &report.desired,
        &content,
        &update_content,
        request.validate_content,
    )?;
    if !request.options.targets.is_empty() {
        distribution.retain(|d| {
            request.options.targets.iter().any(|(k, n)| {
                let kind = if d.update_package {
                    Kind::SoftwareUpdatePackage
                } else {
                    Kind::Package
                };
                *k == kind && n == &d.package
            })
        });
        cleanup.retain(|c| {
            request
                .options
                .targets
                .iter()
                .any(|(k, n)| *k == Kind::DistributionPoint && n == &c.dp)
        });
    }

    let mut saved = SavedPlan {
        format: FORMAT.to_string(),
        patchops_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        state: StateRef {
            id: info.store_id,
            url: store.display_url(),
            serial: info.serial,
            fingerprint,
        },
        site,
        source: Source {
            dir: request.dir.display().to_string(),
            revision: git::revision(request.dir),
        },
        targets: request
            .options
            .targets
            .iter()
            .map(|(k, n)| format!("{k}/{n}"))
            .collect(),
        allow_destroy: request.options.allow_destroy,
        summary: planned.summary(),
        changes: planned.changes,
        distribution,
        cleanup,
        updates,
        unmanaged: planned
            .unmanaged
            .iter()
            .map(|(k, n)| format!("{k}/{n}"))
            .collect(),
        impact,
        checksum: String::new(),
        signature: None,
    };
    saved.seal(request.sign_key);
    Ok(saved)
}

/// What `missingIn` selections resolve from: the members of each
/// collection they name — the desired site's definition evaluated over the
/// stored inventory, as it will be once applied — and the stored patch
/// states. Reads nothing when no selection uses `missingIn`.
pub async fn missing_states(
    store: &Site,
    desired: &crate::model::Desired,
) -> Result<crate::supdate::resolve::MissingStates, OpError> {
    let wanted = crate::supdate::missing_in_collections(desired);
    if wanted.is_empty() {
        return Ok(Default::default());
    }
    let mut table = crate::eval::MachineTable::new();
    for (id, machine) in store.machines().await? {
        table
            .insert_with_id(id, machine)
            .map_err(|e| OpError::Input(e.to_string()))?;
    }
    let mut evaluator =
        crate::eval::Evaluator::from_desired(desired).map_err(|e| OpError::Input(e.to_string()))?;
    evaluator.evaluate_all(&table);
    let mut members = std::collections::BTreeMap::new();
    for name in wanted {
        let keys: Vec<String> = evaluator
            .members(&name)
            .map(|bitmap| {
                bitmap
                    .iter()
                    .filter_map(|id| {
                        table
                            .get(id)
                            .map(|m| crate::inventory::machine_key(&m.name))
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.insert(name, keys);
    }
    let states = store.patch_states(None).await?;
    Ok(crate::supdate::missing_states(&members, &states))
}

/// A stored object as the planner sees it.
pub fn actual_object(o: &StoredObject) -> Result<ActualObject<'_>, OpError> {
    let kind: Kind = o.kind.parse().map_err(|()| {
        OpError::Input(format!(
            "the state holds an object of unknown kind `{}` ({})",
            o.kind, o.name
        ))
    })?;
    Ok(ActualObject {
        kind,
        name: Cow::Borrowed(&o.name),
        metadata: Cow::Borrowed(&o.metadata),
        spec: Cow::Borrowed(&o.spec),
        hash: Cow::Borrowed(&o.spec_hash),
        managed: o.owner == Owner::Patchops,
    })
}

/// SHA-256 over every stored object's kind, name, hash and owner: two
/// states with the same fingerprint hold the same objects.
pub fn fingerprint(objects: &[StoredObject]) -> String {
    let mut keys: Vec<&StoredObject> = objects.iter().collect();
    keys.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    let mut hasher = Sha256::new();
    for o in keys {
        let owner = if o.owner == Owner::Patchops {
            "patchops"
        } else {
            "unmanaged"
        };
        hasher.update(format!("{}\0{}\0{}\0{owner}\n", o.kind, o.name, o.spec_hash).as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
