//! Just enough URL handling for GET and redirects: absolute `http(s)://` URLs, and the
//! `Location` forms servers send (absolute, scheme-relative, absolute-path, relative), with dot
//! segments resolved the way the server would, so the host checks the path it will really serve.

use std::fmt;

/// An absolute `http` or `https` URL, split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https` rather than `http`.
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// `/path?query`, never empty, without a fragment.
    pub path_and_query: String,
}

impl Url {
    /// Parses an absolute URL; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Url, String> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "`{text}` is not an absolute URL; write it as https://host/path"
            ));
        };
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(format!("`{text}`: only http and https URLs can be fetched")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.is_empty() || authority.contains(char::is_whitespace) {
            return Err(format!("`{text}` has no valid host"));
        }
        let tail = if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        Ok(Url {
            https,
            authority: authority.to_string(),
            path_and_query: normalize(if tail.is_empty() { "/" } else { &tail }),
        })
    }

    /// Resolves a redirect's `Location` against this URL.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        let location = location.trim();
        let scheme_len = location.find("://").unwrap_or(0);
        if scheme_len > 0
            && location[..scheme_len]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Url::parse(location);
        }
        if location.starts_with("//") {
            let scheme = if self.https { "https:" } else { "http:" };
            return Url::parse(&format!("{scheme}{location}"));
        }
        let location = location.split('#').next().unwrap_or_default();
        let path_and_query = if location.starts_with('/') {
            location.to_string()
        } else if location.starts_with('?') || location.is_empty() {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            format!("{path}{location}")
        } else {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Url {
            https: self.https,
            authority: self.authority.clone(),
            path_and_query: normalize(&path_and_query),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

/// Resolves `.` and `..` segments of the path (RFC 3986, 5.2.4); the query is kept as it is.
fn normalize(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut result = format!("/{}", out.join("/"));
    if let Some(q) = query {
        result.push('?');
        result.push_str(q);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_absolute_urls() {
        let url = Url::parse("https://api.example.com:8443/v2/x?y=1#frag").unwrap();
        assert!(url.https);
        assert_eq!(url.authority, "api.example.com:8443");
        assert_eq!(url.path_and_query, "/v2/x?y=1");
        assert_eq!(Url::parse("http://h").unwrap().path_and_query, "/");
        assert_eq!(Url::parse("http://h?q").unwrap().path_and_query, "/?q");
        assert!(Url::parse("ftp://h/").is_err());
        assert!(Url::parse("/relative").is_err());
    }

    #[test]
    fn joins_every_location_form() {
        let base = Url::parse("https://a.example.com/v2/items/7?x=1").unwrap();
        assert_eq!(
            base.join("http://b.example.com/z").unwrap().to_string(),
            "http://b.example.com/z"
        );
        assert_eq!(
            base.join("//c.example.com/z").unwrap().to_string(),
            "https://c.example.com/z"
        );
        assert_eq!(
            base.join("/v3/y").unwrap().to_string(),
            "https://a.example.com/v3/y"
        );
        assert_eq!(
            base.join("8").unwrap().to_string(),
            "https://a.example.com/v2/items/8"
        );
        assert_eq!(
            base.join("../../admin").unwrap().to_string(),
            "https://a.example.com/admin"
        );
        assert_eq!(
            base.join("?page=2").unwrap().to_string(),
            "https://a.example.com/v2/items/7?page=2"
        );
    }

    #[test]
    fn resolves_dot_segments() {
        assert_eq!(normalize("/v2/../admin"), "/admin");
        assert_eq!(normalize("/a/./b/"), "/a/b/");
        assert_eq!(normalize("/a/b/.."), "/a/");
        assert_eq!(normalize("/../../x?q=/../"), "/x?q=/../");
    }
}
