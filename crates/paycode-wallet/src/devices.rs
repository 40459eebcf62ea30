//! Devices: registration with the password, operator provisioning, rotation, and the bearer
//! token look-up. A device's token is returned once; only its hash is stored.

use crate::code::SECRET_LEN;
use crate::random::{random_bytes, random_token, sha256_hex};
use crate::store;
use crate::store::devices::{NewCredentials, NewDevice};
use crate::users::{self, PasswordAttempt};
use crate::{Inner, WalletError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use paycode_db::sql::Connection;
use std::sync::Arc;

/// A device's fresh credentials, returned once (only hashes of the token are stored).
pub(crate) struct DeviceCredentials {
    pub device_id: String,
    pub token: String,
    pub slot: String,
    pub secret: Vec<u8>,
}

impl DeviceCredentials {
    pub(crate) fn secret_b64(&self) -> String {
        B64.encode(&self.secret)
    }
}

/// Slot candidates tried before giving up (8 digits: a collision is rare until the wallet holds
/// tens of millions of devices).
const SLOT_TRIES_MAX: usize = 32;

/// A slot no device holds or ever held.
fn fresh_slot(conn: &Connection) -> Result<String, WalletError> {
    for _ in 0..SLOT_TRIES_MAX {
        let mut b = [0u8; 8];
        random_bytes(&mut b);
        let slot = format!("{:08}", u64::from_be_bytes(b) % 100_000_000);
        if !store::devices::slot_taken(conn, &slot)? {
            return Ok(slot);
        }
    }
    Err(WalletError::Corrupt(format!(
        "no free device slot found in {SLOT_TRIES_MAX} tries"
    )))
}

fn new_credentials(inner: &Inner, conn: &Connection) -> Result<DeviceCredentials, WalletError> {
    let mut secret = vec![0u8; SECRET_LEN];
    random_bytes(&mut secret);
    Ok(DeviceCredentials {
        device_id: inner.new_id("WD"),
        token: random_token(32),
        slot: fresh_slot(conn)?,
        secret,
    })
}

/// Stores a new device of `user` with these credentials.
fn insert_device(
    conn: &Connection,
    user: &str,
    device_name: Option<&str>,
    creds: &DeviceCredentials,
    now_ms: i64,
) -> Result<(), WalletError> {
    store::devices::insert(
        conn,
        &NewDevice {
            device_id: &creds.device_id,
            user_name: user,
            device_name,
            token_hash: &sha256_hex(creds.token.as_bytes()),
            slot: &creds.slot,
            secret: &creds.secret,
            created_at_ms: now_ms,
        },
    )?;
    Ok(())
}

/// The result of a password attempt outside a challenge (device registration).
pub(crate) enum RegisterOutcome {
    Registered(DeviceCredentials),
    WrongPassword { remaining: u32 },
    Locked,
}

pub(crate) async fn register_device(
    inner: &Arc<Inner>,
    user: String,
    device_name: Option<String>,
    password_ok: bool,
) -> Result<RegisterOutcome, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            let u = store::users::load(conn, &user)?
                .ok_or_else(|| WalletError::UnknownUser(user.clone()))?;
            match users::count_password_attempt(&i, conn, &user, &u, password_ok)? {
                PasswordAttempt::Locked | PasswordAttempt::LockedNow => {
                    return Ok(RegisterOutcome::Locked);
                }
                PasswordAttempt::Wrong { remaining } => {
                    return Ok(RegisterOutcome::WrongPassword { remaining });
                }
                PasswordAttempt::Right => {}
            }
            let creds = new_credentials(&i, conn)?;
            insert_device(conn, &user, device_name.as_deref(), &creds, i.now_ms())?;
            Ok(RegisterOutcome::Registered(creds))
        })
        .await
}

/// Provisions `count` devices for a user in one transaction, without a password: the operator's
/// path (load tests, fleet set-up), not the customer's.
pub(crate) async fn provision_devices(
    inner: &Arc<Inner>,
    user: String,
    count: usize,
) -> Result<Vec<DeviceCredentials>, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            if !store::users::exists(conn, &user)? {
                return Err(WalletError::UnknownUser(user.clone()));
            }
            let now_ms = i.now_ms();
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let creds = new_credentials(&i, conn)?;
                insert_device(conn, &user, Some("provisioned"), &creds, now_ms)?;
                out.push(creds);
            }
            Ok(out)
        })
        .await
}

/// Replaces a device's slot, secret and token; the old slot is retired for good.
pub(crate) async fn rotate_device(
    inner: &Arc<Inner>,
    device_id: String,
) -> Result<DeviceCredentials, WalletError> {
    let i = inner.clone();
    inner
        .db
        .write(move |conn| {
            let now_ms = i.now_ms();
            let old_slot = store::devices::slot_of(conn, &device_id)?;
            let mut creds = new_credentials(&i, conn)?;
            creds.device_id = device_id.clone();
            store::devices::retire_slot(conn, &old_slot, &device_id, now_ms)?;
            store::devices::replace_credentials(
                conn,
                &device_id,
                &NewCredentials {
                    token_hash: &sha256_hex(creds.token.as_bytes()),
                    slot: &creds.slot,
                    secret: &creds.secret,
                },
                now_ms,
            )?;
            Ok(creds)
        })
        .await
}

/// The device and user a bearer token belongs to.
pub(crate) async fn device_by_token(
    inner: &Arc<Inner>,
    token: &str,
) -> Result<Option<(String, String)>, WalletError> {
    let h = sha256_hex(token.as_bytes());
    inner
        .read_store(move |c| store::devices::by_token_hash(c, &h))
        .await
}
