//! Every result code the APIs speak, with its status. The wire strings live here only.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultStatus {
    /// Succeeded.
    S,
    /// Failed: final, nothing happened.
    F,
    /// Unknown or in progress: ask again or retry with the same parameters.
    U,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::S => "S",
            ResultStatus::F => "F",
            ResultStatus::U => "U",
        }
    }
}

macro_rules! result_codes {
    ($($name:ident => $status:ident, $msg:literal;)*) => {
        /// A result code of the merchant, MPP or customer API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum ResultCode { $($name,)* }

        impl ResultCode {
            pub const ALL: &'static [ResultCode] = &[$(ResultCode::$name,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(ResultCode::$name => stringify!($name),)* }
            }

            pub fn status(self) -> ResultStatus {
                match self { $(ResultCode::$name => ResultStatus::$status,)* }
            }

            /// The standard message, used when no more specific one is given.
            pub fn default_message(self) -> &'static str {
                match self { $(ResultCode::$name => $msg,)* }
            }

            pub fn parse(code: &str) -> Option<ResultCode> {
                match code { $(stringify!($name) => Some(ResultCode::$name),)* _ => None }
            }
        }
    };
}

result_codes! {
    SUCCESS => S, "success";
    ACCEPT => S, "accepted";
    PAYMENT_IN_PROCESS => U, "payment is in process, inquire later";
    UNKNOWN_EXCEPTION => U, "outcome unknown, inquire or retry with the same parameters";
    REQUEST_TRAFFIC_EXCEED_LIMIT => U, "too many requests, retry later";
    SIGNATURE_INVALID => F, "signature is invalid";
    KEY_NOT_FOUND => F, "no key registered for this client id and key version";
    CLIENT_INVALID => F, "client id is unknown or disabled";
    ACCESS_DENIED => F, "access denied";
    INVALID_API => F, "no such API";
    PARAM_ILLEGAL => F, "illegal parameters";
    PROCESS_FAIL => F, "processing failed";
    INVALID_CODE => F, "payment code is invalid";
    EXPIRED_CODE => F, "payment code has expired or was already used";
    USER_BALANCE_NOT_ENOUGH => F, "user balance is not enough";
    USER_AMOUNT_EXCEED_LIMIT => F, "amount exceeds the user's limit";
    PAYMENT_AMOUNT_EXCEED_LIMIT => F, "amount exceeds the limit for this merchant or transaction";
    PAYMENT_COUNT_EXCEED_LIMIT => F, "too many payments";
    RISK_REJECT => F, "rejected by risk control";
    USER_PAYMENT_VERIFICATION_FAILED => F, "user payment verification failed";
    USER_STATUS_ABNORMAL => F, "user status is abnormal";
    USER_NOT_EXIST => F, "user does not exist";
    CURRENCY_NOT_SUPPORT => F, "currency is not supported";
    MERCHANT_NOT_REGISTERED => F, "merchant is not registered";
    INVALID_MERCHANT_STATUS => F, "merchant status is invalid";
    INVALID_CONTRACT => F, "no valid contract for this product";
    REPEAT_REQ_INCONSISTENT => F, "repeated request id with different parameters";
    ORDER_IS_CLOSED => F, "the order is closed";
    ORDER_NOT_EXIST => F, "the order does not exist";
    ORDER_STATUS_INVALID => F, "the order status does not allow this operation";
    CANCEL_WINDOW_EXCEED => F, "the cancel window has passed, refund instead";
    REFUND_AMOUNT_EXCEED => F, "refund total would exceed the paid amount";
    REFUND_WINDOW_EXCEED => F, "the refund window has passed";
    USER_DECLINED => F, "the user declined the payment";
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_a_message() {
        for &c in ResultCode::ALL {
            assert_eq!(ResultCode::parse(c.as_str()), Some(c));
            assert!(!c.default_message().is_empty());
            assert!(!c.default_message().ends_with('.'));
        }
        assert_eq!(ResultCode::PAYMENT_IN_PROCESS.status(), ResultStatus::U);
        assert_eq!(ResultCode::EXPIRED_CODE.status(), ResultStatus::F);
    }
}
