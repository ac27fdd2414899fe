//! The router, its middleware, health and metrics endpoints, and the serve
//! loop (plain HTTP or rustls) behind the connection caps of [`crate::conn`].
//!
//! `/livez` is always anonymous (and answered even past the connection caps).
//! `/readyz` is anonymous for load balancers and says only `ok` or `not
//! ready` (the cause goes to the log). `/metrics` takes a login when auth is
//! on, unless `[auth] metrics_anonymous = true`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use store::Store;

use crate::auth::Caller;
use crate::config::Config;
use crate::conn::{CapAcceptor, ConnLimits};
use crate::error::{ApiError, Code};
use crate::metrics::{Metrics, STORAGE_REFRESH};
use crate::routes::{dispatch, token, AppState, ParsedRoute};
use crate::startup::{Error, Result};

/// The application router over ready state.
pub fn app(state: Arc<AppState>) -> Router {
    let ui = match state.ui {
        Some(_) => crate::ui::router(),
        None => Router::new(),
    };
    Router::new()
        .merge(ui)
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .route("/token", any(token))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|request: Request| async move {
            ApiError::not_found(request.uri().path()).into_response()
        })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(state.clone(), forwarded))
        .with_state(state)
}

/// For a request from a trusted reverse proxy, puts the client's address in
/// place of the proxy's and records the scheme and host the client used
/// (see [`crate::forwarded`]); runs before everything else.
async fn forwarded(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let live = state.live.get();
    if !live.proxies.is_empty() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        if let Some((client, origin)) =
            peer.and_then(|p| live.proxies.resolve(p, request.headers()))
        {
            request.extensions_mut().insert(ConnectInfo(client));
            request.extensions_mut().insert(origin);
        }
    }
    next.run(request).await
}

/// Ready means the database and the storage answer. Anonymous, so the
/// answer is only `ok` (`ok: low space, ...` while free space is under the
/// reserve, see [`crate::faults`]) or `not ready`; the cause goes to the log.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        // Still ready: pulls work and uploads in flight finish; a load
        // balancer that took the only replica out would stop those too.
        Ok(()) if state.faults.low_space(&state.store).await => {
            (StatusCode::OK, "ok: low space, new uploads are refused\n").into_response()
        }
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
        }
    }
}

/// `/metrics`: a login unless auth is off or `metrics_anonymous` is set;
/// gauges from cached values (see [`crate::metrics`]).
async fn metrics(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let live = state.live.get();
    if let Some(auth) = live.auth.as_ref().filter(|a| !a.metrics_anonymous) {
        let (parts, _) = request.into_parts();
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth
            .verify(authorization, crate::routes::peer_ip(&parts))
            .await
        {
            Ok(who) if who.caller != Caller::Anonymous => {}
            Err(crate::auth::Refusal::Throttled { retry_after }) => {
                return crate::auth::policy::throttled(retry_after).into_response()
            }
            _ => {
                return ApiError::new(Code::Unauthorized)
                    .detail("/metrics takes a login")
                    .header(header::WWW_AUTHENTICATE, "Basic realm=\"strata\"")
                    .into_response()
            }
        }
    }
    if state.metrics.storage_refresh_due(STORAGE_REFRESH) {
        tokio::spawn(refresh_storage_gauge(state.clone()));
    }
    state.faults.low_space(&state.store).await;
    let quotas = match crate::policy::quota::usage(&state.store, &state.policy).await {
        Ok(report) => crate::policy::quota::render_metrics(&report),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read quota usage for /metrics");
            String::new()
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render()
            + &state.faults.render()
            + &state.mirror.render_metrics()
            + &state.events.render_metrics()
            + &state.pruner.render_metrics()
            + &quotas,
    )
        .into_response()
}

async fn refresh_storage_gauge(state: Arc<AppState>) {
    match state.store.stored_bytes().await {
        Ok(bytes) => state.metrics.set_stored_bytes(bytes),
        Err(e) => tracing::warn!(error = %e, "cannot read the stored bytes for /metrics"),
    }
}

fn content_length(h: &axum::http::HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Adds the API version header to every response, counts the request for
/// `/metrics`, and logs one line for it. Credentials never reach the log:
/// only method, path, status, sizes and duration do.
///
/// The path is parsed here, once: the route's label counts the request and
/// the parsed route travels on to [`dispatch`] as a request extension.
async fn observe(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri_path = request.uri().path().to_owned();
    let route = match uri_path.as_str() {
        "/token" => "token",
        "/livez" | "/readyz" | "/metrics" => "ops",
        p if p == "/ui" || p.starts_with("/ui/") => "ui",
        p => {
            let parsed = ParsedRoute::parse(p);
            let label = parsed.label();
            request.extensions_mut().insert(parsed);
            label
        }
    };
    let live = state.live.get();
    if let (Some(limiter), Some(ConnectInfo(peer))) = (
        &live.limiter,
        request
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>(),
    ) {
        if let Err(retry_after) = limiter.check(peer.ip()) {
            state.metrics.request(route, 429, started.elapsed(), 0, 0);
            let mut response = ApiError::new(crate::error::Code::TooManyRequests)
                .detail(format!("rate limit exceeded; retry in {retry_after} s"))
                .header(header::RETRY_AFTER, retry_after.to_string())
                .into_response();
            response.headers_mut().insert(
                "docker-distribution-api-version",
                HeaderValue::from_static("registry/2.0"),
            );
            return response;
        }
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.ip().to_string());
    let bytes_in = content_length(request.headers());
    let upload = matches!(route, "uploads" | "upload") && method != Method::GET;
    if upload {
        state.metrics.upload_in_flight(1);
    }
    let mut response = next.run(request).await;
    if upload {
        state.metrics.upload_in_flight(-1);
    }
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    if let Some(code) = response.extensions().get::<crate::error::Code>() {
        state.faults.count(*code);
    }
    let status = response.status().as_u16();
    let bytes_out = content_length(response.headers());
    let elapsed = started.elapsed();
    state
        .metrics
        .request(route, status, elapsed, bytes_in, bytes_out);
    tracing::info!(
        client = %client,
        %method,
        path = %uri_path,
        status,
        bytes_in,
        bytes_out,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}

/// Open the store and load access control, as `serve` does.
pub async fn state(config: &Config) -> Result<AppState> {
    let store = Store::open(&config.store()).await?;
    let live = crate::reload::LiveCell::new(crate::reload::Live::build(config, &store).await?);
    let policy =
        crate::policy::Policies::new(&config.immutable, &config.quotas).map_err(Error::Config)?;
    let events = crate::events::Events::new(&config.webhooks).map_err(Error::Config)?;
    store.set_quotas(policy.store_quotas(&events));
    Ok(AppState {
        store,
        live,
        tls: config.tls.is_some(),
        body_idle_timeout: config.limits.body_idle_timeout(),
        metrics: Metrics::default(),
        manifest_budget: crate::limits::ByteBudget::new(config.limits.manifest_body_budget()),
        manifest_body_timeout: config.limits.manifest_body_timeout(),
        faults: crate::faults::Faults::new(config.limits.free_space_reserve_bytes),
        mirror: crate::mirror::Mirror::new(&config.upstreams).map_err(Error::Upstream)?,
        policy,
        events,
        audit: crate::audit::Audit::open(config.audit.as_ref()).map_err(Error::Config)?,
        pruner: crate::policy::pruning::Pruner::default(),
        ui: config.ui.then(crate::ui::Ui::new),
    })
}

/// Sync `upstream` at start-up and then every `interval`, logging progress.
async fn sync_schedule(
    state: Arc<AppState>,
    upstream: Arc<crate::mirror::Upstream>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let holder: crate::mirror::blobs::StoreHolder = state.clone();
        let progress = |line: String| tracing::info!("{line}");
        match state
            .mirror
            .sync_upstream(&holder, &upstream, false, &progress)
            .await
        {
            Ok(r) => {
                tracing::info!(upstream = %upstream.name, tags = r.tags, failed = r.failed, "sync done")
            }
            Err(e) => tracing::warn!(upstream = %upstream.name, error = %e, "sync failed"),
        }
    }
}

/// Run GC every `interval`, logging each run.
async fn gc_schedule(state: Arc<AppState>, config: Config, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        expire_mirrored(&state).await;
        match state.store.gc(&config.gc.options(false)).await {
            Ok(r) if r.ran => {
                state.metrics.gc_run(r.bytes_freed);
                tracing::info!(
                    blobs = r.blobs.len(),
                    bytes_freed = r.bytes_freed,
                    uploads = r.uploads,
                    "gc run"
                );
            }
            Ok(_) => tracing::info!("gc skipped: another replica holds the lock"),
            Err(e) => {
                state.metrics.gc_failed();
                tracing::error!(error = %e, "gc failed");
            }
        }
    }
}

/// Before a scheduled GC: write the pulls noted in memory, then drop the
/// mirrored content not pulled for its upstream's `keep_for`.
async fn expire_mirrored(state: &AppState) {
    if let Err(e) = state.mirror.flush_pulls(&state.store).await {
        tracing::warn!(error = %e, "writing mirror pull times failed");
    }
    match state.mirror.expire(&state.store, false).await {
        Ok(d) if !d.is_empty() => tracing::info!(manifests = d.len(), "mirror keep_for expired"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "mirror keep_for expiry failed"),
    }
}

/// Write the mirror's last pulls every `FLUSH_INTERVAL` (one batch).
async fn flush_pulls(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(crate::mirror::retention::FLUSH_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(e) = state.mirror.flush_pulls(&state.store).await {
            tracing::warn!(error = %e, "writing mirror pull times failed");
        }
    }
}

/// Serve until SIGINT or SIGTERM, then finish in-flight requests (up to 30 s).
/// On SIGHUP, `reload` reads the configuration again and the safe parts of
/// it are swapped in (see [`crate::reload`]).
pub async fn serve(config: Config, reload: crate::reload::Loader) -> Result<()> {
    // The port first: a taken one must not leave a new data directory behind.
    let listener = listen(config.listen).map_err(|e| Error::bind(config.listen, e))?;
    let addr = listener.local_addr().map_err(Error::Listen)?;
    let state = Arc::new(state(&config).await?);
    // Staging debris from a crash is of no use to anyone: clear it now.
    let cutoff = store::now() - config.gc.grace_secs as i64;
    let purged = state.store.purge_orphans(cutoff).await?;
    if purged > 0 {
        tracing::info!(objects = purged, "removed staging debris");
    }
    if let Some(secs) = config.gc.interval_secs {
        tokio::spawn(gc_schedule(
            state.clone(),
            config.clone(),
            Duration::from_secs(secs.max(1)),
        ));
    }
    for (upstream, interval) in state.mirror.scheduled() {
        tokio::spawn(sync_schedule(state.clone(), upstream, interval));
    }
    if !state.mirror.is_empty() {
        tokio::spawn(flush_pulls(state.clone()));
    }
    // Always: a reload may add [[retention]] rules.
    tokio::spawn(crate::policy::pruning::schedule(
        state.clone(),
        addr.to_string(),
    ));
    if !state.events.is_empty() {
        tokio::spawn(crate::events::webhook::deliver(
            state.clone(),
            state.events.clone(),
        ));
    }
    let last_flush = state.clone();
    if state.metrics.storage_refresh_due(STORAGE_REFRESH) {
        tokio::spawn(refresh_storage_gauge(state.clone()));
    }
    // Before the handlers: a bad certificate stops the start, not the first handshake.
    let rustls = match &config.tls {
        Some(tls) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(Error::Tls)?,
        ),
        None => None,
    };
    let reloading = (state.clone(), rustls.clone(), config.clone());
    let app = app(state);
    let (total, per_client, reserved) = config.limits.connections();
    let limits = ConnLimits::new(total, per_client, reserved);
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    // The handlers are installed here, before the address line is printed:
    // a SIGTERM right after start-up must stop the server, not kill it.
    let signals = Signals::install().map_err(Error::Serve)?;
    tokio::spawn(async move {
        signals.recv().await;
        shutdown.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(Error::Serve)?;
    tokio::spawn(async move {
        let (state, rustls, mut running) = reloading;
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            running =
                crate::reload::reload(&state.live, &state.store, rustls.as_ref(), running, &reload)
                    .await;
        }
    });
    tracing::info!(%addr, tls = config.tls.is_some(), "registry listening");
    // One machine-readable line on stdout, so scripts and tests that ask for
    // port 0 learn the real address without racing for a port.
    // Written, not printed: a closed stdout must not stop the server.
    let _ = writeln!(std::io::stdout(), "listening on {addr}");
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    match rustls {
        Some(rustls) => {
            let mut server = axum_server::from_tcp_rustls(listener, rustls)
                .map_err(Error::Listen)?
                .map(|tls| tls.acceptor(CapAcceptor::new(limits, false)))
                .handle(handle);
            limit_slow_clients(server.http_builder(), config.limits.header_timeout());
            server.serve(service).await.map_err(Error::Serve)?
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .map_err(Error::Listen)?
                .acceptor(CapAcceptor::new(limits, true))
                .handle(handle);
            limit_slow_clients(server.http_builder(), config.limits.header_timeout());
            server.serve(service).await.map_err(Error::Serve)?
        }
    }
    if let Err(e) = last_flush.mirror.flush_pulls(&last_flush.store).await {
        tracing::warn!(error = %e, "writing mirror pull times failed");
    }
    if let Err(e) = last_flush.pruner.flush_pulls(&last_flush.store).await {
        tracing::warn!(error = %e, "writing manifest pull times failed");
    }
    Ok(())
}

/// Bind `addr` with a deep accept queue: std's 128 overflows under a burst
/// of connections (clients then wait a SYN retransmit, a second or more,
/// even when the server would refuse them at once).
fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)?.into_std()
}

/// A client gets `[limits] header_timeout_secs` to send its request headers
/// (slowloris); pauses inside bodies are bounded in `routes`, and how many
/// connections are held at once in [`crate::conn`].
fn limit_slow_clients(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    header_timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
}

/// SIGTERM and SIGINT, listened for from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Wait for either.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        tracing::info!("shutting down");
    }
}
