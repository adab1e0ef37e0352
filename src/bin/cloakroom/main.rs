//! The `cloakroom` binary: parses its command line, loads the configuration, and hands over to
//! the library (`cloakroom::run`). `cloakroom audit`, a client that checks a deployment from
//! outside, lives here too: it is not part of the proxy.

mod audit;
mod cli;

use cli::{AuditArgs, Command, SessionsAction, USAGE};
use cloakroom::config::Config;
use std::path::Path;
use std::process::ExitCode;

/// EX_CONFIG (sysexits.h): the configuration is invalid.
const INVALID_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("cloakroom: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("cloakroom {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Healthcheck { config } => healthcheck(&config),
        Command::Audit(args) => audit(args),
        Command::Sessions { config, action } => sessions(&config, action),
        Command::Run { config } => run(&config),
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        eprintln!("cloakroom: {}: {errors}", path.display());
        ExitCode::from(INVALID_CONFIG)
    })
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}: configuration is valid", path.display());
    for oidc in std::iter::once(&config.oidc).chain(&config.providers) {
        println!("provider {:?}: profile {}", oidc.id, oidc.profile.name());
    }
    ExitCode::SUCCESS
}

fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (runtime, threads) = match cloakroom::runtime(config.server.worker_threads) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cloakroom: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // On the runtime: the trace export, when configured, runs there.
        let telemetry = match cloakroom::telemetry::init(&config.log.level, config.log.json, config.traces.as_ref()) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("cloakroom: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("cloakroom: open {}/ in a browser", config.server.public_origin);
        tracing::info!(threads, "serving on {threads} worker thread(s)");
        let served = cloakroom::run(config).await;
        telemetry.shutdown().await;
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cloakroom: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs a client-side task (health probe, audit) on a one-thread runtime.
fn block_on<T>(task: impl std::future::Future<Output = T>) -> Result<T, ExitCode> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => Ok(runtime.block_on(task)),
        Err(e) => {
            eprintln!("cloakroom: cannot start the runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `cloakroom sessions …`: the admin listener's session endpoints, called as the operator.
fn sessions(path: &Path, action: SessionsAction) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let at =
        |provider: &Option<String>| provider.as_deref().map(|p| format!("&provider={}", encode(p))).unwrap_or_default();
    let (method, target) = match &action {
        SessionsAction::List { sub, provider } => {
            (http::Method::GET, format!("/sessions?sub={}{}", encode(sub), at(provider)))
        }
        SessionsAction::End { sub, id: Some(id), provider } => {
            (http::Method::DELETE, format!("/sessions/{}?sub={}{}", encode(id), encode(sub), at(provider)))
        }
        SessionsAction::End { sub, id: None, provider } => {
            (http::Method::DELETE, format!("/sessions?sub={}{}", encode(sub), at(provider)))
        }
        SessionsAction::EndAll => (http::Method::DELETE, "/sessions?all=true".to_string()),
    };
    let (admin, token) = (config.server.admin_listen, config.server.admin_token.as_ref());
    // Ending every session of a large Redis store takes a while.
    let call = cloakroom::admin_call(admin, token, method, &target, std::time::Duration::from_secs(60));
    match block_on(call) {
        Ok(Ok((status, body))) if status.is_success() => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok(Ok((status, body))) => {
            eprintln!("cloakroom sessions: {status}: {body}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("cloakroom sessions: {e}");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

fn healthcheck(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match block_on(cloakroom::healthcheck(config.server.admin_listen)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("cloakroom: unhealthy: {e}");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

fn audit(args: AuditArgs) -> ExitCode {
    let options = match audit_options(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("cloakroom audit: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let base = options.base.clone();
    match block_on(audit::run(options)) {
        Ok(Ok(report)) => {
            println!("cloakroom audit of {base}\n\n{}", report.render());
            if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Ok(Err(e)) => {
            eprintln!("cloakroom audit: {e}");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

fn audit_options(args: AuditArgs) -> Result<audit::AuditOptions, String> {
    let base = url::Url::parse(&args.url).map_err(|e| format!("{:?} is not a URL: {e}", args.url))?;
    cloakroom::install_crypto_provider();
    let tls = match &args.ca_file {
        Some(file) => cloakroom::tls::client_config(&cloakroom::tls::ClientTlsFiles {
            ca_file: Some(file.clone()),
            client_cert: None,
        })
        .map_err(|e| e.to_string())?,
        None => cloakroom::tls::system_client_config(),
    };
    let client = cloakroom::upstream::HttpClient::with_tls(std::time::Duration::from_secs(10), tls);
    Ok(audit::AuditOptions {
        base,
        cookie: args.cookie,
        api_path: args.api_path,
        csrf_header: args.csrf_header,
        client,
    })
}
