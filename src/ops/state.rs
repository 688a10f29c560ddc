//! `state unmanage` and the reads of `dp validate|serve`: small operations
//! on the stored objects.

use super::{Actor, OpError};
use crate::manifest::Kind;
use crate::records::{ApplyRecord, Owner};
use crate::site::Site;

/// Stops patchops managing `kind/name`: the object stays in the state but
/// is never changed or deleted by a plan. Under the apply lock, with its own
/// audit record, as one more serial.
pub async fn unmanage(store: &Site, actor: &Actor, kind: Kind, name: &str) -> Result<(), OpError> {
    let held = super::lock::acquire(store, actor, std::time::Duration::ZERO).await?;
    let result = async {
        let info = store.info().await?;
        let record = audit_record(
            actor,
            info.serial + 1,
            &format!("state unmanage {kind}/{name}"),
        );
        if store
            .set_owner(kind.as_str(), name, Owner::Unmanaged, &record)
            .await?
        {
            Ok(())
        } else {
            Err(OpError::Input(format!("no {kind}/{name} in the state")))
        }
    }
    .await;
    let _ = held.release().await;
    result
}

/// The audit record of a one-object change made outside a plan.
fn audit_record(actor: &Actor, serial: i64, what: &str) -> ApplyRecord {
    let now = super::apply::now();
    ApplyRecord {
        id: None,
        serial,
        started_at: now.clone(),
        finished_at: now,
        actor: actor.name.clone(),
        host: actor.host.clone(),
        command: what.to_string(),
        commit: None,
        dirty: false,
        plan_hash: String::new(),
        added: 0,
        changed: 1,
        destroyed: 0,
        changes: "[]".into(),
    }
}

/// Name → library path of every distribution point in the state.
pub async fn dp_library_paths(store: &Site) -> Result<Vec<(String, String)>, OpError> {
    let mut out = Vec::new();
    for object in store.objects().await? {
        if object.kind != Kind::DistributionPoint.as_str() {
            continue;
        }
        let spec: serde_json::Value = serde_json::from_str(&object.spec).unwrap_or_default();
        if let Some(path) = spec["path"].as_str() {
            out.push((object.name.clone(), path.to_string()));
        }
    }
    Ok(out)
}
