//! Test plugin: `send` makes one request (a GET unless told otherwise) with the headers it is given, and reports every header it
//! can see of its own outgoing request and of the response, and the body. The host's tests use
//! it to show that the credentials a source adds never reach the plugin, and that a header the
//! plugin sets under the same name is replaced.

use warden_sdk::prelude::*;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// What to send.
#[derive(Deserialize, JsonSchema)]
struct SendInput {
    /// `http` or `https`.
    scheme: String,
    /// `host:port`.
    authority: String,
    /// `/path?query`.
    path: String,
    /// Headers the plugin sets itself, as `[name, value]` pairs.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// The method, `GET` when left out.
    #[serde(default)]
    method: Option<String>,
}

/// Everything the plugin could see.
#[derive(Serialize, JsonSchema)]
struct SendOutput {
    /// The headers of its outgoing request, read back just before it was sent.
    request_headers: Vec<(String, String)>,
    /// The response's status, or 0 when there was no response.
    status: u16,
    /// The response's headers.
    response_headers: Vec<(String, String)>,
    /// The response's body, as text.
    body: String,
    /// The error code, when the request failed.
    error: Option<String>,
}

fn entries(fields: &Fields) -> Vec<(String, String)> {
    fields
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect()
}

fn send(_ctx: &Context, input: SendInput) -> Result<SendOutput, ToolError> {
    let list: Vec<(String, Vec<u8>)> = input
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&list).map_err(|e| ToolError::InvalidInput(format!("{e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let scheme = if input.scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let bad = |what: &str| ToolError::InvalidInput(format!("bad {what}"));
    let method = match input.method.as_deref().unwrap_or("GET") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        other => Method::Other(other.to_string()),
    };
    request.set_method(&method).map_err(|_| bad("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|_| bad("scheme"))?;
    request
        .set_authority(Some(&input.authority))
        .map_err(|_| bad("authority"))?;
    request
        .set_path_with_query(Some(&input.path))
        .map_err(|_| bad("path"))?;
    let request_headers = {
        let headers = request.headers();
        entries(&headers)
    };
    let mut output = SendOutput {
        request_headers,
        status: 0,
        response_headers: Vec::new(),
        body: String::new(),
        error: None,
    };
    let pending = match outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(code) => {
            output.error = Some(format!("{code:?}"));
            return Ok(output);
        }
    };
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => {
            output.error = Some(format!("{code:?}"));
            return Ok(output);
        }
        _ => return Err(ToolError::Failed("the response was not ready".into())),
    };
    output.status = response.status();
    output.response_headers = {
        let headers = response.headers();
        entries(&headers)
    };
    let body = response
        .consume()
        .map_err(|_| ToolError::Failed("no body".into()))?;
    let stream = body
        .stream()
        .map_err(|_| ToolError::Failed("no body stream".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                output.error = Some(e.to_debug_string());
                break;
            }
        }
    }
    output.body = String::from_utf8_lossy(&bytes).into_owned();
    Ok(output)
}

fn tools() -> Tools {
    Tools::new().tool(
        "send",
        "Sends one request (GET by default) and reports the headers the plugin can see of its request and of the response.",
        send,
    )
}

warden_sdk::export_plugin!(tools);
