//! An operator's allowlist pattern and a plugin's request URL: parsing either and matching one
//! against the other never panics, and a pattern that names one host (no `*`) never admits a
//! URL for another host, scheme or port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::capabilities::http::{RequestTarget, parse_allow_pattern, url_allowed};

fn target(url: &str) -> Option<RequestTarget> {
    let uri = http::Uri::try_from(url).ok()?;
    RequestTarget::from_uri(&uri).ok()
}

fuzz_target!(|input: (&str, &str)| {
    let (pattern_text, url) = input;
    let Ok(pattern) = parse_allow_pattern(pattern_text) else {
        return;
    };
    if url_allowed(&pattern, url) != Ok(true) || pattern_text.contains('*') {
        return;
    }
    let Some(request) = target(url) else {
        panic!("{url:?} was allowed but is not a request target");
    };
    // Without wildcards the pattern is itself a URL: what it names is what may be reached.
    if let Some(named) = target(pattern_text.trim()) {
        assert_eq!(named.scheme, request.scheme, "{pattern_text:?} admitted {url:?}");
        assert_eq!(named.host, request.host, "{pattern_text:?} admitted {url:?}");
        assert_eq!(named.port, request.port, "{pattern_text:?} admitted {url:?}");
    }
});
