//! The HTTP surface: portal, downloads, login, console, REST API and WebSockets.

pub mod api;
pub mod appliance;
pub mod error;
pub mod pages;
pub mod portal;
pub mod ws_agent;
pub mod ws_console;
pub mod ws_jump;
pub mod ws_view;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::routing::{get, post};

use crate::clients::ClientStore;
use crate::config::Config;
use crate::db::{Db, User};
use crate::hub::Hub;
use crate::ratelimit::RateLimiter;
use crate::signing::TicketSigner;
pub use error::ApiError;

pub const SESSION_COOKIE: &str = "ll_session";
/// Browser logins last a working day.
pub const COOKIE_TTL_MS: i64 = 12 * 3600 * 1000;
/// API tokens last one hour.
pub const BEARER_TTL_S: i64 = 3600;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub hub: Arc<Hub>,
    pub signer: TicketSigner,
    /// SHA-256 pin of the certificate clients must see.
    pub pin: String,
    /// Base URL clients connect to, e.g. `https://support.example.org`.
    pub public_url: String,
    pub key_limiter: RateLimiter,
    pub login_limiter: RateLimiter,
    pub clients: ClientStore,
    /// Hash of the one-time setup secret while no account exists.
    pub setup_secret_hash: Mutex<Option<String>>,
    pub setup_secret_path: std::path::PathBuf,
    /// Flips to true when the relay starts draining.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Seats from the licence manager (or the evaluation licence).
    pub licence: crate::licence::Licensing,
    /// The supervisor and the front panel on D-Bus.
    pub appliance: crate::appliance::ApplianceLink,
    /// The appliance GUID.
    pub guid: String,
    /// Front-panel key presses from the web page.
    pub panel_limiter: RateLimiter,
    /// Jump clients: who is connected, the reconnection and licence limits.
    pub jump: Arc<crate::jump::Jumps>,
}

impl AppState {
    /// Take (or keep) the representative seat of a user whose role needs one; the refusal
    /// is a sentence for the person.
    pub async fn rep_seat(&self, user: &User) -> Result<(), ApiError> {
        if user.role != "rep" {
            return Ok(());
        }
        crate::licence::RepSeats(self.licence.clone())
            .take(&user.username)
            .await
            .map_err(|e| match e {
                crate::licence::SeatError::Exhausted(m) => ApiError::NoSeat(m),
                crate::licence::SeatError::Unavailable(m) => ApiError::Unavailable(m),
            })
    }
}

pub type State = Arc<AppState>;

pub fn router(state: State) -> Router {
    Router::new()
        .route("/", get(portal::portal))
        .route("/start", post(portal::start))
        .route("/k/{token}", get(portal::link))
        .route("/download/{ticket}", get(portal::download_page))
        .route("/download/{ticket}/{platform}", get(portal::download_file))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/setup", get(pages::setup_page).post(pages::setup))
        .route("/console", get(pages::console))
        .route("/static/{file}", get(pages::asset))
        .route("/ws/agent", get(ws_agent::upgrade))
        .route("/ws/console", get(ws_console::upgrade))
        .route("/ws/view/{session_id}", get(ws_view::upgrade))
        .route("/ws/shell/{session_id}", get(crate::shell::upgrade))
        .route("/ws/jump", get(ws_jump::upgrade))
        .route(
            "/jump/installer/{key}/{platform}",
            get(crate::jump::api::installer),
        )
        .nest("/api/v1/jump", crate::jump::api::router())
        .route("/button/{token}/{platform}", get(crate::buttons::download))
        .nest("/api/v1/buttons", crate::buttons::router())
        .route("/appliance", get(appliance::page))
        .nest("/appliance", appliance::pages())
        .nest("/api/v1/appliance", appliance::api())
        .nest("/api/v1", api::router())
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(pages::security_headers))
        .with_state(state)
}

/// The peer's address (inserted by the server for every connection).
pub fn client_ip(parts_ext: &http::Extensions) -> IpAddr {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The caller's address as an extractor.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// An authenticated caller: a browser (cookie) or an API client (bearer token).
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: User,
    pub csrf: String,
    pub via_cookie: bool,
}

/// Finds the caller's account without enforcing CSRF (used by pages and WebSockets).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Authed>, ApiError> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthenticated)?;
        let found = state
            .db
            .auth_session(&crate::auth::token_hash(token.trim()), "bearer")
            .await?;
        return Ok(found.map(|(user, csrf)| Authed {
            user,
            csrf,
            via_cookie: false,
        }));
    }
    let Some(c) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let found = state
        .db
        .auth_session(&crate::auth::token_hash(c), "cookie")
        .await?;
    Ok(found.map(|(user, csrf)| Authed {
        user,
        csrf,
        via_cookie: true,
    }))
}

/// The representative (or admin) opening one of the console's WebSockets: signed in, from
/// this site's own pages when signed in by cookie (a WebSocket has no CSRF header), holding
/// a seat.
pub async fn console_socket_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Authed, ApiError> {
    let a = authenticate(state, headers)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if a.via_cookie && !pages::same_origin(headers) {
        return Err(ApiError::Csrf);
    }
    if a.user.role != "rep" && a.user.role != "admin" {
        return Err(ApiError::Forbidden);
    }
    state.rep_seat(&a.user).await?;
    Ok(a)
}

impl FromRequestParts<State> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        let authed = authenticate(state, &parts.headers)
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if authed.via_cookie && !safe {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !crate::auth::secret_eq(sent, &authed.csrf) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(authed)
    }
}

/// A representative (or an admin, who may also take sessions).
#[derive(Debug, Clone)]
pub struct Rep(pub Authed);

impl FromRequestParts<State> for Rep {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        let a = Authed::from_request_parts(parts, state).await?;
        if a.user.role == "rep" || a.user.role == "admin" {
            state.rep_seat(&a.user).await?;
            Ok(Rep(a))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Resolves once the relay starts draining.
pub async fn until_shutdown(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Records an audit line; failures are logged, never shown to the caller.
pub async fn audit(
    state: &AppState,
    actor: &str,
    ip: IpAddr,
    action: &str,
    outcome: &str,
    detail: &str,
) {
    if let Err(e) = state
        .db
        .audit(actor, &ip.to_string(), action, outcome, detail)
        .await
    {
        tracing::error!(error = %e, action, "cannot write the audit log");
    }
}
