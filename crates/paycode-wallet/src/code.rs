//! Payment codes: offline generation on the phone and checking in the wallet.
//!
//! This module is pure (no I/O, no clock): the phone app calls [`generate_code`] with no network,
//! and the wallet calls [`parse_code`] and [`check_otp`] inside the database transaction that
//! records the payment, so that "check, then mark used" is atomic.
//!
//! # Construction
//!
//! A code is the 24-digit format of SPEC §4.1: `CII (6) + "02" + UIN (16)`, and the UIN is
//!
//! ```text
//! UIN = SLOT (8 digits) || OTP (8 digits)
//! OTP = u64_be(HMAC-SHA256(secret, "paycode-code-v1" || CII || SLOT || u64_be(step))[0..8]) mod 10^8
//! step = floor(unix_time_s / step_s)          (step_s = 30 by default)
//! ```
//!
//! - `SLOT` is a random 8-digit number the wallet assigns to a device at registration. It is a
//!   pseudonym: it says nothing about the user (no account, card or ID number), only the wallet's
//!   own table maps it to a device, and it is replaced (with the secret) each time the phone is
//!   online and calls `rotate`. Retired slots are never handed out again.
//! - `secret` is 32 random bytes, known only to the device and the wallet.
//! - `OTP` is the TOTP idea of RFC 6238 over HMAC-SHA256: 64 bits of the tag reduced modulo
//!   10^8 (the bias of that reduction is below 10^8 / 2^64, about 5·10^-12).
//!
//! # Checking
//!
//! The wallet finds the device by `SLOT`, then recomputes the OTP for the steps of the window
//! ([`CodeWindow::accepted_steps`]): from `ceil(validity_s / step_s)` steps back to one step ahead
//! (one step of clock skew). With the defaults (30 s steps, 60 s validity) that is four steps, so a
//! code is accepted for at least `validity_s` after it is shown (a phone clock one step ahead is
//! tolerated too) and never after `(ceil(validity_s / step_s) + 1)·step_s` (90 s with the
//! defaults).
//!
//! A code is **single use**: the device row keeps the last step that paid, and only a strictly
//! later step is accepted, so a second use of a code (or of any older code of the same device),
//! even after a failed payment, is `EXPIRED_CODE`. A code that matches a step of the last
//! [`EXPIRED_LOOKBACK_STEPS`] steps before the window is also `EXPIRED_CODE`; anything else is
//! `INVALID_CODE`.
//!
//! # Guessing odds
//!
//! Someone who types a random 24-digit number with the right CII (the only part that is not
//! secret) is accepted only if the slot belongs to a live device **and** the OTP equals one of that
//! device's 4 window values:
//!
//! ```text
//! P(accept) ≤ (live_slots / 10^8) · (4 / 10^8)  ≤  4·10^-8 · (live_slots / 10^8)
//! ```
//!
//! With 10^6 registered devices that is at most 4·10^-10 per guess, and even someone who knows a
//! victim's slot (it is visible in any code the victim showed) has at most 4·10^-8 per guess.
//! Guessing is then limited by the [`GuessLimiter`]: failed look-ups are counted per slot
//! (default at most 5 per 10 minutes, after which that slot is refused until the window passes)
//! and globally (default at most 600 per minute for the whole wallet). So per day an attacker gets
//! at most 720 tries on a known slot (P ≤ 2.9·10^-5) and at most 864,000 tries overall
//! (P ≤ 3.5·10^-4 with 10^6 devices). Codes of a rotated-out slot are never accepted again.
//! The `random_codes_are_accepted_at_most_at_the_documented_rate` test measures the rate with a
//! shortened OTP, where it is observable, and checks it stays within the same formula.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use paycode_core::code::{BTI_PAYMENT, CII_LEN, CODE_LEN};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::RangeInclusive;

pub const SLOT_DIGITS: usize = 8;
pub const OTP_DIGITS: u32 = 8;
pub const SECRET_LEN: usize = 32;
/// How many steps before the window a matching code is still recognised as expired (rather than
/// invalid): one hour at 30 s steps.
pub const EXPIRED_LOOKBACK_STEPS: u64 = 120;
const DOMAIN: &[u8] = b"paycode-code-v1";

/// What the phone keeps to generate codes offline. Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeMaterial {
    pub cii: String,
    pub slot: String,
    pub secret: Vec<u8>,
    pub step_s: u64,
}

impl fmt::Debug for CodeMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeMaterial")
            .field("cii", &self.cii)
            .field("slot", &self.slot)
            .field("secret", &"***")
            .field("step_s", &self.step_s)
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
    #[error("device material's code step must be a positive number of seconds")]
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
        if step_s == 0 {
            return Err(CodeMaterialError::BadStep);
        }
        Ok(CodeMaterial {
            cii: cii.to_string(),
            slot: slot.to_string(),
            secret,
            step_s,
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
        CodeMaterial::new(cii, slot, secret, step_s)
    }
}

/// The time step a Unix time falls in.
pub fn time_step(unix_time_s: u64, step_s: u64) -> u64 {
    unix_time_s / step_s.max(1)
}

/// The one-time value of `slot` at `step`, reduced to `digits` decimal digits.
pub fn otp(secret: &[u8], cii: &str, slot: &str, step: u64, digits: u32) -> u64 {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(DOMAIN);
    ctx.update(cii.as_bytes());
    ctx.update(slot.as_bytes());
    ctx.update(&step.to_be_bytes());
    let tag = ctx.sign();
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_be_bytes(first) % 10u64.pow(digits)
}

/// The code for a given step.
pub fn generate_code_at_step(m: &CodeMaterial, step: u64) -> String {
    let value = otp(&m.secret, &m.cii, &m.slot, step, OTP_DIGITS);
    format!(
        "{}{}{}{:0width$}",
        m.cii,
        BTI_PAYMENT,
        m.slot,
        value,
        width = OTP_DIGITS as usize
    )
}

/// The 24-digit code to show at `unix_time_s`. Needs no network.
pub fn generate_code(m: &CodeMaterial, unix_time_s: u64) -> String {
    generate_code_at_step(m, time_step(unix_time_s, m.step_s))
}

/// A code split into its slot and one-time value, after checking the format and the CII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCode {
    pub slot: String,
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
    Some(ParsedCode {
        slot: uin[..SLOT_DIGITS].to_string(),
        otp_text: uin[SLOT_DIGITS..].to_string(),
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
}

/// Outcome of checking a code's one-time value against its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// Valid and unused; the device's last used step must become `step`.
    Accepted { step: u64 },
    /// Matches a step that is too old or already used.
    Expired,
    /// Matches nothing.
    Invalid,
}

/// Checks `otp_text` for the device with `secret` at `now_s`. `last_used_step` is the last step
/// that device paid with, if any. `digits` is [`OTP_DIGITS`] except in tests that measure odds.
#[allow(clippy::too_many_arguments)]
pub fn check_otp_digits(
    secret: &[u8],
    cii: &str,
    slot: &str,
    otp_text: &str,
    window: CodeWindow,
    now_s: u64,
    last_used_step: Option<u64>,
    digits: u32,
) -> CodeCheck {
    let Ok(given) = otp_text.parse::<u64>() else {
        return CodeCheck::Invalid;
    };
    let accepted = window.accepted_steps(now_s);
    // Newest first, so that the most recent matching step is the one recorded.
    for step in accepted.clone().rev() {
        if otp(secret, cii, slot, step, digits) == given {
            return match last_used_step {
                Some(last) if step <= last => CodeCheck::Expired,
                _ => CodeCheck::Accepted { step },
            };
        }
    }
    let oldest = *accepted.start();
    let lookback_start = oldest.saturating_sub(EXPIRED_LOOKBACK_STEPS);
    for step in (lookback_start..oldest).rev() {
        if otp(secret, cii, slot, step, digits) == given {
            return CodeCheck::Expired;
        }
    }
    CodeCheck::Invalid
}

/// [`check_otp_digits`] with the real OTP length.
pub fn check_otp(
    secret: &[u8],
    cii: &str,
    slot: &str,
    otp_text: &str,
    window: CodeWindow,
    now_s: u64,
    last_used_step: Option<u64>,
) -> CodeCheck {
    check_otp_digits(
        secret,
        cii,
        slot,
        otp_text,
        window,
        now_s,
        last_used_step,
        OTP_DIGITS,
    )
}

/// Limits on failed code look-ups, the second half of the guessing defence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessLimits {
    /// Failed checks of one known slot allowed within `per_slot_window_s`.
    pub per_slot_max: usize,
    pub per_slot_window_s: u64,
    /// Failed look-ups (unknown slot or wrong value) allowed wallet-wide within
    /// `global_window_s`.
    pub global_max: usize,
    pub global_window_s: u64,
}

impl Default for GuessLimits {
    fn default() -> Self {
        GuessLimits {
            per_slot_max: 5,
            per_slot_window_s: 600,
            global_max: 600,
            global_window_s: 60,
        }
    }
}

/// Why a code was not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Slot,
    Global,
}

/// Sliding-window counters of failed look-ups, kept in memory (a restart resets them; the
/// bound per window still holds while the wallet runs). Bounded: at most `MAX_TRACKED_SLOTS`
/// slots are tracked, the oldest forgotten first.
#[derive(Debug, Default)]
pub struct GuessLimiter {
    limits: GuessLimits,
    per_slot: HashMap<String, VecDeque<u64>>,
    global: VecDeque<u64>,
}

const MAX_TRACKED_SLOTS: usize = 100_000;

impl GuessLimiter {
    pub fn new(limits: GuessLimits) -> GuessLimiter {
        GuessLimiter {
            limits,
            per_slot: HashMap::new(),
            global: VecDeque::new(),
        }
    }

    fn prune(&mut self, now_s: u64) {
        let g = self.limits.global_window_s;
        while self.global.front().is_some_and(|&t| t + g <= now_s) {
            self.global.pop_front();
        }
    }

    /// Whether a look-up of `slot` (when it is a known slot) may be tried at `now_s`.
    pub fn allow(&mut self, slot: Option<&str>, now_s: u64) -> Result<(), Limited> {
        self.prune(now_s);
        if self.global.len() >= self.limits.global_max {
            return Err(Limited::Global);
        }
        if let Some(slot) = slot
            && let Some(q) = self.per_slot.get_mut(slot)
        {
            let w = self.limits.per_slot_window_s;
            while q.front().is_some_and(|&t| t + w <= now_s) {
                q.pop_front();
            }
            if q.len() >= self.limits.per_slot_max {
                return Err(Limited::Slot);
            }
        }
        Ok(())
    }

    /// Records a failed look-up; `slot` is given when it was a known slot.
    pub fn record_failure(&mut self, slot: Option<&str>, now_s: u64) {
        self.prune(now_s);
        self.global.push_back(now_s);
        while self.global.len() > self.limits.global_max {
            self.global.pop_front();
        }
        if let Some(slot) = slot {
            if self.per_slot.len() >= MAX_TRACKED_SLOTS && !self.per_slot.contains_key(slot) {
                let w = self.limits.per_slot_window_s;
                self.per_slot
                    .retain(|_, q| q.back().is_some_and(|&t| t + w > now_s));
                if self.per_slot.len() >= MAX_TRACKED_SLOTS {
                    return;
                }
            }
            let q = self.per_slot.entry(slot.to_string()).or_default();
            q.push_back(now_s);
            while q.len() > self.limits.per_slot_max {
                q.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CII: &str = "281001";
    const W: CodeWindow = CodeWindow {
        step_s: 30,
        validity_s: 60,
    };

    fn material(slot: u64, seed: u8) -> CodeMaterial {
        let secret: Vec<u8> = (0..SECRET_LEN as u8)
            .map(|i| i.wrapping_mul(31) ^ seed)
            .collect();
        CodeMaterial::new(CII, &format!("{slot:08}"), secret, 30).unwrap()
    }

    fn check_at(m: &CodeMaterial, code: &str, now_s: u64, last: Option<u64>) -> CodeCheck {
        let p = parse_code(code, CII).expect("a generated code parses");
        assert_eq!(p.slot, m.slot);
        check_otp(&m.secret, CII, &p.slot, &p.otp_text, W, now_s, last)
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
        let code = generate_code(&m, 1_700_000_000);
        assert_eq!(code.len(), 24);
        let parsed = paycode_core::code::PaymentCode::parse(&code).unwrap();
        assert_eq!(parsed.cii(), Some(CII));
        assert_eq!(&code[6..8], "02");
        assert_eq!(&code[8..16], "12345678");
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
    fn window_with_the_defaults_spans_four_steps() {
        assert_eq!(W.steps_back(), 2);
        assert_eq!(W.accepted_steps(90), 1..=4);
        assert_eq!(W.accepted_steps(0), 0..=1);
    }

    #[test]
    fn limiter_counts_per_slot_and_globally() {
        let mut l = GuessLimiter::new(GuessLimits {
            per_slot_max: 2,
            per_slot_window_s: 100,
            global_max: 5,
            global_window_s: 10,
        });
        l.record_failure(Some("1"), 0);
        assert_eq!(l.allow(Some("1"), 1), Ok(()));
        l.record_failure(Some("1"), 1);
        assert_eq!(l.allow(Some("1"), 2), Err(Limited::Slot));
        assert_eq!(l.allow(Some("2"), 2), Ok(()));
        for _ in 0..3 {
            l.record_failure(None, 3);
        }
        assert_eq!(l.allow(Some("2"), 3), Err(Limited::Global));
        assert_eq!(l.allow(Some("2"), 14), Ok(()));
        assert_eq!(l.allow(Some("1"), 50), Err(Limited::Slot));
        assert_eq!(l.allow(Some("1"), 101), Ok(()));
    }

    proptest! {
        /// A code shown at `shown_s` is accepted exactly while the checking time's step is
        /// between one step before and `steps_back` steps after the step it was shown in, is
        /// `EXPIRED_CODE` for a while after, and is never accepted outside.
        #[test]
        fn generated_codes_check_within_their_window_only(
            slot in 0u64..100_000_000,
            seed in any::<u8>(),
            shown_s in 1_000_000u64..4_000_000_000,
            delta_s in -200i64..400,
        ) {
            let m = material(slot, seed);
            let code = generate_code(&m, shown_s);
            let now_s = shown_s.checked_add_signed(delta_s).unwrap();
            let got = check_at(&m, &code, now_s, None);
            let shown_step = time_step(shown_s, 30);
            let now_step = time_step(now_s, 30);
            let in_window = now_step + 1 >= shown_step && now_step <= shown_step + W.steps_back();
            if in_window {
                prop_assert_eq!(got, CodeCheck::Accepted { step: shown_step });
            } else {
                prop_assert_ne!(got, CodeCheck::Accepted { step: shown_step });
                if now_step > shown_step {
                    prop_assert_eq!(got, CodeCheck::Expired);
                }
            }
            // The documented guarantee: valid for the whole validity period after it is shown.
            if (0..=60).contains(&delta_s) {
                prop_assert!(matches!(got, CodeCheck::Accepted { .. }), "not accepted: {:?}", got);
            }
        }

        /// The slot in a code is its device's, and no other device's secret accepts it.
        #[test]
        fn a_code_maps_back_to_exactly_its_device(
            slots in prop::collection::hash_set(0u64..100_000_000, 2..20),
            pick in any::<prop::sample::Index>(),
            now_s in 1_000_000u64..4_000_000_000,
        ) {
            let devices: Vec<CodeMaterial> = slots
                .iter()
                .enumerate()
                .map(|(i, &s)| material(s, i as u8))
                .collect();
            let me = &devices[pick.index(devices.len())];
            let code = generate_code(me, now_s);
            let parsed = parse_code(&code, CII).unwrap();
            let owners: Vec<&CodeMaterial> =
                devices.iter().filter(|d| d.slot == parsed.slot).collect();
            prop_assert_eq!(owners.len(), 1);
            prop_assert_eq!(owners[0], me);
            for d in &devices {
                let got = check_otp(&d.secret, CII, &parsed.slot, &parsed.otp_text, W, now_s, None);
                if d == me {
                    prop_assert!(matches!(got, CodeCheck::Accepted { .. }), "not accepted: {:?}", got);
                } else {
                    prop_assert_eq!(got, CodeCheck::Invalid);
                }
            }
        }

        /// Once a step has paid, that code and every older one are `EXPIRED_CODE`; a later
        /// step's code still works.
        #[test]
        fn single_use_holds(
            slot in 0u64..100_000_000,
            now_s in 1_000_000u64..4_000_000_000,
            later_s in 0u64..200,
        ) {
            let m = material(slot, 3);
            let code = generate_code(&m, now_s);
            let CodeCheck::Accepted { step } = check_at(&m, &code, now_s, None) else {
                return Err(TestCaseError::fail("fresh code not accepted"));
            };
            let again_s = now_s + later_s;
            let again = check_at(&m, &code, again_s, Some(step));
            prop_assert_ne!(again, CodeCheck::Accepted { step });
            if again_s < now_s + 60 {
                prop_assert_eq!(again, CodeCheck::Expired);
            }
            let next = generate_code_at_step(&m, step + 1);
            if W.accepted_steps(again_s).contains(&(step + 1)) {
                prop_assert_eq!(check_at(&m, &next, again_s, Some(step)), CodeCheck::Accepted { step: step + 1 });
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]
        /// Random 24-digit numbers, half of them aimed at a live slot (the attacker knows a
        /// victim's slot): at ≤ 4·10^-8 per try, none of the 4,000 may be accepted.
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
                let got = check_otp(&d.secret, CII, &p.slot, &p.otp_text, W, now_s, None);
                prop_assert!(!matches!(got, CodeCheck::Accepted { .. }), "accepted {}", code);
            }
        }
    }

    /// With a 3-digit OTP the acceptance rate of random values is observable: it must stay within
    /// the documented `window_steps / 10^digits` (plus sampling noise), and the real 8-digit OTP
    /// with random slots accepts nothing over a million tries.
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
            let guess = format!("{:03}", rng.next() % 1000);
            if let CodeCheck::Accepted { .. } =
                check_otp_digits(&m.secret, CII, &m.slot, &guess, W, now_s, None, digits)
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

        // Full-length codes against 1,000 live devices: P ≤ 10^3/10^8 · 4/10^8 per try.
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
                    check_otp(&d.secret, CII, &p.slot, &p.otp_text, W, now_s, None),
                    CodeCheck::Accepted { .. }
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
                otp_text: "87654321".into()
            })
        );
    }
}
