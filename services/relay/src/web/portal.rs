//! The public portal: the session key form, the list of representatives online, the
//! emailed link, and the download of the client with its signed ticket.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use lifeline_proto::ticket::{TicketFile, trailer};
use serde::Deserialize;

use super::{ApiError, ClientIp, State, audit};
use crate::clients::{self, PLATFORMS};
use crate::db::{TicketRow, now_ms};
use crate::i18n::{ALL, Lang, Texts};
use crate::signing::TicketClaims;

/// How long a downloaded client may take to start its session.
pub const TICKET_TTL_MS: i64 = 60 * 60 * 1000;

/// Why a key, link or choice did not yield a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Format,
    Wrong,
    Expired,
    Used,
    Limited,
    RepGone,
}

impl Refusal {
    pub fn text(self, t: &Texts) -> &'static str {
        match self {
            Refusal::Format => t.err_format,
            Refusal::Wrong => t.err_wrong,
            Refusal::Expired => t.err_expired,
            Refusal::Used => t.err_used,
            Refusal::Limited => t.err_limited,
            Refusal::RepGone => t.err_rep_gone,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Refusal::Format => "format",
            Refusal::Wrong => "wrong",
            Refusal::Expired => "expired",
            Refusal::Used => "used",
            Refusal::Limited => "limited",
            Refusal::RepGone => "rep_gone",
        }
    }
}

/// Normalises what a person typed: "123 4567" and "123-4567" mean "1234567".
pub fn normalise_key(input: &str) -> Option<String> {
    let digits: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\u{a0}'))
        .collect();
    (digits.len() == 7 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

fn clean_name(name: &str) -> String {
    lifeline_proto::sanitize_text(name)
        .replace('\n', " ")
        .trim()
        .chars()
        .take(80)
        .collect()
}

pub(crate) fn new_ticket(queue: &str, rep_id: Option<i64>, name: &str, lang: Lang) -> TicketRow {
    TicketRow {
        id: crate::auth::random_token(16),
        queue: queue.to_string(),
        team: None,
        rep_id,
        customer_name: clean_name(name),
        language: lang.code().to_string(),
        expires_at: now_ms() + TICKET_TTL_MS,
        used_at: None,
        session_id: None,
        rep_name: None,
    }
}

/// Checks a session key and turns it into a ticket; every attempt is rate-limited and audited.
pub async fn redeem_key(
    state: &State,
    ip: std::net::IpAddr,
    input: &str,
    name: &str,
    lang: Lang,
) -> Result<Result<TicketRow, Refusal>, ApiError> {
    let outcome = redeem_key_inner(state, ip, input, name, lang).await?;
    let shown: String = input
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(7)
        .collect();
    audit(
        state,
        "portal",
        ip,
        "session_key.redeem",
        match &outcome {
            Ok(_) => "ok",
            Err(r) => r.code(),
        },
        &format!("key={shown}"),
    )
    .await;
    Ok(outcome)
}

async fn redeem_key_inner(
    state: &State,
    ip: std::net::IpAddr,
    input: &str,
    name: &str,
    lang: Lang,
) -> Result<Result<TicketRow, Refusal>, ApiError> {
    if state.key_limiter.check(ip).is_err() {
        return Ok(Err(Refusal::Limited));
    }
    let Some(key) = normalise_key(input) else {
        return Ok(Err(Refusal::Format));
    };
    let Some(row) = state.db.session_key(&key).await? else {
        return Ok(Err(Refusal::Wrong));
    };
    redeem_row(state, row, name, lang).await
}

async fn redeem_row(
    state: &State,
    row: crate::db::SessionKeyRow,
    name: &str,
    lang: Lang,
) -> Result<Result<TicketRow, Refusal>, ApiError> {
    if row.used_at.is_some() {
        return Ok(Err(Refusal::Used));
    }
    if row.expires_at <= now_ms() {
        return Ok(Err(Refusal::Expired));
    }
    let owner = (row.queue == "personal").then_some(row.rep_id);
    let mut ticket = new_ticket(&row.queue, owner, name, lang);
    ticket.team = row.team.clone();
    if !state.db.redeem_key(&row.key, &ticket).await? {
        return Ok(Err(Refusal::Used));
    }
    Ok(Ok(ticket))
}

/// The signed ticket file a client carries.
pub fn ticket_file(state: &State, t: &TicketRow) -> TicketFile {
    TicketFile {
        site_url: state.public_url.clone(),
        cert_sha256: state.pin.clone(),
        ticket: state.signer.sign(&TicketClaims {
            tid: t.id.clone(),
            exp: t.expires_at,
        }),
        expires_at: t.expires_at,
        language: t.language.clone(),
        customer_name: t.customer_name.clone(),
        site_name: state.config.company.clone(),
        kind: Default::default(),
    }
}

#[derive(Template)]
#[template(path = "portal.html")]
struct PortalPage<'a> {
    lang: &'a str,
    company: &'a str,
    t: &'a Texts,
    langs: Vec<(&'static str, &'static str)>,
    error: Option<&'a str>,
    key: &'a str,
    name: &'a str,
    reps: Vec<(String, String)>,
}

#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

pub fn render<T: Template>(status: StatusCode, page: T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::Internal(Box::new(e)).into_response(),
    }
}

async fn portal_page(
    state: &State,
    lang: Lang,
    status: StatusCode,
    error: Option<&str>,
    key: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let mut reps = Vec::new();
    for id in state.hub.online_rep_ids() {
        if let Some(u) = state.db.user_by_id(id).await?
            && u.show_on_portal
            && !u.disabled
        {
            reps.push((u.username, u.display_name));
        }
    }
    reps.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(render(
        status,
        PortalPage {
            lang: lang.code(),
            company: &state.config.company,
            t: lang.t(),
            langs: ALL.iter().map(|l| (l.code(), l.native_name())).collect(),
            error,
            key,
            name,
            reps,
        },
    ))
}

pub async fn portal(
    AxState(state): AxState<State>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lang = Lang::negotiate(q.lang.as_deref(), accept_language(&headers));
    portal_page(&state, lang, StatusCode::OK, None, "", "").await
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    rep: String,
    #[serde(default)]
    lang: String,
}

pub async fn start(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Result<Response, ApiError> {
    let lang = Lang::negotiate(Some(&form.lang), accept_language(&headers));
    let outcome = if form.rep.is_empty() {
        redeem_key(&state, ip, &form.key, &form.name, lang).await?
    } else {
        ticket_for_rep(&state, ip, &form.rep, &form.name, lang).await?
    };
    match outcome {
        Ok(ticket) => Ok(Redirect::to(&format!("/download/{}", ticket.id)).into_response()),
        Err(r) => {
            let status = match r {
                Refusal::Limited => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            let key: String = form.key.chars().take(9).collect();
            portal_page(
                &state,
                lang,
                status,
                Some(r.text(lang.t())),
                &key,
                &form.name,
            )
            .await
        }
    }
}

/// A customer picked a representative on the portal: a ticket for that person's queue.
async fn ticket_for_rep(
    state: &State,
    ip: std::net::IpAddr,
    username: &str,
    name: &str,
    lang: Lang,
) -> Result<Result<TicketRow, Refusal>, ApiError> {
    if state.key_limiter.check(ip).is_err() {
        audit(
            state,
            "portal",
            ip,
            "portal.choose_rep",
            "limited",
            username,
        )
        .await;
        return Ok(Err(Refusal::Limited));
    }
    let online = state.hub.online_rep_ids();
    let rep = state.db.user_by_name(username).await?;
    let Some(rep) = rep.filter(|u| u.show_on_portal && !u.disabled && online.contains(&u.id))
    else {
        return Ok(Err(Refusal::RepGone));
    };
    let ticket = new_ticket("personal", Some(rep.id), name, lang);
    state.db.insert_ticket(&ticket).await?;
    audit(state, "portal", ip, "portal.choose_rep", "ok", username).await;
    Ok(Ok(ticket))
}

/// `/k/{token}`: the link from an invitation e-mail.
pub async fn link(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lang = Lang::negotiate(None, accept_language(&headers));
    let outcome = if state.key_limiter.check(ip).is_err() {
        Err(Refusal::Limited)
    } else if token.len() > 64 {
        Err(Refusal::Wrong)
    } else {
        match state.db.session_key_by_link(&token).await? {
            None => Err(Refusal::Wrong),
            Some(row) => redeem_row(&state, row, "", lang).await?,
        }
    };
    audit(
        &state,
        "portal",
        ip,
        "session_key.link",
        outcome.as_ref().map(|_| "ok").unwrap_or_else(|r| r.code()),
        "",
    )
    .await;
    match outcome {
        Ok(ticket) => Ok(Redirect::to(&format!("/download/{}", ticket.id)).into_response()),
        Err(r) => {
            portal_page(
                &state,
                lang,
                StatusCode::BAD_REQUEST,
                Some(r.text(lang.t())),
                "",
                "",
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "download.html")]
struct DownloadPage<'a> {
    lang: &'a str,
    company: &'a str,
    t: &'a Texts,
    ticket: &'a str,
    with_whom: String,
    detected: Option<(&'static str, &'static str)>,
    detected_label: &'static str,
    linux: bool,
    others: Vec<(&'static str, &'static str, bool)>,
    valid_until: String,
}

/// A ticket that can still start a session.
async fn live_ticket(state: &State, id: &str) -> Result<Option<TicketRow>, ApiError> {
    if id.len() > 64 {
        return Ok(None);
    }
    Ok(state
        .db
        .ticket(id)
        .await?
        .filter(|t| t.used_at.is_none() && t.expires_at > now_ms()))
}

pub async fn download_page(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(ticket) = live_ticket(&state, &id).await? else {
        let lang = Lang::negotiate(None, accept_language(&headers));
        return portal_page(
            &state,
            lang,
            StatusCode::GONE,
            Some(lang.t().err_ticket),
            "",
            "",
        )
        .await;
    };
    let lang = Lang::from_code(&ticket.language).unwrap_or(Lang::En);
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let detected_id = clients::detect(ua);
    let detected_p = clients::platform(detected_id).unwrap_or(&PLATFORMS[3]);
    let with_whom = match ticket.rep_id {
        Some(id) => state
            .db
            .user_by_id(id)
            .await?
            .map(|u| u.display_name)
            .unwrap_or_else(|| state.config.company.clone()),
        None => state.config.company.clone(),
    };
    let valid_until = time::OffsetDateTime::from_unix_timestamp(ticket.expires_at / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!("[hour]:[minute] UTC"))
                .ok()
        })
        .unwrap_or_default();
    Ok(render(
        StatusCode::OK,
        DownloadPage {
            lang: lang.code(),
            company: &state.config.company,
            t: lang.t(),
            ticket: &ticket.id,
            with_whom,
            detected: state
                .clients
                .available(detected_p)
                .then_some((detected_p.id, detected_p.label)),
            detected_label: detected_p.label,
            linux: detected_p.id.starts_with("linux"),
            others: PLATFORMS
                .iter()
                .filter(|p| p.id != detected_p.id)
                .map(|p| (p.id, p.label, state.clients.available(p)))
                .collect(),
            valid_until,
        },
    ))
}

pub async fn download_file(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    Path((id, platform)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(ticket) = live_ticket(&state, &id).await? else {
        return Err(ApiError::NotFound(
            "This download link is no longer valid; enter your session key on the portal again."
                .into(),
        ));
    };
    let (p, binary) = state.clients.download(&platform).await?;
    let name = format!("lifeline-support-{}{}", &ticket.id[..8], p.suffix);
    audit(
        &state,
        "portal",
        ip,
        "client.download",
        "ok",
        &format!("{} {}", p.id, ticket.id),
    )
    .await;
    Ok(clients::stamped_download(
        binary,
        trailer(&ticket_file(&state, &ticket)),
        &name,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_normalisation() {
        assert_eq!(normalise_key("123 4567").as_deref(), Some("1234567"));
        assert_eq!(normalise_key("123-4567").as_deref(), Some("1234567"));
        assert_eq!(normalise_key("12345678"), None);
        assert_eq!(normalise_key("12a4567"), None);
        assert_eq!(normalise_key("١٢٣٤٥٦٧"), None);
    }
}
