//! The command line, parsed once (lexopt: a small, strict parser) into a [`Command`].

use lexopt::prelude::*;
use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: cloakroom [run] [--config FILE]     serve (default config: ./config.toml)
       cloakroom check [--config FILE]     validate the configuration and exit
       cloakroom healthcheck [--config FILE]
                                           probe a running cloakroom's /healthz (exit 0 when healthy)
       cloakroom audit URL [--cookie NAME=VALUE] [--api-path /api/] [--csrf-header X-CSRF] [--ca-file FILE]
                                           check a running BFF from outside: PKCE, state, nonce,
                                           CSRF refusals, cookies, headers, HSTS, hostile input
                                           (dot segments, TRACE, Host, callback bytes); with
                                           --cookie (a signed-in session, which it logs out) also
                                           that no token reaches the browser and logout ends the
                                           session. Exit 0 when every check passes
       cloakroom sessions list SUB [--provider ID] [--config FILE]
       cloakroom sessions end SUB [--id ID] [--provider ID] [--config FILE]
       cloakroom sessions end-all [--config FILE]
                                           the operator's view of a running cloakroom's sessions,
                                           through its admin listener (server.admin_token when
                                           set): a user's sessions (never a token or a ticket),
                                           end one (--id) or all of a user's, or every session
       cloakroom --help | --version

Every key can be overridden by environment: CLOAKROOM_<SECTION>__<KEY>, e.g.
CLOAKROOM_OIDC__CLIENT_SECRET. See config.toml for every key and its default.";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run { config: PathBuf },
    Check { config: PathBuf },
    Healthcheck { config: PathBuf },
    Audit(AuditArgs),
    Sessions { config: PathBuf, action: SessionsAction },
    Help,
    Version,
}

/// What `cloakroom sessions` does.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionsAction {
    List { sub: String, provider: Option<String> },
    End { sub: String, id: Option<String>, provider: Option<String> },
    EndAll,
}

/// `cloakroom audit`'s arguments, as given.
#[derive(Debug, PartialEq, Eq)]
pub struct AuditArgs {
    pub url: String,
    pub cookie: Option<String>,
    pub api_path: String,
    pub csrf_header: String,
    pub ca_file: Option<PathBuf>,
}

/// Parses the arguments after the program name. An error says what was wrong.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut subcommand: Option<String> = None;
    let mut config = PathBuf::from("config.toml");
    let mut audit = AuditArgs {
        url: String::new(),
        cookie: None,
        api_path: "/api/".into(),
        csrf_header: "X-CSRF".into(),
        ca_file: None,
    };
    let (mut action, mut sub, mut id, mut provider): (Option<String>, Option<String>, Option<String>, Option<String>) =
        (None, None, None, None);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let is_audit = subcommand.as_deref() == Some("audit");
        let is_sessions = subcommand.as_deref() == Some("sessions");
        let value = |parser: &mut lexopt::Parser| -> Result<String, String> {
            parser.value().map_err(|e| e.to_string())?.string().map_err(|e| e.to_string())
        };
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('c') | Long("config") if !is_audit => config = value(&mut parser)?.into(),
            Long("cookie") if is_audit => audit.cookie = Some(value(&mut parser)?),
            Long("api-path") if is_audit => audit.api_path = value(&mut parser)?,
            Long("csrf-header") if is_audit => audit.csrf_header = value(&mut parser)?,
            Long("ca-file") if is_audit => audit.ca_file = Some(value(&mut parser)?.into()),
            Long("provider") if is_sessions => provider = Some(value(&mut parser)?),
            Long("id") if is_sessions => id = Some(value(&mut parser)?),
            Value(word) if subcommand.is_none() => {
                let word = word.string().map_err(|e| e.to_string())?;
                if !matches!(word.as_str(), "run" | "check" | "healthcheck" | "audit" | "sessions") {
                    return Err(format!("unknown command {word:?}"));
                }
                subcommand = Some(word);
            }
            Value(url) if is_audit && audit.url.is_empty() => {
                audit.url = url.string().map_err(|e| e.to_string())?;
            }
            Value(word) if is_sessions && action.is_none() => action = Some(word.string().map_err(|e| e.to_string())?),
            Value(word) if is_sessions && sub.is_none() && action.as_deref() != Some("end-all") => {
                sub = Some(word.string().map_err(|e| e.to_string())?);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(match subcommand.as_deref() {
        Some("check") => Command::Check { config },
        Some("healthcheck") => Command::Healthcheck { config },
        Some("audit") if audit.url.is_empty() => {
            return Err("the URL to audit is required, e.g. https://app.example.com".into());
        }
        Some("audit") => Command::Audit(audit),
        Some("sessions") => {
            let needs_sub = || {
                sub.clone().ok_or_else(|| "the user's sub is required, e.g. cloakroom sessions list alice".to_string())
            };
            let action = match action.as_deref() {
                Some("list") if id.is_none() => SessionsAction::List { sub: needs_sub()?, provider },
                Some("end") => SessionsAction::End { sub: needs_sub()?, id, provider },
                Some("end-all") if id.is_none() && provider.is_none() => SessionsAction::EndAll,
                _ => return Err("cloakroom sessions list SUB | end SUB [--id ID] | end-all".into()),
            };
            Command::Sessions { config, action }
        }
        _ => Command::Run { config },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn commands_and_their_options() {
        let config = |path: &str| PathBuf::from(path);
        assert_eq!(parsed(&[]), Ok(Command::Run { config: config("config.toml") }));
        assert_eq!(parsed(&["--config", "a.toml"]), Ok(Command::Run { config: config("a.toml") }));
        assert_eq!(parsed(&["run", "-c", "b.toml"]), Ok(Command::Run { config: config("b.toml") }));
        assert_eq!(parsed(&["check", "--config=c.toml"]), Ok(Command::Check { config: config("c.toml") }));
        assert_eq!(parsed(&["healthcheck"]), Ok(Command::Healthcheck { config: config("config.toml") }));
        assert_eq!(parsed(&["--help"]), Ok(Command::Help));
        assert_eq!(parsed(&["check", "-V"]), Ok(Command::Version));
        let audit = parsed(&["audit", "https://app.example", "--cookie", "a=b", "--api-path", "/v1/"]).unwrap();
        let Command::Audit(audit) = audit else { panic!("{audit:?}") };
        assert_eq!(audit.url, "https://app.example");
        assert_eq!((audit.cookie.as_deref(), audit.api_path.as_str()), (Some("a=b"), "/v1/"));
        assert_eq!(audit.csrf_header, "X-CSRF");
        let sessions = |action| Ok(Command::Sessions { config: config("config.toml"), action });
        assert_eq!(
            parsed(&["sessions", "list", "alice"]),
            sessions(SessionsAction::List { sub: "alice".into(), provider: None })
        );
        assert_eq!(
            parsed(&["sessions", "end", "alice", "--id", "x1", "--provider", "corp"]),
            sessions(SessionsAction::End { sub: "alice".into(), id: Some("x1".into()), provider: Some("corp".into()) })
        );
        assert_eq!(parsed(&["sessions", "end-all"]), sessions(SessionsAction::EndAll));
    }

    #[test]
    fn mistakes_are_errors_not_guesses() {
        for args in [
            &["serve"][..],
            &["check", "extra"],
            &["--config"],
            &["--cookie", "a=b"],
            &["audit"],
            &["audit", "https://a", "https://b"],
            &["audit", "https://a", "--config", "x.toml"],
            &["--colour"],
            &["sessions"],
            &["sessions", "list"],
            &["sessions", "drop", "alice"],
            &["sessions", "end-all", "alice"],
            &["sessions", "list", "alice", "--id", "x"],
            &["--provider", "corp"],
        ] {
            assert!(parsed(args).is_err(), "{args:?} accepted");
        }
    }
}
