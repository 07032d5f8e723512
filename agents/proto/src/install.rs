//! Installing something on the customer's computer from a running session, with the
//! customer's consent: a jump client (so the representative can come back later without
//! anyone at the computer) or a support button (so the customer can ask again in one click).
//!
//! relay → [`crate::agent::RelayToAgent::Install`] with a request number, what to install and
//! the ticket it needs (a one-use deployment key for a jump client, a button token for a
//! support button, both made by the box for this session); the agent asks the customer and
//! answers [`crate::agent::AgentToRelay::Installed`] with the same request number and an
//! [`InstallOutcome`]. No answer within the agent's question time is a refusal.
//!
//! The agent checks the ticket before asking: its kind must match what is offered, and it must
//! name the box and certificate of the running session, so a message cannot make the
//! customer's computer trust another server.

use serde::{Deserialize, Serialize};

/// What a representative offers to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallKind {
    JumpClient,
    SupportButton,
}

impl InstallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallKind::JumpClient => "jump_client",
            InstallKind::SupportButton => "support_button",
        }
    }

    /// The ticket kind this offer must carry.
    pub fn ticket_kind(self) -> crate::ticket::TicketKind {
        match self {
            InstallKind::JumpClient => crate::ticket::TicketKind::JumpInstall,
            InstallKind::SupportButton => crate::ticket::TicketKind::Button,
        }
    }
}

/// What became of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallOutcome {
    Installed,
    /// The customer said no, or did not answer in time.
    Refused,
    /// The customer agreed and installing failed (`message` says why).
    Failed,
}

impl InstallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallOutcome::Installed => "installed",
            InstallOutcome::Refused => "refused",
            InstallOutcome::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::agent::{AgentToRelay, RelayToAgent};

    #[test]
    fn offers_and_answers_keep_their_bounds() {
        let ticket = format!(
            r#"{{"site_url":"https://box","cert_sha256":"{}","ticket":"dk_x","expires_at":1,"kind":"jump_install"}}"#,
            "ab".repeat(32)
        );
        let ok = format!(
            r#"{{"type":"install","request":3,"what":"jump_client","rep":"Rémi","ticket":{ticket}}}"#
        );
        assert!(matches!(
            RelayToAgent::decode(&ok),
            Ok(RelayToAgent::Install { request: 3, .. })
        ));
        let long_rep = ok.replace("Rémi", &"r".repeat(200));
        assert!(RelayToAgent::decode(&long_rep).is_err());
        let bad_ticket = ok.replace("dk_x", "");
        assert!(RelayToAgent::decode(&bad_ticket).is_err());
        let answer = r#"{"type":"installed","request":3,"outcome":"failed","message":"disk full"}"#;
        assert!(matches!(
            AgentToRelay::decode(answer),
            Ok(AgentToRelay::Installed { request: 3, .. })
        ));
        let long = answer.replace("disk full", &"x".repeat(600));
        assert!(AgentToRelay::decode(&long).is_err());
    }
}
