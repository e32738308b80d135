//! `muster audit`: the audit trail of an incident or of a user, from the event store.
//!
//! Every command's events carry who acted (user or device, role, agency, credential id), from where
//! (peer address, node), through which source and when; every disclosure of caller details is
//! a `CallerDetailsRead` event in `audit-<incident id>` with the same metadata. This command
//! lists them: for an incident, every event about it (its own stream, its audit stream, and
//! the task, alert and device events that name it); for a user, every event they caused and
//! every read they made. Event data is never printed (it may hold caller details).
//!
//! Like `muster store`, it opens an embedded store exclusively (run it while the server is
//! stopped, or on a backup) and reads PostgreSQL beside the nodes.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use muster_core::IncidentId;
use muster_server::trail::{self, Subject, TrailLine};
use muster_store::embedded::VerifyOnOpen;
use muster_store::{EmbeddedOptions, EmbeddedStore, EventStore};

/// Arguments of `muster audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Directory of the embedded store.
    #[arg(long, env = "MUSTER_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The store: `embedded` (in --data-dir) or a PostgreSQL connection string.
    #[arg(long, env = "MUSTER_STORE", default_value = "embedded")]
    store: String,
    /// The trail of this incident (its id).
    #[arg(long, required_unless_present = "user")]
    incident: Option<String>,
    /// The trail of this user (a user's name, or `unit:<id>` for a unit's device); with
    /// --incident too, what they did about that incident.
    #[arg(long)]
    user: Option<String>,
    /// Print JSON lines (an export) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `muster audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let incident = args
        .incident
        .as_deref()
        .map(|id| {
            IncidentId::parse(id).map_err(|_| {
                anyhow::anyhow!("--incident must be an incident id (a UUID), not {id:?}")
            })
        })
        .transpose()?;
    let user = args.user.as_deref().map(str::trim).map(str::to_owned);
    if user.as_deref().is_some_and(str::is_empty) {
        bail!("--user must name a user");
    }
    let subject = Subject { incident, user };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async {
        if args.store == "embedded" {
            if !args
                .data_dir
                .join(muster_store::embedded::STORE_FILE)
                .exists()
            {
                bail!(
                    "no event store in {} (set --data-dir or MUSTER_DATA_DIR)",
                    args.data_dir.display()
                );
            }
            let options = EmbeddedOptions {
                verify_on_open: VerifyOnOpen::Tail,
                ..Default::default()
            };
            let store = EmbeddedStore::open(&args.data_dir, options).with_context(|| {
                format!("cannot open the event store in {}", args.data_dir.display())
            })?;
            trail(&store, &subject, args.json).await
        } else if muster_store::postgres::is_postgres_url(&args.store) {
            let store = muster_store::postgres::PostgresStore::open(
                muster_store::postgres::PostgresOptions::new(&args.store),
            )
            .await
            .context("cannot open the event store on PostgreSQL")?;
            let result = trail(&store, &subject, args.json).await;
            store.close();
            result
        } else {
            bail!("--store must be \"embedded\" or a PostgreSQL connection string (postgres://…)")
        }
    })
}

async fn trail(store: &dyn EventStore, subject: &Subject, json: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !json {
        writeln!(
            out,
            "{:>10}  {:<27}  {:<22}  {:<18}  {:<10}  {:<12}  {:<24}  {:<9}  {:<15}  stream",
            "position",
            "recorded at",
            "type",
            "actor",
            "role",
            "agency",
            "credential",
            "source",
            "peer"
        )?;
    }
    let found = trail::read(store, subject, usize::MAX, |line: TrailLine| {
        if json {
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out)
        } else {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
            writeln!(
                out,
                "{:>10}  {:<27}  {:<22}  {:<18}  {:<10}  {:<12}  {:<24}  {:<9}  {:<15}  {}",
                line.position,
                line.recorded_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                line.event_type,
                dash(&line.actor),
                dash(&line.role),
                dash(&line.agency),
                dash(&line.credential),
                dash(&line.source),
                dash(&line.peer),
                line.stream
            )
        }
    })
    .await?;
    out.flush()?;
    if found == 0 {
        eprintln!("no events in the trail");
    }
    Ok(())
}
