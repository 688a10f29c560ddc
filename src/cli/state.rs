use super::plan::parse_target;
use super::{block_on, exit, input_failure, with_store, Format, Outcome, StateArgs};
use crate::manifest::Kind;
use crate::ops::{self, Actor, OpError};
use crate::records::Owner;
use crate::untrusted::shown;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the objects in the state.
    List {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Show one object as the state holds it (KIND/NAME).
    Show {
        #[arg(value_parser = parse_target)]
        object: (Kind, String),
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Stop managing an object (KIND/NAME): plans neither change nor delete it
    /// until a manifest declares it again.
    Unmanage {
        #[arg(value_parser = parse_target)]
        object: (Kind, String),
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn run(command: Command) -> Outcome {
    let url = match &command {
        Command::List { state, .. }
        | Command::Show { state, .. }
        | Command::Unmanage { state, .. } => state.clone(),
    };
    block_on(with_store(&url, async |store| match command {
        Command::List { format, .. } => {
            let objects = store.objects().await?;
            match format {
                Format::Json => {
                    let rows: Vec<_> = objects
                            .iter()
                            .map(|o| {
                                serde_json::json!({
                                    "kind": o.kind, "name": o.name, "hash": o.spec_hash,
                                    "managed": o.owner == Owner::Patchops, "file": o.file, "commit": o.commit,
                                    "createdSerial": o.created_serial, "updatedSerial": o.updated_serial,
                                })
                            })
                            .collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&rows).unwrap_or_default()
                    );
                }
                Format::Human => {
                    for o in &objects {
                        let owner = if o.owner == Owner::Patchops {
                            ""
                        } else {
                            "  (unmanaged)"
                        };
                        println!(
                            "{}/{}  serial {}{owner}",
                            shown(&o.kind),
                            shown(&o.name),
                            o.updated_serial
                        );
                    }
                    println!("{} objects", objects.len());
                }
            }
            Ok(())
        }
        Command::Show {
            object: (kind, name),
            format,
            state: _,
        } => {
            let Some(o) = store.object(kind.as_str(), &name).await? else {
                return Err(OpError::Input(format!("no {kind}/{name} in the state")));
            };
            let metadata: serde_json::Value = serde_json::from_str(&o.metadata).unwrap_or_default();
            let spec: serde_json::Value = serde_json::from_str(&o.spec).unwrap_or_default();
            let doc = serde_json::json!({
                "kind": o.kind, "metadata": { "name": o.name, "labels": metadata["labels"], "annotations": metadata["annotations"] },
                "spec": spec,
                "state": { "hash": o.spec_hash, "managed": o.owner == Owner::Patchops, "file": o.file, "commit": o.commit, "createdSerial": o.created_serial, "updatedSerial": o.updated_serial },
            });
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
                }
                Format::Human => print!("{}", serde_yaml::to_string(&doc).unwrap_or_default()),
            }
            Ok(())
        }
        Command::Unmanage {
            object: (kind, name),
            state: _,
        } => {
            let actor = Actor::current(std::env::args());
            ops::state::unmanage(store, &actor, kind, &name).await?;
            println!(
                "{}/{} is no longer managed by patchops.",
                kind,
                shown(&name)
            );
            Ok(())
        }
    }))?;
    Ok(exit::OK)
}

pub fn force_unlock(id: &str, state: &StateArgs) -> Outcome {
    let released = block_on(with_store(state, async |store| {
        Ok(store.unlock(id).await?)
    }))?;
    if !released {
        return Err(input_failure(format!(
            "no lock with ID {} is held",
            shown(id)
        )));
    }
    println!("Released lock {}.", shown(id));
    Ok(exit::OK)
}

pub fn history(limit: u32, format: Format, state: &StateArgs) -> Outcome {
    let records = block_on(with_store(state, async |store| {
        Ok(store.history(limit).await?)
    }))?;
    match format {
        Format::Json => {
            let rows: Vec<_> = records
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "serial": r.serial, "startedAt": r.started_at, "finishedAt": r.finished_at,
                        "actor": r.actor, "host": r.host, "command": r.command, "commit": r.commit, "dirty": r.dirty,
                        "planHash": r.plan_hash, "added": r.added, "changed": r.changed, "destroyed": r.destroyed,
                        "changes": serde_json::from_str::<serde_json::Value>(&r.changes).unwrap_or_default(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
        }
        Format::Human => {
            if records.is_empty() {
                println!("No applies recorded.");
            }
            for r in &records {
                let commit = r
                    .commit
                    .as_deref()
                    .map(crate::render::short_hash)
                    .unwrap_or("-");
                let dirty = if r.dirty { " (dirty)" } else { "" };
                // Actor, host and command line come from whoever applied:
                // printed escaped, like every untrusted string.
                println!(
                    "serial {:>4}  {}  {}@{}  commit {}{dirty}  +{} ~{} -{}  {}",
                    r.serial,
                    shown(&r.finished_at),
                    shown(&r.actor),
                    shown(&r.host),
                    shown(commit),
                    r.added,
                    r.changed,
                    r.destroyed,
                    shown(&r.command)
                );
            }
        }
    }
    Ok(exit::OK)
}
