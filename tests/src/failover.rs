//! Surviving the loss of a machine: three `muster` nodes on a PostgreSQL primary with a
//! synchronous standby (`ops/pg-ha.sh`), under mixed load (hotline creates, assignments,
//! position reports through every node), while the primary is SIGKILLed and the standby
//! promoted, round after round; then one `muster` node SIGKILLed under load.
//!
//! After the rounds: every acknowledged command's events are in the log, the log verifies
//! (`muster store verify`: revisions contiguous, streams table agreeing), every node's views
//! have applied the whole log and list the same incidents as the log holds, and no unit holds
//! two tasks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

/// The operator token of the nodes under test.
const TOKEN: &str = "failover-test-operator-token";
/// Longest wait for any one condition.
const DEADLINE: Duration = Duration::from_secs(90);
/// Units registered for the assignment load.
const UNITS: usize = 12;

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Primary kills (each followed by a promotion and a rebuild).
    pub kills: u32,
    /// Seconds from each promotion until a node acknowledged a command again.
    pub serving_again_s: Vec<f64>,
    /// Seconds from a muster node's SIGKILL until the load was acknowledged by the others.
    pub node_kill_serving_s: Option<f64>,
    /// Incidents whose creation a node acknowledged.
    pub acknowledged_incidents: usize,
    /// Assignments a node acknowledged.
    pub acknowledged_assignments: usize,
    /// Position reports a node acknowledged.
    pub acknowledged_positions: usize,
    /// Events in the log at the end.
    pub events: u64,
    /// Everything found wrong.
    pub problems: Vec<String>,
}

/// The PostgreSQL pair, reset when dropped.
struct Ha {
    script: PathBuf,
    dir: PathBuf,
    ports: String,
}

impl Ha {
    fn run(&self, command: &str) -> anyhow::Result<String> {
        let out = Command::new("bash")
            .arg(&self.script)
            .arg(command)
            .env("MUSTER_PG_HA_DIR", &self.dir)
            .env("MUSTER_PG_HA_PORTS", &self.ports)
            .output()
            .with_context(|| format!("running pg-ha.sh {command}"))?;
        if !out.status.success() {
            bail!(
                "pg-ha.sh {command} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = self.run("reset");
    }
}

/// A `muster serve` process, killed when dropped.
struct Node {
    child: Option<Child>,
    base: String,
    port: u16,
    data_dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_node(
    bin: &Path,
    config: &Path,
    store: &str,
    data_dir: &Path,
    port: u16,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(data_dir.with_extension("log"))?;
    Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--store", store, "--data-dir"])
        .arg(data_dir)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting muster serve")
}

/// Writes the nodes' config and starts three `muster serve` processes on `store`, each with
/// its own data directory under `work`; answers them once each is ready.
async fn start_nodes(
    bin: &Path,
    config: &Path,
    store: &str,
    work: &Path,
    prefix: &str,
) -> anyhow::Result<(Vec<Node>, Api)> {
    std::fs::write(
        config,
        format!(
            "gateway_bind = \"off\"\n[[users]]\nname = \"op\"\nrole = \"operator\"\ntoken = \"{TOKEN}\"\n"
        ),
    )?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let data_dir = work.join(format!("{prefix}-{i}"));
        let child = start_node(bin, config, store, &data_dir, port)?;
        nodes.push(Node {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            port,
            data_dir,
        });
    }
    let api = Api {
        http: reqwest::Client::new(),
    };
    for n in &nodes {
        until(&format!("{} to be ready", n.base), || async {
            api.get(&n.base, "/readyz")
                .await
                .is_some_and(|(s, _)| s == 200)
        })
        .await?;
    }
    Ok((nodes, api))
}

/// Waits for `check` to answer true, at most [`DEADLINE`].
async fn until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if check().await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out waiting for {what}")
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
}

impl Api {
    async fn post(&self, base: &str, path: &str, key: &str, body: &Value) -> Option<(u16, Value)> {
        let r = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", key)
            .json(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, base: &str, path: &str) -> Option<(u16, Value)> {
        let r = self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Posts through the nodes in turn, from `first`, with the same key until one
    /// acknowledges (2xx) or refuses (4xx); `None` when none did before the deadline.
    async fn command(
        &self,
        bases: &[String],
        first: usize,
        path: &str,
        key: &str,
        body: &Value,
    ) -> Option<(u16, Value)> {
        let started = Instant::now();
        let mut i = first;
        while started.elapsed() < DEADLINE {
            if let Some((status, answer)) =
                self.post(&bases[i % bases.len()], path, key, body).await
                && status < 500
            {
                return Some((status, answer));
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

#[derive(Default)]
struct Acked {
    incidents: Vec<String>,
    assignments: Vec<(String, String)>,
    positions: usize,
    /// Each acknowledged command: (when, key).
    last_ack: Option<Instant>,
    total: usize,
}

/// Runs the test: `kills` rounds of kill-primary, promote, rebuild under load, then one
/// muster node SIGKILLed under load. `repo` is the workspace root (for `ops/pg-ha.sh`).
pub fn run(bin: &Path, repo: &Path, work: &Path, kills: u32) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(bin, repo, work, kills))
}

async fn run_async(bin: &Path, repo: &Path, work: &Path, kills: u32) -> anyhow::Result<Report> {
    let ha = Ha {
        script: repo.join("ops/pg-ha.sh"),
        dir: PathBuf::from(format!("/tmp/muster-failover-{}", std::process::id())),
        ports: format!("{} {}", free_port(), free_port()),
    };
    let _ = ha.run("reset");
    let url = ha.run("start")?;
    let url = url
        .lines()
        .last()
        .context("pg-ha.sh start printed no address")?
        .to_owned();

    let config = work.join("muster.toml");
    let (mut nodes, api) = start_nodes(bin, &config, &url, work, "node").await?;
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    // Units at the city's stations.
    let (_, city) = api
        .get(&bases[0], "/api/wall/city")
        .await
        .context("the city")?;
    let stations: Vec<(String, f64, f64)> = city["stations"]["features"]
        .as_array()
        .context("stations in /api/wall/city")?
        .iter()
        .filter_map(|f| {
            let c = f["geometry"]["coordinates"].as_array()?;
            Some((
                f["properties"]["id"].as_str()?.to_owned(),
                c[1].as_f64()?,
                c[0].as_f64()?,
            ))
        })
        .collect();
    ensure!(!stations.is_empty(), "the bundled city has no stations");
    let mut units = Vec::new();
    for u in 0..UNITS {
        let (station, lat, lon) = &stations[u % stations.len()];
        let body = json!({
            "kind": "als_ambulance", "call_sign": format!("M{u}"), "agency": "ems",
            "home_station": station,
            "location": {"lat": lat, "lon": lon},
        });
        let (status, answer) = api
            .command(
                &bases,
                u,
                "/api/units",
                &format!("failover-unit-{u}"),
                &body,
            )
            .await
            .context("registering a unit")?;
        ensure!(status == 201, "registering a unit: {status} {answer}");
        units.push(answer["unit_id"].as_str().context("unit_id")?.to_owned());
    }

    // The load: writers that retry each command with its key until a node answers.
    let acked = Arc::new(Mutex::new(Acked::default()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut writers = Vec::new();
    for w in 0..3usize {
        let (api, bases, acked, running, units, stations) = (
            api.clone(),
            bases.clone(),
            acked.clone(),
            running.clone(),
            units.clone(),
            stations.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let (_, lat, lon) = &stations[(w + n) % stations.len()];
                let body = json!({
                    "location": {"lat": lat + 0.001, "lon": lon + 0.001},
                    "incident_type": "medical", "priority": "P2",
                });
                let key = format!("call-{w}-{n}");
                let Some((status, answer)) = api
                    .command(&bases, w + n, "/api/incidents", &key, &body)
                    .await
                else {
                    return Err(anyhow::anyhow!("no node acknowledged {key}"));
                };
                if status != 201 {
                    return Err(anyhow::anyhow!("{key}: {status} {answer}"));
                }
                let incident = answer["incident_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                {
                    let mut a = acked.lock().unwrap();
                    a.incidents.push(incident.clone());
                    a.total += 1;
                    a.last_ack = Some(Instant::now());
                }
                // Every third call: send a unit (many are refused as busy, which is right).
                if n.is_multiple_of(3) {
                    let unit = &units[(w * 7 + n) % units.len()];
                    let key = format!("send-{w}-{n}");
                    let body = json!({"units": [unit]});
                    let path = format!("/api/incidents/{incident}/dispatch");
                    if let Some((201, _)) = api.command(&bases, w + n + 1, &path, &key, &body).await
                    {
                        acked
                            .lock()
                            .unwrap()
                            .assignments
                            .push((incident.clone(), unit.clone()));
                    }
                }
                // And a position report.
                let unit = &units[(w + n) % units.len()];
                let body = json!({"location": {"lat": lat + 0.002, "lon": lon}});
                let key = format!("fix-{w}-{n}");
                let path = format!("/api/units/{unit}/position");
                if let Some((s, _)) = api.command(&bases, w + n + 2, &path, &key, &body).await
                    && s < 300
                {
                    acked.lock().unwrap().positions += 1;
                }
            }
            anyhow::Ok(())
        }));
    }
    let acked_now = |acked: &Arc<Mutex<Acked>>| acked.lock().unwrap().total;

    let mut report = Report::default();
    for round in 0..kills {
        let before = acked_now(&acked);
        until("the load to go on", || async {
            acked_now(&acked) >= before + 10
        })
        .await?;
        ha.run("kill-primary")?;
        // With no primary, a node says so: 503 with Retry-After, and not ready.
        let mut probe = 0;
        let unavailable = until("a node to answer 503 with Retry-After", || {
            probe += 1;
            let (api, base) = (api.clone(), bases[0].clone());
            let key = format!("probe-{round}-{probe}");
            async move {
                let answer = api
                    .http
                    .post(format!("{base}/api/incidents"))
                    .bearer_auth(TOKEN)
                    .header("Idempotency-Key", key)
                    .json(&json!({"location": {"lat": 60.17, "lon": 24.94}, "incident_type": "medical", "priority": "P3"}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                answer.is_ok_and(|r| r.status() == 503 && r.headers().contains_key("retry-after"))
            }
        })
        .await;
        if let Err(e) = unavailable {
            report.problems.push(format!("round {}: {e:#}", round + 1));
        }
        let not_ready = until("a node to be not ready", || async {
            api.get(&bases[1], "/readyz")
                .await
                .is_some_and(|(s, _)| s == 503)
        })
        .await;
        if let Err(e) = not_ready {
            report.problems.push(format!("round {}: {e:#}", round + 1));
        }
        ha.run("promote")?;
        let promoted = Instant::now();
        let at_promotion = acked_now(&acked);
        until(
            &format!("a command acknowledged after promotion {}", round + 1),
            || async { acked_now(&acked) > at_promotion },
        )
        .await?;
        report
            .serving_again_s
            .push(promoted.elapsed().as_secs_f64());
        ha.run("rebuild")?;
        report.kills += 1;
    }

    // One muster node SIGKILLed under load: the others take it; it comes back and catches up.
    {
        let victim = &mut nodes[2];
        let before = acked_now(&acked);
        if let Some(mut c) = victim.child.take() {
            c.kill()?;
            c.wait()?;
        }
        let killed = Instant::now();
        until("the load to go on without the killed node", || async {
            acked_now(&acked) >= before + 10
        })
        .await?;
        report.node_kill_serving_s = Some(killed.elapsed().as_secs_f64());
        victim.child = Some(start_node(
            bin,
            &config,
            &url,
            &victim.data_dir,
            victim.port,
        )?);
    }
    let before = acked_now(&acked);
    until("the load to go on with the node back", || async {
        acked_now(&acked) >= before + 10
    })
    .await?;

    running.store(false, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        if let Err(e) = w.await? {
            report.problems.push(format!("a writer stopped: {e:#}"));
        }
    }

    check(&api, &nodes, &url, bin, &acked, &mut report).await?;
    drop(nodes);
    drop(ha);
    Ok(report)
}

/// The checks after the rounds.
async fn check(
    api: &Api,
    nodes: &[Node],
    url: &str,
    bin: &Path,
    acked: &Arc<Mutex<Acked>>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (incidents, assignments, positions) = {
        let a = acked.lock().unwrap();
        (a.incidents.clone(), a.assignments.clone(), a.positions)
    };
    report.acknowledged_incidents = incidents.len();
    report.acknowledged_assignments = assignments.len();
    report.acknowledged_positions = positions;

    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT stream, type, position FROM muster.events ORDER BY position",
            &[],
        )
        .await?;
    report.events = rows.len() as u64;
    let mut reported = HashSet::new();
    let mut assigned: HashMap<String, usize> = HashMap::new();
    let mut last_position = None;
    for row in &rows {
        let stream: String = row.get(0);
        let kind: String = row.get(1);
        let position: i64 = row.get(2);
        last_position = Some(position);
        if kind == "IncidentReported"
            && let Some(id) = stream.strip_prefix("incident-")
        {
            reported.insert(id.to_owned());
        }
        if kind == "TaskAssigned" && stream.starts_with("unit-") {
            *assigned.entry(stream).or_default() += 1;
        }
    }
    for id in &incidents {
        if !reported.contains(id) {
            report
                .problems
                .push(format!("acknowledged incident {id} is not in the log"));
        }
    }
    for (incident, unit) in &assignments {
        let found = client
            .query_one(
                "SELECT count(*) FROM muster.events WHERE stream = $1 AND type = 'TaskAssigned' AND convert_from(data, 'UTF8') LIKE '%' || $2 || '%'",
                &[&format!("unit-{unit}"), &incident],
            )
            .await?;
        let n: i64 = found.get(0);
        if n != 1 {
            report.problems.push(format!(
                "acknowledged assignment of {unit} to {incident}: {n} in the log"
            ));
        }
    }
    for (unit, n) in &assigned {
        if *n > 1 {
            report.problems.push(format!(
                "{unit} was assigned {n} times without being released"
            ));
        }
    }

    let verify = Command::new(bin)
        .args(["store", "verify", "--store", url])
        .output()?;
    if !verify.status.success() {
        report.problems.push(format!(
            "muster store verify: {}",
            String::from_utf8_lossy(&verify.stdout)
        ));
    }

    // Every node's views reach the end of the log and list what the log holds.
    let last = last_position.context("the log is empty")? as u64;
    for n in nodes {
        until(&format!("{} to apply the whole log", n.base), || async {
            api.get(&n.base, "/readyz")
                .await
                .is_some_and(|(s, body)| s == 200 && body["position"].as_u64() == Some(last))
        })
        .await?;
        let (_, list) = api
            .get(&n.base, "/api/incidents?include_closed=true")
            .await
            .context("incidents")?;
        let listed: HashSet<String> = list
            .as_array()
            .or_else(|| list["incidents"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|i| {
                        i["incident_id"]
                            .as_str()
                            .or(i["id"].as_str())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if listed != reported {
            report.problems.push(format!(
                "{} lists {} incidents, the log holds {}",
                n.base,
                listed.len(),
                reported.len()
            ));
        }
    }
    Ok(())
}

/// One paragraph of figures for a report.
pub fn summary(r: &Report) -> String {
    let mut again = r.serving_again_s.clone();
    again.sort_by(f64::total_cmp);
    let median = again.get(again.len() / 2).copied().unwrap_or(f64::NAN);
    let max = again.last().copied().unwrap_or(f64::NAN);
    format!(
        "{} primary kills: serving again {median:.2} s after promotion (median), {max:.2} s at most; \
         a muster node killed: the others acknowledged the load {:.2} s later; \
         {} incidents, {} assignments and {} position reports acknowledged, {} events in the log, \
         {} problems",
        r.kills,
        r.node_kill_serving_s.unwrap_or(f64::NAN),
        r.acknowledged_incidents,
        r.acknowledged_assignments,
        r.acknowledged_positions,
        r.events,
        r.problems.len()
    )
}

/// The nodes that say they lead automatic dispatch, once at least one does.
async fn leaders_within<F, Fut>(
    leader_of: &F,
    api: &Api,
    bases: &[String],
    what: &str,
) -> anyhow::Result<Vec<usize>>
where
    F: Fn(Api, Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Vec<usize>>,
{
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        let found = leader_of(api.clone(), bases.to_vec()).await;
        if !found.is_empty() {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out waiting for {what}")
}

/// What the leader test found.
#[derive(Debug, Default)]
pub struct StormReport {
    /// Sensor alarms raised.
    pub alarms: usize,
    /// Alarms raised before the leader was killed.
    pub before_kill: usize,
    /// Seconds from the kill until another node led automatic dispatch.
    pub new_leader_s: f64,
    /// Units sent to each alarm's incident, by automatic dispatch.
    pub units_per_alarm: Vec<usize>,
    /// Everything found wrong.
    pub problems: Vec<String>,
}

/// Three nodes on one database (`url`, made fresh by the caller); a storm of P1 smoke alarms
/// through every node; the node that leads automatic dispatch SIGKILLed in the middle of it.
/// Every alarm must be dispatched, each exactly as its run card asks (never twice).
pub fn leader_storm(
    bin: &Path,
    url: &str,
    work: &Path,
    alarms: usize,
) -> anyhow::Result<StormReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(storm_async(bin, url, work, alarms))
}

async fn storm_async(
    bin: &Path,
    url: &str,
    work: &Path,
    alarms: usize,
) -> anyhow::Result<StormReport> {
    let config = work.join("muster.toml");
    let (mut nodes, api) = start_nodes(bin, &config, url, work, "storm-node").await?;
    let leader_of = |api: Api, bases: Vec<String>| async move {
        let mut leaders = Vec::new();
        for (i, b) in bases.iter().enumerate() {
            if let Some((200, r)) = api.get(b, "/readyz").await
                && r["leads"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x == "automatic_dispatch"))
            {
                leaders.push(i);
            }
        }
        leaders
    };
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let leaders = leaders_within(
        &leader_of,
        &api,
        &bases,
        "one node to lead automatic dispatch",
    )
    .await?;
    let mut report = StormReport::default();
    if leaders.len() != 1 {
        report
            .problems
            .push(format!("{} nodes lead automatic dispatch", leaders.len()));
    }
    let leader = leaders[0];

    // Engines at the fire stations, and a smoke sensor beside each of several of them.
    let (_, city) = api
        .get(&bases[0], "/api/wall/city")
        .await
        .context("the city")?;
    let stations: Vec<(String, f64, f64)> = city["stations"]["features"]
        .as_array()
        .context("stations in /api/wall/city")?
        .iter()
        .filter(|f| f["properties"]["kind"] == "fire")
        .filter_map(|f| {
            let c = f["geometry"]["coordinates"].as_array()?;
            Some((
                f["properties"]["id"].as_str()?.to_owned(),
                c[1].as_f64()?,
                c[0].as_f64()?,
            ))
        })
        .collect();
    ensure!(
        !stations.is_empty(),
        "the bundled city has no fire stations"
    );
    for u in 0..alarms * 2 {
        let (station, lat, lon) = &stations[u % stations.len()];
        let body = json!({
            "kind": "engine", "call_sign": format!("E{u}"), "agency": "fire",
            "home_station": station, "capabilities": ["pump"],
            "location": {"lat": lat, "lon": lon},
        });
        let (status, answer) = api
            .command(&bases, 0, "/api/units", &format!("storm-engine-{u}"), &body)
            .await
            .context("registering an engine")?;
        ensure!(status == 201, "registering an engine: {status} {answer}");
    }
    let mut sensors = Vec::new();
    for s in 0..alarms {
        let (_, lat, lon) = &stations[s % stations.len()];
        let body = json!({
            "kind": "smoke", "location": {"lat": lat + 0.0005 * (s / stations.len()) as f64, "lon": lon + 0.0005},
            "thresholds": [{"metric": "obscuration_pct", "crossing": "above", "raise_at": 10.0, "clear_at": 2.0,
                            "incident_type": "fire_alarm", "priority": "P1"}],
        });
        let (status, answer) = api
            .command(
                &bases,
                0,
                "/api/sensors",
                &format!("storm-sensor-{s}"),
                &body,
            )
            .await
            .context("registering a sensor")?;
        ensure!(status == 201, "registering a sensor: {status} {answer}");
        sensors.push(
            answer["sensor_id"]
                .as_str()
                .context("sensor_id")?
                .to_owned(),
        );
    }

    // The storm, through every node; the leader killed at a third of it.
    let mut incidents = Vec::new();
    let mut killed_at = None;
    report.before_kill = alarms / 3;
    for (s, sensor) in sensors.iter().enumerate() {
        if s == report.before_kill {
            if let Some(mut c) = nodes[leader].child.take() {
                c.kill()?;
                c.wait()?;
            }
            killed_at = Some(Instant::now());
        }
        let alive: Vec<String> = bases
            .iter()
            .enumerate()
            .filter(|(i, _)| killed_at.is_none() || *i != leader)
            .map(|(_, b)| b.clone())
            .collect();
        let (status, answer) = api
            .command(
                &alive,
                s,
                &format!("/api/sensors/{sensor}/readings"),
                &format!("storm-reading-{s}"),
                &json!({"metric": "obscuration_pct", "value": 40.0}),
            )
            .await
            .context("a reading")?;
        ensure!(status == 200, "a reading: {status} {answer}");
        incidents.push(
            answer["alarm"]["incident_id"]
                .as_str()
                .context("the reading raised no alarm")?
                .to_owned(),
        );
    }
    report.alarms = incidents.len();
    let killed_at = killed_at.context("the leader was not killed")?;
    let alive: Vec<String> = bases
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, b)| b.clone())
        .collect();
    let new_leaders = leaders_within(
        &leader_of,
        &api,
        &alive,
        "another node to lead automatic dispatch",
    )
    .await?;
    report.new_leader_s = killed_at.elapsed().as_secs_f64();
    if new_leaders.len() != 1 {
        report
            .problems
            .push(format!("{} nodes lead after the kill", new_leaders.len()));
    }

    // Every alarm dispatched; then the log says how many units each got.
    for id in &incidents {
        let found = until(&format!("a unit at {id}"), || async {
            api.get(&alive[0], &format!("/api/incidents/{id}"))
                .await
                .is_some_and(|(s, i)| {
                    s == 200 && i["units"].as_array().is_some_and(|u| !u.is_empty())
                })
        })
        .await;
        if found.is_err() {
            report
                .problems
                .push(format!("alarm incident {id} was never dispatched"));
        }
    }
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    for id in &incidents {
        let row = client
            .query_one(
                "SELECT count(*) FROM muster.events WHERE type = 'TaskAssigned' \
                 AND stream LIKE 'unit-%' AND convert_from(data, 'UTF8') LIKE '%' || $1 || '%'",
                &[&id],
            )
            .await?;
        let n: i64 = row.get(0);
        report.units_per_alarm.push(n as usize);
    }
    let expected = report.units_per_alarm.first().copied().unwrap_or(0);
    if expected == 0 {
        report
            .problems
            .push("no unit was assigned to the first alarm".into());
    }
    for (id, n) in incidents.iter().zip(&report.units_per_alarm) {
        if *n != expected {
            report.problems.push(format!(
                "alarm incident {id} got {n} units by automatic dispatch, the others {expected}"
            ));
        }
    }
    drop(nodes);
    Ok(report)
}
