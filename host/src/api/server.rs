//! The listener: hyper's HTTP/1.1 connections over the axum app, with a header-read timeout
//! (a client that sends its headers slowly cannot hold a connection), a body timeout, a caught
//! panic answered as 500, and a graceful stop that lets open requests finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::ApiState;
use super::error::ApiError;
use crate::config::serve::ServeConfig;
use crate::error::{CallError, ErrorKind};

/// How a server listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to bind.
    pub listen: SocketAddr,
    /// The largest request body.
    pub max_body_bytes: usize,
    /// How long a request's headers may take.
    pub header_timeout: Duration,
    /// How long a request's body may take.
    pub body_timeout: Duration,
}

impl ServeOptions {
    /// The options `[serve]` gives, with `listen` (from `--listen`) overriding its address.
    pub fn from_config(
        serve: &ServeConfig,
        listen: Option<&str>,
    ) -> Result<ServeOptions, CallError> {
        let text = listen
            .or(serve.listen.as_deref())
            .unwrap_or(crate::config::serve::DEFAULT_LISTEN);
        let listen = text.parse::<SocketAddr>().map_err(|_| {
            CallError::invalid_input(format!(
                "`{}` is not IP:PORT; write e.g. 127.0.0.1:8420 (port 0 picks a free one)",
                text.escape_debug()
            ))
        })?;
        Ok(ServeOptions {
            listen,
            max_body_bytes: serve.max_body_bytes(),
            header_timeout: serve.header_timeout(),
            body_timeout: serve.body_timeout(),
        })
    }
}

/// A running server.
pub struct ApiServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accepting: JoinHandle<GracefulShutdown>,
}

impl ApiServer {
    /// Binds and starts serving `state`.
    pub async fn start(
        state: Arc<ApiState>,
        options: ServeOptions,
    ) -> Result<ApiServer, CallError> {
        let listener = TcpListener::bind(options.listen).await.map_err(|e| {
            CallError::new(
                ErrorKind::Config,
                format!(
                    "cannot listen on {}: {e}; pick another address with --listen or \
                     `[serve] listen`",
                    options.listen
                ),
            )
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| CallError::new(ErrorKind::Internal, format!("the listener: {e}")))?;
        let app = super::app(state, options.max_body_bytes)
            .layer(RequestBodyTimeoutLayer::new(options.body_timeout))
            .layer(CatchPanicLayer::custom(panicked));
        let (stop, mut stopped) = watch::channel(false);
        let header_timeout = options.header_timeout;
        let accepting = tokio::spawn(async move {
            let graceful = GracefulShutdown::new();
            loop {
                let accepted = tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => accepted,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            graceful
        });
        Ok(ApiServer {
            local_addr,
            stop,
            accepting,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits up to `grace` for the open ones to finish their
    /// requests.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        if let Ok(graceful) = self.accepting.await
            && tokio::time::timeout(grace, graceful.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("connections still open after {grace:?}; closing them");
        }
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed on this request (a bug); the request did not finish",
    )
    .into_response()
}
