//! `cloakroom [--config FILE]` runs; `cloakroom check [--config FILE]` validates and exits.

use cloakroom::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cloakroom [run] [--config FILE]     serve (default config: ./config.toml)
       cloakroom check [--config FILE]     validate the configuration and exit
       cloakroom healthcheck [--config FILE]
                                           probe a running cloakroom's /healthz (exit 0 when healthy)
       cloakroom --help | --version

Every key can be overridden by environment: CLOAKROOM_<SECTION>__<KEY>, e.g.
CLOAKROOM_OIDC__CLIENT_SECRET. See config.toml for every key and its default.";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Healthcheck(PathBuf),
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Command>, String> {
    let mut command = None;
    let mut config = PathBuf::from("config.toml");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "-V" | "--version" => {
                println!("cloakroom {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-c" | "--config" => config = args.next().ok_or("--config needs a file")?.into(),
            other if other.starts_with("--config=") => config = other["--config=".len()..].into(),
            "run" | "check" | "healthcheck" if command.is_none() => command = Some(arg),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Some(match command.as_deref() {
        Some("check") => Command::Check(config),
        Some("healthcheck") => Command::Healthcheck(config),
        _ => Command::Run(config),
    }))
}

fn healthcheck(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("cloakroom: {}: {errors}", path.display());
            return ExitCode::from(78);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cloakroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cloakroom::healthcheck(config.server.admin_listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloakroom: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(Some(command)) => command,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cloakroom: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (path, check_only) = match command {
        Command::Run(path) => (path, false),
        Command::Check(path) => (path, true),
        Command::Healthcheck(path) => return healthcheck(&path),
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("cloakroom: {}: {errors}", path.display());
            return ExitCode::from(78); // EX_CONFIG
        }
    };
    if check_only {
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        println!("{}: configuration is valid", path.display());
        return ExitCode::SUCCESS;
    }
    cloakroom::telemetry::init(&config.log.level, config.log.json);
    println!("cloakroom: open {}/ in a browser", config.server.public_origin);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cloakroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cloakroom::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloakroom: {e}");
            ExitCode::FAILURE
        }
    }
}
