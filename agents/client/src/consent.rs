//! The customer's consent: which permissions the technician asked for, which the customer
//! allowed, and when an unanswered question counts as a refusal.
//!
//! The agent is the authority on permissions (see `lifeline_proto::remote`): the relay and
//! the console only learn what this state machine decides. It is pure (time is passed in),
//! so every rule is unit-tested here:
//!
//! * a request opens a question with a deadline; no answer by then is a refusal;
//! * a question is answered once; answering a question nobody asked does nothing;
//! * a granted permission can be withdrawn at any time (a revocation);
//! * `control` without `view` is allowed (the relay refuses input it cannot show anyway),
//!   but withdrawing `view` also withdraws `control`, so nobody steers a screen they
//!   cannot see;
//! * a permission this computer cannot offer (no display, say) is refused at once;
//! * after a reconnection every standing grant is announced again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use lifeline_proto::agent::AgentToRelay;
use lifeline_proto::remote::Permission;

/// How long the customer has to answer before a question counts as a refusal.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// What happened to a permission, for the window and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Granted,
    Denied,
    /// Not answered in time.
    TimedOut,
    /// Withdrawn after it was granted.
    Revoked,
    /// This computer cannot offer it.
    Unavailable,
}

impl Change {
    pub fn granted(self) -> bool {
        self == Change::Granted
    }

    /// The log name.
    pub fn name(self) -> &'static str {
        match self {
            Change::Granted => "granted",
            Change::Denied => "denied",
            Change::TimedOut => "timed_out",
            Change::Revoked => "revoked",
            Change::Unavailable => "unavailable",
        }
    }
}

/// One decided permission: the message for the relay and the change for the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub permission: Permission,
    pub change: Change,
}

impl Decision {
    pub fn message(&self) -> AgentToRelay {
        AgentToRelay::Permission {
            permission: self.permission,
            granted: self.change.granted(),
        }
    }
}

/// What a request from the technician leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Requested {
    /// Ask the customer; the question stands until `deadline`.
    Ask { deadline: Instant },
    /// Decided without asking (already granted: said again; or unavailable).
    Decided(Decision),
    /// The same question is already open.
    AlreadyAsked,
}

#[derive(Debug)]
pub struct Consent {
    timeout: Duration,
    open: BTreeMap<Permission, Instant>,
    granted: BTreeSet<Permission>,
}

impl Consent {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            open: BTreeMap::new(),
            granted: BTreeSet::new(),
        }
    }

    /// The technician asks for `permission`; `available` says whether this computer can
    /// offer it at all.
    pub fn request(&mut self, permission: Permission, available: bool, now: Instant) -> Requested {
        if !available {
            self.open.remove(&permission);
            return Requested::Decided(Decision {
                permission,
                change: Change::Unavailable,
            });
        }
        if self.granted.contains(&permission) {
            return Requested::Decided(Decision {
                permission,
                change: Change::Granted,
            });
        }
        if self.open.contains_key(&permission) {
            return Requested::AlreadyAsked;
        }
        let deadline = now + self.timeout;
        self.open.insert(permission, deadline);
        Requested::Ask { deadline }
    }

    /// The customer's answer to an open question, or a withdrawal (`allow: false`) of a
    /// granted permission. Returns every decision it leads to (withdrawing `view` withdraws
    /// `control` too); nothing when there was nothing to answer or withdraw.
    pub fn answer(&mut self, permission: Permission, allow: bool) -> Vec<Decision> {
        if self.open.remove(&permission).is_some() {
            if allow {
                self.granted.insert(permission);
            }
            return vec![Decision {
                permission,
                change: if allow {
                    Change::Granted
                } else {
                    Change::Denied
                },
            }];
        }
        if allow || !self.granted.remove(&permission) {
            return Vec::new();
        }
        let mut out = vec![Decision {
            permission,
            change: Change::Revoked,
        }];
        if permission == Permission::View {
            out.extend(self.answer(Permission::Control, false));
        }
        out
    }

    /// Questions whose deadline has passed, refused.
    pub fn expire(&mut self, now: Instant) -> Vec<Decision> {
        let due: Vec<Permission> = self
            .open
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        due.into_iter()
            .map(|permission| {
                self.open.remove(&permission);
                Decision {
                    permission,
                    change: Change::TimedOut,
                }
            })
            .collect()
    }

    /// The earliest deadline of an open question.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().min().copied()
    }

    pub fn is_granted(&self, permission: Permission) -> bool {
        self.granted.contains(&permission)
    }

    pub fn is_open(&self, permission: Permission) -> bool {
        self.open.contains_key(&permission)
    }

    /// The grants that stand, announced again after a reconnection.
    pub fn standing(&self) -> Vec<AgentToRelay> {
        self.granted
            .iter()
            .map(|&permission| AgentToRelay::Permission {
                permission,
                granted: true,
            })
            .collect()
    }

    /// Withdraws everything (the session ends): open questions are dropped, grants
    /// revoked.
    pub fn withdraw_all(&mut self) -> Vec<Decision> {
        self.open.clear();
        let granted: Vec<Permission> = std::mem::take(&mut self.granted).into_iter().collect();
        granted
            .into_iter()
            .map(|permission| Decision {
                permission,
                change: Change::Revoked,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent() -> (Consent, Instant) {
        (Consent::new(Duration::from_secs(30)), Instant::now())
    }

    #[test]
    fn ask_allow_and_revoke() {
        let (mut c, t) = consent();
        let Requested::Ask { deadline } = c.request(Permission::View, true, t) else {
            panic!("asks")
        };
        assert_eq!(deadline, t + Duration::from_secs(30));
        assert_eq!(c.next_deadline(), Some(deadline));
        assert_eq!(
            c.request(Permission::View, true, t),
            Requested::AlreadyAsked
        );
        let d = c.answer(Permission::View, true);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].change, Change::Granted);
        assert_eq!(
            d[0].message(),
            AgentToRelay::Permission {
                permission: Permission::View,
                granted: true
            }
        );
        assert!(c.is_granted(Permission::View));
        assert_eq!(c.next_deadline(), None);
        // Asked again while granted: said again without asking.
        assert!(matches!(
            c.request(Permission::View, true, t),
            Requested::Decided(Decision {
                change: Change::Granted,
                ..
            })
        ));
        // A second answer does nothing; a withdrawal revokes.
        assert!(c.answer(Permission::View, true).is_empty());
        let d = c.answer(Permission::View, false);
        assert_eq!(d[0].change, Change::Revoked);
        assert!(!c.is_granted(Permission::View));
        assert!(c.answer(Permission::View, false).is_empty());
    }

    #[test]
    fn deny_and_timeout() {
        let (mut c, t) = consent();
        c.request(Permission::Control, true, t);
        c.request(Permission::Clipboard, true, t + Duration::from_secs(10));
        assert_eq!(
            c.answer(Permission::Control, false)[0].change,
            Change::Denied
        );
        assert!(c.expire(t + Duration::from_secs(39)).is_empty());
        let d = c.expire(t + Duration::from_secs(40));
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].permission, d[0].change),
            (Permission::Clipboard, Change::TimedOut)
        );
        assert!(!d[0].change.granted());
        // A late answer to an expired question does nothing.
        assert!(c.answer(Permission::Clipboard, true).is_empty());
        assert!(!c.is_granted(Permission::Clipboard));
    }

    #[test]
    fn unanswerable_requests_and_unasked_answers() {
        let (mut c, t) = consent();
        assert!(matches!(
            c.request(Permission::View, false, t),
            Requested::Decided(Decision {
                change: Change::Unavailable,
                ..
            })
        ));
        assert!(c.answer(Permission::Shell, true).is_empty());
        assert!(!c.is_granted(Permission::Shell));
    }

    #[test]
    fn withdrawing_view_withdraws_control() {
        let (mut c, t) = consent();
        for p in [Permission::View, Permission::Control, Permission::Clipboard] {
            c.request(p, true, t);
            c.answer(p, true);
        }
        assert_eq!(c.standing().len(), 3);
        let d = c.answer(Permission::View, false);
        let perms: Vec<_> = d.iter().map(|d| (d.permission, d.change)).collect();
        assert_eq!(
            perms,
            [
                (Permission::View, Change::Revoked),
                (Permission::Control, Change::Revoked)
            ]
        );
        assert!(c.is_granted(Permission::Clipboard));
        let all = c.withdraw_all();
        assert_eq!(all.len(), 1);
        assert!(c.standing().is_empty());
    }
}
