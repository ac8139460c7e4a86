//! `[serve]`: how `warden serve` listens — the address, the Host names it answers to, and the
//! bounds on what one request may send or how slowly.

use serde::Deserialize;

use super::ConfigProblem;

/// Where `warden serve` listens when neither `--listen` nor `[serve] listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";
/// A request body's limit when `[serve] max_body_kb` is not set (1 MiB).
pub const DEFAULT_MAX_BODY_KB: u64 = 1024;
/// The largest `max_body_kb` (64 MiB): a body is parsed in memory.
pub const HARD_MAX_BODY_KB: u64 = 64 * 1024;
/// How long a client may take to send a request's headers when `header_timeout_ms` is not set.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// How long a client may take to send a request's body when `body_timeout_ms` is not set.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// The Host names every server answers to: the loopback names.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// `[serve]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// `IP:PORT` to listen on (default 127.0.0.1:8420, loopback only).
    pub listen: Option<String>,
    /// Host names besides the loopback ones that requests may name (DNS-rebinding protection).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The largest request body, in KiB (default 1024).
    pub max_body_kb: Option<u64>,
    /// How long a request's headers may take to arrive, in milliseconds (default 10000).
    pub header_timeout_ms: Option<u64>,
    /// How long a request's body may take to arrive, in milliseconds (default 30000).
    pub body_timeout_ms: Option<u64>,
}

impl ServeConfig {
    /// The body limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        (self
            .max_body_kb
            .unwrap_or(DEFAULT_MAX_BODY_KB)
            .min(HARD_MAX_BODY_KB)
            * 1024) as usize
    }

    /// The header timeout.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.header_timeout_ms.unwrap_or(DEFAULT_HEADER_TIMEOUT_MS),
        )
    }

    /// The body timeout.
    pub fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_timeout_ms.unwrap_or(DEFAULT_BODY_TIMEOUT_MS))
    }

    /// Whether a request naming `host` (the Host header, with or without a port) is answered.
    pub fn allows_host(&self, host: &str) -> bool {
        let name = host_name(host);
        LOOPBACK_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(name))
            || self
                .allowed_hosts
                .iter()
                .any(|h| h == "*" || h.eq_ignore_ascii_case(name))
    }

    /// Whether a browser page at `origin` (`scheme://host[:port]`) may call this server: its
    /// host must be one the server answers to. `null` (a sandboxed or local page) may not.
    pub fn allows_origin(&self, origin: &str) -> bool {
        let Some(rest) = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
        else {
            return false;
        };
        !rest.is_empty() && !rest.contains('/') && self.allows_host(rest)
    }

    /// Reports values out of range and names that cannot be Host names.
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if let Some(listen) = &self.listen
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push(ConfigProblem {
                key: "serve.listen".into(),
                message: format!(
                    "`{}` is not IP:PORT; write e.g. \"127.0.0.1:8420\", or \"0.0.0.0:8420\" \
                     to listen on every interface",
                    listen.escape_debug()
                ),
            });
        }
        if let Some(kb) = self.max_body_kb
            && !(1..=HARD_MAX_BODY_KB).contains(&kb)
        {
            problems.push(ConfigProblem {
                key: "serve.max_body_kb".into(),
                message: format!("is {kb}; write 1 to {HARD_MAX_BODY_KB} (KiB)"),
            });
        }
        for (key, value) in [
            ("serve.header_timeout_ms", self.header_timeout_ms),
            ("serve.body_timeout_ms", self.body_timeout_ms),
        ] {
            if let Some(ms) = value
                && !(100..=600_000).contains(&ms)
            {
                problems.push(ConfigProblem {
                    key: key.into(),
                    message: format!("is {ms}; write 100 to 600000 (milliseconds)"),
                });
            }
        }
        for host in &self.allowed_hosts {
            let valid = host == "*"
                || (!host.is_empty()
                    && host.len() <= 253
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c)));
            if !valid {
                problems.push(ConfigProblem {
                    key: "serve.allowed_hosts".into(),
                    message: format!(
                        "`{}` is not a host name; write names like \"warden.internal\", \
                         without a scheme or port",
                        host.escape_debug()
                    ),
                });
            }
        }
    }
}

/// The name part of a Host header: `[::1]:8420` → `[::1]`, `example.com:80` → `example.com`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_are_allowed_with_or_without_a_port() {
        let serve = ServeConfig::default();
        for host in [
            "localhost",
            "LOCALHOST:8420",
            "127.0.0.1:1",
            "[::1]:8420",
            "[::1]",
        ] {
            assert!(serve.allows_host(host), "{host}");
        }
    }

    #[test]
    fn other_names_need_configuring() {
        let mut serve = ServeConfig::default();
        for host in [
            "evil.example",
            "127.0.0.2",
            "localhost.evil.example",
            "",
            "[::2]",
        ] {
            assert!(!serve.allows_host(host), "{host}");
        }
        serve.allowed_hosts = vec!["warden.internal".into()];
        assert!(serve.allows_host("warden.internal:443"));
        assert!(!serve.allows_host("evil.example"));
    }

    #[test]
    fn bad_values_are_reported_with_their_key() {
        let serve = ServeConfig {
            listen: Some("localhost".into()),
            max_body_kb: Some(0),
            header_timeout_ms: Some(1),
            allowed_hosts: vec!["http://x".into()],
            ..ServeConfig::default()
        };
        let mut problems = Vec::new();
        serve.check(&mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "serve.listen",
                "serve.max_body_kb",
                "serve.header_timeout_ms",
                "serve.allowed_hosts"
            ]
        );
    }
}
