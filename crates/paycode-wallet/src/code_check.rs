//! Checking a scanned code against the store: guessing limits per source, the device that holds
//! the slot, the time-based value (pure, in [`crate::code`]) and "each code pays once". Runs
//! inside the caller's `pay` job, so a code is marked used in the same job that decides.

use crate::code::{self, OtpMatch};
use crate::store;
use crate::{Inner, WalletError};
use paycode_core::ResultCode;
use paycode_core::guess::{Source, SourceLimit};
use paycode_db::sql::Connection;
use std::sync::Arc;

pub(crate) struct DeviceHit {
    pub device_id: String,
    pub user_name: String,
    /// Wrong codes were tried for this slot recently: the payment needs the password.
    pub suspect: bool,
}

/// Who sent a code look-up, as the acquirer's request names it: the acquirer (its verified
/// `Client-Id`), the merchant and, when given, the terminal.
#[derive(Debug, Clone)]
pub(crate) struct CodeSource {
    pub acquirer: String,
    pub merchant: String,
    pub terminal: Option<String>,
}

impl CodeSource {
    fn limited(&self, limits: &code::GuessLimits) -> Vec<(Source<'_>, SourceLimit)> {
        Source::of_merchant(&self.acquirer, &self.merchant, self.terminal.as_deref())
            .map(|src| {
                let limit = match src {
                    Source::Terminal { .. } => limits.per_terminal,
                    _ => limits.per_merchant,
                };
                (src, limit)
            })
            .collect()
    }
}

fn slot_key(slot: &str) -> String {
    format!("s\u{1f}{slot}")
}

/// Checks a code and, when it is accepted, marks it used (in the caller's job). A source over its
/// guessing limit is refused before the code is looked at; a failed look-up counts against the
/// source (and, for a known slot, against the slot, which makes its next payments need the
/// password). Nothing here ever refuses a genuine code because of failures counted elsewhere.
pub(crate) fn check_code(
    inner: &Inner,
    conn: &Connection,
    code_digits: &str,
    source: &CodeSource,
    now_ms: i64,
) -> Result<Result<DeviceHit, (ResultCode, String)>, WalletError> {
    let cfg = &inner.config;
    let limits = &cfg.guess_limits;
    let sources = source.limited(limits);
    for (src, limit) in &sources {
        if let Some(wait_ms) = limit.refusal(store::guesses::load(conn, &src.key())?, now_ms) {
            tracing::warn!(wallet = %cfg.name, code = %paycode_core::code::mask(code_digits),
                source = %src, "code look-up refused: the source is over its guessing limit");
            return Ok(Err((
                ResultCode::RISK_REJECT,
                limit.refusal_message(src, wait_ms),
            )));
        }
    }
    let fail = |conn: &Connection, slot: Option<&str>| -> Result<(), WalletError> {
        for (src, limit) in &sources {
            store::guesses::count_failure(conn, &src.key(), *limit, now_ms)?;
        }
        if let Some(slot) = slot {
            store::guesses::count_failure(conn, &slot_key(slot), limits.slot.limit, now_ms)?;
        }
        Ok(())
    };
    let invalid = || {
        Ok(Err((
            ResultCode::INVALID_CODE,
            ResultCode::INVALID_CODE.default_message().to_string(),
        )))
    };
    let Some(parsed) = code::parse_code(code_digits, &cfg.cii) else {
        fail(conn, None)?;
        return invalid();
    };
    let Some(device) = store::devices::by_slot(conn, &parsed.slot)? else {
        fail(conn, None)?;
        return invalid();
    };
    let now_s = u64::try_from(now_ms / 1000).unwrap_or(0);
    let expired = || {
        Ok(Err((
            ResultCode::EXPIRED_CODE,
            ResultCode::EXPIRED_CODE.default_message().to_string(),
        )))
    };
    match code::match_otp(&device.secret, &cfg.cii, &parsed, inner.window(), now_s) {
        OtpMatch::Live { step } => {
            let step = i64::try_from(step).map_err(|_| WalletError::Overflow)?;
            let fresh = store::devices::mark_code_used(
                conn,
                &parsed.slot,
                step,
                i64::from(parsed.seq),
                now_ms,
            )?;
            if !fresh {
                return expired();
            }
            let suspect = limits
                .slot
                .limit
                .refusal(store::guesses::load(conn, &slot_key(&parsed.slot))?, now_ms)
                .is_some();
            Ok(Ok(DeviceHit {
                device_id: device.device_id,
                user_name: device.user_name,
                suspect,
            }))
        }
        OtpMatch::Old => expired(),
        OtpMatch::None => {
            fail(conn, Some(&parsed.slot))?;
            invalid()
        }
    }
}

/// Forgets used codes that are outside every window and guessing counters whose window has
/// closed, at most `limit` rows of each. Reads first, so an idle pass writes nothing.
pub(crate) async fn prune_code_state(
    inner: &Arc<Inner>,
    batch: usize,
) -> Result<usize, WalletError> {
    let now_ms = inner.now_ms();
    let window = inner.window();
    let used_before_ms = now_ms
        .saturating_sub(i64::try_from(window.remember_used_s()).unwrap_or(i64::MAX / 2000) * 1000);
    let g = &inner.config.guess_limits;
    let longest_ms = [g.per_merchant, g.per_terminal, g.slot.limit]
        .iter()
        .map(|l| l.window_ms())
        .max()
        .unwrap_or(0);
    let counters_before_ms = now_ms.saturating_sub(longest_ms);
    let any = inner
        .read_store(move |c| {
            Ok(store::devices::any_code_used_before(c, used_before_ms)?
                || store::guesses::any_older_than(c, counters_before_ms)?)
        })
        .await?;
    if !any {
        return Ok(0);
    }
    inner
        .write_store(move |c| {
            let used = store::devices::forget_codes_used_before(c, used_before_ms, batch)?;
            let counters = store::guesses::prune(c, counters_before_ms, batch)?;
            Ok(used + counters)
        })
        .await
}
