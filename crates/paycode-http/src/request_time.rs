//! `Request-Time` freshness (SPEC §2.1), the one place every signed server checks it.
//!
//! The header is opaque for signing, but a signed request must not stay valid forever: a
//! captured request replayed a day later is refused. The SDKs send two forms and both are read:
//!
//! - epoch milliseconds, ASCII digits only (the Java and Go SDKs: `1796112777123`);
//! - ISO-8601 with an offset, with or without fractional seconds (the Python SDK 1.7.1 sends
//!   `2026-12-01T08:12:57+00:00`; `…Z`, `….123+08:00` and `+0800` are read too).
//!
//! A time without an offset is refused rather than guessed: the same text means different
//! instants in different zones. The check is a pure function of the header text, "now" and the
//! window, so the servers pass their own (test-controllable) clocks. Servers call it **after**
//! the signature verified: until then the time is just text anyone could have written, and a
//! forged request is answered as forged (`SIGNATURE_INVALID`), never with a hint about the
//! server's clock.

use chrono::DateTime;
use std::fmt;

/// The freshness window when configuration names none: ±5 minutes.
pub const REQUEST_TIME_WINDOW_DEFAULT_S: u64 = 300;
/// The widest window configuration may set: a day. Wider would keep captured requests usable
/// for longer than any clock could plausibly be wrong.
pub const REQUEST_TIME_WINDOW_MAX_S: u64 = 86_400;
/// Longest header text echoed back in an error message.
const SHOWN_CHARS_MAX: usize = 40;

/// Why a `Request-Time` was refused. The messages name the header and the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTimeError {
    Missing {
        window_s: u64,
    },
    Unreadable {
        shown: String,
        window_s: u64,
    },
    /// `skew_ms` is request time minus server time: negative for a stale request, positive for
    /// one from the future.
    OutsideWindow {
        shown: String,
        skew_ms: i64,
        window_s: u64,
    },
}

impl fmt::Display for RequestTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestTimeError::Missing { window_s } => write!(
                f,
                "the Request-Time header is missing; send the current time as epoch \
                 milliseconds or ISO-8601 with an offset, within ±{window_s} s of the server's time"
            ),
            RequestTimeError::Unreadable { shown, window_s } => write!(
                f,
                "Request-Time {shown:?} is neither epoch milliseconds nor ISO-8601 with an \
                 offset (e.g. 2026-01-01T08:00:00+08:00); send the current time, within \
                 ±{window_s} s of the server's time"
            ),
            RequestTimeError::OutsideWindow {
                shown,
                skew_ms,
                window_s,
            } => {
                let abs = skew_ms.unsigned_abs();
                let side = if *skew_ms < 0 { "behind" } else { "ahead of" };
                write!(
                    f,
                    "Request-Time {shown:?} is {}.{:03} s {side} the server's time; requests are \
                     accepted within ±{window_s} s (sign each request when it is sent, and keep \
                     the clock synchronised)",
                    abs / 1000,
                    abs % 1000
                )
            }
        }
    }
}

impl std::error::Error for RequestTimeError {}

fn shown(text: &str) -> String {
    crate::cut(text, SHOWN_CHARS_MAX)
}

/// Reads a `Request-Time` in either accepted form as epoch milliseconds.
pub fn parse_request_time(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok();
    }
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Checks a request's `Request-Time` header (`None` when absent) against the server's `now_ms`:
/// accepted when it is at most `window_s` seconds away in either direction (the edges
/// included). Returns the request's time in epoch milliseconds.
pub fn check_request_time(
    header: Option<&str>,
    now_ms: i64,
    window_s: u64,
) -> Result<i64, RequestTimeError> {
    let text = match header.map(str::trim) {
        None | Some("") => return Err(RequestTimeError::Missing { window_s }),
        Some(t) => t,
    };
    let at_ms = parse_request_time(text).ok_or_else(|| RequestTimeError::Unreadable {
        shown: shown(text),
        window_s,
    })?;
    let skew_ms = at_ms.saturating_sub(now_ms);
    if skew_ms.unsigned_abs() > window_s.saturating_mul(1000) {
        return Err(RequestTimeError::OutsideWindow {
            shown: shown(text),
            skew_ms,
            window_s,
        });
    }
    Ok(at_ms)
}

/// Checks a configured window: positive and at most [`REQUEST_TIME_WINDOW_MAX_S`].
pub fn validate_window_s(window_s: u64) -> Result<(), String> {
    if window_s == 0 || window_s > REQUEST_TIME_WINDOW_MAX_S {
        return Err(format!(
            "request_time_window_s is {window_s}; it must be 1 to {REQUEST_TIME_WINDOW_MAX_S} seconds"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T08:12:57.000Z
    const NOW_MS: i64 = 1_796_112_777_000;
    const WINDOW_S: u64 = 300;

    /// `Ok(skew_ms)` when accepted, else the error's kind.
    fn check(header: Option<&str>, expect: Result<i64, &str>) {
        let got = check_request_time(header, NOW_MS, WINDOW_S).map(|t| t - NOW_MS);
        let got = got.map_err(|e| match e {
            RequestTimeError::Missing { .. } => "missing",
            RequestTimeError::Unreadable { .. } => "unreadable",
            RequestTimeError::OutsideWindow { skew_ms, .. } if skew_ms < 0 => "stale",
            RequestTimeError::OutsideWindow { .. } => "future",
        });
        assert_eq!(got, expect, "{header:?}");
    }

    #[test]
    fn both_sdk_forms_are_read() {
        // Epoch milliseconds (Java, Go).
        check(Some("1796112777000"), Ok(0));
        check(Some("1796112777123"), Ok(123));
        // Exactly what global-open-sdk-python 1.7.1 sends: whole seconds, +00:00.
        check(Some("2026-12-01T08:12:57+00:00"), Ok(0));
        check(Some("2026-12-01T08:12:57Z"), Ok(0));
        check(Some("2026-12-01T08:12:57.250Z"), Ok(250));
        check(Some("2026-12-01T16:12:57+08:00"), Ok(0));
        check(Some("2026-12-01T16:12:57.5+08:00"), Ok(500));
        check(Some("2026-12-01T16:12:57+0800"), Ok(0));
        check(Some("2026-12-01T16:12:57.123456789+08:00"), Ok(123));
        check(Some("2026-12-01t08:12:57z"), Ok(0));
        check(Some(" 1796112777000 "), Ok(0));
    }

    #[test]
    fn the_window_edges_are_inside_and_one_millisecond_more_is_outside() {
        let w = WINDOW_S as i64 * 1000;
        for (skew, expect) in [
            (-w, Ok(-w)),
            (w, Ok(w)),
            (-w - 1, Err("stale")),
            (w + 1, Err("future")),
        ] {
            check(Some(&(NOW_MS + skew).to_string()), expect);
        }
        check(Some("2026-12-01T08:07:57Z"), Ok(-w));
        check(Some("2026-12-01T08:17:57+00:00"), Ok(w));
        check(Some("2026-12-01T08:07:56.999Z"), Err("stale"));
        check(Some("2026-12-01T16:17:57.001+08:00"), Err("future"));
    }

    #[test]
    fn the_times_that_used_to_pay_are_refused() {
        check(Some("1000000000000"), Err("stale"));
        check(Some("2001-01-01T00:00:00Z"), Err("stale"));
        check(Some("not-a-time"), Err("unreadable"));
        check(Some("9999-12-31T23:59:59Z"), Err("future"));
        check(Some("99999999999999999999999"), Err("unreadable"));
        // Epoch seconds read as milliseconds are in 1970: stale, not guessed.
        check(Some("1796112777"), Err("stale"));
    }

    #[test]
    fn unreadable_and_missing_forms() {
        check(None, Err("missing"));
        check(Some(""), Err("missing"));
        check(Some("   "), Err("missing"));
        for bad in [
            "2026-12-01T08:12:57",
            "2026-12-01",
            "-1796112777000",
            "+1796112777000",
            "1796112777000.5",
            "1.764576777E12",
            "2026-12-01T08:12Z",
            "Tue, 01 Dec 2026 08:12:57 GMT",
        ] {
            check(Some(bad), Err("unreadable"));
        }
    }

    #[test]
    fn messages_name_the_header_and_the_window() {
        let e = check_request_time(Some("2001-01-01T00:00:00Z"), NOW_MS, WINDOW_S).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("Request-Time \"2001-01-01T00:00:00Z\""), "{m}");
        assert!(m.contains("behind the server's time"), "{m}");
        assert!(m.contains("±300 s"), "{m}");
        let e = check_request_time(Some(&(NOW_MS + 300_001).to_string()), NOW_MS, WINDOW_S)
            .unwrap_err();
        assert!(e.to_string().contains("300.001 s ahead of"), "{e}");
        for e in [
            check_request_time(None, NOW_MS, 60).unwrap_err(),
            check_request_time(Some("soon"), NOW_MS, 60).unwrap_err(),
        ] {
            let m = e.to_string();
            assert!(m.contains("Request-Time") && m.contains("±60 s"), "{m}");
            assert!(!m.ends_with('.'), "{m}");
        }
        let long = "x".repeat(500);
        let m = check_request_time(Some(&long), NOW_MS, 60)
            .unwrap_err()
            .to_string();
        assert!(m.len() < 300, "a long header is not echoed in full: {m}");
    }

    #[test]
    fn extreme_clocks_do_not_overflow() {
        assert!(check_request_time(Some("0"), i64::MAX, WINDOW_S).is_err());
        assert!(check_request_time(Some(&i64::MAX.to_string()), i64::MIN, u64::MAX).is_ok());
        assert!(check_request_time(Some(&i64::MAX.to_string()), i64::MIN, WINDOW_S).is_err());
    }

    #[test]
    fn configured_windows_are_validated() {
        assert!(validate_window_s(REQUEST_TIME_WINDOW_DEFAULT_S).is_ok());
        assert!(validate_window_s(1).is_ok());
        assert!(validate_window_s(REQUEST_TIME_WINDOW_MAX_S).is_ok());
        assert!(validate_window_s(0).is_err());
        assert!(validate_window_s(REQUEST_TIME_WINDOW_MAX_S + 1).is_err());
    }
}
