use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::plan::parse_target;
use super::{block_on, exit, with_store, Outcome, StateArgs};
use crate::manifest::Kind;
use crate::ops::planfile::SavedPlan;
use crate::ops::{self, Actor, OpError};
use crate::plan::PlanOptions;
use crate::render::{self, Style};
use crate::secret::SecretSource;
use crate::site::Site;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A saved plan (`plan --out`), or the manifest directory to plan and apply.
    source: PathBuf,
    #[command(flatten)]
    state: StateArgs,
    /// Apply a plan made from a directory without asking.
    #[arg(long)]
    auto_approve: bool,
    /// Allow a plan that deletes more than the guard permits (with a directory).
    #[arg(long)]
    allow_destroy: bool,
    /// Plan and apply only this object (KIND/NAME; with a directory); repeatable.
    #[arg(long, value_name = "KIND/NAME", value_parser = parse_target)]
    target: Vec<(Kind, String)>,
    /// Wait this long for another apply to finish (e.g. 30s, 5m).
    #[arg(long, default_value = "0s", value_parser = parse_wait)]
    lock_timeout: Duration,
    /// Re-hash package content on the distribution points while planning
    /// (with a directory; as `plan --validate`): files whose bytes are
    /// damaged are copied again, even when their size and time stamps look
    /// right.
    #[arg(long)]
    validate: bool,
    /// Require the saved plan to be signed with the key in `env:NAME` or `file:PATH`.
    #[arg(long, value_name = "REF")]
    sign_key_from: Option<SecretSource>,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    if text == "0" || text == "0s" {
        return Ok(Duration::ZERO);
    }
    crate::units::parse_duration(text)
}

pub fn run(args: Args, style: Style) -> Outcome {
    let actor = Actor::current(std::env::args());
    let outcome = block_on(async {
        let key = args
            .sign_key_from
            .as_ref()
            .map(SecretSource::read)
            .transpose()
            .map_err(OpError::Input)?;
        with_store(&args.state, async |store| {
            run_in(&args, store, key.as_ref(), &actor, style).await
        })
        .await
    });
    if let Some((plan, applied)) = outcome? {
        let plan_updates = &plan.updates;
        let s = applied.summary;
        println!(
            "Apply complete: {} added, {} changed, {} destroyed. State serial {}.",
            s.add, s.change, s.destroy, applied.serial
        );
        for u in plan_updates.iter().filter(|u| !u.ready) {
            println!(
                "Not distributed: software update package {:?} is not ready: {}.",
                u.package,
                u.why.as_deref().unwrap_or("unknown")
            );
        }
        for d in &applied.distributed {
            println!(
                "Distributed {:?} to {}: {} files, {} copied.",
                d.package,
                d.dp,
                d.files_copied,
                crate::render::plan::bytes(d.bytes_copied)
            );
        }
    }
    Ok(exit::OK)
}

/// Applies a saved plan, or plans a directory under the lock, shows the plan,
/// asks, and applies it.
async fn run_in(
    args: &Args,
    store: &Site,
    key: Option<&crate::secret::Secret>,
    actor: &Actor,
    style: Style,
) -> Result<Option<(SavedPlan, ops::apply::Applied)>, OpError> {
    let progress = crate::render::progress::Reporter::new();
    let progress = |p: ops::distribute::Progress<'_>| progress.report(p);
    if args.source.is_file() {
        if args.validate {
            // A saved plan's distribution was decided when it was made.
            return Err(OpError::Input(format!(
                "--validate re-hashes the distribution points while planning; {} is a saved \
                 plan: make it with `patchops plan --validate --out FILE`",
                args.source.display()
            )));
        }
        let text = std::fs::read_to_string(&args.source).map_err(|e| {
            OpError::Input(format!(
                "cannot read the plan {}: {e}",
                args.source.display()
            ))
        })?;
        let plan = SavedPlan::load(&text, key)?;
        let held = acquire_lock(store, actor, args.lock_timeout).await?;
        let applied =
            ops::apply::apply(store, &plan, actor, args.lock_timeout, true, &progress).await;
        // The outcome matters more than a failed unlock; the lease expires anyway.
        let _ = held.release().await;
        return Ok(Some((plan, applied?)));
    }
    let held = acquire_lock(store, actor, args.lock_timeout).await?;
    let result = async {
        let request = ops::plan::Request {
            dir: &args.source,
            options: PlanOptions {
                targets: args.target.clone(),
                allow_destroy: args.allow_destroy,
            },
            sign_key: None,
            validate_content: args.validate,
        };
        let plan = ops::plan::make(store, &request).await?;
        print!("{}", render::plan::human(&plan, style));
        if plan.is_empty() {
            return Ok(None);
        }
        confirm(args.auto_approve)?;
        let applied =
            ops::apply::apply(store, &plan, actor, args.lock_timeout, true, &progress).await?;
        Ok(Some((plan, applied)))
    }
    .await;
    // The outcome matters more than a failed unlock; the lease expires anyway.
    let _ = held.release().await;
    result
}

/// Asks on the terminal; without one, only `--auto-approve` approves.
fn confirm(auto_approve: bool) -> Result<(), OpError> {
    if auto_approve {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(OpError::NotApproved(
            "no terminal to ask for approval; nothing was applied (use --auto-approve in CI, or apply a saved plan)".into(),
        ));
    }
    print!("\nApply these changes? Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(OpError::NotApproved(
            "not approved; nothing was applied".into(),
        ))
    }
}

/// Takes the apply lock; says on stderr once that it waits, and for whom,
/// or in one line that it took over a dead process's lock. The holder's
/// fields come from the store: printed escaped.
async fn acquire_lock(
    store: &Site,
    actor: &Actor,
    timeout: Duration,
) -> Result<ops::lock::Held, OpError> {
    use crate::untrusted::shown;
    use ops::lock::LockEvent;
    ops::lock::acquire_reporting(store, actor, timeout, &|event| match event {
        LockEvent::Waiting(holder) => eprintln!(
            "waiting up to {} s for the state lock, held by {} on {} (pid {}) since {}",
            timeout.as_secs(),
            shown(&holder.holder),
            shown(&holder.host),
            holder.pid,
            shown(&holder.acquired_at)
        ),
        LockEvent::TakenOver(holder) => eprintln!(
            "took over the state lock {} of {} on this host (pid {}, no longer running), held since {}",
            shown(&holder.id),
            shown(&holder.holder),
            holder.pid,
            shown(&holder.acquired_at)
        ),
    })
    .await
}
