//! Creating accounts (from the setup page, the command line and, later, the admin UI).

use crate::auth::{PasswordError, hash_password};
use crate::db::{Db, DbError};

pub const ROLES: &[&str] = &["admin", "rep", "appliance-admin"];

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the user name must be 1 to 64 letters, digits, dots, dashes or underscores")]
    BadUsername,
    #[error("the full name must be 1 to 80 characters")]
    BadDisplayName,
    #[error("the role must be one of: admin, rep, appliance-admin")]
    BadRole,
    #[error("a user named `{0}` already exists")]
    Exists(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Db(#[from] DbError),
}

pub fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

/// Creates an account and returns its id.
pub async fn create(
    db: &Db,
    username: &str,
    display_name: &str,
    role: &str,
    password: &str,
) -> Result<i64, AccountError> {
    if !valid_username(username) {
        return Err(AccountError::BadUsername);
    }
    let display_name = lifeline_proto::sanitize_text(display_name).replace('\n', " ");
    let display_name = display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 80 {
        return Err(AccountError::BadDisplayName);
    }
    if !ROLES.contains(&role) {
        return Err(AccountError::BadRole);
    }
    if db.user_by_name(username).await?.is_some() {
        return Err(AccountError::Exists(username.to_string()));
    }
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|_| AccountError::Password(PasswordError::Hash))??;
    Ok(db.create_user(username, display_name, role, &hash).await?)
}
