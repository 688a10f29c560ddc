//! What the agent does when an install asks for a restart (exit code
//! 3010), from the program's installation agent settings (software update
//! packages) and the machine's `os.type`. Pure: the caller runs the hook.

use crate::manifest::software_update_package::{AfterCountdown, PostponeRestart};
use crate::policy::PolicyProgram;

/// The restart hook's environment: the countdown in seconds.
pub const COUNTDOWN_VAR: &str = "PATCHOPS_RESTART_COUNTDOWN_SECONDS";
/// `restart` or `prompt`.
pub const AFTER_COUNTDOWN_VAR: &str = "PATCHOPS_AFTER_COUNTDOWN";
/// `1` when the user is to be told (`notification.promptUser`), else `0`.
pub const PROMPT_USER_VAR: &str = "PATCHOPS_PROMPT_USER";
/// Seconds the user may postpone; set only when postponing is allowed.
pub const ALLOW_POSTPONE_VAR: &str = "PATCHOPS_ALLOW_POSTPONE_SECONDS";
/// A file holding the notice's text; set only when the program has one.
pub const NOTICE_FILE_VAR: &str = "PATCHOPS_NOTICE_FILE";

/// The machine's role as its facts' `os.type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Workstation,
    /// `server` or `domainController`.
    Server,
    /// No or another `os.type`.
    Unknown,
}

impl Role {
    pub fn of(os_type: Option<&str>) -> Role {
        match os_type {
            Some("workstation") => Role::Workstation,
            Some("server" | "domainController") => Role::Server,
            _ => Role::Unknown,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Role::Workstation => "a workstation",
            Role::Server => "a server",
            Role::Unknown => "of unknown type (no os.type in its facts)",
        }
    }
}

/// What to do about a requested restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Report `restartPending` with this message; the hook does not run.
    Postpone(String),
    /// Run the restart hook with these variables (besides
    /// `PATCHOPS_ADVERTISEMENT`); the notice, when there is one, is
    /// written to a file named by [`NOTICE_FILE_VAR`].
    RunHook(Vec<(&'static str, String)>),
}

/// The decision for `program` (the assignment's program) on a machine of
/// `role`. A machine of unknown type postpones whenever any machines do:
/// restarting a server by mistake costs more than a late restart.
pub fn decide(program: &PolicyProgram, role: Role) -> Decision {
    let Some(agent) = &program.install_agent else {
        return Decision::RunHook(Vec::new());
    };
    let postpone = match agent.postpone_restart {
        PostponeRestart::Never => false,
        PostponeRestart::Both => true,
        PostponeRestart::Servers => role != Role::Workstation,
        PostponeRestart::Workstations => role != Role::Server,
    };
    if postpone {
        let setting = match agent.postpone_restart {
            PostponeRestart::Never => "never",
            PostponeRestart::Servers => "servers",
            PostponeRestart::Workstations => "workstations",
            PostponeRestart::Both => "both",
        };
        return Decision::Postpone(format!(
            "restart postponed (postponeRestart: {setting}; this machine is {}); the restart hook did not run",
            role.word()
        ));
    }
    let mut env = vec![
        (COUNTDOWN_VAR, agent.countdown_seconds.to_string()),
        (
            AFTER_COUNTDOWN_VAR,
            match agent.after_countdown {
                AfterCountdown::Restart => "restart",
                AfterCountdown::Prompt => "prompt",
            }
            .to_string(),
        ),
    ];
    if let Some(n) = &program.notification {
        env.push((
            PROMPT_USER_VAR,
            if n.prompt_user { "1" } else { "0" }.into(),
        ));
        if let Some(s) = n.allow_postpone_seconds {
            env.push((ALLOW_POSTPONE_VAR, s.to_string()));
        }
    }
    Decision::RunHook(env)
}

/// Whether the agent sends its inventory after a successful run of
/// `program`.
pub fn inventory_after_install(program: &PolicyProgram) -> bool {
    program
        .install_agent
        .as_ref()
        .is_some_and(|a| a.inventory_after_install)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicyInstallAgent, PolicyNotification};

    fn program(postpone: PostponeRestart) -> PolicyProgram {
        let mut p: PolicyProgram = serde_json::from_value(serde_json::json!({
            "package": "Updates", "program": "MS01-036 (q.exe)", "commandLine": "q.exe -q -z",
            "comment": "", "runMode": "hidden", "afterRunning": "noAction",
            "maxRunTimeSeconds": 60, "canRun": "whetherOrNotUserLoggedOn",
            "runWith": "administrativeRights", "allowUserInteraction": false,
            "driveMode": "unc", "reconnectAtLogon": false, "suppressNotifications": false,
            "expedited": false, "distributionPoints": []
        }))
        .unwrap();
        p.install_agent = Some(PolicyInstallAgent {
            inventory_after_install: true,
            postpone_restart: postpone,
            countdown_seconds: 300,
            after_countdown: AfterCountdown::Prompt,
        });
        p.notification = Some(PolicyNotification {
            prompt_user: true,
            allow_postpone_seconds: Some(3600),
        });
        p
    }

    #[test]
    fn roles_from_os_type() {
        assert_eq!(Role::of(Some("workstation")), Role::Workstation);
        assert_eq!(Role::of(Some("server")), Role::Server);
        assert_eq!(Role::of(Some("domainController")), Role::Server);
        assert_eq!(Role::of(Some("Server")), Role::Unknown);
        assert_eq!(Role::of(None), Role::Unknown);
    }

    #[test]
    fn postponement_by_setting_and_role() {
        use PostponeRestart::*;
        use Role::*;
        let postpones =
            |setting, role| matches!(decide(&program(setting), role), Decision::Postpone(_));
        // (setting, workstation, server, unknown)
        for (setting, w, s, u) in [
            (Never, false, false, false),
            (Servers, false, true, true),
            (Workstations, true, false, true),
            (Both, true, true, true),
        ] {
            assert_eq!(
                postpones(setting, Workstation),
                w,
                "{setting:?} workstation"
            );
            assert_eq!(postpones(setting, Server), s, "{setting:?} server");
            assert_eq!(postpones(setting, Unknown), u, "{setting:?} unknown");
        }
        let Decision::Postpone(m) = decide(&program(Servers), Server) else {
            panic!()
        };
        assert!(
            m.starts_with("restart postponed (postponeRestart: servers; this machine is a server)"),
            "{m}"
        );
    }

    #[test]
    fn the_hook_gets_countdown_and_notification() {
        let Decision::RunHook(env) = decide(&program(PostponeRestart::Servers), Role::Workstation)
        else {
            panic!("a workstation restarts")
        };
        assert_eq!(
            env,
            [
                (COUNTDOWN_VAR, "300".to_string()),
                (AFTER_COUNTDOWN_VAR, "prompt".to_string()),
                (PROMPT_USER_VAR, "1".to_string()),
                (ALLOW_POSTPONE_VAR, "3600".to_string()),
            ]
        );
        let mut plain = program(PostponeRestart::Never);
        plain.install_agent = None;
        plain.notification = None;
        assert_eq!(decide(&plain, Role::Server), Decision::RunHook(Vec::new()));
        assert!(!inventory_after_install(&plain));
        assert!(inventory_after_install(&program(PostponeRestart::Never)));
    }
}
