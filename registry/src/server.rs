//! The router, its middleware, and the serve loop (plain HTTP or rustls).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use store::Store;

use crate::auth::{rand_bytes, Auth};
use crate::config::Config;
use crate::error::ApiError;
use crate::routes::{dispatch, token, AppState};

/// The application router over ready state.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .route("/token", any(token))
        .fallback(|request: Request| async move {
            ApiError::not_found(request.uri().path()).into_response()
        })
        .with_state(Arc::new(state))
        .layer(middleware::from_fn(common_headers))
}

/// Adds the API version header to every response and logs one line per request.
/// Credentials never reach the log: only method, path, status and duration do.
async fn common_headers(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Open the store and load access control, as `serve` does.
pub async fn state(config: &Config) -> anyhow::Result<AppState> {
    let store = Store::open(&config.store()).await?;
    let auth = match &config.auth {
        Some(a) => {
            // The signing key lives in the shared database, so every replica
            // (and every restart) accepts the same tokens.
            let key = store
                .meta()
                .secret("token-hmac-key", &hex::encode(rand_bytes()))
                .await?;
            Some(Auth::new(a, key.into_bytes())?)
        }
        None => None,
    };
    Ok(AppState {
        store,
        auth,
        tls: config.tls.is_some(),
    })
}

/// Serve until SIGINT or SIGTERM, then finish in-flight requests (up to 30 s).
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let app = app(state(&config).await?);
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = config.tls.is_some(), "registry listening");
    // One machine-readable line on stdout, so scripts and tests that ask for
    // port 0 learn the real address without racing for a port.
    println!("listening on {addr}");
    let service = app.into_make_service();
    match &config.tls {
        Some(tls) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|e| anyhow::anyhow!("cannot load TLS certificate or key: {e}"))?;
            axum_server::from_tcp_rustls(listener, rustls)?
                .handle(handle)
                .serve(service)
                .await?
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(service)
                .await?
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
