//! The wallet's customer API, used by the phone app (`paycode wallet …`). Plain JSON over HTTP
//! under `/customer/v1/…`. Every response carries `result` like the other APIs; failures are
//! HTTP 200 with `F` (e.g. `USER_NOT_EXIST`, `USER_PAYMENT_VERIFICATION_FAILED`).
//!
//! | Method, path | Auth | Body → answer |
//! |---|---|---|
//! | `POST /customer/v1/devices/register` | none (user name + password) | [`RegisterDeviceRequest`] → [`DeviceMaterial`] |
//! | `POST /customer/v1/devices/rotate` | device token | `{}` → [`DeviceMaterial`] (new slot and secret) |
//! | `GET /customer/v1/challenges` | device token | → [`ChallengeList`] (pending only) |
//! | `POST /customer/v1/challenges/{challengeId}/confirm` | device token | [`ConfirmRequest`] → [`ChallengeOutcome`] |
//! | `POST /customer/v1/challenges/{challengeId}/decline` | device token | `{}` → [`ChallengeOutcome`] |
//! | `GET /customer/v1/balance` | device token | → [`Balance`] |
//! | `GET /customer/v1/history` | device token | → [`History`] (newest first) |
//!
//! The device token travels as `Authorization: Bearer <deviceToken>`.

use crate::{Amount, ResultInfo};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterDeviceRequest {
    pub user_name: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
}

/// Everything the phone needs to generate payment codes offline. The app stores it locally.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceMaterial {
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Bearer token for this API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// Base64 secret for the time-based code (never shown, never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_secret: Option<String>,
    /// The pseudonymous slot, as the decimal digits that enter the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The wallet's 6-digit Code Issuer Identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cii: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_step_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_validity_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    pub challenge_id: String,
    /// The acquirer's payment id.
    pub payment_request_id: String,
    pub merchant_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_name: Option<String>,
    /// In the merchant's currency.
    pub payment_amount: Amount,
    /// What the user pays, in the wallet's currency.
    pub pay_to_amount: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_price: Option<String>,
    pub create_time: String,
    pub expiry_time: String,
    /// Why a password is needed (e.g. "over the password-free limit").
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeList {
    pub result: ResultInfo,
    #[serde(default)]
    pub challenges: Vec<Challenge>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmRequest {
    pub password: String,
}

/// `result` says whether the confirm/decline was accepted; `paymentStatus` is the payment's
/// state afterwards (`SUCCESS`, `FAIL`, `PROCESSING`), `remainingAttempts` after a wrong password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeOutcome {
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_attempts: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub result: ResultInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    /// `PAYMENT`, `REVERSAL`, `REFUND`, `TOPUP`.
    pub kind: String,
    /// Signed: negative for debits.
    pub amount: Amount,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_request_id: Option<String>,
    pub time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub result: ResultInfo,
    #[serde(default)]
    pub items: Vec<HistoryItem>,
}
