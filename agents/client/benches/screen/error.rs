//! The benchmark's one error type: every failure says what was being done, and what to do
//! when a person can fix it (a missing tool names its Debian package).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "missing tools: {tools} (install the Debian packages: apt-get install -y --no-install-recommends {packages})"
    )]
    Missing { tools: String, packages: String },
    #[error("cannot start {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited early ({status}); its log: {log}")]
    Exited {
        what: String,
        status: String,
        log: String,
    },
    #[error("timed out after {limit:?} waiting for {what}")]
    Timeout { what: String, limit: Duration },
    #[error("{what}: {path}")]
    File {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("X11 on {display}: {what}")]
    X11 {
        display: String,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the relay's API: {what}")]
    Api {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("the viewer socket: {0}")]
    Viewer(String),
    #[error("the customer's session: {0}")]
    Session(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent's encoder failed")]
    Encode(#[source] lifeline_agent::screen::encode::EncodeError),
    #[error("interrupted (Ctrl-C); every process the benchmark started was stopped")]
    Interrupted,
    #[error("usage: {0}")]
    Usage(String),
}

impl BenchError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }

    /// The message and every cause, for the one line printed at the end.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
