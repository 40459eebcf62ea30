//! The pure domain core of paycode: no async, no I/O, no HTTP, no serde.
//!
//! - [`currency`] and [`money`]: ISO 4217 currencies and integer minor-unit amounts with checked
//!   arithmetic; the one place where decimal text becomes minor units.
//! - [`result_code`]: every wire result code with its status (`S`/`F`/`U`).
//! - [`code`]: the payment-code format (CII + BTI + UIN) and masking for logs.
//!
//! Architecture invariant: this crate depends on nothing that does I/O, and contains no floating
//! point (a test checks both).

pub mod code;
pub mod currency;
pub mod ecb;
pub mod fee;
pub mod fx;
pub mod guess;
pub mod ledger;
pub mod money;
pub mod payment;
pub mod result_code;
pub mod risk;
pub mod settlement;

pub use currency::Currency;
pub use money::{Money, MoneyError};
pub use result_code::{ResultCode, ResultStatus};
