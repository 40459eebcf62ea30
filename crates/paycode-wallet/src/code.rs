//! Payment codes: offline generation on the phone and checking in the wallet.
//!
//! This module is pure (no I/O, no clock): the phone app calls [`CodeDisplay::next`] with no
//! network every time it shows a code, and the wallet calls [`parse_code`] and [`match_otp`]
//! inside the database transaction that records the payment, so that "check, then mark used" is
//! atomic.
//!
//! # Construction
//!
//! A code is the 24-digit format of SPEC §4.1: `CII (6) + "02" + UIN (16)`, and the UIN is
//!
//! ```text
//! UIN  = SLOT (8 digits) || SEQ (1 digit) || OTP (7 digits)
//! OTP  = u64_be(HMAC-SHA256(secret, "paycode-code-v2" || CII || SLOT || u64_be(step) || SEQ)[0..8]) mod 10^7
//! step = floor(unix_time_s / step_s)          (step_s = 30 by default)
//! ```
//!
//! - `SLOT` is a random 8-digit number the wallet assigns to a device at registration. It is a
//!   pseudonym: it says nothing about the user (no account, card or ID number), only the wallet's
//!   own table maps it to a device, and it is replaced (with the secret) each time the phone is
//!   online and calls `rotate`. Retired slots are never handed out again.
//! - `SEQ` numbers the codes one device shows within one time step, `0` to `9`. **Every display
//!   is a fresh code**: the phone keeps the last `(step, SEQ)` it showed ([`CodeDisplay`]) and
//!   always shows a later one — the next `SEQ` of the current step, or, after ten codes in one
//!   step, `SEQ 0` of the next step (which the wallet accepts as one step of clock skew). A phone
//!   can so show at most [`CODES_PER_STEP`] codes per step plus ten borrowed from the next step;
//!   past that it asks the user to wait for the next step (a few seconds at most in practice:
//!   twenty codes within one 30 s step).
//! - `secret` is 32 random bytes, known only to the device and the wallet.
//! - `OTP` is the TOTP idea of RFC 6238 over HMAC-SHA256, with the display number mixed in: 64
//!   bits of the tag reduced modulo 10^7 (the bias of that reduction is below 10^7 / 2^64).
//!
//! Devices provisioned before this construction keep their slot and secret: the material the
//! phone stores is unchanged, only the way the phone derives a code from it.
//!
//! # Checking
//!
//! The wallet finds the device by `SLOT`, then recomputes the OTP for the code's `SEQ` at each
//! step of the window ([`CodeWindow::accepted_steps`]): from `ceil(validity_s / step_s)` steps
//! back to one step ahead (one step of clock skew). With the defaults (30 s steps, 60 s validity)
//! that is four steps, so a code is accepted for at least `validity_s` after it is shown and
//! never after `(ceil(validity_s / step_s) + 1)·step_s` (90 s with the defaults).
//!
//! A code is **single use**: the wallet records each `(slot, step, SEQ)` that was accepted (in the
//! same transaction as the payment), and a second use of that code, even after a failed payment,
//! is `EXPIRED_CODE`. Other codes of the same device are independent: a code shown a moment
//! earlier and never used still pays until it expires. A code that matches a step of the last
//! [`EXPIRED_LOOKBACK_STEPS`] steps before the window is also `EXPIRED_CODE`; anything else is
//! `INVALID_CODE`.
//!
//! # Guessing odds
//!
//! A device has at most [`CodeWindow::live_codes_max`] codes that the wallet would accept at any
//! moment: `CODES_PER_STEP` per accepted step (40 with the defaults), whether or not the phone
//! showed them. Someone who types a random 24-digit number with the right CII (the only part that
//! is not secret) is accepted only if the slot belongs to a live device **and** the OTP equals the
//! value of the typed `SEQ` at one of the window's steps:
//!
//! ```text
//! P(accept) ≤ (live_slots / 10^8) · (window_steps / 10^7)  =  (live_slots / 10^8) · 4·10^-7
//! ```
//!
//! With 10^6 registered devices that is at most 4·10^-9 per guess; someone who knows a victim's
//! slot (it is visible in any code the victim showed) has at most 4·10^-7 per guess.
//!
//! Guessing is limited at its source ([`paycode_core::guess`]), never by refusing a genuine code:
//! the acquirer refuses a merchant client, merchant or terminal after its failed look-ups in a
//! window, and this wallet does the same per acquirer merchant and terminal ([`GuessLimits`]).
//! With the acquirer's defaults (300 failures per client per 10 minutes) a client gets at most
//! `300 · 145 = 43,500` failed guesses a day (plus those already in flight when it reaches its
//! limit); whatever the acquirer does, this wallet allows at most `600 · 145 = 87,000` a day per
//! acquirer merchant, counted in the same transaction as the check, so exactly. Against random
//! slots that gives P ≤ 43,500 · 4·10^-9 ≈ 1.7·10^-4 per client per day (10^6 devices).
//!
//! Against one known slot, the wallet also counts failures per slot ([`SlotSuspicion`]): after
//! 10 in 10 minutes, every code of that slot needs the user's password until the window closes.
//! The user can still pay, but a lucky guess cannot complete without the password. So per day at
//! most `10 · 145 = 1,450` guesses on one known slot can complete without a password:
//! P ≤ 1,450 · 4·10^-7 ≈ 5.8·10^-4. The `random_codes_are_accepted_at_most_at_the_documented_rate`
//! test measures the per-guess rate with a shortened OTP, where it is observable, and checks it
//! stays within the same formula.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use paycode_core::code::{BTI_PAYMENT, CII_LEN, CODE_LEN};
use std::fmt;
use std::ops::RangeInclusive;

pub const SLOT_DIGITS: usize = 8;
pub const SEQ_DIGITS: usize = 1;
/// Codes one device can show per time step (the values of `SEQ`).
pub const CODES_PER_STEP: u8 = 10;
pub const OTP_DIGITS: u32 = 7;
pub const SECRET_LEN: usize = 32;
/// Validity of a code when the device material does not say (seconds).
pub const DEFAULT_VALIDITY_S: u64 = 60;
/// How many steps before the window a matching code is still recognised as expired (rather than
/// invalid): one hour at 30 s steps.
pub const EXPIRED_LOOKBACK_STEPS: u64 = 120;
const DOMAIN: &[u8] = b"paycode-code-v2";

/// What the phone keeps to generate codes offline. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeMaterial {
    pub cii: String,
    pub slot: String,
    pub secret: Vec<u8>,
    pub step_s: u64,
    pub validity_s: u64,
}

impl fmt::Debug for CodeMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeMaterial")
            .field("cii", &self.cii)
            .field("slot", &self.slot)
            .field("secret", &"***")
            .field("step_s", &self.step_s)
            .field("validity_s", &self.validity_s)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeMaterialError {
    #[error("device material has no {0}; register the device again")]
    Missing(&'static str),
    #[error("device material's code secret is not {SECRET_LEN} bytes of base64")]
    BadSecret,
    #[error("device material's slot is not {SLOT_DIGITS} digits")]
    BadSlot,
    #[error("device material's CII is not {CII_LEN} digits")]
    BadCii,
    #[error("device material's code step and validity must be positive numbers of seconds")]
    BadStep,
}

fn all_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

impl CodeMaterial {
    pub fn new(
        cii: &str,
        slot: &str,
        secret: Vec<u8>,
        step_s: u64,
        validity_s: u64,
    ) -> Result<CodeMaterial, CodeMaterialError> {
        if !all_digits(cii, CII_LEN) {
            return Err(CodeMaterialError::BadCii);
        }
        if !all_digits(slot, SLOT_DIGITS) {
            return Err(CodeMaterialError::BadSlot);
        }
        if secret.len() != SECRET_LEN {
            return Err(CodeMaterialError::BadSecret);
        }
        if step_s == 0 || validity_s == 0 {
            return Err(CodeMaterialError::BadStep);
        }
        Ok(CodeMaterial {
            cii: cii.to_string(),
            slot: slot.to_string(),
            secret,
            step_s,
            validity_s,
        })
    }

    /// Reads what `POST /customer/v1/devices/register` (or `rotate`) answered.
    pub fn from_device_material(
        m: &paycode_proto::customer::DeviceMaterial,
    ) -> Result<CodeMaterial, CodeMaterialError> {
        let cii = m.cii.as_deref().ok_or(CodeMaterialError::Missing("cii"))?;
        let slot = m
            .slot
            .as_deref()
            .ok_or(CodeMaterialError::Missing("slot"))?;
        let secret_b64 = m
            .code_secret
            .as_deref()
            .ok_or(CodeMaterialError::Missing("codeSecret"))?;
        let step_s = m
            .code_step_s
            .ok_or(CodeMaterialError::Missing("codeStepS"))?;
        let secret = B64
            .decode(secret_b64)
            .map_err(|_| CodeMaterialError::BadSecret)?;
        let validity_s = m.code_validity_s.unwrap_or(DEFAULT_VALIDITY_S);
        CodeMaterial::new(cii, slot, secret, step_s, validity_s)
    }

    pub fn window(&self) -> CodeWindow {
        CodeWindow {
            step_s: self.step_s,
            validity_s: self.validity_s,
        }
    }
}

/// The time step a Unix time falls in.
pub fn time_step(unix_time_s: u64, step_s: u64) -> u64 {
    unix_time_s / step_s.max(1)
}

/// The one-time value of `slot`'s code number `seq` at `step`, reduced to `digits` decimal digits.
pub fn otp(secret: &[u8], cii: &str, slot: &str, step: u64, seq: u8, digits: u32) -> u64 {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(DOMAIN);
    ctx.update(cii.as_bytes());
    ctx.update(slot.as_bytes());
    ctx.update(&step.to_be_bytes());
    ctx.update(&[seq]);
    let tag = ctx.sign();
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_be_bytes(first) % 10u64.pow(digits)
}

/// The code number `seq` of `step`. `seq` must be below [`CODES_PER_STEP`].
pub fn generate_code_at(m: &CodeMaterial, step: u64, seq: u8) -> String {
    debug_assert!(seq < CODES_PER_STEP, "seq {seq} out of range");
    let value = otp(&m.secret, &m.cii, &m.slot, step, seq, OTP_DIGITS);
    format!(
        "{}{}{}{}{:0width$}",
        m.cii,
        BTI_PAYMENT,
        m.slot,
        seq % CODES_PER_STEP,
        value,
        width = OTP_DIGITS as usize
    )
}

/// A code as the phone shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownCode {
    pub digits: String,
    pub step: u64,
    pub seq: u8,
    /// The wallet accepts it until this Unix time (exclusive), unless it is used first.
    pub valid_until_s: u64,
}

/// The phone's memory of the last code it showed, so that every display is a new code. Stored
/// with the device material; `Default` is a phone that has shown nothing yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeDisplay {
    pub last: Option<(u64, u8)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this phone showed {n} codes in the last few seconds; show a new one in {wait_s} s")]
pub struct TooManyCodes {
    pub n: u32,
    pub wait_s: u64,
}

impl CodeDisplay {
    /// The next code to show at `now_s` and the display state to store. Never repeats a code
    /// shown before while the phone's clock moves forward; if the clock moved back by more than
    /// a step, numbering restarts at the current step.
    pub fn next(
        &self,
        m: &CodeMaterial,
        now_s: u64,
    ) -> Result<(ShownCode, CodeDisplay), TooManyCodes> {
        let cur = time_step(now_s, m.step_s);
        let (step, seq) = match self.last {
            Some((step, seq)) if step >= cur && step <= cur + 1 => {
                if seq + 1 < CODES_PER_STEP {
                    (step, seq + 1)
                } else if step == cur {
                    (cur + 1, 0)
                } else {
                    let wait_s = (cur + 1) * m.step_s - now_s;
                    return Err(TooManyCodes {
                        n: 2 * u32::from(CODES_PER_STEP),
                        wait_s,
                    });
                }
            }
            _ => (cur, 0),
        };
        let window = m.window();
        let shown = ShownCode {
            digits: generate_code_at(m, step, seq),
            step,
            seq,
            valid_until_s: (step + window.steps_back() + 1) * m.step_s,
        };
        Ok((
            shown,
            CodeDisplay {
                last: Some((step, seq)),
            },
        ))
    }
}

/// A code split into its slot, display number and one-time value, after checking the format and
/// the CII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCode {
    pub slot: String,
    pub seq: u8,
    pub otp_text: String,
}

/// Splits a code of this wallet. `None` when it is not a 24-digit payment code with `cii`.
pub fn parse_code(code: &str, cii: &str) -> Option<ParsedCode> {
    if !all_digits(code, CODE_LEN) || !code.starts_with(cii) {
        return None;
    }
    if &code[CII_LEN..CII_LEN + 2] != BTI_PAYMENT {
        return None;
    }
    let uin = &code[CII_LEN + 2..];
    let seq = uin.as_bytes()[SLOT_DIGITS] - b'0';
    Some(ParsedCode {
        slot: uin[..SLOT_DIGITS].to_string(),
        seq,
        otp_text: uin[SLOT_DIGITS + SEQ_DIGITS..].to_string(),
    })
}

/// The validity rules: step length and how long a shown code stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeWindow {
    pub step_s: u64,
    pub validity_s: u64,
}

impl CodeWindow {
    /// Steps before the current one that are still accepted: `ceil(validity_s / step_s)`.
    pub fn steps_back(&self) -> u64 {
        self.validity_s.div_ceil(self.step_s.max(1))
    }

    /// Steps accepted at `now_s`: from [`Self::steps_back`] back to one step ahead (skew).
    pub fn accepted_steps(&self, now_s: u64) -> RangeInclusive<u64> {
        let cur = time_step(now_s, self.step_s);
        cur.saturating_sub(self.steps_back())..=cur + 1
    }

    /// How many codes of one device the wallet would accept at one moment: the bound the
    /// guessing odds are computed with.
    pub fn live_codes_max(&self) -> u64 {
        (self.steps_back() + 2) * u64::from(CODES_PER_STEP)
    }

    /// How long an accepted code must be remembered as used: after this it is outside every
    /// window anyway.
    pub fn remember_used_s(&self) -> u64 {
        (self.steps_back() + 2) * self.step_s
    }
}

/// What a code's one-time value matches on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpMatch {
    /// A step of the window: accepted unless `(slot, step, seq)` was used already.
    Live { step: u64 },
    /// A step too old for the window: `EXPIRED_CODE`.
    Old,
    /// Nothing: `INVALID_CODE`.
    None,
}

/// Matches `code`'s one-time value for the device with `secret` at `now_s`. `digits` is
/// [`OTP_DIGITS`] except in tests that measure odds.
pub fn match_otp_digits(
    secret: &[u8],
    cii: &str,
    code: &ParsedCode,
    window: CodeWindow,
    now_s: u64,
    digits: u32,
) -> OtpMatch {
    let Ok(given) = code.otp_text.parse::<u64>() else {
        return OtpMatch::None;
    };
    let accepted = window.accepted_steps(now_s);
    // Newest first, so that the most recent matching step is the one recorded.
    for step in accepted.clone().rev() {
        if otp(secret, cii, &code.slot, step, code.seq, digits) == given {
            return OtpMatch::Live { step };
        }
    }
    let oldest = *accepted.start();
    let lookback_start = oldest.saturating_sub(EXPIRED_LOOKBACK_STEPS);
    for step in (lookback_start..oldest).rev() {
        if otp(secret, cii, &code.slot, step, code.seq, digits) == given {
            return OtpMatch::Old;
        }
    }
    OtpMatch::None
}

/// [`match_otp_digits`] with the real OTP length.
pub fn match_otp(
    secret: &[u8],
    cii: &str,
    code: &ParsedCode,
    window: CodeWindow,
    now_s: u64,
) -> OtpMatch {
    match_otp_digits(secret, cii, code, window, now_s, OTP_DIGITS)
}

/// The wallet's defence of one known slot: after `failures_max` wrong one-time values for a slot
/// within `window_s`, every code of that slot needs the user's password until the window closes.
/// The user is never refused, only asked for the password; a guessed code cannot complete alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSuspicion {
    pub limit: paycode_core::guess::SourceLimit,
}

impl Default for SlotSuspicion {
    fn default() -> Self {
        SlotSuspicion {
            limit: paycode_core::guess::SourceLimit {
                failures_max: 10,
                window_s: 600,
            },
        }
    }
}

/// Limits on failed code look-ups at the wallet, per source as the acquirer names it. Looser than
/// the acquirer's own defaults, so a well-behaved acquirer throttles first and this is the
/// backstop against one that does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessLimits {
    /// Per acquirer and merchant (`order.merchant.referenceMerchantId`).
    pub per_merchant: paycode_core::guess::SourceLimit,
    /// Per acquirer, merchant and terminal (`order.env.storeTerminalId`).
    pub per_terminal: paycode_core::guess::SourceLimit,
    pub slot: SlotSuspicion,
}

impl Default for GuessLimits {
    fn default() -> Self {
        use paycode_core::guess::SourceLimit;
        GuessLimits {
            per_merchant: SourceLimit {
                failures_max: 600,
                window_s: 600,
            },
            per_terminal: SourceLimit {
                failures_max: 60,
                window_s: 600,
            },
            slot: SlotSuspicion::default(),
        }
    }
}

impl GuessLimits {
    pub fn validate(&self) -> Result<(), String> {
        self.per_merchant.validate("per-merchant guess limit")?;
        self.per_terminal.validate("per-terminal guess limit")?;
        self.slot.limit.validate("per-slot suspicion")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    const CII: &str = "281001";
    const W: CodeWindow = CodeWindow {
        step_s: 30,
        validity_s: 60,
    };

    fn material(slot: u64, seed: u8) -> CodeMaterial {
        let secret: Vec<u8> = (0..SECRET_LEN as u8)
            .map(|i| i.wrapping_mul(31) ^ seed)
            .collect();
        CodeMaterial::new(CII, &format!("{slot:08}"), secret, 30, 60).unwrap()
    }

    fn check_at(m: &CodeMaterial, code: &str, now_s: u64) -> OtpMatch {
        let p = parse_code(code, CII).expect("a generated code parses");
        assert_eq!(p.slot, m.slot);
        match_otp(&m.secret, CII, &p, W, now_s)
    }

    /// The wallet's single-use rule on top of [`match_otp`], as the store applies it.
    fn accept(
        m: &CodeMaterial,
        code: &str,
        now_s: u64,
        used: &mut HashSet<(String, u64, u8)>,
    ) -> &'static str {
        let p = parse_code(code, CII).unwrap();
        match match_otp(&m.secret, CII, &p, W, now_s) {
            OtpMatch::Live { step } => {
                if used.insert((p.slot.clone(), step, p.seq)) {
                    "accepted"
                } else {
                    "expired"
                }
            }
            OtpMatch::Old => "expired",
            OtpMatch::None => "invalid",
        }
    }

    /// A deterministic generator for the measured-odds tests (splitmix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn codes_have_the_standard_format_and_no_private_data() {
        let m = material(12_345_678, 7);
        let (shown, _) = CodeDisplay::default().next(&m, 1_700_000_000).unwrap();
        let code = shown.digits;
        assert_eq!(code.len(), 24);
        let parsed = paycode_core::code::PaymentCode::parse(&code).unwrap();
        assert_eq!(parsed.cii(), Some(CII));
        assert_eq!(&code[6..8], "02");
        assert_eq!(&code[8..16], "12345678");
        assert_eq!(&code[16..17], "0");
        assert!(format!("{m:?}").contains("***"));
    }

    #[test]
    fn material_from_the_wire_round_trips_and_bad_material_is_named() {
        let m = material(42, 1);
        let wire = paycode_proto::customer::DeviceMaterial {
            result: paycode_proto::ResultInfo::success(),
            device_id: None,
            device_token: None,
            code_secret: Some(B64.encode(&m.secret)),
            slot: Some(m.slot.clone()),
            cii: Some(CII.into()),
            code_step_s: Some(30),
            code_validity_s: Some(60),
            user_name: None,
            currency: None,
        };
        assert_eq!(CodeMaterial::from_device_material(&wire).unwrap(), m);
        let mut old = wire.clone();
        old.code_validity_s = None;
        assert_eq!(
            CodeMaterial::from_device_material(&old).unwrap().validity_s,
            DEFAULT_VALIDITY_S
        );
        let mut bad = wire.clone();
        bad.code_secret = Some("AAAA".into());
        assert_eq!(
            CodeMaterial::from_device_material(&bad),
            Err(CodeMaterialError::BadSecret)
        );
        bad.slot = None;
        assert_eq!(
            CodeMaterial::from_device_material(&bad),
            Err(CodeMaterialError::Missing("slot"))
        );
    }

    #[test]
    fn window_with_the_defaults_spans_four_steps_and_forty_live_codes() {
        assert_eq!(W.steps_back(), 2);
        assert_eq!(W.accepted_steps(90), 1..=4);
        assert_eq!(W.accepted_steps(0), 0..=1);
        assert_eq!(W.live_codes_max(), 40);
        assert_eq!(W.remember_used_s(), 120);
    }

    #[test]
    fn every_display_is_a_new_code_even_within_one_second() {
        let m = material(1, 1);
        let mut d = CodeDisplay::default();
        let mut seen = HashSet::new();
        let now = 1_800_000_010; // 10 s into a step
        for i in 0..2 * CODES_PER_STEP {
            let (shown, next) = d.next(&m, now).unwrap();
            assert!(seen.insert(shown.digits.clone()), "code {i} repeated");
            assert_eq!(
                check_at(&m, &shown.digits, now),
                OtpMatch::Live { step: shown.step }
            );
            assert!(shown.valid_until_s >= now + 60, "{shown:?}");
            d = next;
        }
        // Twenty codes in one step: the phone asks to wait for the next step.
        let err = d.next(&m, now).unwrap_err();
        assert_eq!(err.wait_s, 20);
        // At the next step numbering goes on from where it is, never repeating.
        let (shown, _) = d.next(&m, now + 20).unwrap();
        assert!(!seen.contains(&shown.digits));
        // A clock that went far back starts again at its current step.
        let (shown, _) = d.next(&m, now - 3_600).unwrap();
        assert_eq!(shown.seq, 0);
    }

    #[test]
    fn older_unused_codes_stay_valid_and_each_code_pays_once() {
        let m = material(77, 4);
        let now = 1_800_000_000;
        let mut used = HashSet::new();
        let (a, d) = CodeDisplay::default().next(&m, now).unwrap();
        let (b, d) = d.next(&m, now).unwrap();
        let (c, _) = d.next(&m, now + 1).unwrap();
        assert_eq!(accept(&m, &b.digits, now + 1, &mut used), "accepted");
        assert_eq!(accept(&m, &b.digits, now + 2, &mut used), "expired");
        assert_eq!(accept(&m, &a.digits, now + 30, &mut used), "accepted");
        assert_eq!(accept(&m, &c.digits, now + 59, &mut used), "accepted");
        assert_eq!(accept(&m, &a.digits, now + 60, &mut used), "expired");
    }

    proptest! {
        /// A code shown at `shown_s` is live exactly while the checking time's step is between
        /// one step before and `steps_back` steps after the step it was shown in, is old for a
        /// while after, and is never live outside.
        #[test]
        fn generated_codes_check_within_their_window_only(
            slot in 0u64..100_000_000,
            seed in any::<u8>(),
            seq in 0u8..CODES_PER_STEP,
            shown_s in 1_000_000u64..4_000_000_000,
            delta_s in -200i64..400,
        ) {
            let m = material(slot, seed);
            let shown_step = time_step(shown_s, 30);
            let code = generate_code_at(&m, shown_step, seq);
            let now_s = shown_s.checked_add_signed(delta_s).unwrap();
            let got = check_at(&m, &code, now_s);
            let now_step = time_step(now_s, 30);
            let in_window = now_step + 1 >= shown_step && now_step <= shown_step + W.steps_back();
            if in_window {
                prop_assert_eq!(got, OtpMatch::Live { step: shown_step });
            } else {
                prop_assert_ne!(got, OtpMatch::Live { step: shown_step });
                if now_step > shown_step {
                    prop_assert_eq!(got, OtpMatch::Old);
                }
            }
            // The documented guarantee: valid for the whole validity period after it is shown.
            if (0..=60).contains(&delta_s) {
                prop_assert!(matches!(got, OtpMatch::Live { .. }), "not live: {:?}", got);
            }
        }

        /// The slot in a code is its device's, and that device's secret accepts it. (Whether
        /// another device's secret would also accept it is a matter of odds, about 4·10⁻⁶ per
        /// secret, measured by the guessing tests; the wallet never asks, as the slot names
        /// the one secret to check.)
        #[test]
        fn a_code_maps_back_to_exactly_its_device(
            slots in prop::collection::hash_set(0u64..100_000_000, 2..20),
            pick in any::<prop::sample::Index>(),
            seq in 0u8..CODES_PER_STEP,
            now_s in 1_000_000u64..4_000_000_000,
        ) {
            let devices: Vec<CodeMaterial> = slots
                .iter()
                .enumerate()
                .map(|(i, &s)| material(s, i as u8))
                .collect();
            let me = &devices[pick.index(devices.len())];
            let code = generate_code_at(me, time_step(now_s, 30), seq);
            let parsed = parse_code(&code, CII).unwrap();
            prop_assert_eq!(parsed.seq, seq);
            let owners: Vec<&CodeMaterial> =
                devices.iter().filter(|d| d.slot == parsed.slot).collect();
            prop_assert_eq!(owners.len(), 1);
            prop_assert_eq!(owners[0], me);
            let got = match_otp(&me.secret, CII, &parsed, W, now_s);
            prop_assert!(matches!(got, OtpMatch::Live { .. }), "not live: {:?}", got);
        }

        /// Any sequence of displays (with the clock moving forward by random amounts) never
        /// shows the same code twice, and every code shown is live when shown.
        #[test]
        fn displays_never_repeat_while_the_clock_moves_forward(
            gaps_s in prop::collection::vec(0u64..20, 1..120),
        ) {
            let m = material(5, 5);
            let mut d = CodeDisplay::default();
            let mut now = 1_800_000_000u64;
            let mut seen = HashSet::new();
            for g in gaps_s {
                now += g;
                match d.next(&m, now) {
                    Ok((shown, next)) => {
                        prop_assert!(seen.insert((shown.step, shown.seq)));
                        prop_assert_eq!(check_at(&m, &shown.digits, now), OtpMatch::Live { step: shown.step });
                        d = next;
                    }
                    Err(e) => prop_assert!(e.wait_s >= 1 && e.wait_s <= 30),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]
        /// Random 24-digit numbers, half of them aimed at a live slot (the attacker knows a
        /// victim's slot): at ≤ 4·10^-7 per try, none of the 4,000 may be live.
        #[test]
        fn random_24_digit_numbers_are_not_accepted(
            aim in any::<bool>(),
            pick in 0usize..50,
            slot in 0u64..100_000_000,
            value in 0u64..100_000_000,
            now_s in 1_000_000u64..4_000_000_000,
        ) {
            let devices: Vec<CodeMaterial> = (0..50u64).map(|i| material(i * 1_999_993, i as u8)).collect();
            let slot = if aim { devices[pick].slot.clone() } else { format!("{slot:08}") };
            let code = format!("{CII}02{slot}{value:08}");
            let p = parse_code(&code, CII).unwrap();
            if let Some(d) = devices.iter().find(|d| d.slot == p.slot) {
                let got = match_otp(&d.secret, CII, &p, W, now_s);
                prop_assert!(!matches!(got, OtpMatch::Live { .. }), "accepted {}", code);
            }
        }
    }

    /// With a 3-digit OTP the acceptance rate of random values on a known slot is observable: it
    /// must stay within the documented `window_steps / 10^digits` (plus sampling noise), and the
    /// real 7-digit OTP with random slots accepts nothing over a million tries.
    #[test]
    fn random_codes_are_accepted_at_most_at_the_documented_rate() {
        let mut rng = Rng(0x5EED);
        let m = material(55_555_555, 9);
        let now_s = 1_800_000_000;
        let window_steps = W.steps_back() + 2;
        let digits = 3;
        let tries: u64 = 25_000;
        let mut accepted = 0u64;
        for _ in 0..tries {
            let guess = ParsedCode {
                slot: m.slot.clone(),
                seq: (rng.next() % u64::from(CODES_PER_STEP)) as u8,
                otp_text: format!("{:03}", rng.next() % 1000),
            };
            if let OtpMatch::Live { .. } =
                match_otp_digits(&m.secret, CII, &guess, W, now_s, digits)
            {
                accepted += 1;
            }
        }
        let bound = tries * window_steps / 1000; // 100 expected at most
        // Four standard deviations of a binomial at that rate: sqrt(100) = 10.
        assert!(
            accepted <= bound + 4 * 10,
            "accepted {accepted} of {tries}; bound {bound}"
        );
        assert!(
            accepted > 0,
            "the shortened OTP must be guessable for the measurement to mean anything"
        );

        // Full-length codes against 1,000 live devices: P ≤ 10^3/10^8 · 4/10^7 per try.
        let devices: HashMap<String, CodeMaterial> = (0..1000u64)
            .map(|i| {
                let d = material(rng.next() % 100_000_000, i as u8);
                (d.slot.clone(), d)
            })
            .collect();
        let mut full_accepted = 0;
        for _ in 0..1_000_000 {
            let code = format!(
                "{CII}02{:08}{:08}",
                rng.next() % 100_000_000,
                rng.next() % 100_000_000
            );
            let p = parse_code(&code, CII).unwrap();
            if let Some(d) = devices.get(&p.slot)
                && matches!(
                    match_otp(&d.secret, CII, &p, W, now_s),
                    OtpMatch::Live { .. }
                )
            {
                full_accepted += 1;
            }
        }
        assert_eq!(full_accepted, 0);
    }

    #[test]
    fn foreign_and_malformed_codes_do_not_parse() {
        assert!(parse_code("281002021234567812345678", CII).is_none());
        assert!(parse_code("281001031234567812345678", CII).is_none());
        assert!(parse_code("28100102123456781234567", CII).is_none());
        assert!(parse_code("28100102123456781234567x", CII).is_none());
        assert_eq!(
            parse_code("281001021234567887654321", CII),
            Some(ParsedCode {
                slot: "12345678".into(),
                seq: 8,
                otp_text: "7654321".into()
            })
        );
    }
}
