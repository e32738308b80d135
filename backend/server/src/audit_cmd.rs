//! `muster audit`: the audit trail of an incident or of a user, from the event store.
//!
//! Every command's events carry who acted (user or device, role, credential id), from where
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
use muster_store::embedded::VerifyOnOpen;
use muster_store::{EmbeddedOptions, EmbeddedStore, EventStore, Position, RecordedEvent};
use serde::Serialize;

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
    #[arg(long, conflicts_with = "user", required_unless_present = "user")]
    incident: Option<String>,
    /// The trail of this user (a user's name, or `unit:<id>` for a unit's device).
    #[arg(long)]
    user: Option<String>,
    /// Print JSON lines (an export) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of the trail.
#[derive(Debug, Serialize)]
struct TrailLine<'a> {
    position: u64,
    recorded_at: chrono::DateTime<chrono::Utc>,
    stream: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    actor: Option<&'a str>,
    role: Option<&'a str>,
    credential: Option<&'a str>,
    source: Option<&'a str>,
    peer: Option<&'a str>,
    node: Option<&'a str>,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What the trail is of.
enum Subject {
    Incident(IncidentId),
    User(String),
}

impl Subject {
    fn covers(&self, e: &RecordedEvent) -> bool {
        match self {
            Subject::User(name) => e.metadata.actor.as_deref() == Some(name.as_str()),
            Subject::Incident(id) => {
                let stream = e.stream.as_str();
                if stream == id.stream_name().as_str() || stream == id.audit_stream().as_str() {
                    return true;
                }
                // Task, alert and device events name their incident.
                serde_json::from_slice::<serde_json::Value>(&e.data)
                    .ok()
                    .and_then(|d| {
                        d.get("incident")
                            .and_then(|i| i.as_str())
                            .map(str::to_owned)
                    })
                    .is_some_and(|i| i == id.to_string())
            }
        }
    }
}

/// Runs `muster audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let subject = match (&args.incident, &args.user) {
        (Some(id), None) => Subject::Incident(IncidentId::parse(id).map_err(|_| {
            anyhow::anyhow!("--incident must be an incident id (a UUID), not {id:?}")
        })?),
        (None, Some(user)) if !user.trim().is_empty() => Subject::User(user.trim().to_owned()),
        _ => bail!("name an --incident or a --user"),
    };
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
            "{:>10}  {:<27}  {:<22}  {:<18}  {:<10}  {:<24}  {:<9}  {:<15}  stream",
            "position", "recorded at", "type", "actor", "role", "credential", "source", "peer"
        )?;
    }
    let mut next = Position::START;
    let mut found = 0u64;
    loop {
        let page = store.read_all(next, 4096).await?;
        let Some(last) = page.last() else { break };
        next = last.position.next();
        for e in page.iter().filter(|e| subject.covers(e)) {
            found += 1;
            let m = &e.metadata;
            let line = TrailLine {
                position: e.position.0,
                recorded_at: e.recorded_at,
                stream: e.stream.as_str(),
                event_type: &e.event_type,
                actor: m.actor.as_deref(),
                role: m.role.as_deref(),
                credential: m.credential.as_deref(),
                source: m.source.as_deref(),
                peer: m.peer.as_deref(),
                node: m.node.as_deref(),
                occurred_at: m.occurred_at,
            };
            if json {
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
            } else {
                let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
                writeln!(
                    out,
                    "{:>10}  {:<27}  {:<22}  {:<18}  {:<10}  {:<24}  {:<9}  {:<15}  {}",
                    line.position,
                    line.recorded_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    line.event_type,
                    dash(line.actor),
                    dash(line.role),
                    dash(line.credential),
                    dash(line.source),
                    dash(line.peer),
                    line.stream
                )?;
            }
        }
    }
    out.flush()?;
    if found == 0 {
        eprintln!("no events in the trail");
    }
    Ok(())
}
