//! The `devices`, `retired_slots` and `used_codes` tables.

use super::StoreError;
use paycode_db::sql::{Connection, OptionalExtension, params};

/// The device that holds a slot, with the secret its codes are checked against.
pub(crate) struct DeviceKey {
    pub device_id: String,
    pub user_name: String,
    pub secret: Vec<u8>,
}

pub(crate) fn by_slot(conn: &Connection, slot: &str) -> Result<Option<DeviceKey>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT device_id, user_name, secret FROM devices WHERE slot = ?1",
            params![slot],
            |r| {
                Ok(DeviceKey {
                    device_id: r.get(0)?,
                    user_name: r.get(1)?,
                    secret: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// `(device_id, user_name)` of the device whose token hashes to `token_hash`.
pub(crate) fn by_token_hash(
    conn: &Connection,
    token_hash: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT device_id, user_name FROM devices WHERE token_hash = ?1",
            params![token_hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Whether a device holds or ever held the slot.
pub(crate) fn slot_taken(conn: &Connection, slot: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE slot = ?1) \
         OR EXISTS (SELECT 1 FROM retired_slots WHERE slot = ?1)",
        params![slot],
        |r| r.get(0),
    )?)
}

/// A device to insert; only the token's hash is stored.
pub(crate) struct NewDevice<'a> {
    pub device_id: &'a str,
    pub user_name: &'a str,
    pub device_name: Option<&'a str>,
    pub token_hash: &'a str,
    pub slot: &'a str,
    pub secret: &'a [u8],
    pub created_at_ms: i64,
}

pub(crate) fn insert(conn: &Connection, d: &NewDevice<'_>) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO devices (device_id, user_name, device_name, token_hash, slot, secret, \
         created_at_ms, rotated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            d.device_id,
            d.user_name,
            d.device_name,
            d.token_hash,
            d.slot,
            d.secret,
            d.created_at_ms
        ],
    )?;
    Ok(())
}

pub(crate) fn slot_of(conn: &Connection, device_id: &str) -> Result<String, StoreError> {
    conn.query_row(
        "SELECT slot FROM devices WHERE device_id = ?1",
        params![device_id],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("device {device_id}")))
}

/// Remembers a slot for good, so that no device is ever given it again.
pub(crate) fn retire_slot(
    conn: &Connection,
    slot: &str,
    device_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO retired_slots (slot, device_id, retired_at_ms) VALUES (?1, ?2, ?3)",
        params![slot, device_id, now_ms],
    )?;
    Ok(())
}

/// The credentials a rotation gives a device.
pub(crate) struct NewCredentials<'a> {
    pub token_hash: &'a str,
    pub slot: &'a str,
    pub secret: &'a [u8],
}

/// Gives a device a new slot, secret and token.
pub(crate) fn replace_credentials(
    conn: &Connection,
    device_id: &str,
    c: &NewCredentials<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE devices SET slot = ?2, secret = ?3, token_hash = ?4, \
         rotated_at_ms = ?5 WHERE device_id = ?1",
        params![device_id, c.slot, c.secret, c.token_hash, now_ms],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("device {device_id}")));
    }
    Ok(())
}

/// Marks a code used; `false` when it already was (a replay).
pub(crate) fn mark_code_used(
    conn: &Connection,
    slot: &str,
    step: i64,
    seq: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT INTO used_codes (slot, step, seq, used_at_ms) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT DO NOTHING",
        params![slot, step, seq, now_ms],
    )?;
    Ok(n == 1)
}

pub(crate) fn any_code_used_before(conn: &Connection, before_ms: i64) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM used_codes WHERE used_at_ms < ?1)",
        params![before_ms],
        |r| r.get(0),
    )?)
}

/// Forgets at most `limit` used codes older than `before_ms`, oldest first.
pub(crate) fn forget_codes_used_before(
    conn: &Connection,
    before_ms: i64,
    limit: usize,
) -> Result<usize, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    Ok(conn.execute(
        "DELETE FROM used_codes WHERE (slot, step, seq) IN (SELECT slot, step, seq \
         FROM used_codes WHERE used_at_ms < ?1 ORDER BY used_at_ms LIMIT ?2)",
        params![before_ms, limit],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::conn;

    fn device<'a>(device_id: &'a str, token_hash: &'a str, slot: &'a str) -> NewDevice<'a> {
        NewDevice {
            device_id,
            user_name: "alice",
            device_name: None,
            token_hash,
            slot,
            secret: b"secret",
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_slot_is_held_once_and_remembered_after_rotation() {
        let c = conn();
        c.execute(
            "INSERT INTO users (name, customer_id, password_hash, balance_minor, \
             pwfree_per_payment_minor, pwfree_daily_minor, hard_per_payment_minor, \
             hard_daily_minor, created_at_ms) VALUES ('alice', 'C', 'h', 0, 0, 0, 0, 0, 0)",
            [],
        )
        .unwrap();
        insert(&c, &device("D1", "t1", "00000001")).unwrap();
        match insert(&c, &device("D2", "t2", "00000001")) {
            Err(StoreError::Unique { key }) => assert_eq!(key, "devices.slot"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            by_token_hash(&c, "t1").unwrap(),
            Some(("D1".to_string(), "alice".to_string()))
        );
        assert_eq!(by_slot(&c, "00000001").unwrap().unwrap().secret, b"secret");
        retire_slot(&c, "00000001", "D1", 5).unwrap();
        let fresh = NewCredentials {
            token_hash: "t3",
            slot: "00000002",
            secret: b"other",
        };
        replace_credentials(&c, "D1", &fresh, 5).unwrap();
        assert!(
            slot_taken(&c, "00000001").unwrap(),
            "a retired slot stays taken"
        );
        assert!(slot_taken(&c, "00000002").unwrap());
        assert!(!slot_taken(&c, "00000003").unwrap());
        assert_eq!(slot_of(&c, "D1").unwrap(), "00000002");
        assert!(by_token_hash(&c, "t1").unwrap().is_none());
        assert!(matches!(slot_of(&c, "D9"), Err(StoreError::NotFound(_))));
        assert!(matches!(
            replace_credentials(&c, "D9", &fresh, 5),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn a_code_is_used_once_and_forgotten_after_its_window() {
        let c = conn();
        assert!(mark_code_used(&c, "00000001", 10, 0, 1_000).unwrap());
        assert!(!mark_code_used(&c, "00000001", 10, 0, 1_500).unwrap());
        assert!(mark_code_used(&c, "00000001", 10, 1, 2_000).unwrap());
        assert!(any_code_used_before(&c, 1_001).unwrap());
        assert!(!any_code_used_before(&c, 1_000).unwrap());
        assert_eq!(forget_codes_used_before(&c, 3_000, 1).unwrap(), 1);
        assert_eq!(forget_codes_used_before(&c, 3_000, 10).unwrap(), 1);
        assert!(mark_code_used(&c, "00000001", 10, 0, 4_000).unwrap());
    }
}
