//! mcp-platform: the platform API of mcp-runtime — users (password login, short-lived Ed25519
//! access tokens, login lockout), API keys, teams and memberships, and the platform audit log,
//! in PostgreSQL with versioned migrations. See docs/platform.md for what exists and what not.

pub mod cluster;
pub mod config;
pub mod metrics;
pub mod migrate;
pub mod oidc;
pub mod secrets;
pub mod sentinel;
pub mod server;
pub mod store;

/// Creates the bootstrap admin when no user has that email; returns whether it was created.
/// An existing user is left as it is (its password and role are not touched).
pub async fn bootstrap_admin(
    client: &mut tokio_postgres::Client,
    email: &str,
    password: &str,
) -> Result<bool, String> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') {
        return Err(format!(
            "--bootstrap-admin-email: `{email}` is not an email address"
        ));
    }
    secrets::check_new_password(password)
        .map_err(|e| format!("--bootstrap-admin-password-file: {e}"))?;
    let db = |e: store::StoreError| format!("creating the bootstrap admin: {e}");
    if store::user_by_email(&*client, &email)
        .await
        .map_err(db)?
        .is_some()
    {
        return Ok(false);
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| e.to_string())?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| format!("creating the bootstrap admin: {e}"))?;
    let user = match store::create_user(&tx, &email, store::Role::Admin, Some(&hash)).await {
        // Another replica created it at the same moment.
        Err(store::StoreError::Conflict) => return Ok(false),
        other => other.map_err(db)?,
    };
    store::audit(
        &tx,
        &store::AuditEntry {
            actor: None,
            action: "user.bootstrap",
            target: &user.email,
            outcome: store::Outcome::Ok,
            detail: Some("admin"),
            client_ip: "",
        },
    )
    .await
    .map_err(db)?;
    tx.commit()
        .await
        .map_err(|e| format!("creating the bootstrap admin: {e}"))?;
    Ok(true)
}
