//! The fleet tests' harness: a fresh PostgreSQL database per test, a private PostgreSQL cluster
//! that a test may restart, a config every host of a fleet shares, real `warden serve`
//! processes (killed when dropped, so a failed test leaves nothing running), an HTTP client,
//! the fake model's script, and readers of the ledger, the journal and the leases straight
//! from PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden::state::testing::POSTGRES_URL_VAR;

use crate::common::{WARDEN, plugin_path, shared_cache_dir};
use crate::model::{Conversation, FakeModel, Reply, call};

/// The agent every fleet config has.
pub const AGENT: &str = "counting";
/// The tenant every fleet config has.
pub const TENANT: &str = "acme";
/// The lease TTL of the fleet configs.
pub const LEASE_MS: u64 = 1_500;
/// How often the fleet's hosts look for tasks to rescue.
pub const RESCUE_MS: u64 = 300;
/// The variable holding the ledger source's URL (each host may get its own
/// `application_name` in it, which the counter records as the row's `host`).
pub const LEDGER_URL_ENV: &str = "WARDEN_FLEET_LEDGER_URL";
/// The variable holding the model's (fake) API key.
const MODEL_KEY_ENV: &str = "WARDEN_TEST_MODEL_KEY";
/// The variable holding the audit key, which signs every record.
const AUDIT_KEY_ENV: &str = "WARDEN_FLEET_AUDIT_KEY";
/// The audit key every host of a fleet shares.
const AUDIT_KEY: &str = "fleet-test-audit-key-0123456789abcdef-0123456789";
/// How long a host may take to print `listening on` (it may compile the counter).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// The fleet tests run one at a time: they time leases and signals on 2 cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch, as the hosts and the counter measure time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `WARDEN_TEST_POSTGRES_URL`, or `None` after printing that `test` is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped: set {POSTGRES_URL_VAR} to run the fleet test `{test}`");
            None
        }
    }
}

/// `url` with its database (the URL's path) replaced by `database`, keeping its parameters.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `url` with one more parameter.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// A runtime and a client for one batch of statements, connected afresh (a test reads through
/// database restarts).
fn with_client<T>(
    url: &str,
    f: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, tokio_postgres::Error>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for PostgreSQL");
    runtime.block_on(async {
        let (client, connection) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(url, tokio_postgres::NoTls),
        )
        .await
        .map_err(|_| "connecting took over 10 s".to_string())?
        .map_err(|e| format!("connecting: {e}"))?;
        let driver = tokio::spawn(connection);
        let out = f(&client).await.map_err(|e| format!("{e}"));
        drop(client);
        let _ = driver.await;
        out
    })
}

/// Runs `sql` (statements separated by `;`) on `url`.
pub fn pg_batch(url: &str, sql: &str) -> Result<(), String> {
    with_client(url, async |c| c.batch_execute(sql).await)
}

/// The rows of `sql` on `url`, each as text columns (NULL as `None`).
pub fn pg_rows(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    with_client(url, async |c| {
        let rows = c.simple_query(sql).await?;
        Ok(rows
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect())
    })
}

/// A fresh database on a PostgreSQL server, dropped (its connections ended) when this is.
pub struct Database {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl Database {
    /// Creates a database named after `label` on the server of `admin_url`.
    pub fn create(admin_url: &str, label: &str) -> Database {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("wf_{label}_{}_{nanos}", std::process::id());
        pg_batch(admin_url, &format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {POSTGRES_URL_VAR}: {e}"));
        Database {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = pg_batch(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The bin folder of the newest PostgreSQL under /usr/lib/postgresql, if any.
pub fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A free TCP port on 127.0.0.1 (free when asked; nothing holds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A PostgreSQL cluster of this test's own, run by user `postgres` on a free port with trust
/// authentication; stopped (immediately) and deleted when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &options])
            .args(args)
            .stdin(Stdio::null());
        cmd.output().expect("run pg_ctl")
    }

    /// initdb, then start.
    pub fn start(bin: &Path) -> Cluster {
        let dir = tempfile::tempdir().expect("a folder for the cluster");
        let (uid, gid) = postgres_user();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .expect("give the cluster's folder to user postgres");
        let cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
        };
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(cluster.data())
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cluster.pg_ctl(&["-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            cluster.log()
        );
        cluster
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_ctl restart -m fast`, waiting until it accepts connections again.
    pub fn restart(&self) {
        let out = self.pg_ctl(&["-w", "-t", "60", "-m", "fast", "restart"]);
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}\n{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-t", "30", "-m", "immediate", "stop"]);
    }
}

fn postgres_user() -> (u32, u32) {
    let out = Command::new("id")
        .arg("-u")
        .arg("postgres")
        .output()
        .expect("run id -u postgres");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("user postgres exists");
    let out = Command::new("id")
        .arg("-g")
        .arg("postgres")
        .output()
        .expect("run id -g postgres");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("group of postgres");
    (uid, gid)
}

/// The lowercase hex sha256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What a fleet's config says (a test changes a field to make two configs differ).
#[derive(Debug, Clone)]
pub struct ConfigSpec {
    /// `[state] url`.
    pub state_url: String,
    /// `[state] session_lease_ms`.
    pub lease_ms: u64,
    /// `[state] rescue_interval_ms`.
    pub rescue_ms: u64,
    /// The agent's `tools`, as a TOML array.
    pub tools: String,
    /// The fake model's base URL.
    pub model_url: String,
    /// The sha256 of tenant `acme`'s token.
    pub token_sha256: String,
}

impl ConfigSpec {
    /// The config's text.
    pub fn render(&self) -> String {
        format!(
            r#"
[state]
url = "{state_url}"
session_lease_ms = {lease_ms}
rescue_interval_ms = {rescue_ms}
audit_key_env = "{AUDIT_KEY_ENV}"

[plugins.counter]
path = "{counter}"
max = ["sql:ledger:rw"]

[sources.ledger]
kind = "postgres"
url_env = "{LEDGER_URL_ENV}"

[models.fast]
backend = "openai"
base_url = "{model_url}"
api_key_env = "{MODEL_KEY_ENV}"
model = "fake-model"

[agents.{AGENT}]
model = "fast"
instructions = "You count things with the counter tools. Be brief."
tools = {tools}
grants = ["ledger:rw", "model:fast"]
limits = {{ max_steps = 16 }}

[tenants.{TENANT}]
token_sha256 = "{token_sha256}"
agents = ["{AGENT}"]
"#,
            state_url = self.state_url,
            lease_ms = self.lease_ms,
            rescue_ms = self.rescue_ms,
            counter = plugin_path("counter").display(),
            model_url = self.model_url,
            tools = self.tools,
            token_sha256 = self.token_sha256,
        )
    }
}

/// A fleet's shared things: a folder with its config file(s), the tenant's token, the ledger's
/// URL, and the environment every host gets.
pub struct Fleet {
    /// The folder holding the configs and each host's own working folder.
    pub dir: tempfile::TempDir,
    /// Tenant `acme`'s token.
    pub token: String,
    /// The ledger database's URL (without a per-host `application_name`).
    pub ledger_url: String,
    /// The config every host uses unless told otherwise.
    pub spec: ConfigSpec,
    /// `warden.toml` in `dir`.
    pub config: PathBuf,
}

impl Fleet {
    /// A fleet on state `state_url` whose counter writes to `ledger_url`, against `model`.
    pub fn new(state_url: &str, ledger_url: &str, model: &FakeModel) -> Fleet {
        let dir = tempfile::tempdir().expect("a folder for the fleet");
        let token = format!("wf-acme-{}", uuid::Uuid::now_v7().simple());
        let spec = ConfigSpec {
            state_url: state_url.to_string(),
            lease_ms: LEASE_MS,
            rescue_ms: RESCUE_MS,
            tools: r#"["counter/*"]"#.to_string(),
            model_url: model.base_url(),
            token_sha256: sha256_hex(&token),
        };
        let config = dir.path().join("warden.toml");
        std::fs::write(&config, spec.render()).expect("write warden.toml");
        Fleet {
            dir,
            token,
            ledger_url: ledger_url.to_string(),
            spec,
            config,
        }
    }

    /// Writes `spec` as config `name` in the fleet's folder and returns its path.
    pub fn write_config(&self, name: &str, spec: &ConfigSpec) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, spec.render()).expect("write a config");
        path
    }

    /// The environment of a host called `name` (its ledger connections say `name`).
    pub fn env(&self, name: &str) -> Vec<(String, String)> {
        vec![
            (
                LEDGER_URL_ENV.to_string(),
                with_param(&self.ledger_url, "application_name", name),
            ),
            (MODEL_KEY_ENV.to_string(), "test-key".to_string()),
            (AUDIT_KEY_ENV.to_string(), AUDIT_KEY.to_string()),
        ]
    }

    /// A host's options: `binary serve --config CONFIG`, in a working folder of its own, with
    /// the suite's shared compile cache.
    pub fn host(&self, name: &str) -> HostSpec {
        HostSpec {
            name: name.to_string(),
            binary: PathBuf::from(WARDEN),
            config: self.config.clone(),
            workdir: self.dir.path().join(name),
            cache: shared_cache_dir(),
            env: self.env(name),
        }
    }

    /// Runs `warden ARGS` (to completion, at most 120 s) with the fleet's environment.
    pub fn warden(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new(WARDEN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("WARDEN_CACHE_DIR", shared_cache_dir())
            .env_remove("WARDEN_LOG")
            .env_remove("WARDEN_CONFIG")
            .envs(self.env("fleet-cli"));
        run_bounded(cmd, Duration::from_secs(120))
    }

    /// `warden audit verify --config warden.toml`, asserting it passes.
    pub fn verify_audit(&self, hosts: &[&Host]) -> String {
        let config = self.config.display().to_string();
        let run = self.warden(&["audit", "verify", "--config", &config]);
        assert_eq!(
            run.code,
            Some(0),
            "`warden audit verify` failed: {run:#?}\n{}",
            tails(hosts)
        );
        run.stdout.trim().to_string()
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code (`None` if a signal ended it).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

/// Runs `cmd`, killing it after `deadline`.
pub fn run_bounded(mut cmd: Command, deadline: Duration) -> Finished {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn a command");
    let out = read_all(child.stdout.take().expect("stdout"));
    let err = read_all(child.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            break child.wait().expect("reap");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// How to start one host.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Its name in the test (and its ledger connections' `application_name`).
    pub name: String,
    /// The binary: `warden`, or `warden_next`.
    pub binary: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its working folder (created empty); `--state-dir` points inside it.
    pub workdir: PathBuf,
    /// Its compile cache (`WARDEN_CACHE_DIR`).
    pub cache: PathBuf,
    /// Its environment.
    pub env: Vec<(String, String)>,
}

/// Lines a process wrote, each with when it arrived (ms since the epoch).
type Lines = Arc<Mutex<Vec<(i64, String)>>>;

fn drain_lines(pipe: impl Read + Send + 'static, into: Lines, first: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        let mut first = first;
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            if let Some(tx) = first.take() {
                let _ = tx.send(line.clone());
            }
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((now_ms(), line.trim_end().to_string()));
            line.clear();
        }
    });
}

/// A running `warden serve`. Dropping it kills it.
pub struct Host {
    /// Its name in the test.
    pub name: String,
    /// Its process id.
    pub pid: i32,
    /// `http://IP:PORT`, once it listens.
    pub base: String,
    /// Its working folder.
    pub workdir: PathBuf,
    child: Option<Child>,
    stdout: Lines,
    stderr: Lines,
    stopped: bool,
}

/// How a host that was expected to listen ended instead.
#[derive(Debug)]
pub struct Refused {
    /// How it exited.
    pub status: Option<ExitStatus>,
    /// What it wrote to stderr.
    pub stderr: String,
    /// What it wrote to stdout.
    pub stdout: String,
}

impl Host {
    /// Starts a host and waits (at most 120 s) for its `listening on` line; fails the test with
    /// its stderr when it exits or prints something else first.
    pub fn start(spec: &HostSpec) -> Host {
        match Host::try_start(spec) {
            Ok(host) => host,
            Err(refused) => panic!(
                "host {} ({}) did not start serving: {refused:#?}",
                spec.name,
                spec.binary.display()
            ),
        }
    }

    /// Starts several hosts at once (so they compile in parallel) and waits for each.
    pub fn start_all(specs: &[HostSpec]) -> Vec<Host> {
        let spawned: Vec<_> = specs.iter().map(Host::spawn).collect();
        spawned
            .into_iter()
            .zip(specs)
            .map(|((host, first), spec)| match host.wait_listening(first) {
                Ok(host) => host,
                Err(refused) => panic!("host {} did not start serving: {refused:#?}", spec.name),
            })
            .collect()
    }

    /// Starts a host; `Err` with what it said when it exits before it listens.
    pub fn try_start(spec: &HostSpec) -> Result<Host, Refused> {
        let (host, first) = Host::spawn(spec);
        host.wait_listening(first)
    }

    fn spawn(spec: &HostSpec) -> (Host, mpsc::Receiver<String>) {
        std::fs::create_dir_all(&spec.workdir).expect("create the host's working folder");
        let mut cmd = Command::new(&spec.binary);
        cmd.arg("serve")
            .arg("--config")
            .arg(&spec.config)
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(spec.workdir.join("state"))
            .current_dir(&spec.workdir)
            .env("WARDEN_CACHE_DIR", &spec.cache)
            .env_remove("WARDEN_LOG")
            .env_remove("WARDEN_CONFIG")
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // `WARDEN_FLEET_LOG=warden=debug` turns on the hosts' logs, to see why a run failed.
        if let Ok(filter) = std::env::var("WARDEN_FLEET_LOG") {
            cmd.env("WARDEN_LOG", filter);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", spec.binary.display()));
        let stdout: Lines = Arc::default();
        let stderr: Lines = Arc::default();
        let (tx, rx) = mpsc::channel();
        drain_lines(
            child.stdout.take().expect("stdout"),
            stdout.clone(),
            Some(tx),
        );
        drain_lines(child.stderr.take().expect("stderr"), stderr.clone(), None);
        let host = Host {
            name: spec.name.clone(),
            pid: child.id() as i32,
            base: String::new(),
            workdir: spec.workdir.clone(),
            child: Some(child),
            stdout,
            stderr,
            stopped: false,
        };
        (host, rx)
    }

    fn wait_listening(mut self, first: mpsc::Receiver<String>) -> Result<Host, Refused> {
        let start = Instant::now();
        let line = loop {
            match first.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => break Some(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                // Exited; the stdout reader may still hold its first line.
                break first.recv_timeout(Duration::from_millis(200)).ok();
            }
            if start.elapsed() > START_DEADLINE {
                break None;
            }
        };
        let listening = line
            .as_deref()
            .and_then(|l| l.trim_end().strip_prefix("listening on "))
            .map(str::to_string);
        match listening {
            Some(base) if base.starts_with("http://127.0.0.1:") => {
                self.base = base;
                Ok(self)
            }
            _ => {
                let mut child = self.child.take().expect("ours");
                // Its stdout closed or it printed something else: give it a moment to exit
                // by itself before it is killed.
                let grace = Instant::now();
                let status = loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break Some(status),
                        _ if grace.elapsed() > Duration::from_secs(5) => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break None;
                        }
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                };
                std::thread::sleep(Duration::from_millis(200));
                Err(Refused {
                    status,
                    stderr: self.stderr(),
                    stdout: self.stdout(),
                })
            }
        }
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        join_lines(&self.stderr)
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        join_lines(&self.stdout)
    }

    /// Its stderr lines with when each arrived.
    pub fn stderr_lines(&self) -> Vec<(i64, String)> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The last `n` lines of its stderr, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.stderr_lines();
        let skip = lines.len().saturating_sub(n);
        let mut out = format!(
            "--- {} (pid {}) stderr, last {n} lines ---\n",
            self.name, self.pid
        );
        for (_, l) in &lines[skip..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) on host {}", self.pid, self.name);
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the host is still ours");
        child.kill().expect("kill -9 the host");
        let status = child.wait().expect("reap the host");
        assert!(
            status.code().is_none(),
            "host {} exited ({status:?}) before it was killed:\n{}",
            self.name,
            self.tail(40)
        );
    }

    /// SIGSTOP.
    pub fn stop(&mut self) {
        self.signal(libc::SIGSTOP);
        self.stopped = true;
    }

    /// SIGCONT.
    pub fn cont(&mut self) {
        self.signal(libc::SIGCONT);
        self.stopped = false;
    }

    /// Waits (at most `deadline`) for the host to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            if start.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client with tenant `acme`'s token.
    pub fn api(&self, token: &str) -> Api {
        Api::new(&self.base, token)
    }
}

/// Where each host's whole stderr is kept after the test (its tail goes in failure messages).
pub fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-logs")
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::create_dir_all(log_dir());
        let _ = std::fs::write(
            log_dir().join(format!("{}.stderr", self.name)),
            self.stderr(),
        );
        if let Some(mut child) = self.child.take() {
            if self.stopped {
                // SAFETY: as in `signal`; a stopped process still dies of SIGKILL, this only
                // keeps nothing waiting on it.
                unsafe { libc::kill(self.pid, libc::SIGCONT) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn join_lines(lines: &Lines) -> String {
    let lines = lines.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    for (_, l) in lines.iter() {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The stderr tails of `hosts`, for failure messages.
pub fn tails(hosts: &[&Host]) -> String {
    let mut out = hosts
        .iter()
        .map(|h| h.tail(30))
        .collect::<Vec<_>>()
        .join("");
    out.push_str(&format!(
        "(each host's whole stderr is written to {}/NAME.stderr when it is dropped)\n",
        log_dir().display()
    ));
    out
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    /// What was sent.
    pub request: String,
    /// The status (0 when the request failed at the transport).
    pub status: u16,
    /// The body, or the transport error.
    pub body: String,
}

impl Resp {
    /// The body as JSON (null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// An HTTP client for one host, with tenant `acme`'s token.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// A client for `base`.
    pub fn new(base: &str, token: &str) -> Api {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the HTTP client");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client");
        Api {
            runtime,
            client,
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Resp {
        let url = format!("{}{path}", self.base);
        let described = format!(
            "{method} {url} {}",
            body.map(|b| b.to_string()).unwrap_or_default()
        );
        let mut request = self
            .client
            .request(method, &url)
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        self.runtime.block_on(async {
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.text().await.unwrap_or_default();
                    Resp {
                        request: described,
                        status,
                        body,
                    }
                }
                Err(e) => Resp {
                    request: described,
                    status: 0,
                    body: format!("{e:?}"),
                },
            }
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::POST, path, Some(body))
    }

    /// Creates a session of the fleet's agent, then starts task `input` in it; returns the
    /// session's and the task's ids.
    pub fn start_task(&self, input: &str) -> (String, String) {
        let resp = self.post("/v1/sessions", &json!({ "agent": AGENT }));
        assert_eq!(resp.status, 201, "creating a session: {resp:#?}");
        let session = resp.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id: {resp:#?}"))
            .to_string();
        let resp = self.post(
            &format!("/v1/sessions/{session}/tasks"),
            &json!({ "input": input }),
        );
        assert_eq!(resp.status, 202, "starting a task: {resp:#?}");
        let task = resp.json()["task"]
            .as_str()
            .unwrap_or_else(|| panic!("no task id: {resp:#?}"))
            .to_string();
        (session, task)
    }

    /// `GET /v1/sessions/{session}/tasks/{task}` (its JSON, or null when it failed).
    pub fn task(&self, session: &str, task: &str) -> Resp {
        self.get(&format!("/v1/sessions/{session}/tasks/{task}"))
    }
}

/// One task a test started.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its number in the script.
    pub n: usize,
    /// The host it was sent to.
    pub host: String,
    /// Its session.
    pub session: String,
    /// Its id.
    pub task: String,
}

/// Polls `api` until every task in `tasks` has status `answered` (or `max_steps`/`failed`,
/// which end it), at most `deadline`. Returns each task's last status body, by session, and
/// when the last one ended; fails listing the unfinished ones and the hosts' stderr.
pub fn wait_all(
    api: &Api,
    tasks: &[Started],
    deadline: Duration,
    hosts: &[&Host],
    db_url: &str,
    model: &FakeModel,
) -> (BTreeMap<String, Value>, i64) {
    let start = Instant::now();
    let mut done: BTreeMap<String, Value> = BTreeMap::new();
    let mut last = Value::Null;
    loop {
        for t in tasks {
            if done.contains_key(&t.session) {
                continue;
            }
            let resp = api.task(&t.session, &t.task);
            let body = resp.json();
            let status = body["status"].as_str().unwrap_or("");
            if ["answered", "max_steps", "failed"].contains(&status) {
                done.insert(t.session.clone(), body);
            } else {
                last = json!({"session": t.session, "response": resp.body, "status": resp.status});
            }
        }
        if done.len() == tasks.len() {
            return (done, now_ms());
        }
        if start.elapsed() > deadline {
            let unfinished: Vec<String> = tasks
                .iter()
                .filter(|t| !done.contains_key(&t.session))
                .map(|t| {
                    let journal = read_journal(db_url)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|e| e.session == t.session)
                        .map(|e| e.kind)
                        .collect::<Vec<_>>();
                    let lease = read_leases(db_url)
                        .unwrap_or_default()
                        .into_iter()
                        .find(|l| l.session == t.session);
                    let status = api.task(&t.session, &t.task).json()["status"].clone();
                    format!(
                        "task {} (#{}, sent to {}) of session {}: status {status}, journal \
                         {journal:?}, lease {lease:?}",
                        t.task, t.n, t.host, t.session
                    )
                })
                .collect();
            panic!(
                "{} of {} tasks did not finish within {} s:\n{}\nlast response: {last}\n\
                 the fake model's script errors: {:#?}\n{}",
                unfinished.len(),
                tasks.len(),
                deadline.as_secs(),
                unfinished.join("\n"),
                model.script_errors(),
                tails(hosts)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Model turns that call the counter, before the answer.
pub const TURNS: usize = 4;

/// The input of scripted task `n`.
pub fn task_input(n: usize) -> String {
    format!("Fleet task {n}: count, then answer.")
}

/// The answer of scripted task `n`.
pub fn task_answer(n: usize) -> String {
    format!("Fleet task {n} counted everything.")
}

/// How many `count` calls turn `turn` of task `n` makes (1 or 2).
pub fn calls_in(n: usize, turn: usize) -> usize {
    1 + (n + turn) % 2
}

/// The sleep of call `k` of turn `turn` of task `n`: 200 to 600 ms.
fn sleep_of(n: usize, turn: usize, k: usize) -> u64 {
    200 + ((n * 7 + turn * 13 + k * 5) % 5) as u64 * 100
}

/// How many `count` calls task `n` makes in all.
pub fn calls_of(n: usize) -> usize {
    (0..TURNS).map(|t| calls_in(n, t)).sum()
}

/// The fleet script: task `n` (read from its input) makes [`TURNS`] turns of 1–2 `count`
/// calls sleeping 200–600 ms, then answers [`task_answer`]. Each turn checks that the results
/// of all the calls before it are in the conversation.
pub fn fleet_script(c: &Conversation) -> Reply {
    let Some(n) = c
        .task()
        .strip_prefix("Fleet task ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return Reply::unexpected("not a fleet task", c);
    };
    let turn = c.turn();
    let expected: usize = (0..turn.min(TURNS)).map(|t| calls_in(n, t)).sum();
    if c.results().len() != expected {
        return Reply::unexpected(
            format!(
                "turn {turn} of task {n} should follow {expected} results, not {}",
                c.results().len()
            ),
            c,
        );
    }
    if turn >= TURNS {
        return Reply::answer(&task_answer(n));
    }
    let count = c.tool("counter", "count");
    Reply::calls(
        (0..calls_in(n, turn))
            .map(|k| {
                call(
                    &format!("call_{n}_{turn}_{k}"),
                    &count,
                    json!({ "label": format!("t{n}-{turn}-{k}"), "sleep_ms": sleep_of(n, turn, k) }),
                )
            })
            .collect(),
    )
}

/// One row of the ledger.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The call id.
    pub call_id: String,
    /// The session.
    pub session: String,
    /// The label.
    pub label: String,
    /// The host whose connection wrote it (its `application_name`).
    pub host: String,
    /// When it started.
    pub started_ms: i64,
    /// When it finished, if it did.
    pub finished_ms: Option<i64>,
}

/// Every execution in the ledger at `url`, in the order they started (none before the table
/// exists).
pub fn read_executions(url: &str) -> Result<Vec<Execution>, String> {
    let exists = pg_rows(url, "SELECT to_regclass('executions') IS NOT NULL")?;
    if exists.first().and_then(|r| r[0].as_deref()) != Some("t") {
        return Ok(Vec::new());
    }
    let rows = pg_rows(
        url,
        "SELECT call_id, session, label, coalesce(host, ''), started_ms, finished_ms \
         FROM executions ORDER BY started_ms, id",
    )?;
    Ok(rows
        .into_iter()
        .map(|r| Execution {
            call_id: r[0].clone().unwrap_or_default(),
            session: r[1].clone().unwrap_or_default(),
            label: r[2].clone().unwrap_or_default(),
            host: r[3].clone().unwrap_or_default(),
            started_ms: r[4].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
            finished_ms: r[5].as_deref().and_then(|v| v.parse().ok()),
        })
        .collect())
}

/// One journal entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The session.
    pub session: String,
    /// Its step.
    pub step: i64,
    /// The task.
    pub task: String,
    /// `tool_call`, `tool_result`, `final_answer`, ...
    pub kind: String,
    /// The call id, for tool calls and results.
    pub call_id: Option<String>,
    /// The fencing token it was written under.
    pub token: i64,
    /// When it was written.
    pub recorded_at_ms: i64,
    /// Its payload (JSON text).
    pub payload: String,
}

/// Every journal entry of the store at `url`, by session and step.
pub fn read_journal(url: &str) -> Result<Vec<Entry>, String> {
    let rows = pg_rows(
        url,
        "SELECT session_id, step, task_id, kind, call_id, token, recorded_at_ms, payload \
         FROM agent_journal ORDER BY session_id, step",
    )?;
    Ok(rows
        .into_iter()
        .map(|r| Entry {
            session: r[0].clone().unwrap_or_default(),
            step: r[1].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
            task: r[2].clone().unwrap_or_default(),
            kind: r[3].clone().unwrap_or_default(),
            call_id: r[4].clone(),
            token: r[5].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
            recorded_at_ms: r[6].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
            payload: r[7].clone().unwrap_or_default(),
        })
        .collect())
}

/// One lease.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The session.
    pub session: String,
    /// Who holds it (`hostname:pid:…`), if anyone.
    pub holder: Option<String>,
    /// Its fencing token.
    pub token: i64,
    /// When it lapses.
    pub expires_at_ms: i64,
}

/// Every session lease of the store at `url`.
pub fn read_leases(url: &str) -> Result<Vec<Lease>, String> {
    let rows = pg_rows(
        url,
        "SELECT session_id, holder, token, expires_at_ms FROM agent_leases",
    )?;
    Ok(rows
        .into_iter()
        .map(|r| Lease {
            session: r[0].clone().unwrap_or_default(),
            holder: r[1].clone(),
            token: r[2].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
            expires_at_ms: r[3].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0),
        })
        .collect())
}

/// Whether lease holder id `holder` (`hostname:pid:…`) names process `pid`.
pub fn held_by(holder: &str, pid: i32) -> bool {
    holder.split(':').nth(1) == Some(pid.to_string().as_str())
}

/// The highest version in `warden_schema`.
pub fn schema_version(url: &str) -> i64 {
    pg_rows(url, "SELECT MAX(version) FROM warden_schema")
        .ok()
        .and_then(|r| r.first().and_then(|r| r[0].clone()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A harmful event in a test: a host killed, paused, or the database restarted, and when.
#[derive(Debug, Clone)]
pub struct Incident {
    /// What happened, for messages.
    pub what: String,
    /// The host it hit (its ledger `host`), or `None` for every host (a database restart).
    pub host: Option<String>,
    /// When it began.
    pub at_ms: i64,
}

/// What the ledger and journal checks found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Tool calls journaled.
    pub calls: usize,
    /// Executions in the ledger.
    pub executions: usize,
    /// Each call id that ran more than once, with why it may have.
    pub duplicates: Vec<String>,
    /// Executions per host.
    pub per_host: BTreeMap<String, usize>,
}

/// The checks every fleet test makes of the journal at `db_url` against the ledger at
/// `ledger_url`, after every task in `tasks` ended:
/// - every task answered its scripted answer, once, in the journal too;
/// - every journaled tool call has exactly one tool result, and ran at least once;
/// - no execution of a call started after its result was journaled;
/// - a call that ran more than once was in flight (its first executions started, and its
///   result not journaled, before an incident) on a host an incident hit.
pub fn check_runs(
    db_url: &str,
    ledger_url: &str,
    tasks: &[Started],
    ends: &BTreeMap<String, Value>,
    incidents: &[Incident],
    hosts: &[&Host],
) -> Checked {
    let journal = read_journal(db_url).unwrap_or_else(|e| panic!("read the journal: {e}"));
    let executions = read_executions(ledger_url).unwrap_or_else(|e| panic!("read the ledger: {e}"));
    let ctx = || tails(hosts);
    let mut problems: Vec<String> = Vec::new();

    // The tasks' answers.
    for t in tasks {
        let end = &ends[&t.session];
        if end["status"] != "answered" || end["answer"] != task_answer(t.n).as_str() {
            problems.push(format!(
                "task #{} (session {}) ended {end}, not with answer {:?}",
                t.n,
                t.session,
                task_answer(t.n)
            ));
        }
        let answers = journal
            .iter()
            .filter(|e| e.session == t.session && e.kind == "final_answer")
            .count();
        if answers != 1 {
            problems.push(format!(
                "session {} journaled {answers} final answers",
                t.session
            ));
        }
    }

    // Calls and results, by call id.
    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    let mut results: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    for e in &journal {
        let Some(id) = e.call_id.clone() else {
            continue;
        };
        match e.kind.as_str() {
            "tool_call" => *calls.entry(id).or_default() += 1,
            "tool_result" => results.entry(id).or_default().push(e),
            _ => {}
        }
    }
    for (id, n) in &calls {
        let r = results.get(id).map_or(0, Vec::len);
        if r != 1 {
            problems.push(format!(
                "call {id} (journaled as a tool_call {n} time(s)) has {r} tool_results"
            ));
        }
    }
    for id in results.keys() {
        if !calls.contains_key(id) {
            problems.push(format!("tool_result for {id} without a tool_call"));
        }
    }
    let expected_calls: usize = tasks.iter().map(|t| calls_of(t.n)).sum();
    if calls.len() != expected_calls {
        problems.push(format!(
            "{} distinct tool calls journaled; the script makes {expected_calls}",
            calls.len()
        ));
    }

    // Executions against the journal.
    let mut by_call: BTreeMap<&str, Vec<&Execution>> = BTreeMap::new();
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for x in &executions {
        by_call.entry(x.call_id.as_str()).or_default().push(x);
        *per_host.entry(x.host.clone()).or_default() += 1;
    }
    for (id, entries) in &results {
        for e in entries {
            let payload: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
            if payload["ok"] != true {
                problems.push(format!(
                    "call {id} failed (every count call should succeed): {}",
                    e.payload
                ));
            }
        }
    }
    for id in calls.keys() {
        if !by_call.contains_key(id.as_str()) {
            problems.push(format!(
                "call {id} is journaled but the ledger has no execution of it; its result: {:?}",
                results
                    .get(id)
                    .and_then(|r| r.first())
                    .map(|e| e.payload.as_str())
            ));
        }
    }
    let mut duplicates = Vec::new();
    for (id, runs) in &by_call {
        if !calls.contains_key(*id) {
            problems.push(format!(
                "call {id} ran ({runs:?}) but is not in the journal"
            ));
            continue;
        }
        let result_at = results
            .get(*id)
            .and_then(|r| r.first())
            .map(|e| e.recorded_at_ms);
        if let Some(result_at) = result_at {
            for x in runs {
                if x.started_ms > result_at {
                    problems.push(format!(
                        "call {id} ({}) ran again on {} at {} after its result was journaled at \
                         {result_at}",
                        x.label, x.host, x.started_ms
                    ));
                }
            }
        }
        if runs.len() > 1 {
            // Every execution but the last must have been cut short by an incident.
            let mut why = Vec::new();
            for x in &runs[..runs.len() - 1] {
                let hit = incidents.iter().find(|i| {
                    i.host.as_ref().is_none_or(|h| *h == x.host)
                        && x.started_ms <= i.at_ms
                        && result_at.is_none_or(|r| r >= i.at_ms)
                });
                match hit {
                    Some(i) => why.push(format!(
                        "in flight on {} (started {} ms before {}, unfinished: {})",
                        if x.host.is_empty() { "?" } else { &x.host },
                        i.at_ms - x.started_ms,
                        i.what,
                        x.finished_ms.is_none_or(|f| f > i.at_ms)
                    )),
                    None => problems.push(format!(
                        "call {id} ({}) ran {} times; its run on {} at {} was not in flight at \
                         any incident ({incidents:?}); result journaled at {result_at:?}",
                        x.label,
                        runs.len(),
                        x.host,
                        x.started_ms
                    )),
                }
            }
            duplicates.push(format!(
                "{} ran {} times: {}",
                runs[0].label,
                runs.len(),
                why.join("; ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the journal and the ledger:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        ctx()
    );
    Checked {
        calls: calls.len(),
        executions: executions.len(),
        duplicates,
        per_host,
    }
}

/// Every path under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if let Ok(rel) = path.strip_prefix(dir) {
                out.insert(rel.to_path_buf());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.into_iter().collect()
}
