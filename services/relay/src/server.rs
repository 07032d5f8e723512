//! Start-up, the TLS and redirect listeners, readiness, watchdog and graceful drain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::clients::ClientStore;
use crate::config::Config;
use crate::db::Db;
use crate::hub::Hub;
use crate::ratelimit::RateLimiter;
use crate::signing::TicketSigner;
use crate::web::{self, AppState};

/// How long open requests may take to finish after SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data folder {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    #[error(transparent)]
    WakeKey(#[from] crate::jump::WakeKeyError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn create_private_dir(path: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ServeError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}

/// Reads or creates the one-time setup secret while the box has no account.
fn setup_secret(path: &Path) -> Result<String, ServeError> {
    if let Ok(s) = std::fs::read_to_string(path)
        && !s.trim().is_empty()
    {
        return Ok(s.trim().to_string());
    }
    let secret = crate::auth::random_token(18);
    crate::tls::write_private(path, format!("{secret}\n").as_bytes()).map_err(|source| {
        ServeError::Write {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(secret)
}

/// Runs the relay until SIGTERM or Ctrl-C, then drains.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    create_private_dir(&config.data_dir)?;
    let identity = crate::tls::load_or_create(
        &config.data_dir,
        &config.host_name,
        config
            .tls_certificate
            .as_deref()
            .zip(config.tls_key.as_deref()),
    )?;
    let db = Db::open(&config.data_dir.join("relay.db")).await?;
    let signer = TicketSigner::load_or_create(&config.data_dir.join("signing.key"))?;
    let hub = Hub::load(db.clone()).await?;
    let jump = Arc::new(
        crate::jump::Jumps::new(config.jump_reconnects, &config.data_dir.join("wake.key"))?
            .with_check_in_s(config.jump_check_in_s)
            .with_heartbeat_s(config.jump_heartbeat_s),
    );
    let jump_saver = jump.spawn_saver(db.clone(), crate::jump::SAVE_EVERY);
    let jump_beat = jump.spawn_heartbeat();

    let tls_listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
    let tls_addr = tls_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let redirect_listener = match config.redirect_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?,
        ),
        None => None,
    };
    let public_url = config.public_url(tls_addr.port());

    let secret_path = config.data_dir.join("setup-secret");
    let setup_hash = if db.user_count().await? == 0 {
        let secret = setup_secret(&secret_path)?;
        tracing::warn!(
            "no account exists yet: open {public_url}/setup and enter the setup secret from {}",
            secret_path.display()
        );
        Some(crate::auth::token_hash(&secret))
    } else {
        let _ = std::fs::remove_file(&secret_path);
        None
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let licence =
        crate::licence::Licensing::connect(config.dbus_address.as_deref(), config.rep_seat_idle)
            .await;
    let renewer = licence.spawn_renewer(Duration::from_secs(20));
    let appliance = crate::appliance::ApplianceLink::connect(config.dbus_address.as_deref()).await;
    let reporter = appliance.spawn_reporter(hub.clone());
    let state = Arc::new(AppState {
        licence,
        appliance,
        guid: crate::appliance::guid(&config.data_dir),
        panel_limiter: RateLimiter::per_minute(240, 1200),
        key_limiter: RateLimiter::per_minute(
            config.key_attempts_per_minute_per_address,
            config.key_attempts_per_minute_total,
        ),
        login_limiter: RateLimiter::per_minute(config.login_attempts_per_minute_per_address, 600),
        clients: ClientStore::new(&config.client_store),
        db: db.clone(),
        hub: hub.clone(),
        signer,
        pin: identity.pin.clone(),
        public_url: public_url.clone(),
        setup_secret_hash: Mutex::new(setup_hash),
        setup_secret_path: secret_path,
        shutdown: shutdown_rx.clone(),
        jump: jump.clone(),
        config: config.clone(),
    });
    let app = web::router(state);

    // Tell tests and tools where we listen (port 0 picks a free port).
    let redirect_addr = redirect_listener.as_ref().and_then(|l| l.local_addr().ok());
    let addr_file = config.data_dir.join("relay.addr");
    let mut addr_text = format!("https={tls_addr}\npin={}\nurl={public_url}\n", identity.pin);
    if let Some(r) = redirect_addr {
        addr_text.push_str(&format!("http={r}\n"));
    }
    std::fs::write(&addr_file, addr_text).map_err(|source| ServeError::Write {
        path: addr_file.clone(),
        source,
    })?;
    tracing::info!(%tls_addr, ?redirect_addr, %public_url, pin = %identity.pin, "lifeline-relay listening");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let watchdog = tokio::spawn(watchdog(db.clone(), hub.clone()));
    let reaper = tokio::spawn(reaper(hub.clone()));
    let counter_saver = tokio::spawn(counter_saver(hub.clone()));
    if let Some(l) = redirect_listener {
        tokio::spawn(redirect_server(l, public_url.clone(), shutdown_rx.clone()));
    }

    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config.clone());
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let mut signal = Box::pin(shutdown_signal());
    loop {
        tokio::select! {
            accepted = tls_listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                let mut stop = shutdown_rx.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        app.clone().oneshot(req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .serve_connection(TokioIo::new(tls), svc)
                        .with_upgrades();
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = web::until_shutdown(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(GRACE, conn).await;
                        }
                    }
                    drop(permit);
                });
            }
            _ = &mut signal => break,
        }
    }
    tracing::info!("draining: no new connections, closing sessions' links");
    let _ = shutdown_tx.send(true);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    drop(tls_listener);
    // Every connection holds a permit: all permits back means all connections finished.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(GRACE, limit.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
    // Give upgraded WebSockets a moment to send their close frames.
    tokio::time::sleep(Duration::from_millis(200)).await;
    watchdog.abort();
    reaper.abort();
    counter_saver.abort();
    jump_saver.abort();
    jump_beat.abort();
    crate::jump::store::touch_many(&db, &jump.online_ids(), crate::db::now_ms()).await;
    renewer.abort();
    reporter.abort();
    hub.save_counters().await;
    db.flush().await;
    db.pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Pings systemd's watchdog only while the database and the broker answer.
async fn watchdog(db: Db, hub: Arc<Hub>) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let mut every = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        every.tick().await;
        let db_ok = tokio::time::timeout(
            Duration::from_micros(usec / 4),
            sqlx::query("SELECT 1").execute(&db.pool),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if db_ok && hub.healthy() {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("health check failed; not feeding the watchdog");
        }
    }
}

/// Ends sessions whose customer left and did not come back.
async fn reaper(hub: Arc<Hub>) {
    let offline = Mutex::new(Default::default());
    let mut every = tokio::time::interval(Duration::from_secs(30));
    loop {
        every.tick().await;
        hub.reap(10 * 60_000, 30 * 60_000, &offline).await;
    }
}

/// Writes the screen-sharing counters that changed, every few seconds (never per frame).
async fn counter_saver(hub: Arc<Hub>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        hub.save_counters().await;
    }
}

/// Port 80: every request is redirected to the TLS site.
async fn redirect_server(
    listener: TcpListener,
    public_url: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let public_url = Arc::new(public_url);
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(x) => x, Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue } },
            _ = web::until_shutdown(&mut shutdown) => return,
        };
        let public_url = public_url.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let target = format!("{}{}", public_url, path);
                async move {
                    hyper::Response::builder()
                        .status(308)
                        .header("location", target)
                        .header("content-length", "0")
                        .body(axum::body::Body::empty())
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
