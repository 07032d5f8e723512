//! `lifeline-relay`: the only network service of the Lifeline box.
//!
//! It serves, over TLS (rustls) on one port: the public portal where a customer types a
//! session key, the client downloads (stock binaries with a signed ticket appended), the
//! representatives' console, the REST API (`/api/v1`, OpenAPI at `/api/v1/openapi.json`), and
//! the WebSockets of agents and consoles. It brokers sessions between them: queues, chat,
//! session end. A second, plain port only redirects to TLS.
//!
//! Design: a thin `main` over [`server::serve`]; state lives in SQLite ([`db`], WAL,
//! migrations in `migrations/`) and the live routing in the [`hub`], which is rebuilt from
//! the database at start so a restart loses no session or transcript: agents reconnect with
//! their resume token and consoles get a fresh snapshot.
//!
//! Security: no default password (a one-time setup secret creates the first administrator),
//! argon2id hashes, Secure/HttpOnly/SameSite=Strict cookies with CSRF tokens, bearer tokens
//! stored only as hashes, session keys and logins rate-limited per address and globally and
//! audited, strict Content-Security-Policy on every page.
//!
//! Screen sharing ([`view`]): permissions asked through the API and answered by the agent,
//! viewer sockets (`/ws/view/{id}`) fed with the agent's binary frames by header only, with
//! per-viewer bounded queues and the agent paced by the viewers' acknowledgements.
//!
//! File transfer ([`files`]): listings, downloads and uploads through `/api/v1/sessions/{id}/
//! files...`, streamed between the console and the agent (never stored), resumed across a
//! dropped link, SHA-256 checked, allowed by the `[files]` policy and recorded as session
//! events.
//!
//! Session tools ([`tools`]): the admin policy of which tools reps may use, and the
//! system-information report asked of the agent and recorded as session events.
//!
//! Command shell ([`shell`]): a terminal socket per console (`/ws/shell/{id}`) joined to a
//! pseudo-terminal on the customer's computer through the agent, allowed by the `[tools]`
//! policy and the customer's grant, recorded as session events with a stored transcript.
//!
//! Jump clients ([`jump`]): registration with a deployment key, challenge-signed links on
//! `/ws/jump`, the reconnection and licence limits, passive clients' check-ins and signed
//! wake-ups ([`jump::wake`]), groups and teams ([`jump::groups`]), jumping into a session
//! (unattended or asking the logged-in user), and removing a client (it uninstalls itself).
//!
//! Installing from a session ([`install`]): a jump client or a support button offered to the
//! customer, who agrees or not in the client.
//!
//! Support buttons ([`buttons`]): desktop entries that ask for a session in a chosen
//! representative's queue or the general queue until they expire.
//!
//! Current limits: the site admin interface is not written yet (accounts come from the setup page and
//! `lifeline-relay user add`).
//!
//! Licences: representatives take a seat from the licence manager at login ([`licence`]);
//! without it the relay runs in evaluation mode and says so.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod appliance;
pub mod auth;
pub mod buttons;
pub mod clients;
pub mod config;
pub mod db;
pub mod files;
pub mod hub;
pub mod i18n;
pub mod install;
pub mod jump;
pub mod licence;
pub mod ratelimit;
pub mod server;
pub mod shell;
pub mod signing;
pub mod tls;
pub mod tools;
pub mod view;
pub mod web;

/// An error and its causes as one line: "outer: inner: innermost".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
