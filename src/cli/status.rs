//! `patchops status site | dp [NAME] | advertisements | advertisement NAME |
//! machine NAME | updates`.

use super::{block_on, exit, with_store, Format, Outcome, StateArgs};
use crate::ops::status::{
    self, AdvertisementStatus, DpStatus, MachineStatus, ReconcileView, SiteStatus, UpdatesStatus,
};
use crate::render;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The applied state and the continuous reconcile: its last outcome
    /// (the error of invalid manifests with each file and line, since
    /// when), the last success and apply, and the leading server.
    Site {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// The distribution points (or the one named) and their scheduled
    /// deep content validation: the last one (when, outcome, files and
    /// bytes checked, each problem file), and when the next is due.
    Dp {
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Every advertisement: targeted, received, in progress, succeeded,
    /// failed, restart pending.
    Advertisements {
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// One advertisement, with each machine's newest message.
    Advertisement {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// One machine: facts, collections, assignments, policy version,
    /// heartbeat and newest messages.
    Machine {
        name: String,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Every bulletin's compliance from the stored patch states (see
    /// `inventory scan-import`): machines installed, missing, not
    /// applicable, unknown, and % compliant.
    Updates {
        /// Only the machines of this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Also list the bulletins that apply to none of the scanned
        /// machines (human output; JSON always has every bulletin).
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn run(command: Command) -> Outcome {
    match command {
        Command::Site { format, state } => {
            block_on(with_store(&state, async |store| status::site(store).await))
                .map(|s| print_site(&s, format))
        }
        Command::Dp {
            name,
            format,
            state,
        } => block_on(with_store(&state, async |store| {
            status::dps(store, name.as_deref()).await
        }))
        .map(|dps| print_dps(&dps, format, name.is_some())),
        Command::Advertisements { format, state } => block_on(with_store(&state, async |store| {
            let list = status::advertisements(store, None).await?;
            Ok((list, banner(store, format).await))
        }))
        .map(|(list, banner)| print_advertisements(&list, banner.as_ref(), format, false)),
        Command::Advertisement {
            name,
            format,
            state,
        } => block_on(with_store(&state, async |store| {
            let list = status::advertisements(store, Some(&name)).await?;
            Ok((list, banner(store, format).await))
        }))
        .map(|(list, banner)| print_advertisements(&list, banner.as_ref(), format, true)),
        Command::Machine {
            name,
            format,
            state,
        } => block_on(with_store(&state, async |store| {
            status::machine(store, &name).await
        }))
        .map(|m| print_machine(&m, format)),
        Command::Updates {
            collection,
            all,
            format,
            state,
        } => block_on(with_store(&state, async |store| {
            status::updates(store, collection.as_deref()).await
        }))
        .map(|u| print_updates(&u, format, all)),
    }?;
    Ok(exit::OK)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The reconcile outcome when it needs attention, for people only (JSON
/// keeps its shape; `status site` has it). Best effort: a store or server
/// that cannot say does not stop the report.
async fn banner(store: &crate::site::Site, format: Format) -> Option<ReconcileView> {
    if format == Format::Json {
        return None;
    }
    status::reconcile_attention(store).await.ok().flatten()
}

fn print_site(s: &SiteStatus, format: Format) {
    if format == Format::Json {
        println!("{}", json(s));
        return;
    }
    print!("{}", render::status::site(s));
}

fn print_dps(dps: &[DpStatus], format: Format, one: bool) {
    if format == Format::Json {
        if one {
            if let Some(dp) = dps.first() {
                println!("{}", json(dp));
            }
        } else {
            println!("{}", json(&dps));
        }
        return;
    }
    print!("{}", render::status::dps(dps));
}

fn print_advertisements(
    list: &[AdvertisementStatus],
    banner: Option<&ReconcileView>,
    format: Format,
    one: bool,
) {
    if format == Format::Json {
        if one {
            if let Some(first) = list.first() {
                println!("{}", json(first));
            }
        } else {
            println!("{}", json(&list));
        }
        return;
    }
    print!("{}", render::status::advertisements(list, banner, one));
}

fn print_machine(m: &MachineStatus, format: Format) {
    if format == Format::Json {
        println!("{}", json(m));
        return;
    }
    print!("{}", render::status::machine(m));
}

fn print_updates(u: &UpdatesStatus, format: Format, all: bool) {
    if format == Format::Json {
        println!("{}", json(u));
        return;
    }
    print!("{}", render::status::updates(u, all));
}
