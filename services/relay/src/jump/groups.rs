//! Who sees which jump client: one rule for the console's list, jumping and renaming.
//!
//! * `general`: every representative.
//! * `personal:<username>`: the representative who created the deployment key (recorded as
//!   the client's `owner_id`, migration `0004_jump_console.sql`).
//! * `team:<name>`: representatives who are members of that team (`user_teams`, set by an
//!   administrator with `PUT /api/v1/jump/users/{username}/teams`).
//! * Administrators see every client.
//!
//! The same teams have queues of their own ([`crate::hub`]): support buttons and session keys
//! can send a request to a team's queue.

use super::store::ClientRow;
use crate::db::User;

/// Whether `user` (a member of `teams`) may see, and so jump to, `client`.
pub fn may_see(user: &User, teams: &[String], client: &ClientRow) -> bool {
    if user.role == "admin" {
        return true;
    }
    if client.group == "general" {
        return true;
    }
    if client.group.starts_with("personal") {
        return client.owner_id == Some(user.id);
    }
    client
        .group
        .strip_prefix("team:")
        .is_some_and(|team| teams.iter().any(|t| t == team))
}

/// Whether `user` may rename a client or change its comment: administrators, and a
/// representative for their personal clients.
pub fn may_edit(user: &User, client: &ClientRow) -> bool {
    user.role == "admin"
        || (client.group.starts_with("personal") && client.owner_id == Some(user.id))
}

/// A valid team name: 1 to 48 letters, digits, `-`, `_` or `.`.
pub fn valid_team(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, role: &str) -> User {
        User::for_test(id, role)
    }

    fn client(group: &str, owner: Option<i64>) -> ClientRow {
        ClientRow {
            id: "jc_x".into(),
            public_key: String::new(),
            mode: "active".into(),
            name: "pc".into(),
            comment: String::new(),
            group: group.into(),
            computer: "pc".into(),
            platform: String::new(),
            logged_in_user: String::new(),
            agent_version: String::new(),
            created_at: 0,
            last_seen: None,
            removed: false,
            owner_id: owner,
        }
    }

    #[test]
    fn groups_decide_who_sees_a_client() {
        let rep = user(2, "rep");
        let ops = vec!["ops".to_string()];
        assert!(may_see(&rep, &[], &client("general", None)));
        assert!(may_see(&rep, &[], &client("personal:u2", Some(2))));
        assert!(!may_see(&rep, &[], &client("personal:u3", Some(3))));
        assert!(!may_see(&rep, &[], &client("team:ops", None)));
        assert!(may_see(&rep, &ops, &client("team:ops", None)));
        assert!(!may_see(&rep, &ops, &client("team:opsx", None)));
        assert!(may_see(&user(1, "admin"), &[], &client("team:x", None)));
        assert!(may_edit(&rep, &client("personal:u2", Some(2))));
        assert!(!may_edit(&rep, &client("general", None)));
        assert!(valid_team("ops-2") && !valid_team("") && !valid_team("a b"));
    }
}
