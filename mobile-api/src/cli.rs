//! Command-line arguments and run functions of `muster gateway`, `muster responder` and
//! `muster bench gateway`; the `muster` binary only parses and calls these.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use muster_app::Runner;
use muster_core::combined;
use muster_core::incident::{IncidentCommand, ReportSource};
use muster_core::unit::UnitCommand;
use muster_core::value::{
    Agency, CallSign, CallerDetails, IdempotencyKey, IncidentType, LatLon, Priority, StationCode,
    UnitKind,
};
use muster_core::{IncidentId, TaskId, UnitId};
use muster_store::{EmbeddedOptions, EmbeddedStore, EventMetadata, EventStore};
use rand::Rng;
use uuid::Uuid;

use crate::client::ClientConfig;
use crate::gateway::{self, GatewayConfig};
use crate::responder::{self, ResponderConfig};
use crate::tls::{self, CertificateFiles, ReloadableCert, check_plaintext_bind};
use crate::token::{HmacTokens, MIN_SECRET_BYTES};

/// Arguments of `muster gateway`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    #[command(subcommand)]
    command: Option<GatewayCommand>,
    #[command(flatten)]
    run: GatewayRunArgs,
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Print a responder token for a unit, signed with the gateway's secret.
    Token(TokenArgs),
}

/// The token secret, from a file or the environment.
#[derive(Debug, Args)]
struct SecretArgs {
    /// The secret that signs responder tokens (at least 32 bytes).
    #[arg(long, env = "MUSTER_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// A file holding the secret (its whitespace trimmed).
    #[arg(long)]
    token_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    fn secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(file) = &self.token_secret_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the token secret from {}", file.display()))?;
            return Ok(Some(text.trim().as_bytes().to_vec()));
        }
        Ok(self.token_secret.as_ref().map(|s| s.as_bytes().to_vec()))
    }

    fn tokens(&self) -> anyhow::Result<HmacTokens> {
        let secret = self
            .secret()?
            .context("no token secret: set MUSTER_TOKEN_SECRET or pass --token-secret-file")?;
        HmacTokens::new(secret).map_err(Into::into)
    }
}

#[derive(Debug, Args)]
struct GatewayRunArgs {
    /// Directory of the embedded event store.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port). An address other than loopback
    /// needs TLS (--tls-cert, --tls-key) or --tls-proxy.
    #[arg(long, default_value = "127.0.0.1:7450")]
    listen: String,
    /// PEM certificate chain for wss:// (the gateway's own certificate first, then the
    /// intermediates); needs --tls-key. Read again, with the key, on SIGHUP.
    #[arg(long, env = "MUSTER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MUSTER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A TLS-terminating proxy is in front: plain ws:// may listen on an address other than
    /// loopback.
    #[arg(long, env = "MUSTER_TLS_PROXY", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    tls_proxy: bool,
    #[command(flatten)]
    secret: SecretArgs,
    /// Seconds a crew has to acknowledge a task before the operators are alerted.
    #[arg(long, default_value_t = 60)]
    ack_timeout_secs: u64,
    /// Register this many demo units (same ids every time) and print a token for each.
    #[arg(long, default_value_t = 0)]
    demo_units: usize,
    /// With --demo-units: every this many seconds, report a demo incident for each free
    /// demo unit and assign the unit to it.
    #[arg(long)]
    demo_task_every_secs: Option<u64>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The unit's id.
    #[arg(long)]
    unit: UnitId,
    /// Hours the token stays valid.
    #[arg(long, default_value_t = 12)]
    valid_for_hours: i64,
    #[command(flatten)]
    secret: SecretArgs,
}

/// Runs `muster gateway …`.
pub fn run_gateway(args: GatewayArgs) -> anyhow::Result<()> {
    match args.command {
        Some(GatewayCommand::Token(t)) => {
            let tokens = t.secret.tokens()?;
            let expires = Utc::now() + chrono::Duration::hours(t.valid_for_hours);
            println!("{}", tokens.issue(t.unit, expires));
            Ok(())
        }
        None => runtime()?.block_on(serve_gateway(args.run)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn serve_gateway(args: GatewayRunArgs) -> anyhow::Result<()> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(ReloadableCert::load(CertificateFiles {
            cert: cert.clone(),
            key: key.clone(),
        })?)),
        _ => {
            check_plaintext_bind(
                "--listen",
                &args.listen,
                args.tls_proxy,
                "Pass --tls-cert and --tls-key (MUSTER_TLS_CERT, MUSTER_TLS_KEY), or --tls-proxy \
                 (MUSTER_TLS_PROXY=true) when a TLS-terminating proxy is in front.",
            )?;
            None
        }
    };
    let tokens = match args.secret.secret()? {
        Some(secret) => HmacTokens::new(secret)?,
        None if args.demo_units > 0 => {
            let secret: Vec<u8> = (0..MIN_SECRET_BYTES)
                .map(|_| rand::rng().random())
                .collect();
            eprintln!("no token secret given: using a random one for this demo run");
            HmacTokens::new(secret)?
        }
        None => {
            anyhow::bail!("no token secret: set MUSTER_TOKEN_SECRET or pass --token-secret-file")
        }
    };
    let store: Arc<dyn EventStore> = Arc::new(
        EmbeddedStore::open(&args.data_dir, EmbeddedOptions::default())
            .with_context(|| format!("opening the event store in {}", args.data_dir.display()))?,
    );
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    eprintln!("mobile gateway listening on {scheme}://{addr}");
    let runner = Runner::new(store.clone());
    let units = demo_units(&runner, args.demo_units).await?;
    for (i, unit) in units.iter().enumerate() {
        let token = tokens.issue(*unit, Utc::now() + chrono::Duration::hours(12));
        println!("demo unit {} {unit} token {token}", i + 1);
    }
    if let (Some(every), false) = (args.demo_task_every_secs, units.is_empty()) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every.max(1)));
            tick.tick().await;
            loop {
                tick.tick().await;
                for unit in &units {
                    if let Err(e) = demo_task(&runner, *unit).await {
                        tracing::warn!(error = %e, %unit, "demo task not assigned");
                    }
                }
            }
        });
    }
    let tls = match tls {
        Some(cert) => {
            tls::reload_on_hangup(cert.clone(), std::future::pending())
                .context("listening for SIGHUP")?;
            Some(Arc::new(tls::server_config(cert)?))
        }
        None => None,
    };
    let config = GatewayConfig {
        ack_timeout: Some(Duration::from_secs(args.ack_timeout_secs)),
        tls,
        ..GatewayConfig::default()
    };
    gateway::run(listener, store, Arc::new(tokens), config, async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    })
    .await;
    Ok(())
}

const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_6465_6d6f_0000_0000_0001);

/// A demo command: scoped to the demo, keyed by what it does.
fn demo_command(what: String) -> muster_app::Command {
    let key = IdempotencyKey::try_from(format!(
        "demo-{}",
        Uuid::new_v5(&DEMO_NAMESPACE, what.as_bytes())
    ))
    .expect("a UUID with a prefix is a valid key");
    muster_app::Command {
        key: muster_app::CommandKey::new("mobile-gateway-demo", key),
        fingerprint: muster_app::Fingerprint::of(&what, &serde_json::Value::Null),
        metadata: EventMetadata {
            actor: Some("mobile-gateway-demo".into()),
            source: Some("drill".into()),
            ..EventMetadata::default()
        },
    }
}

/// Registers `count` demo units (ids fixed by their number) unless they exist.
async fn demo_units(runner: &Runner, count: usize) -> anyhow::Result<Vec<UnitId>> {
    let mut units = Vec::new();
    for i in 0..count {
        let unit = UnitId::from_uuid(Uuid::new_v5(
            &DEMO_NAMESPACE,
            format!("unit {i}").as_bytes(),
        ));
        if runner.unit(unit).await?.unit.is_none() {
            let register = UnitCommand::Register {
                unit_id: unit,
                kind: UnitKind::parse("engine")?,
                call_sign: CallSign::parse(&format!("DEMO {}", i + 1))?,
                agency: Agency::parse("fire")?,
                home_station: StationCode::parse("demo")?,
                capabilities: BTreeSet::new(),
                at: Utc::now(),
            };
            runner
                .execute(&demo_command(format!("register {unit}")), |s| {
                    Ok((combined::unit_command(s, unit, register.clone())?, ()))
                })
                .await?;
        }
        units.push(unit);
    }
    Ok(units)
}

/// Reports a demo incident near central Helsinki and assigns `unit` to it, if it is free.
async fn demo_task(runner: &Runner, unit: UnitId) -> anyhow::Result<()> {
    if !runner
        .unit(unit)
        .await?
        .unit
        .as_ref()
        .is_some_and(|u| u.status.can_take_task())
    {
        return Ok(());
    }
    let incident = IncidentId::new_v7();
    let (dlat, dlon) = {
        let mut rng = rand::rng();
        (rng.random_range(-0.01..0.01), rng.random_range(-0.02..0.02))
    };
    let location = LatLon::from_lat_lon(
        crate::responder::DEFAULT_START.0 + dlat,
        crate::responder::DEFAULT_START.1 + dlon,
    )?;
    let now = Utc::now();
    let report = IncidentCommand::Report {
        incident_id: incident,
        source: ReportSource::Hotline,
        location,
        incident_type: IncidentType::Medical,
        priority: Priority::P2,
        caller: CallerDetails::default(),
        call_received_at: now,
        at: now,
    };
    runner
        .execute(&demo_command(format!("report {incident}")), |s| {
            Ok((combined::incident_command(s, incident, report.clone())?, ()))
        })
        .await?;
    let task = TaskId::new_v7();
    runner
        .execute(&demo_command(format!("assign {incident} {unit}")), |s| {
            Ok((combined::assign(s, incident, unit, task, now)?, ()))
        })
        .await?;
    Ok(())
}

/// Arguments of `muster responder`.
#[derive(Debug, Args)]
pub struct ResponderArgs {
    /// The gateway's address: wss://host:port (TLS) or ws://host:port.
    #[arg(long, default_value = "ws://127.0.0.1:7450")]
    url: String,
    /// A PEM file of CA certificates to trust for a wss:// gateway besides the system's
    /// roots (such as ops/local-ca.sh's ca.pem). The certificate is always verified.
    #[arg(long, env = "MUSTER_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The responder's token (`muster gateway token --unit …`).
    #[arg(long, env = "MUSTER_RESPONDER_TOKEN", hide_env_values = true)]
    token: String,
    /// The unit (checked against the token).
    #[arg(long)]
    unit: Option<UnitId>,
    /// Waypoints "lat,lon;lat,lon;…"; the first is the start, the incident's location is
    /// appended for each task.
    #[arg(long)]
    route: Option<String>,
    /// Driving speed, metres a second.
    #[arg(long, default_value_t = 14.0)]
    speed_m_s: f64,
    /// Seconds between position reports while moving.
    #[arg(long, default_value_t = 5.0)]
    position_every_secs: f64,
    /// Seconds on scene before completing the task.
    #[arg(long, default_value_t = 30.0)]
    on_scene_secs: f64,
    /// Stop after completing this many tasks.
    #[arg(long)]
    tasks: Option<usize>,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
}

/// Parses "lat,lon;lat,lon".
pub fn parse_route(text: &str) -> anyhow::Result<Vec<LatLon>> {
    text.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (lat, lon) = pair
                .split_once(',')
                .with_context(|| format!("{pair:?} is not \"lat,lon\""))?;
            Ok(LatLon::from_lat_lon(
                lat.trim().parse()?,
                lon.trim().parse()?,
            )?)
        })
        .collect()
}

/// Runs `muster responder`.
pub fn run_responder(args: ResponderArgs) -> anyhow::Result<()> {
    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s).with_context(|| format!("{what} must be a positive number"))
    };
    anyhow::ensure!(
        args.url.starts_with("ws://") || args.url.starts_with("wss://"),
        "--url must be a ws:// or wss:// address, not {:?}",
        args.url
    );
    let mut client = ClientConfig::new(args.url, args.token);
    if client.url.starts_with("wss://") || args.ca_cert.is_some() {
        client.tls = Some(tls::client_config(args.ca_cert.as_deref())?);
    }
    client.unit = args.unit;
    let config = ResponderConfig {
        client,
        route: args
            .route
            .as_deref()
            .map(parse_route)
            .transpose()?
            .unwrap_or_default(),
        speed_m_s: args.speed_m_s,
        position_every: secs(args.position_every_secs, "--position-every-secs")?,
        on_scene_for: secs(args.on_scene_secs, "--on-scene-secs")?,
        tasks: args.tasks,
    };
    anyhow::ensure!(
        config.speed_m_s.is_finite() && config.speed_m_s > 0.0,
        "--speed-m-s must be positive"
    );
    anyhow::ensure!(
        !config.position_every.is_zero(),
        "--position-every-secs must be positive"
    );
    let report = runtime()?.block_on(responder::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "tasks received {}, completed {}; positions sent {}; commands done {}, refused {}; disconnects {}",
            report.tasks_received,
            report.tasks_completed,
            report.positions_sent,
            report.commands_done,
            report.commands_refused,
            report.disconnects
        );
    }
    Ok(())
}

pub use crate::bench::{BenchGatewayArgs, run_bench_gateway};
