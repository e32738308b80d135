//! The `muster` command: parses arguments and hands over to the library code of each area.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// TOML config file (see docs/api.md); `MUSTER_…` variables override it.
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
    /// Address to listen on, such as 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    bind: Option<String>,
    /// Demo mode: demo users (printing their tokens) and a live drill of the bundled
    /// Helsinki sample keeping the city busy: its units registered, calls entered, the
    /// dispatcher's recommendations sent, and a simulated crew device per unit.
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Store(args) => store_cmd::run(args),
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
    if config.users.is_empty() {
        anyhow::bail!(
            "no users: add [[users]] to the config file, set MUSTER_USERS=name:role:token, or run with --demo"
        );
    }
    muster_server::routes::wall::ensure_built();
    runtime()?.block_on(async move {
        let app = muster_server::Application::build(config.clone()).await?;
        let addr = format!("http://{}", bound_address(&config.bind, app.port()));
        println!("muster listening on {addr}");
        if !args.demo
            && let Some(gateway) = app.gateway()
        {
            println!(
                "mobile gateway listening on ws://{}",
                bound_address(&config.gateway_bind, gateway.port)
            );
        }
        if let Some(operator) = demo_users
            .iter()
            .find(|u| u.role == muster_server::auth::Role::Operator)
        {
            let gw = app
                .gateway()
                .map(|g| format!("ws://{}", bound_address(&config.gateway_bind, g.port)));
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
                let drill = muster_server::app::start_demo_drill(
                    &app,
                    &format!("http://{}", local_address(&config.bind, app.port())),
                    &operator.token,
                    args.drill_speed,
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
            println!("wall display: {addr}/?token={}", operator.token);
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
