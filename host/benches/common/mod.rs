//! What the benches that drive a real `warden serve` share: the binary with the shared compile
//! cache, a tenant token, a child process stopped on drop, `/proc` CPU readings, and the
//! figures' arithmetic. Included with `#[path]` by each bench that uses it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process, ended (SIGTERM, then a kill after 10 s) when dropped.
pub struct Stopped(pub Child);

impl Stopped {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `warden` binary this bench was built with, with the shared compile cache.
pub fn warden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env("WARDEN_CACHE_DIR", cache_dir())
        .env("WARDEN_LOG", "error");
    cmd
}

/// The compile cache the tests and benches share, so the hosts start warm.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/test-cache"))
}

/// A new token for `tenant`, from `warden tenant token`: the token and its sha256.
pub fn new_token(tenant: &str) -> (String, String) {
    let out = warden()
        .args(["tenant", "token", tenant, "--json"])
        .output()
        .expect("run warden tenant token");
    assert!(
        out.status.success(),
        "warden tenant token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("its JSON");
    let field = |name: &str| {
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .to_string()
    };
    (field("token"), field("token_sha256"))
}

/// The command name and utime + stime of process `pid` (`self` for this one), if it exists.
pub fn proc_stat(pid: &str) -> Option<(String, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its closing parenthesis are fixed.
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some((
        name.to_string(),
        Duration::from_nanos(ticks * 1_000_000_000 / per_second),
    ))
}

/// utime + stime of a process that must exist (a host, or `self`).
pub fn cpu_time(pid: &str) -> Duration {
    proc_stat(pid)
        .unwrap_or_else(|| panic!("read /proc/{pid}/stat"))
        .1
}

/// The `p` quantile of sorted nanosecond samples.
pub fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    Duration::from_nanos(u64::from(sorted[rank - 1]))
}

/// A duration in seconds from variable `name`, or `default`.
pub fn env_secs(name: &str, default: f64) -> Duration {
    let secs = std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}
