//! `cloakroom [--config FILE]` runs; `cloakroom check [--config FILE]` validates and exits;
//! `cloakroom healthcheck` probes a running one; `cloakroom audit URL` checks one from outside.

use cloakroom::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cloakroom [run] [--config FILE]     serve (default config: ./config.toml)
       cloakroom check [--config FILE]     validate the configuration and exit
       cloakroom healthcheck [--config FILE]
                                           probe a running cloakroom's /healthz (exit 0 when healthy)
       cloakroom audit URL [--cookie NAME=VALUE] [--api-path /api/] [--csrf-header X-CSRF] [--ca-file FILE]
                                           check a running BFF from outside: PKCE, state, nonce,
                                           CSRF refusals, cookies, headers, HSTS; with --cookie
                                           (a signed-in session, which it logs out) also that no
                                           token reaches the browser and logout ends the session.
                                           Exit 0 when every check passes
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

/// `cloakroom audit URL [options]`.
fn audit(args: &[String]) -> ExitCode {
    match parse_audit(args) {
        Ok(options) => run_audit(options),
        Err(e) => {
            eprintln!("cloakroom audit: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_audit(args: &[String]) -> Result<cloakroom::audit::AuditOptions, String> {
    let mut base = None;
    let (mut cookie, mut api_path, mut csrf_header, mut ca_file) =
        (None, "/api/".to_string(), "X-CSRF".to_string(), None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--cookie" => cookie = Some(value("--cookie")?),
            "--api-path" => api_path = value("--api-path")?,
            "--csrf-header" => csrf_header = value("--csrf-header")?,
            "--ca-file" => ca_file = Some(PathBuf::from(value("--ca-file")?)),
            other if base.is_none() && !other.starts_with('-') => {
                base = Some(url::Url::parse(other).map_err(|e| format!("{other:?} is not a URL: {e}"))?)
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let base = base.ok_or("the URL to audit is required, e.g. https://app.example.com")?;
    cloakroom::install_crypto_provider();
    let tls = match &ca_file {
        Some(file) => cloakroom::tls::client_config(&cloakroom::tls::ClientTlsFiles {
            ca_file: Some(file.clone()),
            client_cert: None,
        })
        .map_err(|e| e.to_string())?,
        None => cloakroom::tls::system_client_config(),
    };
    let client = cloakroom::upstream::HttpClient::with_tls(std::time::Duration::from_secs(10), tls);
    Ok(cloakroom::audit::AuditOptions { base, cookie, api_path, csrf_header, client })
}

fn run_audit(options: cloakroom::audit::AuditOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cloakroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = options.base.clone();
    match runtime.block_on(cloakroom::audit::run(options)) {
        Ok(report) => {
            println!("cloakroom audit of {base}\n\n{}", report.render());
            if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("cloakroom audit: {e}");
            ExitCode::FAILURE
        }
    }
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("audit") {
        return audit(&args[1..]);
    }
    let command = match parse_args(args) {
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
    let runtime = match cloakroom::runtime(config.server.worker_threads) {
        Ok((runtime, threads)) => {
            tracing::info!(threads, "serving on {threads} worker thread(s)");
            runtime
        }
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
