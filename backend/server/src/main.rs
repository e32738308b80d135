//! The `muster` command: parses arguments and hands over to the library code of each area.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod audit_cmd;
#[cfg(feature = "bench")]
mod bench;
mod geodata_cmd;
mod load;
mod store_cmd;

/// Muster: emergency response coordination, event-sourced.
#[derive(Debug, Parser)]
#[command(name = "muster", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, verify, export and back up an embedded event store.
    Store(store_cmd::StoreArgs),
    /// List or export the audit trail of an incident or a user: who did what, from where,
    /// and every read of caller details.
    Audit(audit_cmd::AuditArgs),
    /// Import, generate and inspect city files; route and geocode on them.
    Geodata(geodata_cmd::GeodataArgs),
    /// Measure Muster's components against baselines measured in the same run.
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// Measure Muster's components (needs a muster built with `--features bench`).
    #[cfg(not(feature = "bench"))]
    Bench(NoBench),
    /// Run the operator API, the wall-display feed and the projections (on the embedded store,
    /// or on PostgreSQL with --store postgres://…).
    Serve(ServeArgs),
    /// Maintain the projections (views) of the log.
    Projections(ProjectionsArgs),
    /// Run the mobile gateway for responders' devices on its own port and store.
    Gateway(muster_mobile::cli::GatewayArgs),
    /// Simulate a responder's device: acknowledge tasks, drive, report status and positions.
    Responder(muster_mobile::cli::ResponderArgs),
    /// Run drills in virtual time, compare policies or layouts, replay recorded logs.
    Drill(muster_sim::cli::DrillArgs),
    /// Write the operator API's OpenAPI 3.1 document, as `muster serve` serves it at
    /// /api/openapi.json (the wall display's types are generated from its copy in
    /// backend/web/openapi.json).
    Openapi(OpenapiArgs),
}

/// Arguments of `muster openapi`.
#[derive(Debug, Args)]
struct OpenapiArgs {
    /// Write it to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// `muster bench …` in a build without the `bench` feature: whatever follows is refused.
#[cfg(not(feature = "bench"))]
#[derive(Debug, Args)]
struct NoBench {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// Arguments of `muster serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file (see docs/api.md and ops/muster.example.toml: users, single sign-on in
    /// [oidc], TLS, limits); `MUSTER_…` variables (MUSTER_OIDC_… for single sign-on)
    /// override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (the embedded event store and the views); overrides the config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The event store: `embedded` (in the data directory, the default) or a PostgreSQL
    /// connection string, `postgres://user@host:port/db` (several `host:port` separated by
    /// commas with `?target_session_attrs=read-write` follow a failover); overrides the config.
    #[arg(long)]
    store: Option<String>,
    /// Address to listen on, such as 127.0.0.1:8080 (port 0 picks a free port). An address
    /// other than loopback needs TLS (tls_cert and tls_key in the config, MUSTER_TLS_CERT and
    /// MUSTER_TLS_KEY) or tls_proxy = true (MUSTER_TLS_PROXY) behind a TLS-terminating proxy.
    #[arg(long)]
    bind: Option<String>,
    /// Demo mode: demo users (printing their tokens) and a live drill of the bundled
    /// Helsinki sample keeping the city busy: its units registered, calls entered, the
    /// dispatcher's recommendations sent, and a simulated crew device per unit. Runs only on
    /// loopback binds, with no users configured and without single sign-on. Under TLS the
    /// drill verifies the server's certificate against the system's roots and MUSTER_CA_CERT.
    #[arg(long)]
    demo: bool,
    /// With --demo: no drill; one demo unit at each station instead, with a device token
    /// printed for each, to play units yourself (`muster responder`).
    #[arg(long, requires = "demo")]
    no_drill: bool,
    /// With --demo: the drill's speed, virtual seconds per wall second.
    #[arg(long, requires = "demo", default_value_t = 4.0)]
    drill_speed: f64,
}

/// Arguments of `muster projections`.
#[derive(Debug, Args)]
struct ProjectionsArgs {
    #[command(subcommand)]
    command: ProjectionsCommand,
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Rebuild the views from the whole log and save them with their checkpoint (run it while
    /// the server is stopped).
    Rebuild {
        /// Data directory.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Where areas come from: bundled, grid, or a city file.
        #[arg(long, default_value = "bundled")]
        city: String,
    },
}

/// Crates that see frames, requests and connections byte for byte (tokens, call-back
/// numbers): whatever `RUST_LOG` says, they log at `info` at most.
const PROTOCOL_CRATES: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "actix_ws",
    "actix_http",
    "actix_server",
    "h2",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
    "tokio_postgres",
    "postgres_protocol",
    "mio",
];

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let caps = PROTOCOL_CRATES.iter().fold(
        tracing_subscriber::filter::Targets::new()
            .with_default(tracing_subscriber::filter::LevelFilter::TRACE),
        |t, name| t.with_target(*name, tracing::Level::INFO),
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .finish()
        .with(caps)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Store(args) => store_cmd::run(args),
        Command::Audit(args) => audit_cmd::run(args),
        Command::Geodata(args) => geodata_cmd::run(args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => bench::run(args),
        #[cfg(not(feature = "bench"))]
        Command::Bench(_) => anyhow::bail!(
            "this muster was built without its benchmarks; build it with \
             `cargo build --release --features bench --bin muster`"
        ),
        Command::Gateway(args) => muster_mobile::cli::run_gateway(args),
        Command::Responder(args) => muster_mobile::cli::run_responder(args),
        Command::Drill(args) => muster_sim::cli::run(args),
        Command::Serve(args) => serve(args),
        Command::Openapi(args) => {
            let text = muster_server::openapi::document_text();
            match args.output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Command::Projections(args) => match args.command {
            ProjectionsCommand::Rebuild { data_dir, city } => projections_rebuild(&data_dir, &city),
        },
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = muster_server::Config::load(args.config.as_deref())?;
    if let Some(s) = args.store {
        config.store = s;
        config.check()?;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(b) = args.bind {
        config.bind = b;
    }
    if args.demo {
        check_demo(&config)?;
    }
    let demo_users = if args.demo {
        let users = muster_server::auth::demo_users();
        config.users.extend(users.iter().cloned());
        if config.token_secret.is_none() {
            // Device tokens of this demo run only: a fresh secret each start.
            config.token_secret = Some(muster_server::config::TokenSecret::new(
                muster_server::auth::new_token() + &muster_server::auth::new_token(),
            ));
        }
        users
    } else {
        Vec::new()
    };
    // With single sign-on, people (administrators included) come from the provider.
    if config.users.is_empty() && config.oidc.is_none() {
        anyhow::bail!(
            "no users: add [[users]] to the config file, set MUSTER_USERS=name:role:token, configure single sign-on ([oidc], MUSTER_OIDC_ISSUER and MUSTER_OIDC_AUDIENCE), or run with --demo"
        );
    }
    private_data_dir(&config.data_dir)?;
    muster_server::routes::wall::ensure_built();
    runtime()?.block_on(async move {
        let app = muster_server::Application::build(config.clone()).await?;
        let addr = format!("{}://{}", app.scheme(), bound_address(&config.bind, app.port()));
        println!("muster listening on {addr}");
        if !args.demo
            && let Some(gateway) = app.gateway()
        {
            println!(
                "mobile gateway listening on {}://{}",
                ws_scheme(gateway),
                bound_address(&config.gateway_bind, gateway.port)
            );
        }
        if let Some(operator) = demo_users
            .iter()
            .find(|u| u.role == muster_server::auth::Role::Operator)
        {
            let gw = app
                .gateway()
                .map(|g| format!("{}://{}", ws_scheme(g), bound_address(&config.gateway_bind, g.port)));
            if let Some(gw) = &gw {
                println!("mobile gateway listening on {gw}");
            }
            if args.no_drill {
                let units = muster_server::app::register_demo_units(&app, operator).await?;
                println!("demo: {} units at the stations of the bundled city", units.len());
                if let (Some(gateway), Some(gw)) = (app.gateway(), &gw) {
                    let expires = chrono::Utc::now() + chrono::Duration::hours(12);
                    for (unit, call_sign) in &units {
                        println!("demo device {call_sign:<5} unit {unit} token {}", gateway.tokens.issue(*unit, expires));
                    }
                    if let Some((unit, call_sign)) = units.first() {
                        println!(
                            "try a device: muster responder --url {gw} --unit {unit} --token <the {call_sign} token>"
                        );
                    }
                }
            } else {
                let base = format!("{}://{}", app.scheme(), local_address(&config.bind, app.port()));
                // Under TLS the drill trusts what every client does: the system's roots
                // and MUSTER_CA_CERT.
                let tls = match app.tls() {
                    Some(_) => muster_sim::server::client_tls(
                        &[&base],
                        std::env::var_os(muster_mobile::tls::CA_CERT_ENV)
                            .map(PathBuf::from)
                            .as_deref(),
                    )?,
                    None => None,
                };
                let drill = muster_server::app::start_demo_drill(
                    &app,
                    &base,
                    &operator.token,
                    args.drill_speed,
                    tls,
                )?;
                println!(
                    "demo drill: {} at {}x, {} units with simulated crew devices (--no-drill to play units yourself)",
                    drill.scenario, args.drill_speed, drill.units
                );
            }
            for u in &demo_users {
                println!("demo token {:<9} {}", u.role.as_str(), u.token);
            }
            println!("try: curl -H 'Authorization: Bearer <operator token>' {addr}/api/units");
            println!("wall display: {addr}/#token={}", operator.token);
        }
        let stopper = app.stopper();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("stopping: finishing requests in flight and saving the views");
            stopper.stop().await;
        });
        app.run_until_stopped().await
    })
}

/// The data directory holds personal data (caller details in the log and the views): from
/// here on every file and directory this process creates is its user's only (umask 077), and
/// the directory itself is made 0700.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the data directory {}: {e}", dir.display())
        })?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            anyhow::anyhow!(
                "cannot make the data directory {} private: {e}",
                dir.display()
            )
        })?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            let mode = if path.is_dir() { 0o700 } else { 0o600 };
            if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
                tracing::warn!("cannot make {} private: {e}", path.display());
            }
        }
    }
    Ok(())
}

/// `--demo` prints tokens that anyone on the machine may see: it runs only on loopback
/// addresses, and never beside users a configuration defines or single sign-on.
fn check_demo(config: &muster_server::Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.users.is_empty(),
        "--demo adds demo users whose tokens it prints; it does not run with a configuration \
         that defines users ([[users]] or MUSTER_USERS)"
    );
    anyhow::ensure!(
        config.oidc.is_none(),
        "--demo adds demo users whose tokens it prints; it does not run beside single sign-on \
         ([oidc] or MUSTER_OIDC_…), whose users are real"
    );
    for (what, bind) in [
        ("bind", &config.bind),
        ("gateway_bind", &config.gateway_bind),
    ] {
        if bind == "off" {
            continue;
        }
        anyhow::ensure!(
            muster_mobile::tls::is_loopback_bind(bind),
            "--demo runs on loopback addresses only (127.0.0.1, ::1, localhost); {what} is {bind}"
        );
    }
    Ok(())
}

fn ws_scheme(gateway: &muster_server::app::Gateway) -> &'static str {
    if gateway.tls { "wss" } else { "ws" }
}

/// The address a process on this machine reaches the server at (a wildcard bind is reached on
/// the loopback address).
fn local_address(bind: &str, port: u16) -> String {
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("{host}:{port}")
}

fn bound_address(bind: &str, port: u16) -> String {
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    format!("{host}:{port}")
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn projections_rebuild(data_dir: &std::path::Path, city: &str) -> anyhow::Result<()> {
    let report = runtime()?.block_on(muster_server::views::rebuild_views(data_dir, city))?;
    println!(
        "rebuilt the views from {} events in {:.3} s ({:.0} events/s); checkpoint {}",
        report.events,
        report.seconds,
        report.events as f64 / report.seconds.max(1e-9),
        report
            .checkpoint
            .map_or("none".to_string(), |p| p.to_string())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_runs_on_loopback_without_configured_users_only() {
        let config = |bind: &str, gateway: &str| muster_server::Config {
            bind: bind.into(),
            gateway_bind: gateway.into(),
            ..Default::default()
        };
        for (bind, gateway) in [
            ("127.0.0.1:8080", "127.0.0.1:7450"),
            ("[::1]:8080", "off"),
            ("localhost:0", "127.0.0.1:0"),
        ] {
            assert!(
                check_demo(&config(bind, gateway)).is_ok(),
                "{bind} {gateway}"
            );
        }
        for (bind, gateway) in [
            ("0.0.0.0:8080", "127.0.0.1:7450"),
            ("127.0.0.1:8080", "0.0.0.0:7450"),
            ("192.0.2.10:8080", "off"),
            ("[::]:8080", "off"),
        ] {
            let e = check_demo(&config(bind, gateway)).unwrap_err().to_string();
            assert!(e.contains("loopback"), "{bind} {gateway}: {e}");
        }
        let mut with_users = config("127.0.0.1:8080", "off");
        with_users.users = muster_server::auth::demo_users();
        let e = check_demo(&with_users).unwrap_err().to_string();
        assert!(e.contains("defines users"), "{e}");
        let mut with_sso = config("127.0.0.1:8080", "off");
        with_sso.oidc = Some(muster_server::oidc::OidcConfig {
            issuer: "https://login.example.org".into(),
            audience: "muster".into(),
            ..Default::default()
        });
        let e = check_demo(&with_sso).unwrap_err().to_string();
        assert!(e.contains("single sign-on"), "{e}");
    }
}
