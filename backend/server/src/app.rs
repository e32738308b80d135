//! Wiring: the store, the views and their projector, the HTTP server. Tests and `muster
//! serve` build an [`Application`] from a [`Config`] and a bound listener; the caller owns
//! the socket (port 0 picks a free one) and decides when to stop.
//!
//! With `tls_cert` and `tls_key` configured, the HTTP listener (API, wall display, wall feed)
//! and the mobile gateway speak TLS, presenting one certificate that a SIGHUP reloads
//! ([`muster_mobile::tls::ReloadableCert`]); without them, both listeners must be loopback
//! unless a TLS-terminating proxy is in front ([`Config::check_plaintext`]).
//!
//! Graceful shutdown ([`Stopper::stop`]): the server stops accepting, requests in flight
//! finish (up to `shutdown_timeout_s`), wall-display feeds are closed, the projector applies
//! everything committed and saves the views with their checkpoint, then the store closes.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use actix_web::{App, HttpResponse, dev::ServerHandle, web};
use anyhow::Context;
use muster_mobile::tls::ReloadableCert;
use muster_store::postgres::{PostgresOptions, PostgresStore, is_postgres_url};
use muster_store::{EmbeddedOptions, EmbeddedStore, EventStore, Position};
use tokio::sync::watch;

use crate::areas::Areas;
use crate::auth::{Tokens, UserConfig};
use crate::config::Config;
use crate::error::ApiError;
use crate::routes::feed::FeedShutdown;
use crate::routes::{self, AppState};
use crate::views::{ViewDb, Views, run_projector};

/// Connections one HTTP worker holds at once (wall displays included); more wait in the
/// listen backlog.
pub const MAX_CONNECTIONS_PER_WORKER: usize = 4096;

/// A built server, listening, not yet running.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    stopper: Stopper,
    projector: tokio::task::JoinHandle<anyhow::Result<()>>,
    store: StoreHandle,
    state: AppState,
    city: Option<muster_geodata::model::City>,
    gateway: Option<Gateway>,
    tls: Option<Arc<ReloadableCert>>,
}

/// The event store a server runs on.
#[derive(Clone, Debug)]
pub enum StoreHandle {
    /// The embedded store in the data directory.
    Embedded(Arc<EmbeddedStore>),
    /// PostgreSQL, shared by several nodes.
    Postgres(Arc<PostgresStore>),
}

impl StoreHandle {
    /// Opens the store `config.store` names.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        if is_postgres_url(&config.store) {
            let store = PostgresStore::open(PostgresOptions::new(&config.store))
                .await
                .context("opening the event store on PostgreSQL")?;
            tracing::info!(
                "event store: PostgreSQL at {} (schema {})",
                store.hosts(),
                store.schema()
            );
            Ok(Self::Postgres(Arc::new(store)))
        } else {
            let store = EmbeddedStore::open(&config.data_dir, EmbeddedOptions::default())
                .with_context(|| {
                    format!("opening the event store in {}", config.data_dir.display())
                })?;
            Ok(Self::Embedded(Arc::new(store)))
        }
    }

    /// The store, for everything that reads and writes it.
    pub fn dyn_store(&self) -> Arc<dyn EventStore> {
        match self {
            Self::Embedded(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// Whether the store can take commands now (PostgreSQL: the connection is up).
    pub fn is_up(&self) -> bool {
        match self {
            Self::Embedded(_) => true,
            Self::Postgres(s) => s.is_connected(),
        }
    }

    /// Closes it.
    pub fn close(&self) {
        match self {
            Self::Embedded(s) => s.close(),
            Self::Postgres(s) => s.close(),
        }
    }
}

/// The mobile gateway `muster serve` runs beside the HTTP API, on the same store.
#[derive(Clone)]
pub struct Gateway {
    /// The port it listens on.
    pub port: u16,
    /// Whether it speaks TLS (`wss://`).
    pub tls: bool,
    /// Issues and checks responders' device tokens.
    pub tokens: Arc<muster_mobile::token::HmacTokens>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("port", &self.port)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Starts the mobile gateway on `config.gateway_bind` when a token secret is configured.
async fn start_gateway(
    config: &Config,
    store: Arc<dyn EventStore>,
    ack_timeout: std::time::Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
    web_port: u16,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Gateway>> {
    let Some(secret) = &config.token_secret else {
        tracing::info!("no token_secret: the mobile gateway does not run");
        return Ok(None);
    };
    if config.gateway_bind == "off" {
        return Ok(None);
    }
    let tokens = Arc::new(muster_mobile::token::HmacTokens::new(
        secret.expose().as_bytes().to_vec(),
    )?);
    let listener = tokio::net::TcpListener::bind(&config.gateway_bind)
        .await
        .with_context(|| format!("binding the mobile gateway to {}", config.gateway_bind))?;
    let gateway = Gateway {
        port: listener.local_addr()?.port(),
        tls: tls.is_some(),
        tokens: tokens.clone(),
    };
    let gateway_config = muster_mobile::gateway::GatewayConfig {
        ack_timeout: Some(ack_timeout),
        allowed_origins: config.allowed_origins.clone(),
        web_port: Some(web_port),
        lockout_failures: config.lockout_failures,
        node: Some(node_name(gateway.port)),
        tls,
        ..Default::default()
    };
    let verifier: Arc<dyn muster_mobile::token::TokenVerifier> = tokens.clone();
    tokio::spawn(muster_mobile::gateway::run(
        listener,
        store,
        verifier,
        gateway_config,
        async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        },
    ));
    Ok(Some(gateway))
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish()
    }
}

/// Stops a running [`Application`] gracefully.
#[derive(Clone)]
pub struct Stopper {
    handle: ServerHandle,
    stopping: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stopper")
    }
}

impl Stopper {
    /// Begins a graceful stop; `run_until_stopped` returns when it is done.
    pub async fn stop(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.stopping.send_replace(true);
        self.handle.stop(true).await;
    }
}

struct Readiness {
    ready: Arc<AtomicBool>,
    store: StoreHandle,
    at_start: Arc<OnceLock<ViewsAtStart>>,
}

/// How the views got ready: loaded at a checkpoint, then the events after it applied from
/// the log (all of it when there was no checkpoint). An operator reads it in `/readyz` and
/// in the log line at start.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct ViewsAtStart {
    /// The checkpoint the saved views were loaded at; `null` when they were folded from the
    /// start of the log.
    #[schema(value_type = Option<u64>)]
    pub loaded_checkpoint: Option<Position>,
    /// Events applied from the log until the views had caught up with it.
    pub events_applied: u64,
}

/// `GET /healthz`: `{"status": "alive"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Alive {
    /// `alive`.
    pub status: AliveStatus,
}

/// The status of a live process.
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AliveStatus {
    /// The only one.
    Alive,
}

/// `GET /readyz` when ready: the views have caught up with the log as it was at start.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: ReadyStatus,
    /// The last log position the views applied (none before the first event).
    pub position: Option<u64>,
    /// How the views got ready at start.
    pub views_at_start: Option<ViewsAtStart>,
    /// The work that runs on one node of those sharing the store and that this node leads
    /// now: `automatic_dispatch` (always, on the embedded store).
    pub leads: Vec<String>,
}

/// The status of a ready server.
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// The only one.
    Ready,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive {
        status: AliveStatus::Alive,
    })
}

async fn readyz(
    ready: web::Data<Readiness>,
    state: web::Data<AppState>,
    dispatcher: Option<web::Data<crate::dispatcher::Dispatcher>>,
) -> HttpResponse {
    if !ready.store.is_up() {
        return actix_web::ResponseError::error_response(&ApiError::unavailable(
            "not ready: the event store cannot be reached (reconnecting)",
        ));
    }
    if ready.ready.load(Ordering::SeqCst) {
        HttpResponse::Ok().json(Ready {
            status: ReadyStatus::Ready,
            position: state.views.last().map(|p| p.0),
            views_at_start: ready.at_start.get().copied(),
            leads: dispatcher
                .filter(|d| d.is_leading())
                .map(|_| vec!["automatic_dispatch".to_owned()])
                .unwrap_or_default(),
        })
    } else {
        actix_web::ResponseError::error_response(&ApiError::unavailable(
            "not ready: the views are catching up with the log, or the server is stopping",
        ))
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}

impl Application {
    /// Opens the store in `config.data_dir`, loads the views, binds `config.bind`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        Self::build_with_listener(config, listener).await
    }

    /// As [`Application::build`], on a listener the caller bound.
    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        config.check()?;
        config.check_plaintext(&listener.local_addr()?.to_string())?;
        let tls = config
            .tls_files()
            .map(|files| ReloadableCert::load(files).map(Arc::new))
            .transpose()?;
        let tls_config = tls
            .clone()
            .map(muster_mobile::tls::server_config)
            .transpose()?;
        let store = StoreHandle::open(&config).await?;
        let dyn_store: Arc<dyn EventStore> = store.dyn_store();
        let (areas, city) = Areas::from_setting(&config.city)?;
        let db = Arc::new(ViewDb::open(&config.data_dir)?);
        let mut saved = db
            .load()
            .context("loading the saved views")?
            .unwrap_or_default();
        let head = dyn_store.head();
        // Views that hold a position the log does not have belong to another log (a restored
        // backup, a replaced data directory): fold this one from the start instead.
        if saved.last.is_some_and(|p| p >= head) {
            tracing::warn!("the saved views are ahead of the log; rebuilding them");
            saved = Default::default();
            db.save_all(&saved).context("clearing the saved views")?;
        }
        let views = Views::new(saved, areas);
        let (stopping, stop_rx) = watch::channel(false);
        if let Some(cert) = &tls {
            let mut stop = stop_rx.clone();
            muster_mobile::tls::reload_on_hangup(cert.clone(), async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            })
            .context("listening for SIGHUP to reload the TLS certificate")?;
        }
        let projector = tokio::spawn(run_projector(
            views.clone(),
            dyn_store.clone(),
            db,
            stop_rx.clone(),
        ));
        let ready = Arc::new(AtomicBool::new(false));
        let at_start = Arc::new(OnceLock::new());
        {
            let (ready, at_start) = (ready.clone(), at_start.clone());
            let views = views.clone();
            tokio::spawn(async move {
                if head > Position::START {
                    while !views
                        .wait_for(Position(head.0 - 1), std::time::Duration::from_secs(3600))
                        .await
                    {}
                }
                let got = ViewsAtStart {
                    loaded_checkpoint: views.loaded_checkpoint(),
                    events_applied: views.events_applied(),
                };
                match got.loaded_checkpoint {
                    Some(p) => tracing::info!(
                        "views ready: loaded at checkpoint {p}, then {} events applied from the log",
                        got.events_applied
                    ),
                    None => tracing::info!(
                        "views ready: no checkpoint, {} events applied from the start of the log",
                        got.events_applied
                    ),
                }
                let _ = at_start.set(got);
                ready.store(true, Ordering::SeqCst);
            });
        }
        let tokens = Tokens::new(&config.users)?;
        let oidc = config
            .oidc
            .as_ref()
            .map(|c| crate::oidc::Oidc::new(c).context("single sign-on ([oidc])"))
            .transpose()?
            .map(web::Data::new);
        if let Some(oidc) = &oidc {
            tracing::info!(issuer = %oidc.issuer(), "single sign-on: bearer JWTs from this issuer are taken");
        }
        let runner = muster_app::Runner::new(dyn_store.clone());
        let api_tokens = web::Data::new(crate::api_tokens::ApiTokenRegistry::new(runner.clone()));
        let rules = muster_core::dispatch::DispatchRules::default();
        let gateway = start_gateway(
            &config,
            dyn_store.clone(),
            rules.ack_timeout(),
            tls_config.clone().map(Arc::new),
            listener.local_addr()?.port(),
            stop_rx.clone(),
        )
        .await?;
        let dispatcher = crate::dispatcher::Dispatcher::new(
            city.as_ref(),
            runner.clone(),
            rules,
            muster_core::runcard::ResponsePlans::default_set(),
        )?;
        if let Some(d) = &dispatcher {
            tokio::spawn(d.clone().run(dyn_store.clone(), stop_rx.clone()));
        }
        let dispatcher = dispatcher.map(web::Data::new);
        let geocoder = city
            .as_ref()
            .map(|c| Arc::new(muster_geodata::geocode::Geocoder::new(Arc::new(c.clone()))));
        let port = listener.local_addr()?.port();
        let state = AppState {
            runner,
            views,
            geocoder,
            node: node_name(port).into(),
        };
        let data = web::Data::new(state.clone());
        let tokens = web::Data::new(tokens);
        let readiness = web::Data::new(Readiness {
            ready: ready.clone(),
            store: store.clone(),
            at_start,
        });
        let feed_shutdown = web::Data::new(FeedShutdown(stop_rx));
        let wall = web::Data::new(routes::wall::WallState::new(
            city.clone(),
            dyn_store.clone(),
        ));
        let responder = web::Data::new(routes::responder::ResponderState::new(
            gateway.as_ref().map(|g| routes::responder::GatewayAddress {
                port: g.port,
                tls: g.tls,
            }),
        ));
        let enrolment = gateway.as_ref().map(|g| {
            web::Data::new(routes::devices::Enrolment {
                tokens: g.tokens.clone(),
                gateway_port: g.port,
            })
        });
        let limit = config.max_body_bytes;
        let lockout = web::Data::new(crate::security::Lockout::new(config.lockout_failures));
        let origins = web::Data::new(crate::security::AllowedOrigins(
            config.allowed_origins.clone(),
        ));
        let reads = web::Data::new(crate::security::ExpensiveReads::per_processor());
        let slots = web::Data::new(crate::security::RequestSlots(tokio::sync::Semaphore::new(
            config.max_concurrent_requests,
        )));
        let tickets = web::Data::new(crate::tickets::FeedTickets::new(
            config.token_secret.as_ref().map(|s| s.expose().as_bytes()),
        ));
        let server = actix_web::HttpServer::new(move || {
            let app = match &dispatcher {
                Some(d) => App::new().app_data(d.clone()),
                None => App::new(),
            };
            let app = match &enrolment {
                Some(e) => app.app_data(e.clone()),
                None => app,
            };
            let app = match &oidc {
                Some(o) => app.app_data(o.clone()),
                None => app,
            };
            app.wrap(actix_web::middleware::from_fn(crate::security::concurrency))
                .wrap(actix_web::middleware::from_fn(crate::security::headers))
                .app_data(slots.clone())
                .app_data(reads.clone())
                .app_data(data.clone())
                .app_data(tokens.clone())
                .app_data(api_tokens.clone())
                .app_data(lockout.clone())
                .app_data(origins.clone())
                .app_data(tickets.clone())
                .app_data(readiness.clone())
                .app_data(feed_shutdown.clone())
                .app_data(wall.clone())
                .app_data(responder.clone())
                .app_data(web::QueryConfig::default().error_handler(crate::edge::query_error))
                .app_data(web::PathConfig::default().error_handler(crate::edge::path_error))
                .app_data(web::PayloadConfig::default().limit(limit))
                .app_data(crate::edge::BodyLimit(limit))
                .configure(routes::routes)
                .route("/api/openapi.json", web::get().to(openapi))
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .configure(routes::responder::routes)
                .configure(routes::wall::routes)
                .default_service(web::to(crate::edge::no_route))
        })
        .workers(config.workers)
        .max_connections(MAX_CONNECTIONS_PER_WORKER)
        .shutdown_timeout(config.shutdown_timeout_s)
        .disable_signals();
        let server = match tls_config {
            Some(tls) => server.listen_rustls_0_23(listener, tls)?,
            None => server.listen(listener)?,
        }
        .run();
        let stopper = Stopper {
            handle: server.handle(),
            stopping,
            ready,
        };
        Ok(Self {
            port,
            server,
            stopper,
            projector,
            store,
            state,
            city,
            gateway,
            tls,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop it.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// The command side and views (for demo set-up and benchmarks).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The certificate the listeners present, when they speak TLS; SIGHUP reloads it, and
    /// so does [`ReloadableCert::reload`].
    pub fn tls(&self) -> Option<&Arc<ReloadableCert>> {
        self.tls.as_ref()
    }

    /// `https` when the HTTP listener speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The mobile gateway, when one runs.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }

    /// The city its areas come from, if any.
    pub fn city(&self) -> Option<&muster_geodata::model::City> {
        self.city.as_ref()
    }

    /// Serves until stopped, then drains: the projector applies what is committed and saves
    /// the views, and the store closes.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        self.stopper.ready.store(false, Ordering::SeqCst);
        self.stopper.stopping.send_replace(true);
        let projected = self.projector.await.context("the projector task failed")?;
        self.store.close();
        served.context("the HTTP server failed")?;
        projected.context("the projector failed")
    }
}

/// Serves on `listener` until `shutdown` completes, then stops gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = Application::build_with_listener(config, listener).await?;
    let stopper = app.stopper();
    tokio::spawn(async move {
        shutdown.await;
        stopper.stop().await;
    });
    app.run_until_stopped().await
}

/// Registers demo units at the city's stations (one per station), with fixed idempotency
/// keys so that running the demo again registers nothing new. Answers how many there are.
pub async fn register_demo_units(
    app: &Application,
    operator: &UserConfig,
) -> anyhow::Result<Vec<(muster_core::UnitId, String)>> {
    use muster_core::value::{Agency, CallSign, Capability, IdempotencyKey, StationCode, UnitKind};
    use muster_geodata::model::StationKind;
    let Some(city) = app.city() else {
        return Ok(Vec::new());
    };
    let caller = crate::auth::Caller {
        name: operator.name.clone(),
        role: operator.role,
        unit: operator.unit,
        agency: None,
        credential: Some(crate::auth::credential_id(&operator.token)),
    };
    let mut units = Vec::new();
    for (i, station) in city.stations.iter().enumerate() {
        let (kind, prefix, agency, caps): (UnitKind, &str, &str, &[&str]) = match station.kind {
            StationKind::Fire => (UnitKind::Engine, "E", "demo-fire", &["pump"]),
            StationKind::Ambulance => (UnitKind::AlsAmbulance, "A", "demo-ems", &["als"]),
            StationKind::Police => (UnitKind::PatrolCar, "P", "demo-police", &[]),
        };
        let code = crate::dispatcher::station_slug(&station.id);
        let key = IdempotencyKey::try_from(format!("demo-unit-{code}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = routes::units::RegisterUnit {
            id: None,
            kind,
            call_sign: CallSign::parse(&format!("{prefix}{}", i + 1))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            agency: Agency::parse(agency).map_err(|e| anyhow::anyhow!("{e}"))?,
            home_station: StationCode::parse(&crate::dispatcher::station_code(&station.id))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            capabilities: caps
                .iter()
                .map(|c| Capability::parse(c))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            location: Some(station.location),
        };
        let id = muster_core::UnitId::from_uuid(uuid::Uuid::new_v5(
            &uuid::Uuid::from_u128(0x6d75_7374_6572_2d64_656d_6f2d_756e_6974),
            key.as_str().as_bytes(),
        ));
        let call_sign = body.call_sign.as_str().to_owned();
        let command = muster_app::Command {
            key: muster_app::CommandKey::new(caller.name.clone(), key.clone()),
            fingerprint: muster_app::Fingerprint::of("demo unit", &serde_json::json!(id)),
            metadata: crate::edge::metadata(None, &caller, "operator"),
        };
        routes::units::register(&app.state.runner, &command, id, body)
            .await
            .map_err(|e| anyhow::anyhow!("registering a demo unit: {e}"))?;
        units.push((id, call_sign));
    }
    Ok(units)
}

/// The live drill `muster serve --demo` runs.
#[derive(Debug, Clone)]
pub struct DemoDrill {
    /// The scenario's name.
    pub scenario: String,
    /// Units it plays.
    pub units: u32,
}

/// Starts the live drill of the bundled Helsinki sample against this server, at `base` (its
/// own address) with an operator's token, round after round until the server stops. It
/// needs the bundled city and the mobile gateway. `tls` is whom it trusts when the server
/// speaks TLS (`None`: the system's roots).
pub fn start_demo_drill(
    app: &Application,
    base: &str,
    operator_token: &str,
    speed: f64,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<DemoDrill> {
    let scenario =
        muster_sim::scenario::Scenario::load_file_or_sample(std::path::Path::new("helsinki"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let city = app.city().map(|c| c.meta.name.clone());
    if city.as_deref() != Some(scenario.city.meta.name.as_str()) {
        anyhow::bail!(
            "the demo drill plays on the bundled Helsinki city, but the server's city is {}; start with --no-drill",
            city.unwrap_or_else(|| "none (a grid)".into())
        );
    }
    let Some(gateway) = app.gateway() else {
        anyhow::bail!(
            "the demo drill needs the mobile gateway; set a gateway_bind other than \"off\" or start with --no-drill"
        );
    };
    let drill = DemoDrill {
        scenario: scenario.name.clone(),
        units: scenario.unit_count(),
    };
    let options = muster_sim::live::LiveOptions {
        server: base.to_owned(),
        token: operator_token.to_owned(),
        gateway: Some(format!(
            "{}://127.0.0.1:{}",
            if gateway.tls { "wss" } else { "ws" },
            gateway.port
        )),
        tls,
        speed,
        seed: scenario.seed,
        hours: None,
        repeat: true,
        drain_hours: 2.0,
    };
    let stop = app.stopper.stopping.subscribe();
    tokio::spawn(async move {
        let mut last = std::time::Instant::now();
        let result = muster_sim::live::run(Arc::new(scenario), options, stop, &mut |s| {
            if last.elapsed() >= std::time::Duration::from_secs(60) {
                last = std::time::Instant::now();
                tracing::info!("demo drill: {}", muster_sim::live::summary_line(s));
            }
        })
        .await;
        match result {
            Ok(s) => tracing::info!("demo drill ended: {}", muster_sim::live::summary_line(&s)),
            Err(e) => tracing::error!("the demo drill stopped: {e:#}"),
        }
    });
    Ok(drill)
}

/// This node's name in the audit trail: the host's name and the HTTP port.
pub fn node_name(port: u16) -> String {
    let uname = rustix::system::uname();
    format!("{}:{port}", uname.nodename().to_string_lossy())
}
