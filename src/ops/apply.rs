//! `apply`: a sealed plan → the state, exactly, or not at all.

use std::time::Duration;

use super::{lock, plan::fingerprint, Actor, OpError};
use crate::ops::planfile::SavedPlan;
use crate::plan::{Action, Summary};
use crate::records::{ApplyRecord, Change, NewObject};
use crate::site::Site;

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub serial: i64,
    pub summary: Summary,
    pub distributed: Vec<super::distribute::Distributed>,
}

/// Applies `plan` if the state is still the one it was made against, then
/// distributes its content. Takes the apply lock unless the caller holds it
/// already.
pub async fn apply(
    store: &Site,
    plan: &SavedPlan,
    actor: &Actor,
    lock_timeout: Duration,
    holding_lock: bool,
    progress: &(dyn Fn(super::distribute::Progress<'_>) + Sync),
) -> Result<Applied, OpError> {
    let held = if holding_lock {
        None
    } else {
        Some(lock::acquire(store, actor, lock_timeout).await?)
    };
    let result = match apply_locked(store, plan, actor).await {
        // The state is committed first; content follows. A failure here
        // leaves the DPs behind the state, which the next plan shows and the
        // next apply puts right.
        Ok(mut applied) => {
            super::distribute::distribute(&plan.distribution, &plan.cleanup, progress).map(|done| {
                applied.distributed = done;
                applied
            })
        }
        Err(e) => Err(e),
    };
    if let Some(held) = held {
        // The outcome matters more than a failed unlock; the lease expires anyway.
        let _ = held.release().await;
    }
    result
}

async fn apply_locked(store: &Site, plan: &SavedPlan, actor: &Actor) -> Result<Applied, OpError> {
    let started = now();
    let info = store.info().await?;
    if info.store_id != plan.state.id {
        return Err(OpError::OtherStore {
            planned: format!("{} ({})", plan.state.url, plan.state.id),
            current: format!("{} ({})", store.display_url(), info.store_id),
        });
    }
    if let (Some(state_site), Some(planned)) = (&info.site, &plan.site) {
        if state_site != planned {
            return Err(OpError::OtherSite {
                state: state_site.clone(),
                planned: planned.clone(),
            });
        }
    }
    if info.serial != plan.state.serial {
        return Err(OpError::Stale {
            planned: plan.state.serial,
            current: info.serial,
            fingerprint_only: false,
        });
    }
    let objects = store.objects().await?;
    if fingerprint(&objects) != plan.state.fingerprint {
        return Err(OpError::Stale {
            planned: plan.state.serial,
            current: info.serial,
            fingerprint_only: true,
        });
    }
    if plan.changes.is_empty() {
        return Ok(Applied {
            serial: info.serial,
            summary: plan.summary,
            distributed: Vec::new(),
        });
    }

    let changes: Vec<Change> = plan
        .changes
        .iter()
        .map(|c| match (c.action, &c.after) {
            (Action::Delete, _) | (_, None) => Change::Delete {
                kind: c.kind.to_string(),
                name: c.name.clone(),
            },
            (_, Some(after)) => Change::Upsert(NewObject {
                kind: c.kind.to_string(),
                name: c.name.clone(),
                spec: after.spec.to_string(),
                spec_hash: after.hash.clone(),
                metadata: after.metadata.to_string(),
                file: c.origin.as_ref().map(|o| o.file.clone()),
                commit: plan.source.revision.commit.clone(),
            }),
        })
        .collect();
    let audit_changes: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|c| serde_json::json!({ "kind": c.kind, "name": c.name, "action": c.action, "fields": c.fields.iter().map(|f| &f.path).collect::<Vec<_>>() }))
        .collect();
    let record = ApplyRecord {
        id: None,
        serial: info.serial + 1,
        started_at: started,
        finished_at: now(),
        actor: actor.name.clone(),
        host: actor.host.clone(),
        command: actor.command.clone(),
        commit: plan.source.revision.commit.clone(),
        dirty: plan.source.revision.dirty.unwrap_or(false),
        plan_hash: plan.hash().to_string(),
        added: plan.summary.add as i64,
        changed: plan.summary.change as i64,
        destroyed: plan.summary.destroy as i64,
        changes: serde_json::Value::Array(audit_changes).to_string(),
    };
    let serial = match store
        .commit(plan.state.serial, plan.site.as_deref(), &changes, &record)
        .await
    {
        Ok(serial) => serial,
        Err(crate::store::StoreError::Stale { expected, actual }) => {
            return Err(OpError::Stale {
                planned: expected,
                current: actual,
                fingerprint_only: false,
            })
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Applied {
        serial,
        summary: plan.summary,
        distributed: Vec::new(),
    })
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
