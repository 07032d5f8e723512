//! Login, logout, first-time setup, the console page, static assets and headers.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::portal::render;
use super::{ApiError, COOKIE_TTL_MS, ClientIp, SESSION_COOKIE, State, audit, authenticate};
use crate::auth;
use crate::db::now_ms;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    lang: &'a str,
    company: &'a str,
    title: &'a str,
    action: &'a str,
    button: &'a str,
    setup: bool,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    username: &'a str,
    next: &'a str,
}

fn login_view(
    state: &State,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
    next: &str,
) -> Response {
    let notice = state
        .setup_secret_hash
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
        .then_some("This box has no account yet: open /setup to create the first administrator.");
    render(
        status,
        LoginPage {
            lang: "en",
            company: &state.config.company,
            title: "Log in",
            action: "/login",
            button: "Log in",
            setup: false,
            error,
            notice,
            username,
            next,
        },
    )
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Only local paths are allowed as redirect targets.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/console"
    }
}

pub async fn login_page(AxState(state): AxState<State>, Query(q): Query<NextQuery>) -> Response {
    login_view(&state, StatusCode::OK, None, "", safe_next(&q.next))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

/// Rejects cross-site form posts and WebSockets: browsers say where a request comes from
/// in `Sec-Fetch-Site` and `Origin`; clients that send neither (scripts) are not browsers.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .strip_prefix("https://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// Checks a user name and password with rate limiting and auditing.
pub async fn check_login(
    state: &State,
    ip: std::net::IpAddr,
    username: &str,
    password: &str,
    via: &str,
) -> Result<crate::db::User, ApiError> {
    if state.login_limiter.check(ip).is_err() {
        audit(state, username, ip, "login", "rate_limited", via).await;
        return Err(ApiError::RateLimited);
    }
    let user = if username.len() <= 64 {
        state.db.user_by_name(username).await?
    } else {
        None
    };
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_string());
    let pw = password.to_string();
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
        .await
        .unwrap_or(false);
    match user {
        Some(u) if ok && !u.disabled => {
            audit(state, &u.username, ip, "login", "ok", via).await;
            Ok(u)
        }
        _ => {
            audit(state, username, ip, "login", "failed", via).await;
            Err(ApiError::BadCredentials)
        }
    }
}

fn session_cookie(token: &str, max_age_s: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_s}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn start_cookie_session(
    state: &State,
    user_id: i64,
    next: &str,
) -> Result<Response, ApiError> {
    let token = auth::random_token(32);
    state
        .db
        .insert_auth_session(
            &auth::token_hash(&token),
            user_id,
            "cookie",
            &auth::random_token(24),
            now_ms() + COOKIE_TTL_MS,
        )
        .await?;
    let mut resp = Redirect::to(safe_next(next)).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, COOKIE_TTL_MS / 1000),
    );
    Ok(resp)
}

pub async fn login(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(ApiError::Csrf);
    }
    let checked = match check_login(&state, ip, form.username.trim(), &form.password, "web").await {
        Ok(user) => match state.rep_seat(&user).await {
            Ok(()) => Ok(user),
            Err(e) => {
                audit(&state, &user.username, ip, "login", "no_seat", "web").await;
                Err(e)
            }
        },
        Err(e) => Err(e),
    };
    match checked {
        Ok(user) => {
            let next = if user.role == "appliance-admin" && form.next.is_empty() {
                "/appliance"
            } else {
                &form.next
            };
            start_cookie_session(&state, user.id, next).await
        }
        Err(
            e @ (ApiError::BadCredentials
            | ApiError::RateLimited
            | ApiError::NoSeat(_)
            | ApiError::Unavailable(_)),
        ) => Ok(login_view(
            &state,
            e.status_and_code().0,
            Some(&e.to_string()),
            &form.username,
            safe_next(&form.next),
        )),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, ApiError> {
    if let Some(a) = authenticate(&state, &headers).await?
        && a.via_cookie
    {
        if !auth::secret_eq(&form.csrf, &a.csrf) {
            return Err(ApiError::Csrf);
        }
        if let Some(c) = super::cookie(&headers, SESSION_COOKIE) {
            state.db.delete_auth_session(&auth::token_hash(c)).await?;
        }
        crate::licence::RepSeats(state.licence.clone())
            .release(&a.user.username)
            .await;
        audit(&state, &a.user.username, ip, "logout", "ok", "web").await;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(resp)
}

fn setup_view(state: &State, status: StatusCode, error: Option<&str>) -> Response {
    render(
        status,
        LoginPage {
            lang: "en",
            company: &state.config.company,
            title: "Create the first administrator",
            action: "/setup",
            button: "Create account",
            setup: true,
            error,
            notice: None,
            username: "",
            next: "/console",
        },
    )
}

fn setup_open(state: &State) -> Option<String> {
    state
        .setup_secret_hash
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

pub async fn setup_page(AxState(state): AxState<State>) -> Response {
    if setup_open(&state).is_none() {
        return Redirect::to("/login").into_response();
    }
    setup_view(&state, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct SetupForm {
    secret: String,
    display_name: String,
    username: String,
    password: String,
}

pub async fn setup(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(ApiError::Csrf);
    }
    let Some(expected) = setup_open(&state) else {
        return Ok(Redirect::to("/login").into_response());
    };
    if state.login_limiter.check(ip).is_err() {
        return Ok(setup_view(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&ApiError::RateLimited.to_string()),
        ));
    }
    if !auth::secret_eq(&auth::token_hash(form.secret.trim()), &expected) {
        audit(&state, &form.username, ip, "setup", "wrong_secret", "").await;
        return Ok(setup_view(
            &state,
            StatusCode::FORBIDDEN,
            Some(
                "The setup secret is wrong. Copy it again from the box's console output or its data folder.",
            ),
        ));
    }
    let user = match crate::accounts::create(
        &state.db,
        form.username.trim(),
        form.display_name.trim(),
        "admin",
        &form.password,
    )
    .await
    {
        Ok(id) => id,
        Err(crate::accounts::AccountError::Db(e)) => return Err(e.into()),
        Err(e) => {
            return Ok(setup_view(
                &state,
                StatusCode::BAD_REQUEST,
                Some(&e.to_string()),
            ));
        }
    };
    *state
        .setup_secret_hash
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = None;
    let _ = std::fs::remove_file(&state.setup_secret_path);
    audit(
        &state,
        form.username.trim(),
        ip,
        "setup",
        "ok",
        "first administrator created",
    )
    .await;
    start_cookie_session(&state, user, "/console").await
}

const CONSOLE_HTML: &str = include_str!("../../assets/console.html");

pub async fn console(
    AxState(state): AxState<State>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match authenticate(&state, &headers).await? {
        None => Ok(Redirect::to("/login?next=/console").into_response()),
        Some(a) if a.user.role == "rep" || a.user.role == "admin" => Ok((
            [(header::CACHE_CONTROL, "no-store")],
            axum::response::Html(CONSOLE_HTML),
        )
            .into_response()),
        Some(_) => Err(ApiError::Forbidden),
    }
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, mime): (&'static str, &'static str) = match file.as_str() {
        "console.js" => (
            include_str!("../../assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "texts.js" => (
            include_str!("../../assets/texts.js"),
            "text/javascript; charset=utf-8",
        ),
        "dom.js" => (
            include_str!("../../assets/dom.js"),
            "text/javascript; charset=utf-8",
        ),
        "viewer.js" => (
            include_str!("../../assets/viewer.js"),
            "text/javascript; charset=utf-8",
        ),
        "files.js" => (
            include_str!("../../assets/files.js"),
            "text/javascript; charset=utf-8",
        ),
        "sysinfo.js" => (
            include_str!("../../assets/sysinfo.js"),
            "text/javascript; charset=utf-8",
        ),
        "shell.js" => (
            include_str!("../../assets/shell.js"),
            "text/javascript; charset=utf-8",
        ),
        "install.js" => (
            include_str!("../../assets/install.js"),
            "text/javascript; charset=utf-8",
        ),
        "jump.js" => (
            include_str!("../../assets/jump.js"),
            "text/javascript; charset=utf-8",
        ),
        "deploy.js" => (
            include_str!("../../assets/deploy.js"),
            "text/javascript; charset=utf-8",
        ),
        // xterm.js and its fit add-on, vendored byte for byte from npm (see
        // assets/vendor/xterm/VERSION; tests/vendor.rs checks them against node_modules).
        "xterm.mjs" => (
            include_str!("../../assets/vendor/xterm/xterm.mjs"),
            "text/javascript; charset=utf-8",
        ),
        "addon-fit.mjs" => (
            include_str!("../../assets/vendor/xterm/addon-fit.mjs"),
            "text/javascript; charset=utf-8",
        ),
        "xterm.css" => (
            include_str!("../../assets/vendor/xterm/xterm.css"),
            "text/css; charset=utf-8",
        ),
        "console.css" => (
            include_str!("../../assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "portal.css" => (
            include_str!("../../assets/portal.css"),
            "text/css; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("There is nothing at this address.".into())
}

/// Headers every response carries.
pub async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}
