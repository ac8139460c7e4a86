//! Outbound HTTP for `http` sources, through `wasi:http/outgoing-handler`.
//!
//! The three steps of a capability:
//! - **link** ([`link`]): `wasi:http/types` and `wasi:http/outgoing-handler`, nothing else (a
//!   plugin cannot serve HTTP).
//! - **configure** ([`HttpSources::configure`]): each source's allowlist is parsed
//!   ([`AllowPattern`]), its `env:NAME` header values are read from the host's environment, and
//!   its limits are fixed.
//! - **per call** ([`CallHttp`]): a `wasi:http` context whose one choke point, the `send_request`
//!   hook (see [`send`]), checks every request against the call's granted sources, adds the
//!   source's headers, resolves and checks the address, sends it, limits the response and writes
//!   the audit record. No other path leads out: the crate's own sender is not compiled in.
//!
//! Redirects are never followed by the host. A plugin sees the 3xx, and its follow-up request is
//! checked like any other.

mod address;
mod allowlist;
mod send;

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use wasmtime::component::Linker;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use address::AddressClass;
pub use allowlist::{AllowPattern, RequestTarget, Scheme};

use crate::config::{SourceKind, WardenConfig};
use crate::policy::CallRights;
use crate::sandbox::CallState;

/// The largest response body a source returns unless its `max_bytes` says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 20;
/// How long one request (connect, response and body) may take unless the source's
/// `timeout_ms` says otherwise. Below the default call limit, so a hung server ends as an HTTP
/// timeout the plugin can report, not as a killed call.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// One configured `http` source.
#[derive(Debug)]
pub struct HttpSource {
    /// The source's name in the config.
    pub name: String,
    /// The URLs it allows.
    pub allow: Vec<AllowPattern>,
    /// Headers the host adds to every request through this source, values already resolved.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether names may resolve to loopback, private or link-local addresses.
    pub allow_private_addresses: bool,
    /// The largest response body.
    pub max_bytes: u64,
    /// The deadline of one request.
    pub timeout: Duration,
}

impl HttpSource {
    fn configure(name: &str, config: &crate::config::SourceConfig) -> Result<HttpSource, String> {
        let key = format!("sources.{name}");
        let allow = config
            .allow
            .iter()
            .enumerate()
            .map(|(i, p)| AllowPattern::parse(p).map_err(|e| format!("{key}.allow[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut headers = Vec::with_capacity(config.headers.len());
        for (header, value) in &config.headers {
            let at = format!("{key}.headers.{header}");
            let name = HeaderName::try_from(header.as_str())
                .map_err(|_| format!("{at}: `{header}` is not a valid header name"))?;
            let text = match value.strip_prefix("env:") {
                Some(var) => std::env::var(var)
                    .map_err(|_| format!("{at}: the environment variable `{var}` is not set"))?,
                None => value.clone(),
            };
            let mut value = HeaderValue::try_from(text)
                .map_err(|_| format!("{at}: the value is not a valid header value"))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        Ok(HttpSource {
            name: name.to_string(),
            allow,
            headers,
            allow_private_addresses: config.allow_private_addresses,
            max_bytes: config.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
            timeout: Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1)),
        })
    }

    /// The most specific of this source's patterns that allows `target`.
    fn best_match(&self, target: &RequestTarget) -> Option<&AllowPattern> {
        self.allow
            .iter()
            .filter(|p| p.allows(target))
            .max_by_key(|p| p.specificity())
    }
}

/// Every configured `http` source, by name.
#[derive(Debug, Default)]
pub struct HttpSources {
    sources: Vec<HttpSource>,
}

impl HttpSources {
    /// Prepares the configured `http` sources: parses their allowlists and reads their header
    /// values from the environment, so a plugin's request never touches the environment.
    pub fn configure(config: &WardenConfig) -> Result<HttpSources, String> {
        let sources = config
            .sources
            .iter()
            .filter(|(_, s)| s.kind == SourceKind::Http)
            .map(|(name, s)| HttpSource::configure(name, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpSources { sources })
    }

    /// The granted source a request to `target` goes through: among the sources whose allowlist
    /// allows it and that `rights` grant, the one with the most specific pattern. The error is
    /// the denial, naming the grant or allowlist entry an operator would add.
    pub fn route(
        &self,
        target: &RequestTarget,
        url: &str,
        rights: &CallRights,
    ) -> Result<&HttpSource, String> {
        let matching: Vec<(&HttpSource, &AllowPattern)> = self
            .sources
            .iter()
            .filter_map(|s| s.best_match(target).map(|p| (s, p)))
            .collect();
        let granted = matching
            .iter()
            .filter(|(s, _)| rights.check_http(&s.name).is_ok())
            .max_by_key(|(_, p)| p.specificity());
        if let Some((source, _)) = granted {
            return Ok(source);
        }
        if let Some((source, pattern)) = matching.first() {
            let denial = rights.check_http(&source.name).err().unwrap_or_default();
            return Err(format!(
                "`{url}` is allowed by `{pattern}` of sources.{}.allow, but {denial}",
                source.name
            ));
        }
        let suggestion = suggest_pattern(target);
        let granted: Vec<&HttpSource> = self
            .sources
            .iter()
            .filter(|s| rights.check_http(&s.name).is_ok())
            .collect();
        match granted.as_slice() {
            [] => Err(format!(
                "`{url}` is on no http source's allowlist, and this call is granted no http source; an operator \
                 allows it with an http source whose `allow` includes \"{suggestion}\", granted to the agent and \
                 in the plugin's max"
            )),
            granted => {
                let listed: Vec<String> = granted
                    .iter()
                    .map(|s| {
                        let patterns: Vec<String> =
                            s.allow.iter().map(|p| format!("\"{p}\"")).collect();
                        format!("`{}` allows {}", s.name, patterns.join(", "))
                    })
                    .collect();
                Err(format!(
                    "`{url}` is on the allowlist of none of this call's http sources ({}); an operator allows it \
                     by adding \"{suggestion}\" to sources.{}.allow",
                    listed.join("; "),
                    granted[0].name
                ))
            }
        }
    }
}

/// The narrowest pattern worth suggesting for `target`: its host, and its first path segment.
fn suggest_pattern(target: &RequestTarget) -> String {
    let port = if target.port == target.scheme.default_port() {
        String::new()
    } else {
        format!(":{}", target.port)
    };
    let host = match target.ip() {
        Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => target.host.clone(),
    };
    let first = target
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    let under = if first.is_empty() {
        String::new()
    } else {
        format!("/{first}")
    };
    format!("{}://{host}{port}{under}/*", target.scheme)
}

/// Checks one allowlist pattern, e.g. `https://api.example.com/v2/*`; the error says what is
/// wrong and what to write.
pub fn parse_allow_pattern(pattern: &str) -> Result<AllowPattern, String> {
    AllowPattern::parse(pattern)
}

/// The `wasi:http` state of one call: the context, and the gate every request passes, made
/// on first use so a call that sends nothing pays nothing.
#[derive(Default)]
pub struct CallHttp {
    ctx: WasiHttpCtx,
    gate: Option<send::OutboundGate>,
}

impl CallHttp {
    /// A fresh state: no request sent yet.
    pub fn new() -> CallHttp {
        CallHttp::default()
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let gate = self.http.gate.get_or_insert_with(|| {
            send::OutboundGate::new(&self.grants, &self.identity, &self.plugin, &self.tool)
        });
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: gate,
        }
    }
}

/// Links `wasi:http` (outgoing only): `types` and `outgoing-handler`.
pub(crate) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    fn config() -> Arc<WardenConfig> {
        let text = r#"
            [plugins.http-get]
            path = "Cargo.toml"
            max = ["http:*"]
            [sources.tickets]
            kind = "http"
            allow = ["https://api.example.com/v2/*"]
            [sources.tickets-admin]
            kind = "http"
            allow = ["https://api.example.com/v2/admin/*"]
            [sources.wiki]
            kind = "http"
            allow = ["https://*.wiki.example.com/*"]
            [agents.support]
            grants = ["tickets", "tickets-admin"]
            [agents.nobody]
        "#;
        Arc::new(WardenConfig::parse(text, Path::new(env!("CARGO_MANIFEST_DIR"))).expect("config"))
    }

    fn route(agent: &str, url: &str) -> Result<String, String> {
        let config = config();
        let sources = HttpSources::configure(&config).expect("sources");
        let rights = CallRights::for_call(&config, "http-get", agent);
        let target = RequestTarget::from_uri(&url.parse().unwrap()).unwrap();
        sources.route(&target, url, &rights).map(|s| s.name.clone())
    }

    #[test]
    fn allowed_goes_through_the_granted_source() {
        assert_eq!(
            route("support", "https://api.example.com/v2/tickets"),
            Ok("tickets".into())
        );
    }

    #[test]
    fn the_most_specific_granted_pattern_wins() {
        assert_eq!(
            route("support", "https://api.example.com/v2/admin/x"),
            Ok("tickets-admin".into())
        );
    }

    #[test]
    fn not_granted_names_the_grant() {
        let err = route("support", "https://docs.wiki.example.com/page").unwrap_err();
        assert!(
            err.contains("sources.wiki.allow") && err.contains("\"wiki\""),
            "{err}"
        );
    }

    #[test]
    fn not_on_any_allowlist_names_the_pattern_to_add() {
        let err = route("support", "https://api.example.com/v3/x").unwrap_err();
        assert!(
            err.contains("\"https://api.example.com/v3/*\"") && err.contains("sources.tickets"),
            "{err}"
        );
    }

    #[test]
    fn no_http_grant_refuses_everything() {
        let err = route("nobody", "https://api.example.com/v2/tickets").unwrap_err();
        assert!(err.contains("not granted"), "{err}");
        let err = route("nobody", "https://elsewhere.example.org/").unwrap_err();
        assert!(err.contains("granted no http source"), "{err}");
    }

    fn source(text: &str) -> Result<HttpSource, String> {
        let config: crate::config::SourceConfig = toml::from_str(text).expect("source config");
        HttpSource::configure("api", &config)
    }

    #[test]
    fn header_values_are_read_from_the_environment_at_configure_time() {
        let api = source(
            r#"
            kind = "http"
            allow = ["https://api.example.com/*"]
            headers = { Authorization = "env:PATH", X-Team = "support" }
            "#,
        )
        .expect("configured");
        let path = std::env::var("PATH").expect("PATH is set");
        let authorization = &api
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert_eq!(authorization.to_str().unwrap(), path);
        assert!(authorization.is_sensitive());
        let team = &api.headers.iter().find(|(n, _)| n == "x-team").unwrap().1;
        assert_eq!(team, "support");
    }

    #[test]
    fn a_missing_header_variable_names_its_key() {
        let err = source(
            r#"
            kind = "http"
            allow = ["https://api.example.com/*"]
            headers = { Authorization = "env:WARDEN_HTTP_UNIT_UNSET_VAR" }
            "#,
        )
        .unwrap_err();
        assert!(
            err.contains("sources.api.headers.Authorization")
                && err.contains("WARDEN_HTTP_UNIT_UNSET_VAR"),
            "{err}"
        );
    }

    #[test]
    fn limits_have_defaults() {
        let api = source(
            r#"
            kind = "http"
            allow = ["https://api.example.com/*"]
            "#,
        )
        .expect("configured");
        assert_eq!(api.max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(api.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert!(!api.allow_private_addresses);
    }
}
