//! A fleet under load: one, two, then three real `warden serve` processes serving `text-tools`
//! from one PostgreSQL database (a fresh one per run, named `warden_bench_fleet_<pid>`, dropped
//! at the end), and the load generator of the `http_api` bench (hyper's HTTP/1.1 client over
//! tokio TcpStreams, keep-alive, one request in flight per connection) calling
//! `POST /v1/sessions/{id}/tools/text-tools/echo`, its connections spread round-robin over the
//! hosts.
//!
//! Each host count and connection level runs a warm-up, then a measured window; reported: calls/s
//! and its ratio to one host at the same level, the p50 and p99 latency seen by the client, each
//! host's CPU time over the window as a share of one core (`/proc/PID/stat`, utime + stime), the
//! PostgreSQL server's CPU (the backends whose title names this database, and all `postgres`
//! processes, which include the WAL writer and anyone else's load), this process's CPU, the
//! database's commits and inserted rows per tool call (`pg_stat_database`), the audit records
//! per call (`audit_log`'s head), and each host's connections (`pg_stat_activity` by
//! `application_name`, which every host sets to its own through the state URL it is given).
//!
//! `cargo bench --bench fleet`; needs `WARDEN_TEST_POSTGRES_URL` (skipped, saying so, without).
//! `FLEET_SECONDS` sets the window (10), `FLEET_WARMUP` the warm-up (2), `FLEET_LEVELS` the
//! total connection counts (`16,64`), `FLEET_HOSTS` the host counts (`1,2,3`), `FLEET_ROUNDS`
//! the rounds (2: the first starts the hosts as it needs them and runs the host counts in
//! ascending order, the second in descending order, so the machine's other load drifts over
//! all of them alike; then the mean of each).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use tokio::net::TcpStream;
use tokio_postgres::NoTls;
use wasmtime_wasi_http::io::TokioIo;

#[path = "common/mod.rs"]
mod common;
use common::{Stopped, cpu_time, env_secs, new_token, percentile, proc_stat, warden};

/// The echo tool's input, and so its output.
const INPUT: &str = r#"{"text":"hello from the load generator"}"#;
/// The agent and tenant of the one config.
const AGENT: &str = "bench";
const TENANT: &str = "bench";
/// The variable the shared config names in `[state] url_env`: one config file for every
/// host, while each host's URL carries its own `application_name`.
const STATE_URL_VAR: &str = "WARDEN_BENCH_FLEET_STATE_URL";
/// The `application_name` of this process's own connection to the bench database, left out
/// of the hosts' connection counts.
const PROBE_APP: &str = "warden-bench-probe";

/// A `warden serve` process, ended (SIGTERM, then a kill) when dropped.
struct Server {
    child: Stopped,
    addr: String,
    /// Its `application_name` at PostgreSQL.
    app: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// The bench's database, dropped (with whatever is still connected to it) when this is.
struct Database {
    admin_url: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Its own thread and runtime: this may run while the bench's runtime is unwinding.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let admin = admin_connection(&admin_url).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the drop thread panicked".into()));
        if let Err(e) = dropped {
            eprintln!("warning: could not drop database {}: {e}", self.name);
        }
    }
}

/// A plain tokio-postgres connection to `url`, its driver spawned on the current runtime.
async fn admin_connection(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connect to {}: {e}", redact(url)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `base` pointed at database `db`, with `application_name` set to `app` (a later parameter
/// wins in both the URL and the key=value forms).
fn database_url(base: &str, db: &str, app: &str) -> String {
    let Some(scheme_end) = base.find("://") else {
        return format!("{base} dbname={db} application_name={app}");
    };
    let (without_query, query) = match base.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (base, None),
    };
    let authority_end = without_query[scheme_end + 3..]
        .find('/')
        .map_or(without_query.len(), |i| scheme_end + 3 + i);
    let mut url = format!("{}/{db}?", &without_query[..authority_end]);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push_str(q);
        url.push('&');
    }
    url.push_str(&format!("application_name={app}"));
    url
}

/// The one config every host runs: the state URL comes from `STATE_URL_VAR`.
fn write_config(dir: &Path, token_sha256: &str) -> PathBuf {
    let plugin = Path::new(env!("WARDEN_BUILT_PLUGINS")).join("text-tools.wasm");
    assert!(plugin.is_file(), "{} is missing", plugin.display());
    let path = dir.join("warden.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [state]
            url_env = "{STATE_URL_VAR}"
            [plugins.text-tools]
            path = "{plugin}"
            [tenants.{TENANT}]
            token_sha256 = "{token_sha256}"
            agents = ["{AGENT}"]
            [agents.{AGENT}]
            tools = ["text-tools/*"]
            "#,
            plugin = plugin.display(),
        ),
    )
    .expect("write the config");
    path
}

/// Starts `warden serve` on a free port with `state_url` and reads its address from the first
/// stdout line.
fn serve(config: &Path, state_url: &str, app: String) -> Server {
    let mut child = warden()
        .env(STATE_URL_VAR, state_url)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn warden serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read its first line");
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    // Drained so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stdout.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Server {
        child: Stopped(child),
        addr,
        app,
    }
}

/// What each request to one host carries besides its body, and where it goes.
struct Target {
    addr: String,
    authorization: String,
    /// The echo tool's path in a session created through this host.
    path: String,
}

/// A keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: &str) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("the HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// One request; the status and the body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: &str,
    authorization: &str,
    path: &str,
    body: &'static str,
) -> (u16, Bytes) {
    sender.ready().await.expect("the connection stays open");
    let request = hyper::Request::post(path)
        .header("host", addr)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    (status, body)
}

/// A session created through the host at `addr`, and one echo call through it.
async fn target_for(server: &Server, authorization: &str) -> Target {
    let mut sender = connect(&server.addr).await;
    let body: &'static str = Box::leak(format!(r#"{{"agent":"{AGENT}"}}"#).into_boxed_str());
    let (status, body) = send(
        &mut sender,
        &server.addr,
        authorization,
        "/v1/sessions",
        body,
    )
    .await;
    assert_eq!(
        status,
        201,
        "POST /v1/sessions: {}",
        String::from_utf8_lossy(&body)
    );
    let session: serde_json::Value = serde_json::from_slice(&body).expect("a session");
    let id = session["id"].as_str().expect("its id");
    let path = format!("/v1/sessions/{id}/tools/text-tools/echo");
    let (status, body) = send(&mut sender, &server.addr, authorization, &path, INPUT).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(&body[..], INPUT.as_bytes(), "echo answers its input");
    Target {
        addr: server.addr.clone(),
        authorization: authorization.to_string(),
        path,
    }
}

/// Calls from one connection until `end`; the latencies, in nanoseconds, of those that started
/// at or after `measured_from` and ended by `end`. Every completed call counts in `done`.
async fn connection_loop(
    target: Arc<Target>,
    done: Arc<AtomicU64>,
    measured_from: Instant,
    end: Instant,
) -> Vec<u32> {
    let mut sender = connect(&target.addr).await;
    let mut samples = Vec::with_capacity(1 << 16);
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let (status, body) = send(
            &mut sender,
            &target.addr,
            &target.authorization,
            &target.path,
            INPUT,
        )
        .await;
        let ended = Instant::now();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        done.fetch_add(1, Ordering::Relaxed);
        if started >= measured_from && ended <= end {
            samples.push((ended - started).as_nanos().min(u128::from(u32::MAX)) as u32);
        }
    }
    samples
}

/// The CPU time of every `postgres` process, by pid, and whether its title shows it serves
/// database `db` (a backend's title is `postgres: … USER DB ADDRESS STATE`).
fn postgres_cpu(db: &str) -> HashMap<u32, (bool, Duration)> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((name, cpu)) = proc_stat(&pid.to_string()) else {
            continue;
        };
        if name != "postgres" {
            continue;
        }
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title);
        let serves_db = title.split_whitespace().any(|word| word == db);
        out.insert(pid, (serves_db, cpu));
    }
    out
}

/// The CPU the `postgres` processes used between two readings: those serving the bench's
/// database, and all of them. A process that ended in between is not counted.
fn postgres_cpu_delta(
    before: &HashMap<u32, (bool, Duration)>,
    after: &HashMap<u32, (bool, Duration)>,
) -> (Duration, Duration) {
    let (mut db, mut all) = (Duration::ZERO, Duration::ZERO);
    for (pid, (serves_db, cpu)) in after {
        let used = cpu.saturating_sub(before.get(pid).map_or(Duration::ZERO, |b| b.1));
        all += used;
        if *serves_db {
            db += used;
        }
    }
    (db, all)
}

/// The bench database's counters at one moment: commits, rows inserted, the audit chain's head,
/// and the cluster's next transaction id and WAL position.
#[derive(Clone, Copy)]
struct DbCounters {
    commits: i64,
    inserted: i64,
    audit_head: i64,
    /// Exact, unlike `pg_stat_database`, but cluster-wide: every writing transaction and every
    /// writing savepoint takes one.
    next_xid: i64,
    wal_bytes: i64,
}

/// Reads [`DbCounters`] through the probe connection.
async fn db_counters(probe: &tokio_postgres::Client, db: &str) -> DbCounters {
    let row = probe
        .query_one(
            "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await
        .expect("read pg_stat_database");
    let head = probe
        .query_one(
            "SELECT COALESCE(MAX(seq), 0), \
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint, \
                    (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint \
             FROM audit_log",
            &[],
        )
        .await
        .expect("read the audit log's head, the next xid and the WAL position");
    DbCounters {
        commits: row.get(0),
        inserted: row.get(1),
        audit_head: head.get(0),
        next_xid: head.get(1),
        wal_bytes: head.get(2),
    }
}

/// Each host's connections to the bench database now, in the order of `servers`.
async fn connections_per_host(
    probe: &tokio_postgres::Client,
    db: &str,
    servers: &[Server],
) -> Vec<i64> {
    let rows = probe
        .query(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = $1 \
             GROUP BY application_name",
            &[&db],
        )
        .await
        .expect("read pg_stat_activity");
    let counts: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<_, Option<String>>(0).unwrap_or_default(), r.get(1)))
        .collect();
    servers
        .iter()
        .map(|s| counts.get(&s.app).copied().unwrap_or(0))
        .collect()
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// `d` in milliseconds.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A comma-separated list of counts from variable `name`, or `default`.
fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: numbers"))
        })
        .collect()
}

/// One run's figures: a host count and a connection level.
struct Run {
    hosts: usize,
    connections: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Each host's CPU time over the window.
    host_cpu: Vec<Duration>,
    pg_db_cpu: Duration,
    pg_all_cpu: Duration,
    client_cpu: Duration,
    window: Duration,
    /// Calls completed between the two readings of the database's counters.
    calls_between: u64,
    counters: (DbCounters, DbCounters),
    /// Each host's connections to the database, mid-window.
    connections_per_host: Vec<i64>,
    lock: LockSamples,
}

/// What `pg_locks` showed of the audit chain's advisory lock, sampled through the window.
#[derive(Default)]
struct LockSamples {
    samples: u64,
    /// Samples in which some host held it.
    held: u64,
    /// Hosts waiting for it, summed over the samples.
    waiting: u64,
}

/// How often the audit lock is sampled: often enough for a few hundred samples a window, rarely
/// enough that the probe's queries stay a small fraction of the database's work.
const LOCK_SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Samples the audit lock (`LOCK_AUDIT` in `host/src/state/postgres/mod.rs`, the only advisory
/// lock a tool call takes) until `until`.
async fn sample_audit_lock(bench: &Bench, until: Instant, into: &mut LockSamples) {
    // pg_locks splits a bigint advisory key into classid (high half) and objid (low half).
    const KEY: i64 = 0x5741_5244_0002;
    let (class, obj) = (KEY >> 32, KEY & 0xffff_ffff);
    loop {
        let next = Instant::now() + LOCK_SAMPLE_EVERY;
        if next > until {
            break;
        }
        let row = bench
            .probe
            .query_one(
                "SELECT count(*) FILTER (WHERE l.granted), count(*) FILTER (WHERE NOT l.granted) \
                 FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE l.locktype = 'advisory' AND d.datname = $1 \
                   AND l.classid::bigint = $2 AND l.objid::bigint = $3",
                &[&bench.db, &class, &obj],
            )
            .await
            .expect("read pg_locks");
        let (held, waiting): (i64, i64) = (row.get(0), row.get(1));
        into.samples += 1;
        into.held += u64::from(held > 0);
        into.waiting += waiting as u64;
        tokio::time::sleep_until(next.into()).await;
    }
    tokio::time::sleep_until(until.into()).await;
}

/// What every run shares: the database, the probe connection to it, the timings.
struct Bench {
    db: String,
    probe: tokio_postgres::Client,
    warmup: Duration,
    window: Duration,
}

/// One run: `connections` spread round-robin over `servers`, a warm-up, a measured window.
async fn run_level(
    bench: &Bench,
    servers: &[Server],
    targets: &[Arc<Target>],
    connections: usize,
) -> Run {
    let measured_from = Instant::now() + bench.warmup;
    let end = measured_from + bench.window;
    let done = Arc::new(AtomicU64::new(0));
    // Round-robin: connection i goes to host i mod n.
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            tokio::spawn(connection_loop(
                targets[i % targets.len()].clone(),
                done.clone(),
                measured_from,
                end,
            ))
        })
        .collect();
    let pids: Vec<String> = servers.iter().map(|s| s.pid().to_string()).collect();
    let read_cpu = || -> (Vec<Duration>, Duration) {
        (pids.iter().map(|p| cpu_time(p)).collect(), cpu_time("self"))
    };

    tokio::time::sleep_until(measured_from.into()).await;
    let (hosts_before, client_before) = read_cpu();
    let pg_before = postgres_cpu(&bench.db);
    let done_before = done.load(Ordering::Relaxed);
    let counters_before = db_counters(&bench.probe, &bench.db).await;

    let mut lock = LockSamples::default();
    sample_audit_lock(bench, measured_from + bench.window / 2, &mut lock).await;
    let connections_per_host = connections_per_host(&bench.probe, &bench.db, servers).await;
    sample_audit_lock(bench, end, &mut lock).await;
    let (hosts_after, client_after) = read_cpu();
    let pg_after = postgres_cpu(&bench.db);
    let counters_after = db_counters(&bench.probe, &bench.db).await;
    let done_after = done.load(Ordering::Relaxed);

    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("a connection's loop"));
    }
    samples.sort_unstable();
    let (pg_db_cpu, pg_all_cpu) = postgres_cpu_delta(&pg_before, &pg_after);
    Run {
        hosts: servers.len(),
        connections,
        per_second: samples.len() as f64 / bench.window.as_secs_f64(),
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        host_cpu: hosts_after
            .iter()
            .zip(&hosts_before)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect(),
        pg_db_cpu,
        pg_all_cpu,
        client_cpu: client_after.saturating_sub(client_before),
        window: bench.window,
        calls_between: done_after - done_before,
        counters: (counters_before, counters_after),
        connections_per_host,
        lock,
    }
}

/// One markdown table row; `one_host` is the same level's calls/s with one host, if it ran.
fn row(run: &Run, one_host: Option<f64>) -> String {
    let wall = run.window.as_secs_f64();
    let share = |d: Duration| format!("{:.0}%", 100.0 * d.as_secs_f64() / wall);
    let hosts: Vec<String> = run.host_cpu.iter().map(|d| share(*d)).collect();
    let host_total: Duration = run.host_cpu.iter().sum();
    let ratio = one_host.map_or("–".to_string(), |one| {
        format!("{:.2}×", run.per_second / one)
    });
    let (before, after) = run.counters;
    let calls = run.calls_between.max(1) as f64;
    let commits = (after.commits - before.commits) as f64 / calls;
    let inserted = (after.inserted - before.inserted) as f64 / calls;
    let records = after.audit_head - before.audit_head;
    let audit = records as f64 / calls;
    // Each audit group commit takes one xid, and each record's savepoint one more (its
    // INSERT writes); the other per-call transaction (the session read) writes nothing.
    let audit_commits = (after.next_xid - before.next_xid) - records;
    let per_commit = if audit_commits > 0 {
        format!(
            "{:.1} ({:.0}/s)",
            records as f64 / audit_commits as f64,
            audit_commits as f64 / wall
        )
    } else {
        "–".to_string()
    };
    let wal = (after.wal_bytes - before.wal_bytes) as f64 / calls;
    let lock = if run.lock.samples > 0 {
        format!(
            "{:.0}% / {:.2}",
            100.0 * run.lock.held as f64 / run.lock.samples as f64,
            run.lock.waiting as f64 / run.lock.samples as f64
        )
    } else {
        "–".to_string()
    };
    let conns: Vec<String> = run
        .connections_per_host
        .iter()
        .map(|c| c.to_string())
        .collect();
    format!(
        "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {} ({}) | {} | {} | {} | {:.2} | {:.2} \
         | {:.2} | {} | {:.0} | {} | {} |",
        run.hosts,
        run.connections,
        run.per_second,
        ratio,
        millis(run.p50),
        millis(run.p99),
        hosts.join(" + "),
        share(host_total),
        share(run.pg_db_cpu),
        share(run.pg_all_cpu),
        share(run.client_cpu),
        commits,
        inserted,
        audit,
        per_commit,
        wal,
        lock,
        conns.join(" + "),
    )
}

fn main() {
    let Ok(admin_url) = std::env::var(warden::state::testing::POSTGRES_URL_VAR) else {
        println!(
            "fleet bench skipped: {} is not set (it names the PostgreSQL the hosts share, e.g. \
             postgres://postgres@127.0.0.1:5432/test)",
            warden::state::testing::POSTGRES_URL_VAR
        );
        return;
    };
    let warmup = env_secs("FLEET_WARMUP", 2.0);
    let window = env_secs("FLEET_SECONDS", 10.0);
    let levels = env_list("FLEET_LEVELS", "16,64");
    let rounds = env_list("FLEET_ROUNDS", "2")[0].max(1);
    let mut host_counts = env_list("FLEET_HOSTS", "1,2,3");
    host_counts.sort_unstable();
    host_counts.dedup();
    assert!(
        host_counts.first().is_some_and(|&n| n >= 1),
        "FLEET_HOSTS: counts of at least 1"
    );

    // The client runs on one thread: it shares the machine with the hosts and PostgreSQL, and
    // one core of it is all it may take.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let name = format!("warden_bench_fleet_{}", std::process::id());
    rt.block_on(async {
        let admin = admin_connection(&admin_url)
            .await
            .expect("the admin connection");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the bench database");
    });
    let database = Database {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };

    let dir = tempfile::tempdir().expect("a temp dir");
    let (token, token_sha256) = new_token(TENANT);
    let authorization = format!("Bearer {token}");
    let config = write_config(dir.path(), &token_sha256);

    let mut servers: Vec<Server> = Vec::new();
    let mut targets: Vec<Arc<Target>> = Vec::new();
    let add_host = |servers: &mut Vec<Server>, targets: &mut Vec<Arc<Target>>| {
        let app = format!("warden-fleet-h{}", servers.len() + 1);
        let server = serve(&config, &database_url(&admin_url, &name, &app), app);
        targets.push(Arc::new(rt.block_on(target_for(&server, &authorization))));
        servers.push(server);
    };
    // The first host migrates the fresh database; the probe needs its audit_log.
    add_host(&mut servers, &mut targets);
    let probe = rt.block_on(async {
        let probe = admin_connection(&database_url(&admin_url, &name, PROBE_APP))
            .await
            .expect("the probe connection");
        // Stats as of each query, not cached for a transaction (PostgreSQL 15 and later; an
        // older server has no such setting and reads them fresh outside a transaction anyway).
        let _ = probe
            .batch_execute("SET stats_fetch_consistency = none")
            .await;
        probe
    });
    let bench = Bench {
        db: name.clone(),
        probe,
        warmup,
        window,
    };

    println!(
        "warden serve ×{host_counts:?} on one PostgreSQL database ({name}; {} cores here, load \
         average {}; the load generator runs on one thread beside them), \
         POST /v1/sessions/…/tools/text-tools/echo, connections round-robin over the hosts: \
         {:.0} s warm-up, {:.0} s measured per run",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        warmup.as_secs_f64(),
        window.as_secs_f64()
    );
    println!(
        "CPU is a share of one core over the window; \"PG db\" sums the backends whose title \
         names {name}, \"PG all\" every postgres process (WAL writer, checkpointer, other \
         databases' load included). Commits and rows are pg_stat_database's, per call completed \
         between its readings (backends publish their counters up to ~1 s late); audit/call is \
         the audit chain's growth per call; records/commit is the audit records per group commit \
         (and group commits per second), from the cluster's xid counter (exact on an otherwise \
         idle server); WAL B/call is the cluster's WAL growth per call; the audit lock \
         column is the share of pg_locks samples (every 20 ms) in which a host held the audit \
         chain's advisory lock, and the mean number of hosts waiting for it; PG conns is \
         pg_stat_activity mid-window, per host."
    );
    println!(
        "| round | hosts | conns | calls/s | vs 1 host | p50 ms | p99 ms | host CPU (total) \
         | PG db CPU | PG all CPU | client CPU | commits/call | rows/call | audit/call \
         | records/commit | WAL B/call | audit lock held / waiters | PG conns |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // calls/s by (hosts, connections), one entry per round.
    let mut rates: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    for round in 1..=rounds {
        // The rounds alternate ascending and descending host counts, so that a drift in the
        // machine's other load hits every host count alike over two rounds.
        let mut order = host_counts.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        let mut runs = Vec::new();
        for &count in &order {
            // Hosts join as the first round needs them; later rounds use the first `count`
            // (the others stay up, idle, with their pooled connections).
            while servers.len() < count {
                add_host(&mut servers, &mut targets);
            }
            for &connections in &levels {
                runs.push(rt.block_on(run_level(
                    &bench,
                    &servers[..count],
                    &targets[..count],
                    connections,
                )));
            }
        }
        // Printed once the round is over: a descending round runs one host last.
        let one_host: HashMap<usize, f64> = runs
            .iter()
            .filter(|r| r.hosts == 1)
            .map(|r| (r.connections, r.per_second))
            .collect();
        runs.sort_by_key(|r| (r.hosts, r.connections));
        for run in &runs {
            println!(
                "| {round} {}",
                row(run, one_host.get(&run.connections).copied())
            );
            rates
                .entry((run.hosts, run.connections))
                .or_default()
                .push(run.per_second);
        }
    }
    if rounds > 1 {
        println!("mean over the {rounds} rounds:");
        println!("| hosts | conns | calls/s (each round) | mean | mean vs 1 host |");
        println!("|---|---|---|---|---|");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        for &count in &host_counts {
            for &connections in &levels {
                let each = &rates[&(count, connections)];
                let ratio = rates.get(&(1, connections)).map_or("–".to_string(), |one| {
                    format!("{:.2}×", mean(each) / mean(one))
                });
                let each: Vec<String> = each.iter().map(|r| format!("{r:.0}")).collect();
                println!(
                    "| {count} | {connections} | {} | {:.0} | {ratio} |",
                    each.join(" · "),
                    mean(&rates[&(count, connections)])
                );
            }
        }
    }
    // Other work on the machine skews every figure above; say how busy it was.
    println!("load average at the end: {}", load_average());
    drop(bench);
    drop(servers);
    drop(rt);
    drop(database);
}
