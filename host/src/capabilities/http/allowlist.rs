//! The allowlist of an `http` source: typed URL patterns (scheme, host with a leading `*.`
//! wildcard, port, path prefix) and the request targets they are matched against.
//!
//! A pattern is written like the URLs it allows: `https://api.example.com/v2/*` allows any path
//! under `/v2` on port 443 of that one host, over HTTPS only. Matching is on parsed parts, never
//! on text, so `/v2` does not let `/v20` through and `api.example.com.evil.net` is not
//! `api.example.com`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// What a pattern's error message suggests writing instead.
const EXAMPLE: &str = "write e.g. \"https://api.example.com/v2/*\" or \"https://*.example.com/*\"";

/// `http` or `https`: the only schemes outbound HTTP speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    /// The port a URL of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// Which hosts a pattern allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: every host (the address checks still apply).
    Any,
    /// `*.example.com`: every name below `example.com`, not `example.com` itself. Holds
    /// `.example.com`.
    Subdomains(String),
    /// One host name or IP address, in canonical form.
    Exact(String),
}

/// Which paths a pattern allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPattern {
    /// No path, `/` or `/*`: every path.
    Any,
    /// `/v2/*`: `/v2` and everything below it. Holds `/v2`.
    Under(String),
    /// `/v2/status`: that path only.
    Exact(String),
}

/// One parsed entry of a source's `allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowPattern {
    original: String,
    scheme: Scheme,
    host: HostPattern,
    /// `None` for `:*`, any port.
    port: Option<u16>,
    path: PathPattern,
}

impl fmt::Display for AllowPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl AllowPattern {
    /// Parses one pattern; the error says what is wrong and how to write it.
    pub fn parse(pattern: &str) -> Result<AllowPattern, String> {
        let fail =
            |why: &str| format!("`{pattern}` is not an allowed URL pattern: {why}; {EXAMPLE}");
        let text = pattern.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let Some((scheme_text, rest)) = text.split_once("://") else {
            return Err(fail(
                "it has no scheme; begin it with `https://` (or `http://`)",
            ));
        };
        let scheme =
            Scheme::parse(scheme_text).ok_or_else(|| fail("the scheme must be http or https"))?;
        if rest.contains(['?', '#']) {
            return Err(fail(
                "it has a query or a fragment; a pattern matches the scheme, host, port and path only",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(fail(
                "it names a user; credentials belong in the source's `headers`, which the host adds",
            ));
        }
        let (host_text, port_text) = split_host_port(authority).map_err(|why| fail(&why))?;
        let host = parse_host_pattern(host_text).map_err(|why| fail(&why))?;
        let port = match port_text {
            None => Some(scheme.default_port()),
            Some("*") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(fail(&format!(
                        "the port `{p}` is not a number from 1 to 65535 (or `*`)"
                    )));
                }
            },
        };
        let path = parse_path_pattern(path).map_err(|why| fail(&why))?;
        Ok(AllowPattern {
            original: text.to_string(),
            scheme,
            host,
            port,
            path,
        })
    }

    /// Does this pattern allow `target`?
    pub fn allows(&self, target: &RequestTarget) -> bool {
        let host = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => {
                target.host.len() > suffix.len() && target.host.ends_with(suffix.as_str())
            }
            HostPattern::Exact(host) => *host == target.host,
        };
        let path = match &self.path {
            PathPattern::Any => true,
            PathPattern::Under(prefix) => {
                target.path == *prefix
                    || target
                        .path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            PathPattern::Exact(exact) => target.path == *exact,
        };
        self.scheme == target.scheme && host && self.port.is_none_or(|p| p == target.port) && path
    }

    /// How narrowly this pattern names its targets: when several granted sources allow one URL,
    /// the most specific pattern's source is used (its headers, its limits).
    pub fn specificity(&self) -> (u8, usize, u8) {
        let host = match &self.host {
            HostPattern::Any => 0,
            HostPattern::Subdomains(_) => 1,
            HostPattern::Exact(_) => 2,
        };
        let path = match &self.path {
            PathPattern::Any => 0,
            PathPattern::Under(p) | PathPattern::Exact(p) => p.len(),
        };
        (host, path, u8::from(self.port.is_some()))
    }
}

/// Splits `host[:port]` (with `[v6]` hosts).
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err("an IPv6 host needs its closing `]`, as in `http://[::1]:8080/*`".into());
        };
        return match after {
            "" => Ok((v6, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((v6, Some(port))),
                None => Err(format!("`{after}` after the IPv6 host is not a port")),
            },
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_host_pattern(host: &str) -> Result<HostPattern, String> {
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(
                "a host may hold one wildcard only, as its whole first label (`*.example.com`)"
                    .into(),
            );
        }
        let domain = canonical_name(domain)?;
        if !domain.contains('.') {
            return Err(format!(
                "`*.{domain}` would allow every name under a top-level domain; name the organisation's domain"
            ));
        }
        return Ok(HostPattern::Subdomains(format!(".{domain}")));
    }
    if host.contains('*') {
        return Err(
            "a wildcard in the host must be its whole first label, as in `*.example.com`".into(),
        );
    }
    canonical_host(host).map(HostPattern::Exact)
}

fn parse_path_pattern(path: &str) -> Result<PathPattern, String> {
    if path.is_empty() || path == "/" || path == "/*" {
        return Ok(PathPattern::Any);
    }
    let (fixed, under) = match path.strip_suffix("/*") {
        Some(fixed) => (fixed, true),
        None => (path, false),
    };
    if fixed.contains('*') {
        return Err(
            "a wildcard in the path must be the last segment, after a slash, as in `/v2/*`".into(),
        );
    }
    if has_dot_segments(fixed) {
        return Err("the path has `.` or `..` segments; write the path they resolve to".into());
    }
    Ok(if under {
        PathPattern::Under(fixed.to_string())
    } else {
        PathPattern::Exact(fixed.to_string())
    })
}

/// A host name or IP address as allowlists compare it: lower case, no trailing dot, IPv6
/// without brackets in its canonical form.
fn canonical_host(host: &str) -> Result<String, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if bare.contains(':') {
        return Err(format!("`{host}` is not a host name or an IP address"));
    }
    canonical_name(bare)
}

fn canonical_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "`{name}` is not a valid host name (letters, digits, `-` and dots; international names in their `xn--` form)"
        ))
    }
}

/// Whether a path holds a `.` or `..` segment, as the path is written or decoded once or twice
/// (`%2e%2e`, `%252e%252e`), with or without `;` parameters (`..;`, which Tomcat and Spring read
/// as `..`), behind a back slash, or cut short by a NUL: servers and the proxies in front of them
/// resolve those, so `/v2/..;/admin` would leave the allowed prefix.
pub fn has_dot_segments(path: &str) -> bool {
    let once = percent_decode(path);
    let twice = percent_decode(&once);
    [path, once.as_str(), twice.as_str()].iter().any(|text| {
        text.split(['/', '\\']).any(|segment| {
            let bare = segment.split([';', '\0']).next().unwrap_or_default();
            bare == "." || bare == ".."
        })
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parts of an outgoing request an allowlist looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    /// The scheme.
    pub scheme: Scheme,
    /// The host in canonical form (see [`AllowPattern`]).
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The path, without the query; `/` when empty.
    pub path: String,
}

impl RequestTarget {
    /// Reads a request's URI; the error says why it cannot be sent.
    pub fn from_uri(uri: &http::Uri) -> Result<RequestTarget, String> {
        let scheme = uri
            .scheme_str()
            .and_then(Scheme::parse)
            .ok_or_else(|| "the URL's scheme is not http or https".to_string())?;
        let authority = uri
            .authority()
            .ok_or_else(|| "the URL has no host".to_string())?;
        if authority.as_str().contains('@') {
            return Err(
                "the URL names a user; credentials come from the source's configured headers"
                    .into(),
            );
        }
        let host = canonical_host(authority.host())?;
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        let path = match uri.path() {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(RequestTarget {
            scheme,
            host,
            port,
            path,
        })
    }

    /// The host as an IP address, when the URL names one rather than a name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `host:port` as written in messages (IPv6 in brackets).
    pub fn authority(&self) -> String {
        match self.host.parse::<Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]:{}", self.port),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> RequestTarget {
        RequestTarget::from_uri(&url.parse().expect("uri")).expect("target")
    }

    fn allows(pattern: &str, url: &str) -> bool {
        AllowPattern::parse(pattern)
            .expect("pattern")
            .allows(&target(url))
    }

    #[test]
    fn allows_the_urls_it_names() {
        assert!(allows(
            "https://api.example.com/v2/*",
            "https://api.example.com/v2/tickets?page=2"
        ));
        assert!(allows(
            "https://api.example.com/v2/*",
            "https://API.Example.com:443/v2"
        ));
        assert!(allows(
            "https://api.example.com",
            "https://api.example.com/anything"
        ));
        assert!(allows(
            "https://api.example.com/status",
            "https://api.example.com/status"
        ));
        assert!(allows("http://127.0.0.1:8080/*", "http://127.0.0.1:8080/x"));
        assert!(allows("http://[::1]:8080/*", "http://[::1]:8080/x"));
    }

    #[test]
    fn refuses_a_host_that_does_not_match() {
        assert!(!allows("https://api.example.com/*", "https://example.com/"));
        assert!(!allows(
            "https://api.example.com/*",
            "https://api.example.com.evil.net/"
        ));
        assert!(!allows(
            "https://api.example.com/*",
            "https://evilapi.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com/*",
            "http://api.example.com/"
        ));
    }

    #[test]
    fn wildcard_allows_subdomains_but_not_the_domain_itself() {
        assert!(allows("https://*.example.com/*", "https://a.example.com/"));
        assert!(allows(
            "https://*.example.com/*",
            "https://a.b.example.com/"
        ));
        assert!(!allows("https://*.example.com/*", "https://example.com/"));
        assert!(!allows(
            "https://*.example.com/*",
            "https://badexample.com/"
        ));
    }

    #[test]
    fn path_prefix_stops_at_a_segment_boundary() {
        assert!(allows(
            "https://api.example.com/v2/*",
            "https://api.example.com/v2/a/b"
        ));
        assert!(!allows(
            "https://api.example.com/v2/*",
            "https://api.example.com/v20"
        ));
        assert!(!allows(
            "https://api.example.com/v2/*",
            "https://api.example.com/v20/a"
        ));
        assert!(!allows(
            "https://api.example.com/v2/*",
            "https://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com/status",
            "https://api.example.com/status/x"
        ));
    }

    #[test]
    fn port_must_match_or_be_a_wildcard() {
        assert!(!allows(
            "https://api.example.com/*",
            "https://api.example.com:8443/"
        ));
        assert!(allows(
            "https://api.example.com:8443/*",
            "https://api.example.com:8443/"
        ));
        assert!(!allows(
            "https://api.example.com:8443/*",
            "https://api.example.com/"
        ));
        assert!(allows(
            "https://api.example.com:*/*",
            "https://api.example.com:9/"
        ));
        assert!(allows(
            "http://api.example.com/*",
            "http://api.example.com:80/"
        ));
    }

    #[test]
    fn dot_segments_are_spotted_even_encoded() {
        assert!(has_dot_segments("/v2/../admin"));
        assert!(has_dot_segments("/v2/%2e%2E/admin"));
        assert!(has_dot_segments("/v2%2f..%2fadmin"));
        assert!(has_dot_segments("/v2/..\\admin"));
        assert!(!has_dot_segments("/v2/file..txt/a.b"));
    }

    #[test]
    fn dot_segments_with_parameters_or_double_encoding_are_spotted() {
        for path in [
            "/v2/..;/admin",
            "/v2/..;jsessionid=x/admin",
            "/v2/.;/admin",
            "/v2/%252e%252e/admin",
            "/v2/%252E%252e;/admin",
            "/v2/%2e%2E/admin",
            "/v2/.%2e/admin",
            "/v2/%2e./admin",
            "/v2/%2e%2e%3b/admin",
            "/v2/..%00/admin",
            "/v2%252f..%252fadmin",
            "/v2/..",
        ] {
            assert!(has_dot_segments(path), "{path}");
        }
        for path in ["/v2/..a/b", "/v2/a;..", "/v2/%252e%252ex", "/v2/...;/b"] {
            assert!(!has_dot_segments(path), "{path}");
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong_and_how_to_write_it() {
        let cases = [
            ("ftp://x", "the scheme must be http or https"),
            ("api.example.com/v2", "no scheme"),
            ("https://", "no host"),
            ("https://api.*.com/", "whole first label"),
            ("https://*.com/*", "top-level domain"),
            ("https://api.example.com:99999/", "port `99999`"),
            ("https://api.example.com/v2*", "last segment"),
            ("https://api.example.com/v2/*?x=1", "query"),
            ("https://user:pw@api.example.com/", "credentials"),
            ("https://api.example.com/v2/../admin", "`..`"),
            ("https://bad host/", "not a valid host name"),
        ];
        for (pattern, why) in cases {
            let err = AllowPattern::parse(pattern).expect_err(pattern);
            assert!(err.contains(why), "{pattern}: {err}");
            assert!(
                err.starts_with(&format!("`{pattern}` is not an allowed URL pattern: ")),
                "{err}"
            );
            assert!(err.contains("write e.g."), "{err}");
        }
    }

    #[test]
    fn narrower_patterns_are_more_specific() {
        let spec = |p: &str| AllowPattern::parse(p).unwrap().specificity();
        assert!(spec("https://api.example.com/v2/*") > spec("https://api.example.com/*"));
        assert!(spec("https://api.example.com/*") > spec("https://*.example.com/v2/*"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::capabilities::http::url_allowed;
    use proptest::prelude::*;

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9-]{0,6}"
    }

    fn host() -> impl Strategy<Value = String> {
        prop::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
    }

    /// Path segments as a hostile plugin writes them: dots, encodings, parameters, slashes.
    fn hostile_path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            "[a-z0-9]{1,4}",
            Just(".".to_string()),
            Just("..".to_string()),
            Just("..;".to_string()),
            Just("%2e%2e".to_string()),
            Just("%2E.".to_string()),
            Just("%252e%252e".to_string()),
            Just("..%3bx".to_string()),
            Just("%2f".to_string()),
            Just("%5c..".to_string()),
            "[a-z%;.0-9]{1,6}",
        ];
        prop::collection::vec(segment, 0..6).prop_map(|s| format!("/{}", s.join("/")))
    }

    /// The path a lenient server (one that decodes twice, drops `;` parameters and takes `\` as
    /// `/`) ends up serving.
    fn served(path: &str) -> Vec<String> {
        let decoded = percent_decode(&percent_decode(path));
        let mut out: Vec<String> = Vec::new();
        for segment in decoded.split(['/', '\\']) {
            let bare = segment.split([';', '\0']).next().unwrap_or_default();
            match bare {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s.to_string()),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn a_url_on_another_host_is_never_allowed(
            pattern_host in host(),
            url_host in host(),
            path in hostile_path(),
            port in 1u16..,
        ) {
            prop_assume!(pattern_host != url_host);
            let pattern = AllowPattern::parse(&format!("https://{pattern_host}:*/*")).unwrap();
            let url = format!("https://{url_host}:{port}{path}");
            prop_assert_ne!(url_allowed(&pattern, &url), Ok(true), "{}", url);
        }

        #[test]
        fn a_wildcard_allows_only_names_below_its_domain(
            domain in (label(), label()).prop_map(|(a, b)| format!("{a}.{b}")),
            url_host in host(),
        ) {
            let pattern = AllowPattern::parse(&format!("https://*.{domain}/*")).unwrap();
            let allowed = url_allowed(&pattern, &format!("https://{url_host}/x")) == Ok(true);
            prop_assert_eq!(allowed, url_host.ends_with(&format!(".{domain}")), "{}", url_host);
        }

        #[test]
        fn no_path_a_server_would_serve_outside_the_prefix_is_allowed(
            prefix in prop::collection::vec("[a-z0-9]{1,4}", 1..3),
            under in any::<bool>(),
            rest in hostile_path(),
        ) {
            // Most paths a plugin tries start inside the prefix and climb out of it.
            let path = if under { format!("/{}{rest}", prefix.join("/")) } else { rest };
            let pattern =
                AllowPattern::parse(&format!("https://api.example.com/{}/*", prefix.join("/")))
                    .unwrap();
            let url = format!("https://api.example.com{path}");
            if url_allowed(&pattern, &url) == Ok(true) {
                let served = served(&path);
                prop_assert!(served.starts_with(&prefix), "{} is served as {:?}", url, served);
            }
        }

        #[test]
        fn another_port_is_never_allowed(pattern_port in 1u16.., url_port in 1u16..) {
            prop_assume!(pattern_port != url_port);
            let pattern =
                AllowPattern::parse(&format!("http://api.example.com:{pattern_port}/*")).unwrap();
            let url = format!("http://api.example.com:{url_port}/x");
            prop_assert_eq!(url_allowed(&pattern, &url), Ok(false));
            let url = format!("http://api.example.com:{pattern_port}/x");
            prop_assert_eq!(url_allowed(&pattern, &url), Ok(true));
        }

        #[test]
        fn arbitrary_text_never_panics_and_never_reaches_another_host(
            pattern in ".{0,60}",
            url in "(https?://)?[a-zA-Z0-9@:%./\\[\\];?#*-]{0,60}",
        ) {
            let exact = AllowPattern::parse("https://api.example.com/v2/*").unwrap();
            if url_allowed(&exact, &url) == Ok(true) {
                let target = RequestTarget::from_uri(&url.parse().unwrap()).unwrap();
                prop_assert_eq!(target.host, "api.example.com");
                prop_assert_eq!(target.port, 443);
            }
            if let Ok(parsed) = AllowPattern::parse(&pattern) {
                let _ = url_allowed(&parsed, &url);
            }
        }
    }
}
