//! Outbound HTTP for `http` sources, through `wasi:http/outgoing-handler`.
//!
//! The three steps of a capability:
//! - **link** ([`link`]): `wasi:http/types` and `wasi:http/outgoing-handler`, nothing else (a
//!   plugin cannot serve HTTP).
//! - **configure** ([`HttpSources::configure`]): each source's allowlist is parsed
//!   ([`AllowPattern`]), its `env:NAME` header values are read from the host's environment, and
//!   its limits are fixed. `warden config check` runs this same step, so it refuses whatever
//!   start-up would, each problem at its key.
//! - **per call** ([`CallHttp`]): a `wasi:http` context whose one choke point, the `send_request`
//!   hook (see [`send`]), checks every request against the call's granted sources, adds the
//!   source's headers, resolves and checks the address, sends it, limits the response and writes
//!   the audit record. No other path leads out: the crate's own sender is not compiled in.
//!
//! Redirects are never followed by the host. A plugin sees the 3xx, and its follow-up request is
//! checked like any other.
//!
//! For fuzzing and property tests, the pure checks are public: [`parse_allow_pattern`],
//! [`url_allowed`], [`has_dot_segments`] and [`AddressClass::of`].

mod address;
mod allowlist;
mod send;

pub(crate) use send::OUTGOING_BODY_CHUNK;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use wasmtime::component::Linker;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use address::AddressClass;
pub use allowlist::{AllowPattern, RequestTarget, Scheme, has_dot_segments};

use crate::capabilities::AuditFailure;
use crate::config::{ConfigProblem, ConfigProblems, HttpSourceConfig, SourceConfig, WardenConfig};
use crate::policy::CallRights;
use crate::sandbox::CallState;

/// The largest response body a source returns unless its `max_bytes` says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 20;
/// How long one request (connect, response and body) may take unless the source's
/// `timeout_ms` says otherwise. Below the default call limit, so a hung server ends as an HTTP
/// timeout the plugin can report, not as a killed call.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The methods a source sends unless its `methods` says otherwise: reads only.
pub const DEFAULT_METHODS: [&str; 2] = ["GET", "HEAD"];
/// The most requests one call may send through one source unless its `max_requests` says
/// otherwise. Each request holds host memory (a connection, buffers) and carries the source's
/// credentials, so a call cannot loop on them without bound.
pub const DEFAULT_MAX_REQUESTS: u32 = 100;
/// Injected values shorter than this are not redacted from responses: a short value would
/// redact ordinary text and protect nothing.
const MIN_REDACTED_LEN: usize = 6;

/// Request headers a plugin may not send: proxies and frameworks read them to reroute a request
/// (to another path, method or host) after the allowlist has checked it. `Host` is checked
/// separately: it may only name the target.
const REROUTING_HEADERS: [&str; 9] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "x-host",
    "x-real-ip",
    "x-proxyuser-ip",
];

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
    /// The methods this source sends.
    pub methods: Vec<Method>,
    /// The most requests one call sends through this source.
    pub max_requests: u32,
    /// The values of the headers read from the environment (and their token after an
    /// `Authorization` scheme such as `Bearer`): redacted from every response a plugin gets.
    secrets: Arc<[Vec<u8>]>,
}

impl HttpSource {
    /// Prepares one source; every problem is added to `problems`, each at its key.
    fn configure(
        name: &str,
        config: &HttpSourceConfig,
        problems: &mut Vec<ConfigProblem>,
    ) -> Option<HttpSource> {
        let key = format!("sources.{name}");
        let before = problems.len();
        let mut problem =
            |key: String, message: String| problems.push(ConfigProblem { key, message });
        if config.allow.is_empty() {
            problem(
                format!("{key}.allow"),
                "an http source needs `allow`, e.g. [\"https://api.example.com/v2/*\"]".into(),
            );
        }
        let mut allow = Vec::with_capacity(config.allow.len());
        for (i, pattern) in config.allow.iter().enumerate() {
            match AllowPattern::parse(pattern) {
                Ok(p) => allow.push(p),
                Err(e) => problem(format!("{key}.allow[{i}]"), e),
            }
        }
        let mut headers = Vec::with_capacity(config.headers.len());
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        for (header, value) in &config.headers {
            let at = format!("{key}.headers.{header}");
            let Ok(name) = HeaderName::try_from(header.as_str()) else {
                problem(at, format!("`{header}` is not a valid header name"));
                continue;
            };
            let (text, from_env) = match value.strip_prefix("env:") {
                Some(var) => match std::env::var(var) {
                    Ok(text) => (text, true),
                    Err(_) => {
                        problem(at, format!("the environment variable `{var}` is not set"));
                        continue;
                    }
                },
                None => (value.clone(), false),
            };
            let Ok(mut value) = HeaderValue::try_from(text.as_str()) else {
                // Never the value itself: it may be a secret.
                problem(
                    at,
                    if from_env {
                        "the value of its environment variable is not a valid header value (a \
                         line break or another control character?)"
                            .into()
                    } else {
                        "the value is not a valid header value".into()
                    },
                );
                continue;
            };
            if from_env {
                secrets.extend(secret_parts(&text));
            }
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let methods = parse_methods(config.methods.as_deref())
            .map_err(|e| problem(format!("{key}.methods"), e))
            .unwrap_or_default();
        let max_requests = check_max_requests(config.max_requests)
            .map_err(|e| problem(format!("{key}.max_requests"), e))
            .unwrap_or_default();
        if problems.len() > before {
            return None;
        }
        Some(HttpSource {
            name: name.to_string(),
            allow,
            headers,
            allow_private_addresses: config.allow_private_addresses,
            max_bytes: config.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
            timeout: Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1)),
            methods,
            max_requests,
            secrets: secrets.into(),
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

/// Every configured `http` source, by name, and the resolver their host names are looked up
/// with.
#[derive(Debug, Default)]
pub struct HttpSources {
    sources: Vec<HttpSource>,
    resolver: Resolver,
}

impl HttpSources {
    /// Prepares the configured `http` sources: parses their allowlists and reads their header
    /// values from the environment, so a plugin's request never touches the environment. The
    /// problems are every one found, each at its key.
    pub fn configure(config: &WardenConfig) -> Result<HttpSources, ConfigProblems> {
        let mut problems = Vec::new();
        let sources: Vec<HttpSource> = config
            .sources
            .iter()
            .filter_map(|(name, s)| match s {
                SourceConfig::Http(http) => HttpSource::configure(name, http, &mut problems),
                _ => None,
            })
            .collect();
        if !problems.is_empty() {
            return Err(ConfigProblems(problems));
        }
        Ok(HttpSources {
            sources,
            resolver: Resolver::default(),
        })
    }

    /// Looks host names up with `resolver` instead of the system's: the seam a test uses to
    /// answer differently on a second lookup (DNS rebinding).
    pub fn set_resolver(&mut self, resolver: Arc<dyn Resolve>) {
        self.resolver = Resolver(resolver);
    }

    /// The resolver host names are looked up with.
    pub(crate) fn resolver(&self) -> &Arc<dyn Resolve> {
        &self.resolver.0
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
            let denial = rights
                .check_http(&source.name)
                .err()
                .map(|d| d.to_string())
                .unwrap_or_default();
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

/// What a host name lookup returns: the socket addresses of `host` on `port`.
pub type Lookup<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Looks host names up for outbound HTTP. The host looks each name up once per request, checks
/// every address, and connects only to those.
pub trait Resolve: Send + Sync {
    /// The addresses of `host` on `port`.
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a>;
}

/// The system's resolver (`getaddrinfo` through tokio).
struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The resolver of [`HttpSources`]: the system's unless a test swaps it.
struct Resolver(Arc<dyn Resolve>);

impl Default for Resolver {
    fn default() -> Self {
        Resolver(Arc::new(SystemResolver))
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

/// The parts of an injected header value that must never reach a plugin: the value, and the
/// token after an auth scheme (`Bearer TOKEN`), which an upstream may echo on its own.
fn secret_parts(value: &str) -> Vec<Vec<u8>> {
    let mut parts = vec![value.as_bytes().to_vec()];
    if let Some((_, token)) = value.trim().split_once(' ') {
        parts.push(token.trim().as_bytes().to_vec());
    }
    parts.retain(|p| p.len() >= MIN_REDACTED_LEN);
    parts
}

/// Checks a source's `methods` list (default [`DEFAULT_METHODS`]); the error says what to write.
pub fn parse_methods(methods: Option<&[String]>) -> Result<Vec<Method>, String> {
    let Some(methods) = methods else {
        return Ok(DEFAULT_METHODS
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).expect("a standard method"))
            .collect());
    };
    if methods.is_empty() {
        return Err(
            "the list is empty, so the source could send nothing; list the methods it may send, \
             e.g. [\"GET\", \"POST\"], or remove the key for the default (GET and HEAD)"
                .to_string(),
        );
    }
    methods
        .iter()
        .map(|m| {
            let upper = m.trim().to_ascii_uppercase();
            match upper.as_str() {
                "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
                    Ok(Method::from_bytes(upper.as_bytes()).expect("a standard method"))
                }
                _ => Err(format!(
                    "`{m}` is not a method a source may send; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS \
                     (TRACE and CONNECT are never sent)"
                )),
            }
        })
        .collect()
}

/// Checks a source's `max_requests` (default [`DEFAULT_MAX_REQUESTS`]).
pub fn check_max_requests(max: Option<u32>) -> Result<u32, String> {
    match max {
        None => Ok(DEFAULT_MAX_REQUESTS),
        Some(0) => Err(
            "0 would refuse every request; remove the source's grant instead, or set 1 or more"
                .into(),
        ),
        Some(n) => Ok(n),
    }
}

/// The first header of a request that could reroute it past the allowlist, and why.
fn rerouting_header(headers: &HeaderMap, target: &RequestTarget) -> Option<String> {
    for name in headers.keys() {
        let lower = name.as_str();
        if REROUTING_HEADERS.contains(&lower) || lower.starts_with("x-forwarded-") {
            return Some(format!(
                "it sets `{lower}`, which proxies and frameworks read to reroute a request after the allowlist \
                 checked it; the plugin must not send it"
            ));
        }
    }
    for value in headers.get_all(http::header::HOST) {
        let host = value
            .to_str()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let bare = match target.ip() {
            Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => target.host.clone(),
        };
        let same = host == target.authority()
            || (target.port == target.scheme.default_port() && host == bare);
        if !same {
            return Some(format!(
                "its `Host` header names `{host}`, not the URL's `{}`; the host sets `Host` from the URL, \
                 the plugin must not",
                target.authority()
            ));
        }
    }
    None
}

/// Whether `pattern` allows `url`, as the host checks a plugin's request: `Err` when the URL
/// cannot be sent at all, `Ok(false)` when the pattern does not allow it (or its path has dot
/// segments). Pure: for fuzzing and property tests.
pub fn url_allowed(pattern: &AllowPattern, url: &str) -> Result<bool, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let target = RequestTarget::from_uri(&uri)?;
    Ok(!has_dot_segments(&target.path) && pattern.allows(&target))
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
    /// The first of this call's HTTP audit records that could not be committed. The requests run
    /// on tasks of their own, so they report here, and the call's state takes it over.
    audit_failure: Arc<OnceLock<AuditFailure>>,
}

impl CallHttp {
    /// A fresh state: no request sent yet.
    pub fn new() -> CallHttp {
        CallHttp::default()
    }

    /// The first HTTP audit record of this call that could not be committed, if any.
    pub fn audit_failure(&self) -> Option<&AuditFailure> {
        self.audit_failure.get()
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // Every `wasi:http` call passes here: the one place a plugin can grow what the host
        // holds for it in headers and bodies, so the place to charge it.
        self.account_host_resources();
        let gate = self.http.gate.get_or_insert_with(|| {
            send::OutboundGate::new(
                &self.grants,
                &self.identity,
                &self.plugin,
                &self.tool,
                self.http.audit_failure.clone(),
            )
        });
        WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: self.resources.table(&mut self.table),
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

    /// The source configured from `text`, or its problems, one `key: message` a line.
    fn source(text: &str) -> Result<HttpSource, String> {
        let config: SourceConfig = toml::from_str(text).expect("source config");
        let SourceConfig::Http(config) = config else {
            panic!("not an http source: {text}");
        };
        let mut problems = Vec::new();
        HttpSource::configure("api", &config, &mut problems).ok_or_else(|| {
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            lines.join("\n")
        })
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
    fn methods_default_to_get_and_head_and_are_checked() {
        let api = source(
            r#"
            kind = "http"
            allow = ["https://api.example.com/*"]
            "#,
        )
        .expect("configured");
        assert_eq!(api.methods, [Method::GET, Method::HEAD]);
        assert_eq!(api.max_requests, DEFAULT_MAX_REQUESTS);
        let listed = parse_methods(Some(&["get".into(), "DELETE".into()])).unwrap();
        assert_eq!(listed, [Method::GET, Method::DELETE]);
        for bad in ["TRACE", "CONNECT", "BREW"] {
            let err = parse_methods(Some(&[bad.into()])).unwrap_err();
            assert!(
                err.contains(&format!("`{bad}`")) && err.contains("GET, HEAD, POST"),
                "{err}"
            );
        }
        let err = source(
            r#"
            kind = "http"
            allow = ["https://api.example.com/*"]
            methods = []
            "#,
        )
        .unwrap_err();
        assert!(
            err.starts_with("sources.api.methods: the list is empty"),
            "{err}"
        );
        let err = check_max_requests(Some(0)).unwrap_err();
        assert!(err.contains("set 1 or more"), "{err}");
    }

    #[test]
    fn rerouting_headers_and_a_foreign_host_are_spotted() {
        let target =
            RequestTarget::from_uri(&"https://api.example.com/v2/x".parse().unwrap()).unwrap();
        let with = |name: &str, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::try_from(name).unwrap(),
                HeaderValue::try_from(value).unwrap(),
            );
            rerouting_header(&headers, &target)
        };
        for name in [
            "X-Original-URL",
            "X-Rewrite-URL",
            "X-HTTP-Method-Override",
            "X-HTTP-Method",
            "X-Method-Override",
            "X-Forwarded-For",
            "X-Forwarded-Host",
            "Forwarded",
        ] {
            let why = with(name, "x").unwrap_or_else(|| panic!("{name} passed"));
            assert!(why.contains(&name.to_ascii_lowercase()), "{why}");
        }
        assert!(with("Host", "admin.internal").is_some());
        assert!(with("Host", "api.example.com:8443").is_some());
        assert_eq!(with("Host", "api.example.com"), None);
        assert_eq!(with("Host", "API.example.com:443"), None);
        assert_eq!(with("Accept", "text/plain"), None);
        assert_eq!(with("X-Request-Id", "1"), None);
    }

    #[test]
    fn injected_values_and_their_tokens_are_secrets() {
        let parts = secret_parts("Bearer s3cret-token");
        assert_eq!(
            parts,
            [b"Bearer s3cret-token".to_vec(), b"s3cret-token".to_vec()]
        );
        assert!(
            secret_parts("abc").is_empty(),
            "too short to redact usefully"
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
