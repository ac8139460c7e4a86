//! The `http-get` plugin: fetches a URL through an `http` source the operator granted.
//!
//! The host decides everything that matters: whether the URL is on a granted source's
//! allowlist, which credentials go with it (the plugin never sees them), which addresses it may
//! reach, how long it may take and how large the answer may be. This plugin sends a plain GET,
//! follows up to five redirects (each new URL is checked by the host again), and turns the
//! host's refusals into messages that tell the caller what an operator would grant.

mod url;

use warden_sdk::prelude::*;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingResponse, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use crate::url::Url;

/// The most redirects one `get` follows.
const MAX_REDIRECTS: usize = 5;
/// The most bytes of the body `get` returns as text; the rest is cut and `truncated` set.
const MAX_TEXT_BYTES: usize = 512 * 1024;
/// Bytes asked for per read of the body.
const READ_CHUNK: u64 = 64 * 1024;

/// What to fetch, and through which grant.
#[derive(Deserialize, JsonSchema)]
struct GetInput {
    /// The http source, by its name in the operator's config, whose allowlist covers the URL.
    source: String,
    /// An absolute `https://` (or `http://`) URL.
    url: String,
}

/// The answer.
#[derive(Serialize, JsonSchema)]
struct GetOutput {
    /// The HTTP status of the final response.
    status: u16,
    /// Its `Content-Type`, if it has one.
    content_type: Option<String>,
    /// The body as text (invalid UTF-8 is replaced).
    text: String,
    /// True when the body was longer than 512 KiB and only its start is in `text`.
    truncated: bool,
    /// The URL that answered, after redirects.
    url: String,
}

/// One response, its body read or not.
struct Answer {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    response: IncomingResponse,
}

fn get(_ctx: &Context, input: GetInput) -> Result<GetOutput, ToolError> {
    let source = input.source.trim();
    if source.is_empty() {
        return Err(ToolError::InvalidInput(
            "`source` is empty: name the http source, from the operator's config, that allows this URL".into(),
        ));
    }
    let mut url = Url::parse(&input.url).map_err(ToolError::InvalidInput)?;
    let mut came_from: Option<Url> = None;
    for hop in 0..=MAX_REDIRECTS {
        let answer = send(&url).map_err(|code| explain(code, source, &url, came_from.as_ref()))?;
        let redirect = matches!(answer.status, 301 | 302 | 303 | 307 | 308);
        if let (true, Some(location)) = (redirect, answer.location.as_deref()) {
            if hop == MAX_REDIRECTS {
                return Err(ToolError::Failed(format!(
                    "`{}` redirected more than {MAX_REDIRECTS} times; the last hop pointed to `{location}`",
                    input.url
                )));
            }
            let next = url.join(location).map_err(|why| {
                ToolError::Failed(format!(
                    "`{url}` redirected to `{location}`, which is not usable: {why}"
                ))
            })?;
            came_from = Some(std::mem::replace(&mut url, next));
            continue;
        }
        let (body, truncated) =
            read_body(&answer.response).map_err(|why| cut_short(&why, source, &url))?;
        return Ok(GetOutput {
            status: answer.status,
            content_type: answer.content_type,
            text: String::from_utf8_lossy(&body).into_owned(),
            truncated,
            url: url.to_string(),
        });
    }
    unreachable!("the loop returns on its last hop")
}

/// Sends a GET for `url` and waits for the response head.
fn send(url: &Url) -> Result<Answer, ErrorCode> {
    let headers = Fields::from_list(&[("user-agent".to_string(), b"warden-http-get/0.1".to_vec())])
        .map_err(|_| ErrorCode::InternalError(Some("cannot build the request headers".into())))?;
    let request = OutgoingRequest::new(headers);
    let invalid = |_| ErrorCode::HttpRequestUriInvalid;
    request
        .set_method(&Method::Get)
        .map_err(|_| ErrorCode::HttpRequestMethodInvalid)?;
    let scheme = if url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request.set_scheme(Some(&scheme)).map_err(invalid)?;
    request
        .set_authority(Some(&url.authority))
        .map_err(invalid)?;
    request
        .set_path_with_query(Some(&url.path_and_query))
        .map_err(invalid)?;
    let pending = outgoing_handler::handle(request, None)?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(result)) => result?,
        _ => {
            return Err(ErrorCode::InternalError(Some(
                "the response was not ready".into(),
            )));
        }
    };
    let (content_type, location) = {
        let headers = response.headers();
        let first = |name: &str| {
            headers
                .get(name)
                .first()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        (first("content-type"), first("location"))
    };
    Ok(Answer {
        status: response.status(),
        content_type,
        location,
        response,
    })
}

/// Reads up to `MAX_TEXT_BYTES` of the body; true when there was more.
fn read_body(response: &IncomingResponse) -> Result<(Vec<u8>, bool), String> {
    let body = response
        .consume()
        .map_err(|_| "the body was already taken".to_string())?;
    let stream = body
        .stream()
        .map_err(|_| "the body stream was already taken".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_TEXT_BYTES {
                    bytes.truncate(MAX_TEXT_BYTES);
                    return Ok((bytes, true));
                }
            }
            Err(StreamError::Closed) => return Ok((bytes, false)),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(match wasip2::http::types::http_error_code(&e) {
                    Some(code) => describe(&code),
                    None => e.to_debug_string(),
                });
            }
        }
    }
}

/// Turns the host's refusal or a transport failure into a message for the caller.
fn explain(code: ErrorCode, source: &str, url: &Url, came_from: Option<&Url>) -> ToolError {
    let what = match came_from {
        Some(from) => format!("`{from}` redirected to `{url}`, and the host refused that request"),
        None => format!("the host refused `{url}`"),
    };
    match code {
        ErrorCode::HttpRequestDenied => ToolError::Denied(format!(
            "{what}: no http source granted to this call allows it. The URL must match sources.{source}.allow, \
             and an operator grants the source with \"{source}\" in the agent's grants and \"http:{source}\" in \
             plugins.http-get.max"
        )),
        ErrorCode::DestinationIpProhibited => ToolError::Denied(format!(
            "{what}: its host resolves to a loopback, private, link-local or cloud-metadata address. For an \
             internal service an operator sets allow_private_addresses = true in sources.{source}"
        )),
        ErrorCode::HttpResponseBodySize(size) => ToolError::Failed(format!(
            "the answer of `{url}`{} is larger than http source `{source}` allows (its max_bytes)",
            size.map(|n| format!(", {n} bytes,")).unwrap_or_default()
        )),
        ErrorCode::DnsTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => ToolError::Failed(format!(
            "`{url}` did not answer in time (the timeout_ms of http source `{source}`)"
        )),
        other => ToolError::Failed(format!("requesting `{url}` failed: {}", describe(&other))),
    }
}

/// A body the host stopped delivering: the stream error carries the host's reason as text.
fn cut_short(why: &str, source: &str, url: &Url) -> ToolError {
    let lower = why.to_ascii_lowercase();
    if lower.contains("body size") {
        ToolError::Failed(format!(
            "the answer of `{url}` is larger than http source `{source}` allows (its max_bytes): {why}"
        ))
    } else if lower.contains("timeout") || lower.contains("timed out") {
        ToolError::Failed(format!(
            "`{url}` did not finish its answer in time (the timeout_ms of http source `{source}`)"
        ))
    } else {
        ToolError::Failed(format!("reading the answer of `{url}` failed: {why}"))
    }
}

/// An error code in words.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::DnsError(payload) => format!(
            "the host name could not be resolved ({})",
            payload.rcode.as_deref().unwrap_or("no detail")
        ),
        ErrorCode::ConnectionRefused => "the server refused the connection".into(),
        ErrorCode::ConnectionTerminated => "the server closed the connection".into(),
        ErrorCode::TlsCertificateError => "the server's TLS certificate is not valid for it".into(),
        ErrorCode::HttpResponseBodySize(Some(n)) => format!("the body is over the {n}-byte limit"),
        ErrorCode::HttpResponseTimeout => "the response did not arrive in time".into(),
        ErrorCode::InternalError(Some(detail)) => detail.clone(),
        other => format!("{other:?}"),
    }
}

fn tools() -> Tools {
    Tools::new().tool(
        "get",
        "Fetches a URL with GET through an http source the operator granted, following up to 5 redirects, and \
         returns the status, the content type and the body as text (at most 512 KiB).",
        get,
    )
}

warden_sdk::export_plugin!(tools);
