//! `/appliance`: the appliance administrator's pages, and `GET /api/v1/appliance/status`.
//!
//! # Design
//!
//! One function, [`build`], gathers the status from its three sources — the supervisor
//! (`org.lifeline.Supervisor1`), the licence manager (through [`crate::licence`]) and the
//! relay's own counters — into an [`ApplianceView`]. The JSON API serialises its
//! [`ApplianceReport`] (exactly the keys of the contract); the page renders the same view
//! plus what only a person needs (overall state in words, alerts, where clients connect,
//! restarts). The page is in English, French and German (`?lang=` or `Accept-Language`).
//!
//! Accounts: only the role `appliance-admin` gets in, with its own login page at
//! `/appliance/login` (a site admin or rep account is refused there with a sentence).
//! Restarting a service goes to the supervisor, which authorises and audits it again; the
//! relay audits who clicked. The front panel's picture is fetched from `org.lifeline.Panel1`
//! as PNG once a second by a small script, and the keys under it press the panel's keys.
//!
//! Licence upload: the Licence card's "Install a licence file…" reads the chosen file in the
//! browser and sends its text to `PUT /api/v1/appliance/licence` ([`install_licence`]); the
//! relay refuses more than 64 KiB itself, hands the rest to the licence manager's
//! `InstallLicence` (which verifies, writes and reloads), audits `appliance.licence` with the
//! outcome, and answers the licence now in force ([`LicenceReport`]), 400 with the refusal
//! sentence, or 503 without the licence manager. The script updates the card in place.
//!
//! # Limits
//!
//! - Without the supervisor, uptime, load, time zone and services are unknown (`null` / an
//!   empty list) and the page says the supervisor is not reachable.
//! - A refused licence's sentence comes from the licence manager, in English only.
//! - The licence upload shares the front-panel keys' rate limit (per address).

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State as AxState};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Json, Router, routing};
use lifeline_supervisor_api::{OverallState, ServiceState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::pages::{check_login, same_origin};
use super::portal::render;
use super::{ApiError, Authed, ClientIp, State, audit, authenticate};
use crate::i18n::Lang;

/// The REST API version (the OpenAPI document's `info.version`).
pub const API_VERSION: &str = "1.0.0";

/// Routes under `/appliance`.
pub fn pages() -> Router<State> {
    Router::new()
        .route("/login", routing::get(login_page).post(login))
        .route("/services/{name}/restart", routing::post(restart))
        .route("/panel.png", routing::get(panel_png))
        .route("/static/{file}", routing::get(asset))
}

/// Routes under `/api/v1/appliance`.
pub fn api() -> Router<State> {
    Router::new()
        .route("/status", routing::get(status_json))
        .route("/panel/keys", routing::post(panel_key))
        .route(
            "/licence",
            routing::put(install_licence)
                .layer(axum::extract::DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
}

/// An appliance administrator (role `appliance-admin`).
#[derive(Debug, Clone)]
pub struct ApplianceAdmin(pub Authed);

impl FromRequestParts<State> for ApplianceAdmin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        let a = Authed::from_request_parts(parts, state).await?;
        if a.user.role == "appliance-admin" {
            Ok(ApplianceAdmin(a))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// The licence part of the status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LicenceReport {
    pub model: String,
    pub edition: String,
    pub serial: String,
    pub rep_seats: u32,
    pub rep_seats_in_use: u32,
    pub jump_active_limit: u32,
    pub jump_passive_limit: u32,
    /// `YYYY-MM-DD`, or `null` for a licence without end.
    pub expires: Option<String>,
}

/// Connected clients by type.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connected {
    pub rep_consoles: u32,
    pub customer_clients: u32,
    pub jump_clients: u32,
}

/// One Lifeline service.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceReport {
    pub name: String,
    /// systemd's words: `active`, `activating`, `failed`, `inactive`...
    pub state: String,
}

/// `GET /api/v1/appliance/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApplianceReport {
    pub hostname: String,
    pub company: String,
    pub product: String,
    pub version: String,
    pub build: String,
    pub api_version: String,
    pub guid: String,
    /// `null` when the supervisor is not reachable.
    pub uptime_seconds: Option<u64>,
    /// 1, 5 and 15 minute load averages; `null` when the supervisor is not reachable.
    pub load: Option<[f64; 3]>,
    /// Now, RFC 3339 (UTC).
    pub time: String,
    pub timezone: String,
    pub license: LicenceReport,
    pub connected: Connected,
    pub services: Vec<ServiceReport>,
}

/// The report plus what only the page shows.
#[derive(Debug, Clone)]
pub struct ApplianceView {
    pub report: ApplianceReport,
    /// `None` when the supervisor is not reachable.
    pub state: Option<OverallState>,
    pub evaluation_reason: Option<String>,
    pub alerts: Vec<String>,
    pub connect_to: String,
    pub restarts: Vec<u32>,
}

fn format_date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Gather the status from the supervisor, the licence manager and the relay.
pub async fn build(state: &State, t: &Texts) -> ApplianceView {
    let (sup, licence, counts) = tokio::join!(
        state.appliance.status(),
        state.licence.status(),
        state.licence.counts()
    );
    let relay = crate::appliance::counts(&state.hub);
    let l = &licence.status.licence;
    let hostname = sup
        .as_ref()
        .map(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| state.config.host_name.clone())
        });
    let report = ApplianceReport {
        hostname,
        company: state.config.company.clone(),
        product: format!("Lifeline {}", l.model.as_str().to_uppercase()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        build: sup
            .as_ref()
            .map(|s| s.build.clone())
            .unwrap_or_else(|| option_env!("LIFELINE_BUILD").unwrap_or("dev").to_string()),
        api_version: API_VERSION.to_string(),
        guid: state.guid.clone(),
        uptime_seconds: sup.as_ref().map(|s| s.uptime_seconds),
        load: sup.as_ref().map(|s| s.load),
        time: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        timezone: sup
            .as_ref()
            .map(|s| s.timezone.clone())
            .unwrap_or_else(|| "UTC".into()),
        license: licence_report(l, &counts),
        connected: Connected {
            rep_consoles: relay.rep_consoles,
            customer_clients: relay.customer_clients,
            jump_clients: relay.jump_clients,
        },
        services: sup
            .as_ref()
            .map(|s| {
                s.services
                    .iter()
                    .map(|v| ServiceReport {
                        name: v.name.clone(),
                        state: v.state.as_str().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    let alerts = sup
        .as_ref()
        .map(|s| {
            s.alerts
                .iter()
                .map(|a| match a {
                    lifeline_supervisor_api::Alert::ServiceFailed { unit } => {
                        t.alert_service.replace("{}", unit)
                    }
                    lifeline_supervisor_api::Alert::DiskNearlyFull {
                        mount,
                        used_percent,
                    } => t.alert_disk.replacen("{}", mount, 1).replacen(
                        "{}",
                        &used_percent.to_string(),
                        1,
                    ),
                    lifeline_supervisor_api::Alert::LicenceExpiring { days } => {
                        t.alert_licence.replace("{}", &days.to_string())
                    }
                    lifeline_supervisor_api::Alert::UpdateFailed { reason } => {
                        t.alert_update.replace("{}", reason)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    ApplianceView {
        restarts: sup
            .as_ref()
            .map(|s| s.services.iter().map(|v| v.restarts).collect())
            .unwrap_or_default(),
        state: sup.as_ref().map(|s| s.state),
        evaluation_reason: licence.status.evaluation.then(|| {
            licence
                .status
                .reason
                .clone()
                .unwrap_or_else(|| "No licence is installed.".into())
        }),
        alerts,
        connect_to: state.public_url.clone(),
        report,
    }
}

/// The appliance's status: host, software, licence, connected clients, services.
#[utoipa::path(get, path = "/api/v1/appliance/status", security(("bearer" = [])),
    responses((status = 200, body = ApplianceReport), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody)))]
pub async fn status_json(
    AxState(state): AxState<State>,
    _admin: ApplianceAdmin,
) -> Json<ApplianceReport> {
    Json(build(&state, &EN).await.report)
}

/// Texts of the appliance pages.
pub struct Texts {
    pub title: &'static str,
    pub login_title: &'static str,
    pub login_button: &'static str,
    pub not_appliance_admin: &'static str,
    pub logout: &'static str,
    pub refresh: &'static str,
    pub state_ok: &'static str,
    pub state_degraded: &'static str,
    pub state_starting: &'static str,
    pub state_updating: &'static str,
    pub state_unknown: &'static str,
    pub evaluation: &'static str,
    pub box_heading: &'static str,
    pub hostname: &'static str,
    pub company: &'static str,
    pub product: &'static str,
    pub version: &'static str,
    pub build: &'static str,
    pub api_version: &'static str,
    pub guid: &'static str,
    pub uptime: &'static str,
    pub load: &'static str,
    pub diagnostic: &'static str,
    pub time: &'static str,
    pub timezone: &'static str,
    pub licence_heading: &'static str,
    pub model: &'static str,
    pub edition: &'static str,
    pub serial: &'static str,
    pub rep_seats: &'static str,
    pub rep_seats_in_use: &'static str,
    pub jump_active: &'static str,
    pub jump_passive: &'static str,
    pub expires: &'static str,
    pub never: &'static str,
    pub clients_heading: &'static str,
    pub connect_to: &'static str,
    pub rep_consoles: &'static str,
    pub customer_clients: &'static str,
    pub jump_clients: &'static str,
    pub services_heading: &'static str,
    pub service: &'static str,
    pub state: &'static str,
    pub restarts: &'static str,
    pub restart: &'static str,
    pub no_services: &'static str,
    pub panel_heading: &'static str,
    pub panel_hint: &'static str,
    pub panel_unreachable: &'static str,
    pub unknown: &'static str,
    pub days: &'static str,
    pub hours: &'static str,
    pub minutes: &'static str,
    pub restarted: &'static str,
    pub alert_service: &'static str,
    pub alert_disk: &'static str,
    pub alert_licence: &'static str,
    pub alert_update: &'static str,
    pub licence_install: &'static str,
    pub licence_install_hint: &'static str,
    pub licence_checking: &'static str,
    /// `{seats}` and `{until}` are filled in by the page's script.
    pub licence_installed: &'static str,
    /// `{seats}` is filled in by the page's script.
    pub licence_installed_no_end: &'static str,
    pub licence_too_big: &'static str,
    pub licence_send_failed: &'static str,
}

impl Texts {
    pub fn service_state(&self, lang: Lang, s: &str) -> &'static str {
        let st = match s {
            "active" => ServiceState::Active,
            "activating" => ServiceState::Activating,
            "deactivating" => ServiceState::Deactivating,
            "inactive" => ServiceState::Inactive,
            "failed" => ServiceState::Failed,
            "reloading" => ServiceState::Reloading,
            _ => ServiceState::Unknown,
        };
        match (lang, st) {
            (Lang::En, ServiceState::Active) => "Running",
            (Lang::En, ServiceState::Activating) => "Starting",
            (Lang::En, ServiceState::Deactivating) => "Stopping",
            (Lang::En, ServiceState::Inactive) => "Stopped",
            (Lang::En, ServiceState::Failed) => "Failed",
            (Lang::En, ServiceState::Reloading) => "Reloading",
            (Lang::Fr, ServiceState::Active) => "En marche",
            (Lang::Fr, ServiceState::Activating) => "Démarrage",
            (Lang::Fr, ServiceState::Deactivating) => "Arrêt en cours",
            (Lang::Fr, ServiceState::Inactive) => "Arrêté",
            (Lang::Fr, ServiceState::Failed) => "En échec",
            (Lang::Fr, ServiceState::Reloading) => "Rechargement",
            (Lang::De, ServiceState::Active) => "Läuft",
            (Lang::De, ServiceState::Activating) => "Startet",
            (Lang::De, ServiceState::Deactivating) => "Wird beendet",
            (Lang::De, ServiceState::Inactive) => "Gestoppt",
            (Lang::De, ServiceState::Failed) => "Fehlgeschlagen",
            (Lang::De, ServiceState::Reloading) => "Lädt neu",
            (_, ServiceState::Unknown) => self.unknown,
        }
    }
}

pub const EN: Texts = Texts {
    title: "Appliance status",
    login_title: "Appliance administration",
    login_button: "Log in",
    not_appliance_admin: "This account cannot manage the appliance. Log in with an appliance administrator account.",
    logout: "Log out",
    refresh: "Refresh",
    state_ok: "Everything is working.",
    state_degraded: "Something needs your attention (see below).",
    state_starting: "The appliance is starting. This takes about a minute.",
    state_updating: "A software update is being installed. Do not switch the appliance off.",
    state_unknown: "The appliance supervisor is not reachable, so the health of the services is unknown.",
    evaluation: "This appliance runs on the evaluation licence (one representative).",
    box_heading: "This appliance",
    hostname: "Host name",
    company: "Company name",
    product: "Product",
    version: "Version",
    build: "Build",
    api_version: "API version",
    guid: "Appliance GUID",
    uptime: "Running for",
    load: "Load (1, 5, 15 min)",
    diagnostic: "Diagnostic state",
    time: "System time",
    timezone: "Time zone",
    licence_heading: "Licence",
    model: "Model",
    edition: "Edition",
    serial: "Serial number",
    rep_seats: "Licensed representative seats",
    rep_seats_in_use: "Seats in use",
    jump_active: "Allowed active jump clients",
    jump_passive: "Allowed passive jump clients",
    expires: "Valid until",
    never: "no end date",
    clients_heading: "Connections",
    connect_to: "Clients connect to",
    rep_consoles: "Representative consoles",
    customer_clients: "Customer clients",
    jump_clients: "Jump clients",
    services_heading: "Services",
    service: "Service",
    state: "State",
    restarts: "Restarts",
    restart: "Restart",
    no_services: "No service information: the supervisor is not reachable.",
    panel_heading: "Front panel",
    panel_hint: "What the panel on the front of the appliance shows now. The keys below press the panel's keys.",
    panel_unreachable: "The front panel is not reachable right now.",
    unknown: "unknown",
    days: "d",
    hours: "h",
    minutes: "min",
    restarted: "The restart was requested.",
    alert_service: "The service \"{}\" has stopped working. Try \"Restart\" below; if it keeps failing, contact support.",
    alert_disk: "The disk {} is {} % full. Delete old recordings or reports soon.",
    alert_licence: "The licence ends in {} days. Ask your vendor for a new licence.",
    alert_update: "The last software update did not succeed: {}",
    licence_install: "Install a licence file…",
    licence_install_hint: "Choose the licence file (.json) you received from your vendor. It is checked before it replaces the licence in force.",
    licence_checking: "Checking the licence…",
    licence_installed: "Licence installed: {seats} representatives until {until}.",
    licence_installed_no_end: "Licence installed: {seats} representatives, with no end date.",
    licence_too_big: "This file is too big to be a licence (a licence file is at most 64 KiB). Choose the file you received from your vendor.",
    licence_send_failed: "The licence could not be sent to the appliance. Check the connection and try again.",
};

pub const FR: Texts = Texts {
    title: "État du site",
    login_title: "Administration de l'appliance",
    login_button: "Se connecter",
    not_appliance_admin: "Ce compte ne peut pas administrer l'appliance. Connectez-vous avec un compte d'administrateur de l'appliance.",
    logout: "Se déconnecter",
    refresh: "Actualiser",
    state_ok: "Tout fonctionne.",
    state_degraded: "Un point demande votre attention (voir ci-dessous).",
    state_starting: "L'appliance démarre. Cela prend environ une minute.",
    state_updating: "Une mise à jour est en cours d'installation. N'éteignez pas l'appliance.",
    state_unknown: "Le superviseur de l'appliance ne répond pas : l'état des services est inconnu.",
    evaluation: "Cette appliance fonctionne avec la licence d'évaluation (un technicien).",
    box_heading: "Cette appliance",
    hostname: "Nom d'hôte",
    company: "Nom de l'entreprise",
    product: "Produit",
    version: "Version",
    build: "Build",
    api_version: "Version de l'API",
    guid: "GUID de l'appliance",
    uptime: "En marche depuis",
    load: "Charge (1, 5, 15 min)",
    diagnostic: "État de diagnostic",
    time: "Heure système",
    timezone: "Fuseau horaire",
    licence_heading: "Licence",
    model: "Modèle",
    edition: "Édition",
    serial: "Numéro de série",
    rep_seats: "Licences de techniciens",
    rep_seats_in_use: "Licences utilisées",
    jump_active: "Clients Jump actifs autorisés",
    jump_passive: "Clients Jump passifs autorisés",
    expires: "Valable jusqu'au",
    never: "sans date de fin",
    clients_heading: "Connexions",
    connect_to: "Les clients se connectent à",
    rep_consoles: "Consoles de techniciens",
    customer_clients: "Clients des utilisateurs",
    jump_clients: "Clients Jump",
    services_heading: "Services",
    service: "Service",
    state: "État",
    restarts: "Redémarrages",
    restart: "Redémarrer",
    no_services: "Pas d'information sur les services : le superviseur ne répond pas.",
    panel_heading: "Façade",
    panel_hint: "Ce qu'affiche maintenant l'écran en façade de l'appliance. Les touches ci-dessous appuient sur ses touches.",
    panel_unreachable: "La façade ne répond pas pour le moment.",
    unknown: "inconnu",
    days: "j",
    hours: "h",
    minutes: "min",
    restarted: "Le redémarrage a été demandé.",
    alert_service: "Le service « {} » ne fonctionne plus. Essayez « Redémarrer » ci-dessous ; si cela se répète, contactez le support.",
    alert_disk: "Le disque {} est plein à {} %. Supprimez bientôt d'anciens enregistrements ou rapports.",
    alert_licence: "La licence se termine dans {} jours. Demandez une nouvelle licence à votre fournisseur.",
    alert_update: "La dernière mise à jour n'a pas abouti : {}",
    licence_install: "Installer un fichier de licence…",
    licence_install_hint: "Choisissez le fichier de licence (.json) reçu de votre fournisseur. Il est vérifié avant de remplacer la licence en vigueur.",
    licence_checking: "Vérification de la licence…",
    licence_installed: "Licence installée : {seats} techniciens jusqu'au {until}.",
    licence_installed_no_end: "Licence installée : {seats} techniciens, sans date de fin.",
    licence_too_big: "Ce fichier est trop gros pour être une licence (64 Kio au plus). Choisissez le fichier reçu de votre fournisseur.",
    licence_send_failed: "La licence n'a pas pu être envoyée à l'appliance. Vérifiez la connexion et réessayez.",
};

pub const DE: Texts = Texts {
    title: "Gerätestatus",
    login_title: "Geräteverwaltung",
    login_button: "Anmelden",
    not_appliance_admin: "Dieses Konto kann das Gerät nicht verwalten. Melden Sie sich mit einem Konto für die Geräteverwaltung an.",
    logout: "Abmelden",
    refresh: "Aktualisieren",
    state_ok: "Alles funktioniert.",
    state_degraded: "Etwas braucht Ihre Aufmerksamkeit (siehe unten).",
    state_starting: "Das Gerät startet. Das dauert etwa eine Minute.",
    state_updating: "Ein Update wird installiert. Schalten Sie das Gerät nicht aus.",
    state_unknown: "Der Supervisor des Geräts antwortet nicht, daher ist der Zustand der Dienste unbekannt.",
    evaluation: "Dieses Gerät läuft mit der Testlizenz (ein Techniker).",
    box_heading: "Dieses Gerät",
    hostname: "Hostname",
    company: "Firmenname",
    product: "Produkt",
    version: "Version",
    build: "Build",
    api_version: "API-Version",
    guid: "Geräte-GUID",
    uptime: "Läuft seit",
    load: "Last (1, 5, 15 min)",
    diagnostic: "Diagnosezustand",
    time: "Systemzeit",
    timezone: "Zeitzone",
    licence_heading: "Lizenz",
    model: "Modell",
    edition: "Edition",
    serial: "Seriennummer",
    rep_seats: "Lizenzierte Techniker-Plätze",
    rep_seats_in_use: "Belegte Plätze",
    jump_active: "Erlaubte aktive Jump-Clients",
    jump_passive: "Erlaubte passive Jump-Clients",
    expires: "Gültig bis",
    never: "ohne Enddatum",
    clients_heading: "Verbindungen",
    connect_to: "Clients verbinden sich mit",
    rep_consoles: "Techniker-Konsolen",
    customer_clients: "Kunden-Clients",
    jump_clients: "Jump-Clients",
    services_heading: "Dienste",
    service: "Dienst",
    state: "Zustand",
    restarts: "Neustarts",
    restart: "Neu starten",
    no_services: "Keine Angaben zu den Diensten: der Supervisor antwortet nicht.",
    panel_heading: "Frontblende",
    panel_hint: "Was die Anzeige vorne am Gerät gerade zeigt. Die Tasten darunter drücken die Tasten der Anzeige.",
    panel_unreachable: "Die Frontblende antwortet gerade nicht.",
    unknown: "unbekannt",
    days: "T",
    hours: "Std",
    minutes: "Min",
    restarted: "Der Neustart wurde angefordert.",
    alert_service: "Der Dienst „{}“ funktioniert nicht mehr. Versuchen Sie unten „Neu starten“; wenn es wieder passiert, wenden Sie sich an den Support.",
    alert_disk: "Die Festplatte {} ist zu {} % voll. Löschen Sie bald alte Aufzeichnungen oder Berichte.",
    alert_licence: "Die Lizenz endet in {} Tagen. Fragen Sie Ihren Anbieter nach einer neuen Lizenz.",
    alert_update: "Das letzte Software-Update ist fehlgeschlagen: {}",
    licence_install: "Lizenzdatei installieren…",
    licence_install_hint: "Wählen Sie die Lizenzdatei (.json), die Sie von Ihrem Anbieter erhalten haben. Sie wird geprüft, bevor sie die gültige Lizenz ersetzt.",
    licence_checking: "Lizenz wird geprüft…",
    licence_installed: "Lizenz installiert: {seats} Techniker bis {until}.",
    licence_installed_no_end: "Lizenz installiert: {seats} Techniker, ohne Enddatum.",
    licence_too_big: "Diese Datei ist zu groß für eine Lizenz (höchstens 64 KiB). Wählen Sie die Datei Ihres Anbieters.",
    licence_send_failed: "Die Lizenz konnte nicht an das Gerät gesendet werden. Prüfen Sie die Verbindung und versuchen Sie es erneut.",
};

pub fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::En => &EN,
        Lang::Fr => &FR,
        Lang::De => &DE,
    }
}

/// "3 d 4 h 5 min" in the page's language.
pub fn human_duration(t: &Texts, secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} {} {h} {}", t.days, t.hours)
    } else if h > 0 {
        format!("{h} {} {m} {}", t.hours, t.minutes)
    } else {
        format!("{m} {}", t.minutes)
    }
}

struct ServiceRow {
    name: String,
    state: String,
    state_text: &'static str,
    restarts: u32,
    ok: bool,
}

#[derive(Template)]
#[template(path = "appliance.html")]
struct AppliancePage<'a> {
    lang: &'a str,
    company: &'a str,
    t: &'static Texts,
    langs: Vec<(&'static str, &'static str, bool)>,
    r: &'a ApplianceReport,
    state_class: &'static str,
    state_text: &'static str,
    diagnostic: &'static str,
    evaluation: Option<&'a str>,
    alerts: &'a [String],
    connect_to: &'a str,
    uptime: String,
    load: String,
    expires: String,
    services: Vec<ServiceRow>,
    csrf: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn lang_of(headers: &HeaderMap, explicit: Option<&str>) -> Lang {
    Lang::negotiate(
        explicit,
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

pub async fn page(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let lang = lang_of(&headers, q.lang.as_deref());
    let Some(a) = authenticate(&state, &headers).await? else {
        return Ok(Redirect::to(&format!("/appliance/login?lang={}", lang.code())).into_response());
    };
    if a.user.role != "appliance-admin" {
        return Ok(login_view(
            &state,
            lang,
            StatusCode::FORBIDDEN,
            Some(texts(lang).not_appliance_admin),
            "",
        ));
    }
    let t = texts(lang);
    let v = build(&state, t).await;
    let (state_class, state_text, diagnostic) = match v.state {
        Some(OverallState::Ok) => ("ok", t.state_ok, "OK"),
        Some(OverallState::Degraded) => ("bad", t.state_degraded, "DEGRADED"),
        Some(OverallState::Starting) => ("wait", t.state_starting, "STARTING"),
        Some(OverallState::Updating) => ("wait", t.state_updating, "UPDATING"),
        None => ("bad", t.state_unknown, "UNKNOWN"),
    };
    let services = v
        .report
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| ServiceRow {
            name: s.name.clone(),
            state: s.state.clone(),
            state_text: t.service_state(lang, &s.state),
            restarts: v.restarts.get(i).copied().unwrap_or(0),
            ok: s.state == "active",
        })
        .collect();
    let uptime = v
        .report
        .uptime_seconds
        .map(|s| human_duration(t, s))
        .unwrap_or_else(|| t.unknown.to_string());
    let load = v
        .report
        .load
        .map(|l| format!("{:.2} · {:.2} · {:.2}", l[0], l[1], l[2]))
        .unwrap_or_else(|| t.unknown.to_string());
    let expires = v
        .report
        .license
        .expires
        .clone()
        .unwrap_or_else(|| t.never.to_string());
    let notice = q.done.is_some().then_some(t.restarted);
    let error = q
        .error
        .map(|e| e.chars().filter(|c| !c.is_control()).take(300).collect());
    let resp = render(
        StatusCode::OK,
        AppliancePage {
            lang: lang.code(),
            company: &state.config.company,
            t,
            langs: crate::i18n::ALL
                .iter()
                .map(|l| (l.code(), l.native_name(), *l == lang))
                .collect(),
            r: &v.report,
            state_class,
            state_text,
            diagnostic,
            evaluation: v.evaluation_reason.as_deref(),
            alerts: &v.alerts,
            connect_to: &v.connect_to,
            uptime,
            load,
            expires,
            services,
            csrf: &a.csrf,
            notice,
            error,
        },
    );
    Ok(([(header::CACHE_CONTROL, "no-store")], resp).into_response())
}

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
    lang: Lang,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let t = texts(lang);
    let action = format!("/appliance/login?lang={}", lang.code());
    render(
        status,
        LoginPage {
            lang: lang.code(),
            company: &state.config.company,
            title: t.login_title,
            action: &action,
            button: t.login_button,
            setup: false,
            error,
            notice: None,
            username,
            next: "/appliance",
        },
    )
}

async fn login_page(
    AxState(state): AxState<State>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    login_view(
        &state,
        lang_of(&headers, q.lang.as_deref()),
        StatusCode::OK,
        None,
        "",
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

async fn login(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    Form(form): Form<LoginForm>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(ApiError::Csrf);
    }
    let lang = lang_of(&headers, q.lang.as_deref());
    match check_login(
        &state,
        ip,
        form.username.trim(),
        &form.password,
        "appliance",
    )
    .await
    {
        Ok(user) if user.role == "appliance-admin" => {
            super::pages::start_cookie_session(
                &state,
                user.id,
                &format!("/appliance?lang={}", lang.code()),
            )
            .await
        }
        Ok(user) => {
            audit(
                &state,
                &user.username,
                ip,
                "appliance_login",
                "wrong_role",
                "",
            )
            .await;
            Ok(login_view(
                &state,
                lang,
                StatusCode::FORBIDDEN,
                Some(texts(lang).not_appliance_admin),
                &form.username,
            ))
        }
        Err(e @ (ApiError::BadCredentials | ApiError::RateLimited)) => Ok(login_view(
            &state,
            lang,
            e.status_and_code().0,
            Some(&e.to_string()),
            &form.username,
        )),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: String,
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn restart(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(ApiError::Csrf);
    }
    let a = authenticate(&state, &headers)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if a.user.role != "appliance-admin" {
        return Err(ApiError::Forbidden);
    }
    if !crate::auth::secret_eq(&form.csrf, &a.csrf) {
        return Err(ApiError::Csrf);
    }
    let lang = Lang::from_code(&form.lang).unwrap_or(Lang::En);
    let name: String = name.chars().take(40).collect();
    let actor = format!("web:{}", a.user.username);
    let r = state.appliance.restart_service(&name, &actor).await;
    audit(
        &state,
        &a.user.username,
        ip,
        "restart_service",
        if r.is_ok() { "ok" } else { "failed" },
        &name,
    )
    .await;
    let to = match r {
        Ok(()) => format!("/appliance?lang={}&done=restart", lang.code()),
        Err(e) => format!(
            "/appliance?lang={}&error={}",
            lang.code(),
            percent_encode(&e)
        ),
    };
    Ok(Redirect::to(&to).into_response())
}

async fn panel_png(
    AxState(state): AxState<State>,
    _admin: ApplianceAdmin,
) -> Result<Response, ApiError> {
    match state.appliance.panel_picture().await {
        Some(png) => Ok((
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response()),
        None => Err(ApiError::Unavailable(
            "The front panel service is not reachable.".into(),
        )),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct KeyPress {
    /// `up`, `down`, `left`, `right`, `enter` or `exit`.
    key: String,
}

/// Press a key of the front panel (as the keypad on the box would).
#[utoipa::path(post, path = "/api/v1/appliance/panel/keys", request_body = KeyPress, security(("bearer" = [])),
    responses((status = 204), (status = 400, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn panel_key(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    ApplianceAdmin(a): ApplianceAdmin,
    super::api::JsonBody(req): super::api::JsonBody<KeyPress>,
) -> Result<StatusCode, ApiError> {
    if !lifeline_supervisor_api::panel::KEYS.contains(&req.key.as_str()) {
        return Err(ApiError::BadRequest(
            "key must be one of up, down, left, right, enter, exit".into(),
        ));
    }
    if state.panel_limiter.check(ip).is_err() {
        return Err(ApiError::RateLimited);
    }
    let r = state.appliance.panel_key(&req.key).await;
    audit(
        &state,
        &a.user.username,
        ip,
        "panel_key",
        if r.is_ok() { "ok" } else { "failed" },
        &req.key,
    )
    .await;
    r.map(|()| StatusCode::NO_CONTENT)
        .map_err(ApiError::Unavailable)
}

/// Largest licence file text accepted (the licence manager's limit).
pub const MAX_LICENCE_BYTES: usize = lifeline_license_api::MAX_LICENCE_BYTES;
/// Largest request body of `PUT /api/v1/appliance/licence` (the JSON string may escape the
/// text); a bigger body is refused before it is read.
const UPLOAD_BODY_LIMIT: usize = 4 * MAX_LICENCE_BYTES;

/// `PUT /api/v1/appliance/licence`: a licence file's text.
#[derive(Deserialize, ToSchema)]
pub struct LicenceUpload {
    /// The whole licence file as received from the vendor (JSON text, at most 64 KiB).
    licence: String,
}

fn licence_report(
    l: &lifeline_license_api::Licence,
    counts: &lifeline_license_api::Counts,
) -> LicenceReport {
    LicenceReport {
        model: l.model.as_str().to_string(),
        edition: l.edition.as_str().to_string(),
        serial: l.serial.clone(),
        rep_seats: counts.rep_limit,
        rep_seats_in_use: counts.rep_in_use,
        jump_active_limit: counts.jump_active_limit,
        jump_passive_limit: counts.jump_passive_limit,
        expires: l.expires.map(format_date),
    }
}

/// Install a licence file: the licence manager verifies it (signature, this appliance's
/// serial, dates) and only then puts it in force. Answers the licence now in force, as the
/// status shows it.
#[utoipa::path(put, path = "/api/v1/appliance/licence", request_body = LicenceUpload, security(("bearer" = [])),
    responses((status = 200, body = LicenceReport), (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody), (status = 503, body = super::error::ErrorBody)))]
pub async fn install_licence(
    AxState(state): AxState<State>,
    ClientIp(ip): ClientIp,
    ApplianceAdmin(a): ApplianceAdmin,
    super::api::JsonBody(req): super::api::JsonBody<LicenceUpload>,
) -> Result<Json<LicenceReport>, ApiError> {
    if state.panel_limiter.check(ip).is_err() {
        return Err(ApiError::RateLimited);
    }
    let user = &a.user.username;
    if req.licence.len() > MAX_LICENCE_BYTES {
        let m = lifeline_license_api::too_big_sentence(req.licence.len());
        audit(&state, user, ip, "appliance.licence", "refused", &m).await;
        return Err(ApiError::BadRequest(m));
    }
    let r = state
        .licence
        .install(&req.licence, &format!("web:{user}"))
        .await;
    match r {
        Ok(status) => {
            let counts = state.licence.counts().await;
            let l = &status.licence;
            let detail = format!(
                "serial {}, {} edition, {} representative seats, valid until {}",
                l.serial,
                l.edition,
                counts.rep_limit,
                l.expires
                    .map(format_date)
                    .unwrap_or_else(|| "no end date".into())
            );
            audit(&state, user, ip, "appliance.licence", "ok", &detail).await;
            Ok(Json(licence_report(l, &counts)))
        }
        Err(crate::licence::InstallError::Refused(m)) => {
            audit(&state, user, ip, "appliance.licence", "refused", &m).await;
            Err(ApiError::BadRequest(m))
        }
        Err(crate::licence::InstallError::Unavailable(m)) => {
            audit(&state, user, ip, "appliance.licence", "failed", &m).await;
            Err(ApiError::Unavailable(m))
        }
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, mime): (&'static str, &'static str) = match file.as_str() {
        "appliance.js" => (
            include_str!("../../assets/appliance.js"),
            "text/javascript; charset=utf-8",
        ),
        "appliance.css" => (
            include_str!("../../assets/appliance.css"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(&EN, 59), "0 min");
        assert_eq!(human_duration(&EN, 3 * 3600 + 120), "3 h 2 min");
        assert_eq!(human_duration(&FR, 2 * 86_400 + 3600), "2 j 1 h");
        assert_eq!(EN.service_state(Lang::De, "failed"), "Fehlgeschlagen");
        assert_eq!(EN.service_state(Lang::En, "weird"), "unknown");
    }
}
