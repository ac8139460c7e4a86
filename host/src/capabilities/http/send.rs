//! The one choke point of outbound HTTP: the `send_request` hook of a call's `wasi:http`
//! context. Every request a plugin makes comes here, and in this order it is:
//!
//! 1. routed: the URL must be allowed by a granted source's allowlist, its path free of dot
//!    segments, its method in the source's `methods`, its headers free of ones that reroute a
//!    request, and the call under the source's `max_requests`, or it is refused with
//!    `HTTP-request-denied` (and no byte leaves the host);
//! 2. given the source's headers, replacing any the plugin set under the same names;
//! 3. resolved by the host, every address checked ([`AddressClass`]), and sent to an address it
//!    checked, never looked up again (no DNS-rebinding gap);
//! 4. audited before it is sent: the `allowed` record is committed first, and a request whose
//!    record cannot be committed is not sent (fail closed); a later failure adds a record;
//! 5. limited: one deadline (the source's `timeout_ms`) for connect, response and body, and a
//!    cap on the body (`max_bytes`);
//! 6. redacted: the values the host injected are masked in the response's headers and body, so
//!    an upstream that echoes a request cannot hand the plugin its credentials.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, timeout_at};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::address::AddressClass;
use super::allowlist::{RequestTarget, Scheme, has_dot_segments};
use super::{HttpSource, Resolve, rerouting_header};
use crate::capabilities::{AuditFailure, CallGrants, CallSite};
use crate::policy::Outcome;
use crate::sandbox::CallIdentity;

/// The audit log's capability name for outbound HTTP.
const CAPABILITY: &str = "http";
/// How long a connection outlives its request's deadline before it is cut regardless.
const CONNECTION_GRACE: Duration = Duration::from_secs(1);
/// The longest URL an audit record keeps.
const AUDIT_URL_CHARS: usize = 2048;
/// The largest write to a request body, and (with one chunk in flight) twice what the host holds
/// of a body the plugin has not sent yet: charged to the call's memory (see `sandbox::state`).
pub(crate) const OUTGOING_BODY_CHUNK: usize = 64 * 1024;
/// What an injected value is masked with in a response (same length, so `Content-Length` holds).
const MASK: u8 = b'*';

/// What `send_request` hands back: the response, and the connection's I/O to drive.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// The `wasi:http` hooks of one call: they own what a request needs after it leaves the store
/// (the grants and who is calling), so the request runs on its own task.
pub(super) struct OutboundGate {
    call: Arc<GateCall>,
}

impl OutboundGate {
    pub(super) fn new(
        grants: &CallGrants,
        identity: &CallIdentity,
        plugin: &str,
        tool: &str,
        audit_failure: Arc<OnceLock<AuditFailure>>,
    ) -> OutboundGate {
        OutboundGate {
            call: Arc::new(GateCall {
                grants: grants.clone(),
                identity: identity.clone(),
                plugin: plugin.to_string(),
                tool: tool.to_string(),
                audit_failure,
                requests: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl WasiHttpHooks for OutboundGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        let call = self.call.clone();
        Box::new(async move { call.send(request, options).await })
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK
    }
}

/// The call a request belongs to.
struct GateCall {
    grants: CallGrants,
    identity: CallIdentity,
    plugin: String,
    tool: String,
    /// The first audit record of this call's requests that could not be committed; shared with
    /// the call's state, which then withholds the call's result.
    audit_failure: Arc<OnceLock<AuditFailure>>,
    /// Requests admitted so far, by source, for each source's `max_requests`.
    requests: Mutex<HashMap<String, u32>>,
}

/// A request that failed after it was allowed: the error the plugin gets, and the audit detail.
struct Failure {
    error: Error,
    detail: String,
    /// `None` when the failure is the audit store itself: there is nothing more to record.
    outcome: Option<Outcome>,
}

impl Failure {
    fn failed(error: Error, detail: impl Into<String>) -> Failure {
        Failure {
            error,
            detail: detail.into(),
            outcome: Some(Outcome::Failed),
        }
    }

    fn denied(error: Error, detail: impl Into<String>) -> Failure {
        Failure {
            error,
            detail: detail.into(),
            outcome: Some(Outcome::Denied),
        }
    }
}

impl GateCall {
    /// Records one request's outcome; a record that cannot be committed is kept as the call's
    /// audit failure, so the call's result is withheld.
    async fn audit(&self, url: &str, outcome: Outcome, detail: &str) -> Result<(), AuditFailure> {
        let site = CallSite {
            identity: &self.identity,
            plugin: &self.plugin,
            tool: &self.tool,
        };
        let result = self
            .grants
            .audit(&site, CAPABILITY, url, outcome, detail)
            .await;
        if let Err(failure) = &result {
            let _ = self.audit_failure.set(failure.clone());
        }
        result
    }

    /// Queues one request's outcome without waiting (from a poll, which cannot wait).
    fn audit_detached(&self, url: &str, outcome: Outcome, detail: &str) {
        let site = CallSite {
            identity: &self.identity,
            plugin: &self.plugin,
            tool: &self.tool,
        };
        self.grants
            .audit_detached(&site, CAPABILITY, url, outcome, detail);
    }

    /// Checks, sends and audits one request.
    async fn send(
        self: Arc<Self>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Sent, Error> {
        let url = audit_url(request.uri());
        let (target, source) = match self.admit(&request, &url) {
            Ok(admitted) => admitted,
            Err(denial) => {
                tracing::warn!(plugin = %self.plugin, "outbound HTTP refused: {denial}");
                // Refused either way; a failure to record it is kept and withholds the result.
                let _ = self.audit(&url, Outcome::Denied, &denial).await;
                return Err(Error::HttpRequestDenied);
            }
        };
        match self
            .clone()
            .exchange(request, options, &target, source, &url)
            .await
        {
            Ok(sent) => Ok(sent),
            Err(failure) => {
                if let Some(outcome) = failure.outcome {
                    if outcome == Outcome::Denied {
                        tracing::warn!(plugin = %self.plugin, "outbound HTTP refused: {}", failure.detail);
                    }
                    let _ = self.audit(&url, outcome, &failure.detail).await;
                }
                Err(failure.error)
            }
        }
    }

    /// Step 1: the URL must be well formed and allowed by a source this call was granted.
    fn admit(
        &self,
        request: &http::Request<WasiBody>,
        url: &str,
    ) -> Result<(RequestTarget, &HttpSource), String> {
        let target = RequestTarget::from_uri(request.uri())
            .map_err(|why| format!("`{url}` cannot be sent: {why}"))?;
        if has_dot_segments(&target.path) {
            return Err(format!(
                "`{url}` has `.` or `..` segments in its path, which the server would resolve past the allowlist; \
                 the plugin must send the path they resolve to"
            ));
        }
        let Some(capabilities) = &self.grants.capabilities else {
            return Err(format!(
                "`{url}` is refused: this call runs without a config, which grants no http source; run it with \
                 `--config warden.toml --agent NAME` for an agent granted an http source that allows it"
            ));
        };
        let source = capabilities.http.route(&target, url, &self.grants.rights)?;
        let method = request.method();
        if !source.methods.contains(method) {
            let allowed: Vec<&str> = source.methods.iter().map(|m| m.as_str()).collect();
            return Err(format!(
                "`{url}` is refused: source `{}` sends {} only, not {method}; an operator who wants it sent adds \
                 \"{method}\" to sources.{}.methods",
                source.name,
                allowed.join(", "),
                source.name
            ));
        }
        if let Some(why) = rerouting_header(request.headers(), &target) {
            return Err(format!("`{url}` is refused: {why}"));
        }
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let sent = requests.entry(source.name.clone()).or_insert(0);
        if *sent >= source.max_requests {
            return Err(format!(
                "`{url}` is refused: this call has sent its {} requests through source `{}`; an operator raises \
                 sources.{}.max_requests",
                source.max_requests, source.name, source.name
            ));
        }
        *sent += 1;
        Ok((target, source))
    }

    /// Steps 2 to 5 for an admitted request.
    async fn exchange(
        self: Arc<Self>,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        target: &RequestTarget,
        source: &HttpSource,
        url: &str,
    ) -> Result<Sent, Failure> {
        let started = Instant::now();
        let deadline = started + source.timeout;
        let limit_ms = source.timeout.as_millis();
        let timed_out = |phase: &str, error: Error| {
            Failure::failed(
                error,
                format!(
                    "timed out {phase} after {limit_ms} ms (timeout_ms of source `{}`)",
                    source.name
                ),
            )
        };

        // 2. The source's headers replace whatever the plugin set under those names (`insert`
        //    drops every earlier value of the name).
        let headers = request.headers_mut();
        for (name, value) in &source.headers {
            headers.insert(name.clone(), value.clone());
        }

        // 3. Resolve, check every address, connect only to a checked one.
        let resolver = self
            .grants
            .capabilities
            .as_ref()
            .map(|c| c.http.resolver().clone())
            .ok_or_else(|| Failure::failed(Error::InternalError(None), "no http sources"))?;
        let addresses = timeout_at(deadline, resolve(&*resolver, target))
            .await
            .map_err(|_| timed_out("resolving the host", Error::DnsTimeout))??;
        for address in &addresses {
            let class = AddressClass::of(address.ip());
            if !class.allowed(source.allow_private_addresses) {
                let remedy = if class.allowed(true) {
                    format!(
                        "an operator who trusts it sets allow_private_addresses = true in sources.{}",
                        source.name
                    )
                } else {
                    "no setting allows it".to_string()
                };
                return Err(Failure::denied(
                    Error::DestinationIpProhibited,
                    match target.ip() {
                        Some(ip) => format!("`{ip}` is {}; {remedy}", class.describe()),
                        None => format!(
                            "`{}` resolves to {}, {}; {remedy}",
                            target.host,
                            address.ip(),
                            class.describe()
                        ),
                    },
                ));
            }
        }
        // 4. Fail closed: the record is committed before any byte goes out.
        let method = request.method().clone();
        if let Err(failure) = self
            .audit(
                url,
                Outcome::Allowed,
                &format!(
                    "{method} via source `{}` to {}",
                    source.name,
                    addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .await
        {
            return Err(Failure {
                error: Error::InternalError(Some(failure.to_string())),
                detail: failure.to_string(),
                outcome: None,
            });
        }
        let connect_deadline = shorter(deadline, started, options.and_then(|o| o.connect_timeout));
        let tcp = connect(&addresses, connect_deadline).await.map_err(|f| {
            if matches!(f.error, Error::ConnectionTimeout) {
                timed_out("connecting", Error::ConnectionTimeout)
            } else {
                f
            }
        })?;
        let stream: Box<dyn Stream> = match target.scheme {
            Scheme::Http => Box::new(tcp),
            Scheme::Https => {
                let tls = timeout_at(connect_deadline, tls_connect(tcp, target))
                    .await
                    .map_err(|_| timed_out("in the TLS handshake", Error::ConnectionTimeout))??;
                Box::new(tls)
            }
        };
        let (mut sender, connection) = timeout_at(
            connect_deadline,
            hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream)),
        )
        .await
        .map_err(|_| timed_out("connecting", Error::ConnectionTimeout))?
        .map_err(|e| {
            Failure::failed(
                Error::HttpProtocolError,
                format!("HTTP handshake failed: {e}"),
            )
        })?;
        // The connection is driven on its own task, which ends when the plugin drops the
        // response, or a little after the deadline as a backstop: the deadline itself is enforced
        // (and reported to the plugin) by the wait for the response and by the body.
        let connection = wasmtime_wasi::runtime::spawn(async move {
            match timeout_at(deadline + CONNECTION_GRACE, connection).await {
                Ok(Err(e)) => Err(hyper_error(&e)),
                Ok(Ok(())) | Err(_) => Ok(()),
            }
        });

        // Origin-form on the wire: scheme and authority go in the Host header only.
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|e| {
                Failure::failed(
                    Error::HttpRequestUriInvalid,
                    format!("the URL's path is invalid: {e}"),
                )
            })?;

        let head_deadline = shorter(
            deadline,
            started,
            options.and_then(|o| o.first_byte_timeout),
        );
        let response = timeout_at(head_deadline, sender.send_request(request))
            .await
            .map_err(|_| timed_out("waiting for the response", Error::HttpResponseTimeout))?
            .map_err(|e| Failure::failed(hyper_error(&e), format!("the request failed: {e}")))?;

        // 5. A declared length over the cap is refused before the plugin sees any of it.
        let status = response.status();
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared.filter(|&n| n > source.max_bytes) {
            return Err(Failure::failed(
                Error::HttpResponseBodySize(Some(length)),
                format!(
                    "{method} answered {status} with a {length}-byte body, over the {}-byte limit (max_bytes of source `{}`)",
                    source.max_bytes, source.name
                ),
            ));
        }

        // 6. Allowed and answered: the injected values are masked before the plugin sees them.
        let mut response = response;
        if !source.secrets.is_empty() {
            for value in response.headers_mut().values_mut() {
                let bytes = value.as_bytes();
                if source.secrets.iter().any(|s| contains(bytes, s)) {
                    let mut masked = bytes.to_vec();
                    mask(&mut masked, &source.secrets);
                    if let Ok(redacted) = HeaderValue::from_bytes(&masked) {
                        *value = redacted;
                    }
                }
            }
        }
        let watch = BodyWatch {
            call: self.clone(),
            url: url.to_string(),
            source: source.name.clone(),
            max_bytes: source.max_bytes,
            timeout_ms: limit_ms,
        };
        let response = response.map(|incoming| {
            CappedBody {
                inner: Some(incoming),
                remaining: source.max_bytes,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                watch,
                done: false,
                redact: Redactor::new(source.secrets.clone()),
                trailers: None,
            }
            .boxed_unsync()
        });
        Ok((response, Box::new(connection)))
    }
}

/// The deadline of one phase: the request's, or sooner if the plugin's request options ask.
fn shorter(deadline: Instant, started: Instant, asked: Option<Duration>) -> Instant {
    match asked {
        Some(asked) => deadline.min(started + asked),
        None => deadline,
    }
}

/// The URL as an audit record keeps it.
fn audit_url(uri: &http::Uri) -> String {
    let mut url = uri.to_string();
    if url.len() > AUDIT_URL_CHARS {
        url.truncate(url.floor_char_boundary(AUDIT_URL_CHARS));
        url.push('…');
    }
    url
}

/// The addresses of the target's host: the host's own lookup, or the IP the URL names. Looked up
/// once per request: the caller connects only to what this returned.
async fn resolve(
    resolver: &dyn Resolve,
    target: &RequestTarget,
) -> Result<Vec<SocketAddr>, Failure> {
    if let Some(ip) = target.ip() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let found: Vec<SocketAddr> = resolver
        .lookup(target.host.as_str(), target.port)
        .await
        .map_err(|e| {
            Failure::failed(
                Error::DnsError {
                    rcode: Some(e.to_string()),
                    info_code: None,
                },
                format!("looking up `{}` failed: {e}", target.host),
            )
        })?;
    if found.is_empty() {
        return Err(Failure::failed(
            Error::DestinationNotFound,
            format!("`{}` has no address", target.host),
        ));
    }
    Ok(found)
}

/// Connects to the first checked address that answers.
async fn connect(addresses: &[SocketAddr], deadline: Instant) -> Result<TcpStream, Failure> {
    let mut last = None;
    for address in addresses {
        match timeout_at(deadline, TcpStream::connect(address)).await {
            Err(_) => {
                return Err(Failure::failed(
                    Error::ConnectionTimeout,
                    "timed out connecting",
                ));
            }
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = Some((address, e)),
        }
    }
    let (address, e) = last.expect("resolve returns at least one address");
    let error = match e.kind() {
        io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        _ => Error::DestinationUnavailable,
    };
    Err(Failure::failed(
        error,
        format!("connecting to {address} failed: {e}"),
    ))
}

/// A byte stream hyper can speak HTTP/1.1 over: plain TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The TLS client settings: the webpki roots, ring, safe protocol versions. Built once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| format!("TLS is not available: {e}"))
        })
        .clone()
}

async fn tls_connect(
    tcp: TcpStream,
    target: &RequestTarget,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let config = tls_config().map_err(|e| Failure::failed(Error::TlsProtocolError, e))?;
    let name = match target.ip() {
        Some(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        None => rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| {
            Failure::failed(
                Error::TlsProtocolError,
                format!("`{}` is not a TLS server name: {e}", target.host),
            )
        })?,
    };
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let certificate = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
            let error = if certificate {
                Error::TlsCertificateError
            } else {
                Error::TlsProtocolError
            };
            Failure::failed(error, format!("TLS with `{}` failed: {e}", target.host))
        })
}

/// The `wasi:http` error for a hyper failure.
fn hyper_error(e: &hyper::Error) -> Error {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        Error::ConnectionTerminated
    } else if e.is_timeout() {
        Error::HttpResponseTimeout
    } else {
        Error::HttpProtocolError
    }
}

/// What a response body reports to the audit log when it is cut short.
struct BodyWatch {
    call: Arc<GateCall>,
    url: String,
    source: String,
    max_bytes: u64,
    timeout_ms: u128,
}

/// A response body held to the source's `max_bytes` and to the request's deadline.
struct CappedBody {
    inner: Option<hyper::body::Incoming>,
    remaining: u64,
    deadline: Pin<Box<Sleep>>,
    watch: BodyWatch,
    done: bool,
    redact: Redactor,
    /// A trailers frame that waits while the held-back end of the data goes out first.
    trailers: Option<Frame<Bytes>>,
}

impl CappedBody {
    fn fail(&mut self, error: Error, detail: String) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        self.inner = None;
        // Inside a poll: the record is queued, not waited for.
        self.watch
            .call
            .audit_detached(&self.watch.url, Outcome::Failed, &detail);
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if this.deadline.as_mut().poll(cx).is_ready() {
            let detail = format!(
                "timed out reading the response body after {} ms (timeout_ms of source `{}`)",
                this.watch.timeout_ms, this.watch.source
            );
            return this.fail(Error::HttpResponseTimeout, detail);
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.done = true;
                match this.redact.finish() {
                    Some(rest) => Poll::Ready(Some(Ok(Frame::data(rest)))),
                    None => Poll::Ready(None),
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let detail = format!("reading the response body failed: {e}");
                this.fail(hyper_error(&e), detail)
            }
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    let detail = format!(
                        "the response body passed the {}-byte limit (max_bytes of source `{}`)",
                        this.watch.max_bytes, this.watch.source
                    );
                    return this.fail(
                        Error::HttpResponseBodySize(Some(this.watch.max_bytes)),
                        detail,
                    );
                }
                this.remaining -= len;
                match frame.into_data() {
                    Ok(data) => {
                        let out = this.redact.feed(data);
                        if out.is_empty() {
                            // All held back for now; ask again so the waker is registered.
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(Frame::data(out))))
                    }
                    Err(trailers) => match this.redact.finish() {
                        Some(rest) => {
                            this.trailers = Some(trailers);
                            Poll::Ready(Some(Ok(Frame::data(rest))))
                        }
                        None => Poll::Ready(Some(Ok(trailers))),
                    },
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailers.is_none()
            && self.redact.held.is_empty()
            && (self.done || self.inner.as_ref().is_some_and(|i| i.is_end_stream()))
    }
}

/// Masks the injected values in a response body as it streams: the last bytes of each chunk
/// that could begin a value are held back until the next chunk shows whether they do.
struct Redactor {
    secrets: Arc<[Vec<u8>]>,
    held: Vec<u8>,
}

impl Redactor {
    fn new(secrets: Arc<[Vec<u8>]>) -> Redactor {
        Redactor {
            secrets,
            held: Vec::new(),
        }
    }

    /// The masked bytes that can go out now.
    fn feed(&mut self, data: Bytes) -> Bytes {
        let longest = self.secrets.iter().map(Vec::len).max().unwrap_or(0);
        if longest == 0 {
            return data;
        }
        let mut buffer = std::mem::take(&mut self.held);
        buffer.extend_from_slice(&data);
        mask(&mut buffer, &self.secrets);
        let keep = (longest - 1).min(buffer.len());
        self.held = buffer.split_off(buffer.len() - keep);
        Bytes::from(buffer)
    }

    /// What is still held back, at the end of the body.
    fn finish(&mut self) -> Option<Bytes> {
        if self.held.is_empty() {
            return None;
        }
        let mut rest = std::mem::take(&mut self.held);
        mask(&mut rest, &self.secrets);
        Some(Bytes::from(rest))
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Overwrites every occurrence of each secret in `bytes` with [`MASK`].
fn mask(bytes: &mut [u8], secrets: &[Vec<u8>]) {
    for secret in secrets {
        let n = secret.len();
        if n == 0 || n > bytes.len() {
            continue;
        }
        let mut i = 0;
        while i + n <= bytes.len() {
            if &bytes[i..i + n] == secret.as_slice() {
                bytes[i..i + n].fill(MASK);
                i += n;
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::Capabilities;
    use crate::capabilities::http::{Lookup, Resolve};
    use crate::config::WardenConfig;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn redacted(chunks: &[&str], secrets: &[&str]) -> String {
        let secrets: Arc<[Vec<u8>]> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut redactor = Redactor::new(secrets);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend_from_slice(&redactor.feed(Bytes::from(chunk.to_string())));
        }
        out.extend_from_slice(&redactor.finish().unwrap_or_default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_secret_split_across_chunks_is_masked() {
        let secret = "tok-123456";
        assert_eq!(redacted(&["a tok-123456 b"], &[secret]), "a ********** b");
        assert_eq!(
            redacted(&["a tok-", "1234", "56 b"], &[secret]),
            "a ********** b"
        );
        assert_eq!(
            redacted(
                &["t", "o", "k", "-", "1", "2", "3", "4", "5", "6"],
                &[secret]
            ),
            "**********"
        );
        assert_eq!(
            redacted(&["tok-12345"], &[secret]),
            "tok-12345",
            "a prefix is kept"
        );
        assert_eq!(redacted(&["no secret here"], &[]), "no secret here");
    }

    /// Answers the first lookup with `checked` and every later one with `rebound`, as a DNS
    /// server under an attacker's control would.
    struct Rebinding {
        checked: SocketAddr,
        rebound: SocketAddr,
        lookups: AtomicUsize,
    }

    impl Resolve for Rebinding {
        fn lookup<'a>(&'a self, _host: &'a str, _port: u16) -> Lookup<'a> {
            let first = self.lookups.fetch_add(1, Ordering::SeqCst) == 0;
            let address = if first { self.checked } else { self.rebound };
            Box::pin(async move { Ok(vec![address]) })
        }
    }

    /// A one-shot HTTP server on `ip` that answers `body`; the handle says whether it was asked.
    fn server(ip: &str, body: &'static str) -> (SocketAddr, std::thread::JoinHandle<bool>) {
        let listener = TcpListener::bind((ip, 0)).expect("bind a loopback port");
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < until {
                if let Ok((mut conn, _)) = listener.accept() {
                    use std::io::{Read, Write};
                    conn.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes());
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        });
        (address, handle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sender_connects_to_the_address_it_checked_not_a_second_lookup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plugin.wasm"), b"not used").unwrap();
        let text = r#"
            [state]
            url = "sqlite://state.db"
            [plugins.http-get]
            path = "plugin.wasm"
            max = ["http:*"]
            [sources.api]
            kind = "http"
            allow = ["http://rebind.test:*/v2/*"]
            allow_private_addresses = true
            [agents.agent]
            grants = ["api"]
        "#;
        let config = Arc::new(WardenConfig::parse(text, dir.path()).expect("config"));
        let (checked, checked_server) = server("127.0.0.2", "checked");
        let (rebound, rebound_server) = server("127.0.0.1", "rebound");
        let resolver = Arc::new(Rebinding {
            checked,
            rebound,
            lookups: AtomicUsize::new(0),
        });
        let mut capabilities = Capabilities::configure(config).expect("capabilities");
        capabilities.http.set_resolver(resolver.clone());
        let grants = CallGrants::for_agent(&Arc::new(capabilities), "http-get", "agent");
        let gate = OutboundGate::new(
            &grants,
            &CallIdentity::default(),
            "http-get",
            "get",
            Arc::default(),
        );
        let body = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::get("http://rebind.test:8080/v2/x")
            .body(body)
            .unwrap();
        let Ok((response, io)) = gate.call.clone().send(request, None).await else {
            panic!("the request failed");
        };
        tokio::spawn(Box::into_pin(io));
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(answer, "checked");
        assert_eq!(
            resolver.lookups.load(Ordering::SeqCst),
            1,
            "looked up again"
        );
        assert!(checked_server.join().unwrap());
        assert!(
            !rebound_server.join().unwrap(),
            "the sender connected to a re-resolved address"
        );
    }
}
