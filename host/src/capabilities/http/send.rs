//! The one choke point of outbound HTTP: the `send_request` hook of a call's `wasi:http`
//! context. Every request a plugin makes comes here, and in this order it is:
//!
//! 1. routed: the URL must be allowed by a granted source's allowlist, or it is refused with
//!    `HTTP-request-denied` (and no byte leaves the host);
//! 2. given the source's headers, replacing any the plugin set under the same names;
//! 3. resolved by the host, every address checked ([`AddressClass`]), and sent to an address it
//!    checked, never looked up again (no DNS-rebinding gap);
//! 4. limited: one deadline (the source's `timeout_ms`) for connect, response and body, and a
//!    cap on the body (`max_bytes`);
//! 5. audited: each request allowed, denied or failed is one record, with the URL as target.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, timeout_at};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::HttpSource;
use super::address::AddressClass;
use super::allowlist::{RequestTarget, Scheme, has_dot_segments};
use crate::capabilities::{CallGrants, CallSite};
use crate::policy::Outcome;
use crate::sandbox::CallIdentity;

/// The audit log's capability name for outbound HTTP.
const CAPABILITY: &str = "http";
/// How long a connection outlives its request's deadline before it is cut regardless.
const CONNECTION_GRACE: Duration = Duration::from_secs(1);
/// The longest URL an audit record keeps.
const AUDIT_URL_CHARS: usize = 2048;

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
    ) -> OutboundGate {
        OutboundGate {
            call: Arc::new(GateCall {
                grants: grants.clone(),
                identity: identity.clone(),
                plugin: plugin.to_string(),
                tool: tool.to_string(),
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
}

/// The call a request belongs to.
struct GateCall {
    grants: CallGrants,
    identity: CallIdentity,
    plugin: String,
    tool: String,
}

/// A request that failed after it was allowed: the error the plugin gets, and the audit detail.
struct Failure {
    error: Error,
    detail: String,
    outcome: Outcome,
}

impl Failure {
    fn failed(error: Error, detail: impl Into<String>) -> Failure {
        Failure {
            error,
            detail: detail.into(),
            outcome: Outcome::Failed,
        }
    }

    fn denied(error: Error, detail: impl Into<String>) -> Failure {
        Failure {
            error,
            detail: detail.into(),
            outcome: Outcome::Denied,
        }
    }
}

impl GateCall {
    fn audit(&self, url: &str, outcome: Outcome, detail: &str) {
        let site = CallSite {
            identity: &self.identity,
            plugin: &self.plugin,
            tool: &self.tool,
        };
        let _ = self.grants.audit(&site, CAPABILITY, url, outcome, detail);
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
                self.audit(&url, Outcome::Denied, &denial);
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
                if failure.outcome == Outcome::Denied {
                    tracing::warn!(plugin = %self.plugin, "outbound HTTP refused: {}", failure.detail);
                }
                self.audit(&url, failure.outcome, &failure.detail);
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
        let addresses = timeout_at(deadline, resolve(target))
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
        let method = request.method().clone();

        let head_deadline = shorter(
            deadline,
            started,
            options.and_then(|o| o.first_byte_timeout),
        );
        let response = timeout_at(head_deadline, sender.send_request(request))
            .await
            .map_err(|_| timed_out("waiting for the response", Error::HttpResponseTimeout))?
            .map_err(|e| Failure::failed(hyper_error(&e), format!("the request failed: {e}")))?;

        // 4. A declared length over the cap is refused before the plugin sees any of it.
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

        // 5. Allowed and answered.
        self.audit(
            url,
            Outcome::Allowed,
            &format!("{method} via source `{}`: {status}", source.name),
        );
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
        let mut end = AUDIT_URL_CHARS;
        while !url.is_char_boundary(end) {
            end -= 1;
        }
        url.truncate(end);
        url.push('…');
    }
    url
}

/// The addresses of the target's host: the host's own lookup, or the IP the URL names.
async fn resolve(target: &RequestTarget) -> Result<Vec<SocketAddr>, Failure> {
    if let Some(ip) = target.ip() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            Failure::failed(
                Error::DnsError {
                    rcode: Some(e.to_string()),
                    info_code: None,
                },
                format!("looking up `{}` failed: {e}", target.host),
            )
        })?
        .collect();
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
}

impl CappedBody {
    fn fail(&mut self, error: Error, detail: String) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        self.inner = None;
        self.watch
            .call
            .audit(&self.watch.url, Outcome::Failed, &detail);
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
                Poll::Ready(None)
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
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_some_and(|i| i.is_end_stream())
    }
}
