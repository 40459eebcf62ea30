//! Exchange rates, quotes and conversion between currencies.
//!
//! **Rate representation.** A [`Rate`] is an exact decimal `mantissa / 10^scale`, parsed from and
//! printed as text such as `0.88156063`. Mid rates in the table keep the digits they were given
//! (at most [`MAX_RATE_DIGITS`]); every *quoted* price — direct, inverse, cross or with a spread —
//! is rounded half-even to [`PRICE_SIGNIFICANT_DIGITS`] significant digits. The printed
//! `quotePrice` is then the whole truth: conversion uses exactly that decimal, so a merchant or a
//! wallet can recompute every amount from the quote alone.
//!
//! **Rounding rule (the one rule, in [`round_half_even`]).** A converted amount is the exact
//! product (or quotient) rounded to the target currency's minor unit, half to even. The
//! acquirer's margin is the explicit spread in basis points, never the rounding: half-even is
//! unbiased, so over many conversions neither side gains from it and the FX position does not
//! drift. The same function rounds fees (see `fee`).
//!
//! **Notation.** A pair is `BASE/QUOTE` and its price is how many QUOTE units one BASE unit buys.
//! A payment quote is `TRANSACTION/WALLET` (the customer buys the merchant's currency), a
//! settlement quote is `SETTLEMENT/TRANSACTION`, as in the public API's examples (`MOP/CNY`,
//! `HKD/MOP`). The counterparty buys the base at the ask (mid raised by the ask spread) when it
//! pays, and sells it at the bid (mid lowered by the bid spread) when it is refunded.

use crate::{Currency, Money};
use std::collections::BTreeMap;
use std::fmt;

/// Significant digits of every quoted price: the price deviates from the exact mid or cross by
/// less than one part in 10^9, far below any spread.
pub const PRICE_SIGNIFICANT_DIGITS: u32 = 10;
/// Significant digits accepted in a mid rate given to the table.
pub const MAX_RATE_DIGITS: u32 = 12;
/// Decimal places accepted in a mid rate, and produced in a price.
pub const MAX_RATE_SCALE: u32 = 18;
const BPS_PER_UNIT: u128 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FxError {
    #[error("{0:?} is not a positive decimal rate")]
    BadRate(String),
    #[error(
        "{text:?} has more than {MAX_RATE_DIGITS} significant digits or {MAX_RATE_SCALE} decimals"
    )]
    RateTooPrecise { text: String },
    #[error("rate {base}/{quote} is outside the supported range")]
    RateOutOfRange { base: Currency, quote: Currency },
    #[error("a pair needs two different currencies, got {0}/{0}")]
    SamePair(Currency),
    #[error("no rate for {base}/{quote}, directly, inverted or through a pivot currency")]
    NoRate { base: Currency, quote: Currency },
    #[error("spread of {bps} bps is too large (the bid spread must be below 10000)")]
    BadSpread { bps: u32 },
    #[error("quote {quote_id} converts {base}/{quote}, not {currency}")]
    WrongCurrency {
        quote_id: String,
        base: Currency,
        quote: Currency,
        currency: Currency,
    },
    #[error("quote expiry {expiry_ms} is not after its start {start_ms}")]
    BadValidity { start_ms: i64, expiry_ms: i64 },
    #[error("{amount} converts to zero {target}")]
    ConvertsToZero { amount: Money, target: Currency },
    #[error("amount overflows in conversion")]
    Overflow,
}

/// Divides `num` by a positive `den` and rounds to the nearest integer, half to even (the
/// result is symmetric around zero). This is the only rounding of money in paycode.
pub fn round_half_even(num: i128, den: i128) -> i128 {
    assert!(den > 0, "rounding needs a positive divisor, got {den}");
    let (n, d) = (num.unsigned_abs(), den.unsigned_abs());
    let (q, r) = (n / d, n % d);
    let twice = r * 2; // r < d < 2^127, so no overflow
    let magnitude = q + u128::from(twice > d || (twice == d && q % 2 == 1));
    // magnitude <= |num| (d >= 2 when rounding up), so it fits with num's sign.
    if num < 0 {
        0i128
            .checked_sub_unsigned(magnitude)
            .expect("|result| <= |num|")
    } else {
        i128::try_from(magnitude).expect("result <= num")
    }
}

/// An exact positive decimal `mantissa / 10^scale`, kept without trailing zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    mantissa: u64,
    scale: u32,
}

impl Rate {
    /// Parses `1.0823`, `0.88156063` or `157`: digits with an optional decimal point, positive,
    /// at most [`MAX_RATE_DIGITS`] significant digits and [`MAX_RATE_SCALE`] decimals.
    pub fn parse(text: &str) -> Result<Rate, FxError> {
        let bad = || FxError::BadRate(text.to_string());
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(frac) || text.ends_with('.') {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        let all = format!("{whole}{frac}");
        let significant = all.trim_start_matches('0');
        if significant.is_empty() {
            return Err(bad());
        }
        let too_precise = || FxError::RateTooPrecise {
            text: text.to_string(),
        };
        if significant.len() > MAX_RATE_DIGITS as usize || frac.len() > MAX_RATE_SCALE as usize {
            return Err(too_precise());
        }
        let mantissa: u64 = significant.parse().map_err(|_| too_precise())?;
        let scale = u32::try_from(frac.len()).map_err(|_| too_precise())?;
        Ok(Rate::normalized(mantissa, scale))
    }

    fn normalized(mut mantissa: u64, mut scale: u32) -> Rate {
        while scale > 0 && mantissa.is_multiple_of(10) {
            mantissa /= 10;
            scale -= 1;
        }
        Rate { mantissa, scale }
    }

    pub fn mantissa(self) -> u64 {
        self.mantissa
    }

    /// Decimal places: the value is `mantissa / 10^scale`.
    pub fn scale(self) -> u32 {
        self.scale
    }

    fn ratio(self) -> Ratio {
        Ratio::new(u128::from(self.mantissa), 10u128.pow(self.scale))
    }

    /// Rounds `num / den` (both positive) half-even to [`PRICE_SIGNIFICANT_DIGITS`] digits.
    /// `None` when the value is outside what a [`Rate`] holds.
    fn from_ratio(r: Ratio) -> Option<Rate> {
        let r = r.reduced();
        let low = 10u128.pow(PRICE_SIGNIFICANT_DIGITS - 1);
        let high = 10u128.pow(PRICE_SIGNIFICANT_DIGITS);
        // `scaled(k)` = floor(value * 10^k); find k with low <= scaled(k) < high.
        let scaled = |k: i32| -> Option<(u128, u128, u128)> {
            let (n, d) = if k >= 0 {
                (
                    r.num.checked_mul(10u128.checked_pow(k.unsigned_abs())?)?,
                    r.den,
                )
            } else {
                (
                    r.num,
                    r.den.checked_mul(10u128.checked_pow(k.unsigned_abs())?)?,
                )
            };
            Some((n / d, n % d, d))
        };
        let digits = |v: u128| v.checked_ilog10().map_or(0, |l| l as i32 + 1);
        let mut k = PRICE_SIGNIFICANT_DIGITS as i32 - (digits(r.num) - digits(r.den));
        for _ in 0..4 {
            let (q, _, _) = scaled(k)?;
            if q >= high {
                k -= 1;
            } else if q < low {
                k += 1;
            } else {
                break;
            }
        }
        let (q, rem, d) = scaled(k)?;
        if !(low..high).contains(&q) {
            return None;
        }
        let up = rem * 2 > d || (rem * 2 == d && q % 2 == 1);
        let (mut q, mut k) = (q + u128::from(up), k);
        if q == high {
            q /= 10;
            k -= 1;
        }
        if k < 0 || k > MAX_RATE_SCALE as i32 {
            return None;
        }
        Some(Rate::normalized(u64::try_from(q).ok()?, k.unsigned_abs()))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() > scale {
            let (whole, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{whole}.{frac}")
        } else {
            write!(f, "0.{digits:0>scale$}")
        }
    }
}

/// An exact positive fraction, used only between the table and a rounded [`Rate`].
#[derive(Debug, Clone, Copy)]
struct Ratio {
    num: u128,
    den: u128,
}

impl Ratio {
    fn new(num: u128, den: u128) -> Ratio {
        Ratio { num, den }
    }

    fn reduced(self) -> Ratio {
        let (mut a, mut b) = (self.num, self.den);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        Ratio::new(self.num / a, self.den / a)
    }

    fn inverse(self) -> Ratio {
        Ratio::new(self.den, self.num)
    }

    fn times(self, other: Ratio) -> Option<Ratio> {
        let (a, b) = (self.reduced(), other.reduced());
        Some(Ratio::new(a.num.checked_mul(b.num)?, a.den.checked_mul(b.den)?).reduced())
    }
}

/// Which side of the mid a price is on, seen from the acquirer's counterparty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuoteSide {
    /// The counterparty buys the base currency: mid raised by the ask spread.
    Ask,
    /// The counterparty sells the base currency: mid lowered by the bid spread.
    Bid,
}

/// Spread in basis points on each side of the mid of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spread {
    ask_bps: u32,
    bid_bps: u32,
}

impl Spread {
    pub const ZERO: Spread = Spread {
        ask_bps: 0,
        bid_bps: 0,
    };

    pub fn new(ask_bps: u32, bid_bps: u32) -> Result<Spread, FxError> {
        if u128::from(bid_bps) >= BPS_PER_UNIT {
            return Err(FxError::BadSpread { bps: bid_bps });
        }
        if u128::from(ask_bps) > BPS_PER_UNIT {
            return Err(FxError::BadSpread { bps: ask_bps });
        }
        Ok(Spread { ask_bps, bid_bps })
    }

    pub fn ask_bps(self) -> u32 {
        self.ask_bps
    }

    pub fn bid_bps(self) -> u32 {
        self.bid_bps
    }

    /// The same spread seen from the inverse pair: buying X with Y is selling Y for X.
    fn swapped(self) -> Spread {
        Spread {
            ask_bps: self.bid_bps,
            bid_bps: self.ask_bps,
        }
    }

    fn factor(self, side: QuoteSide) -> Ratio {
        let bps = u128::from(match side {
            QuoteSide::Ask => self.ask_bps,
            QuoteSide::Bid => self.bid_bps,
        });
        match side {
            QuoteSide::Ask => Ratio::new(BPS_PER_UNIT + bps, BPS_PER_UNIT),
            QuoteSide::Bid => Ratio::new(BPS_PER_UNIT - bps, BPS_PER_UNIT),
        }
    }
}

/// A priced, time-boxed offer to convert between the two currencies of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    id: String,
    base: Currency,
    quote: Currency,
    price: Rate,
    start_ms: i64,
    expiry_ms: i64,
}

impl Quote {
    /// Builds a quote, for instance from a stored row. The id is the caller's.
    pub fn new(
        id: String,
        base: Currency,
        quote: Currency,
        price: Rate,
        start_ms: i64,
        expiry_ms: i64,
    ) -> Result<Quote, FxError> {
        if base == quote {
            return Err(FxError::SamePair(base));
        }
        if expiry_ms <= start_ms {
            return Err(FxError::BadValidity {
                start_ms,
                expiry_ms,
            });
        }
        Ok(Quote {
            id,
            base,
            quote,
            price,
            start_ms,
            expiry_ms,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn base(&self) -> Currency {
        self.base
    }

    pub fn quote(&self) -> Currency {
        self.quote
    }

    /// How many QUOTE units one BASE unit buys.
    pub fn price(&self) -> Rate {
        self.price
    }

    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    pub fn expiry_ms(&self) -> i64 {
        self.expiry_ms
    }

    /// `BASE/QUOTE` with alphabetic codes, as `quoteCurrencyPair` shows it.
    pub fn pair(&self) -> String {
        format!("{}/{}", self.base, self.quote)
    }

    /// Valid from its start (inclusive) to its expiry (exclusive).
    pub fn is_valid_at(&self, now_ms: i64) -> bool {
        (self.start_ms..self.expiry_ms).contains(&now_ms)
    }

    /// Converts an amount in either currency of the pair into the other one: multiplied by the
    /// price from BASE to QUOTE, divided by it from QUOTE to BASE; rounded by [`round_half_even`].
    pub fn convert(&self, amount: Money) -> Result<Money, FxError> {
        let (target, num_factor, den_factor) = if amount.currency() == self.base {
            (self.quote, self.price.mantissa, 1u64)
        } else if amount.currency() == self.quote {
            (self.base, 1u64, self.price.mantissa)
        } else {
            return Err(FxError::WrongCurrency {
                quote_id: self.id.clone(),
                base: self.base,
                quote: self.quote,
                currency: amount.currency(),
            });
        };
        // value_target = amount * price^(+-1), in minor units:
        // target_minor = amount_minor * 10^(e_target - e_source) * (m / 10^s)^(+-1)
        let e_target = i32::from(target.exponent());
        let e_source = i32::from(amount.currency().exponent());
        let s = self.price.scale as i32;
        let power = e_target - e_source + if num_factor == 1 { s } else { -s };
        let ten = |p: i32| {
            10i128
                .checked_pow(p.unsigned_abs())
                .ok_or(FxError::Overflow)
        };
        let mut num = i128::from(amount.amount_minor())
            .checked_mul(i128::from(num_factor))
            .ok_or(FxError::Overflow)?;
        let mut den = i128::from(den_factor);
        if power >= 0 {
            num = num.checked_mul(ten(power)?).ok_or(FxError::Overflow)?;
        } else {
            den = den.checked_mul(ten(power)?).ok_or(FxError::Overflow)?;
        }
        let minor = i64::try_from(round_half_even(num, den)).map_err(|_| FxError::Overflow)?;
        Ok(Money::new(minor, target))
    }
}

/// Mid rates per pair, spreads, and the pivot currencies used for cross rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    mids: BTreeMap<(Currency, Currency), Rate>,
    spreads: BTreeMap<(Currency, Currency), Spread>,
    default_spread: Spread,
    pivots: Vec<Currency>,
}

impl Default for RateTable {
    fn default() -> Self {
        RateTable::new()
    }
}

impl RateTable {
    /// An empty table with zero spread, pivoting through USD then EUR.
    pub fn new() -> RateTable {
        let usd = Currency::parse("USD").expect("USD is an ISO 4217 currency");
        let eur = Currency::parse("EUR").expect("EUR is an ISO 4217 currency");
        RateTable {
            mids: BTreeMap::new(),
            spreads: BTreeMap::new(),
            default_spread: Spread::ZERO,
            pivots: vec![usd, eur],
        }
    }

    /// Sets the mid rate of `base/quote` (how many `quote` one `base` buys).
    pub fn set_mid(&mut self, base: Currency, quote: Currency, mid: Rate) -> Result<(), FxError> {
        if base == quote {
            return Err(FxError::SamePair(base));
        }
        self.mids.insert((base, quote), mid);
        Ok(())
    }

    pub fn set_spread(&mut self, base: Currency, quote: Currency, spread: Spread) {
        self.spreads.insert((base, quote), spread);
    }

    /// The spread of every pair without its own.
    pub fn set_default_spread(&mut self, spread: Spread) {
        self.default_spread = spread;
    }

    /// Currencies tried in order for a cross rate when neither the pair nor its inverse is set.
    pub fn set_pivots(&mut self, pivots: Vec<Currency>) {
        self.pivots = pivots;
    }

    pub fn mids(&self) -> impl Iterator<Item = (Currency, Currency, Rate)> + '_ {
        self.mids.iter().map(|(&(b, q), &r)| (b, q, r))
    }

    /// The table in the rate-file format; [`parse_rate_file`] reads it back unchanged.
    pub fn to_rate_file(&self) -> String {
        let mut out = String::new();
        for (&(b, q), r) in &self.mids {
            out.push_str(&format!("mid {b}/{q} {r}\n"));
        }
        let d = self.default_spread;
        out.push_str(&format!("spread default {} {}\n", d.ask_bps, d.bid_bps));
        for (&(b, q), s) in &self.spreads {
            out.push_str(&format!("spread {b}/{q} {} {}\n", s.ask_bps, s.bid_bps));
        }
        for p in &self.pivots {
            out.push_str(&format!("pivot {p}\n"));
        }
        out
    }

    /// The spread for `base/quote`: its own, else its inverse pair's (sides swapped), else the
    /// default.
    pub fn spread(&self, base: Currency, quote: Currency) -> Spread {
        if let Some(s) = self.spreads.get(&(base, quote)) {
            *s
        } else if let Some(s) = self.spreads.get(&(quote, base)) {
            s.swapped()
        } else {
            self.default_spread
        }
    }

    fn direct_or_inverse(&self, base: Currency, quote: Currency) -> Option<Ratio> {
        if let Some(r) = self.mids.get(&(base, quote)) {
            Some(r.ratio())
        } else {
            self.mids.get(&(quote, base)).map(|r| r.ratio().inverse())
        }
    }

    fn mid_ratio(&self, base: Currency, quote: Currency) -> Result<Ratio, FxError> {
        if base == quote {
            return Err(FxError::SamePair(base));
        }
        if let Some(r) = self.direct_or_inverse(base, quote) {
            return Ok(r);
        }
        for &pivot in &self.pivots {
            if pivot == base || pivot == quote {
                continue;
            }
            if let (Some(a), Some(b)) = (
                self.direct_or_inverse(base, pivot),
                self.direct_or_inverse(pivot, quote),
            ) {
                return a.times(b).ok_or(FxError::RateOutOfRange { base, quote });
            }
        }
        Err(FxError::NoRate { base, quote })
    }

    /// The mid of `base/quote` rounded to [`PRICE_SIGNIFICANT_DIGITS`].
    pub fn mid(&self, base: Currency, quote: Currency) -> Result<Rate, FxError> {
        Rate::from_ratio(self.mid_ratio(base, quote)?)
            .ok_or(FxError::RateOutOfRange { base, quote })
    }

    /// The price the acquirer offers for `base/quote` on `side`.
    pub fn price(&self, base: Currency, quote: Currency, side: QuoteSide) -> Result<Rate, FxError> {
        let out_of_range = FxError::RateOutOfRange { base, quote };
        let factor = self.spread(base, quote).factor(side);
        let priced = self
            .mid_ratio(base, quote)?
            .times(factor)
            .ok_or(out_of_range.clone())?;
        Rate::from_ratio(priced).ok_or(out_of_range)
    }

    /// A quote for `base/quote` on `side`, valid for `validity_ms` from `now_ms`.
    pub fn quote(
        &self,
        id: String,
        base: Currency,
        quote: Currency,
        side: QuoteSide,
        now_ms: i64,
        validity_ms: i64,
    ) -> Result<Quote, FxError> {
        let price = self.price(base, quote, side)?;
        let expiry_ms = now_ms.checked_add(validity_ms).ok_or(FxError::Overflow)?;
        Quote::new(id, base, quote, price, now_ms, expiry_ms)
    }

    /// Prices a payment (or a refund) described by `req`. A quote is made only where two
    /// currencies differ; `next_quote_id` is called once per quote made.
    pub fn price_flow(
        &self,
        req: &FlowRequest,
        mut next_quote_id: impl FnMut() -> String,
    ) -> Result<FlowAmounts, FxError> {
        let FlowRequest {
            flow,
            amount,
            wallet,
            settlement,
            now_ms,
            validity_ms,
        } = *req;
        let transaction = amount.currency();
        let side = flow.side();
        let mut convert = |base: Currency, quote: Currency| -> Result<_, FxError> {
            if base == quote {
                return Ok((None, amount));
            }
            let q = self.quote(next_quote_id(), base, quote, side, now_ms, validity_ms)?;
            let converted = q.convert(amount)?;
            if amount.amount_minor() != 0 && converted.amount_minor() == 0 {
                return Err(FxError::ConvertsToZero {
                    amount,
                    target: converted.currency(),
                });
            }
            Ok((Some(q), converted))
        };
        let (payment_quote, wallet_amount) = convert(transaction, wallet)?;
        let (settlement_quote, settlement_amount) = convert(settlement, transaction)?;
        Ok(FlowAmounts {
            payment_quote,
            wallet_amount,
            settlement_quote,
            settlement_amount,
        })
    }
}

/// A payment or refund of `amount` in the merchant's transaction currency, for a customer
/// paying in `wallet` and a merchant settled in `settlement`, priced at `now_ms` with quotes
/// valid for `validity_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRequest {
    pub flow: Flow,
    pub amount: Money,
    pub wallet: Currency,
    pub settlement: Currency,
    pub now_ms: i64,
    pub validity_ms: i64,
}

/// What is being priced: the counterparty pays (ask) or is refunded (bid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    Payment,
    Refund,
}

impl Flow {
    pub fn side(self) -> QuoteSide {
        match self {
            Flow::Payment => QuoteSide::Ask,
            Flow::Refund => QuoteSide::Bid,
        }
    }
}

/// The amounts of one payment or refund in the wallet's and the settlement currency, with the
/// quotes that fixed them (`None` where no conversion was needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowAmounts {
    /// `TRANSACTION/WALLET`.
    pub payment_quote: Option<Quote>,
    pub wallet_amount: Money,
    /// `SETTLEMENT/TRANSACTION`.
    pub settlement_quote: Option<Quote>,
    /// Gross, before the merchant discount fee.
    pub settlement_amount: Money,
}

/// A rate-file error, naming the line (1-based) and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate file line {line}, field {field}: {reason}")]
pub struct RateFileError {
    pub line: usize,
    pub field: &'static str,
    pub reason: String,
}

/// Parses a rate file: one directive per line, fields separated by spaces, `#` starts a comment.
///
/// ```text
/// mid    MOP/CNY 0.88156063        # 1 MOP buys 0.88156063 CNY
/// spread default 50 50             # ask_bps bid_bps for every pair without its own
/// spread MOP/CNY 30 20             # ask_bps bid_bps for this pair
/// pivot  USD                       # cross-rate currencies, in order (default: USD, EUR)
/// ```
pub fn parse_rate_file(text: &str) -> Result<RateTable, RateFileError> {
    let mut table = RateTable::new();
    let mut pivots = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let content = raw.split('#').next().unwrap_or("");
        let fields: Vec<&str> = content.split_whitespace().collect();
        let Some((&directive, args)) = fields.split_first() else {
            continue;
        };
        let err = |field: &'static str, reason: String| RateFileError {
            line,
            field,
            reason,
        };
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(
                    "directive",
                    format!("{directive} takes {n} fields, got {}", args.len()),
                ))
            }
        };
        let currency = |field: &'static str, text: &str| {
            Currency::parse(text).map_err(|e| err(field, e.to_string()))
        };
        let pair = |text: &str| {
            let (b, q) = text
                .split_once('/')
                .ok_or_else(|| err("pair", format!("{text:?} is not BASE/QUOTE")))?;
            Ok::<_, RateFileError>((currency("pair", b)?, currency("pair", q)?))
        };
        let bps = |field: &'static str, text: &str| {
            text.parse::<u32>().map_err(|_| {
                err(
                    field,
                    format!("{text:?} is not a whole number of basis points"),
                )
            })
        };
        match directive {
            "mid" => {
                arity(2)?;
                let (base, quote) = pair(args[0])?;
                let rate = Rate::parse(args[1]).map_err(|e| err("rate", e.to_string()))?;
                table
                    .set_mid(base, quote, rate)
                    .map_err(|e| err("pair", e.to_string()))?;
            }
            "spread" => {
                arity(3)?;
                let ask = bps("ask_bps", args[1])?;
                let bid = bps("bid_bps", args[2])?;
                let spread = Spread::new(ask, bid).map_err(|e| {
                    let field = if u128::from(bid) >= BPS_PER_UNIT {
                        "bid_bps"
                    } else {
                        "ask_bps"
                    };
                    err(field, e.to_string())
                })?;
                if args[0] == "default" {
                    table.set_default_spread(spread);
                } else {
                    let (base, quote) = pair(args[0])?;
                    if base == quote {
                        return Err(err("pair", FxError::SamePair(base).to_string()));
                    }
                    table.set_spread(base, quote, spread);
                }
            }
            "pivot" => {
                arity(1)?;
                pivots.push(currency("currency", args[0])?);
            }
            other => {
                return Err(err(
                    "directive",
                    format!("unknown directive {other:?} (expected mid, spread or pivot)"),
                ));
            }
        }
    }
    if !pivots.is_empty() {
        table.set_pivots(pivots);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    fn money(text: &str, c: &str) -> Money {
        Money::from_decimal_str(text, cur(c)).unwrap()
    }

    fn quote(pair: &str, price: &str) -> Quote {
        let (b, q) = pair.split_once('/').unwrap();
        Quote::new(
            "q1".into(),
            cur(b),
            cur(q),
            Rate::parse(price).unwrap(),
            0,
            1000,
        )
        .unwrap()
    }

    #[test]
    fn legacy_example_from_the_spec() {
        let payment = quote("MOP/CNY", "0.88156063");
        assert_eq!(
            payment.convert(money("100.00", "MOP")).unwrap(),
            money("88.16", "CNY")
        );
        let settlement = quote("HKD/MOP", "1.02487562");
        assert_eq!(
            settlement.convert(money("100.00", "MOP")).unwrap(),
            money("97.57", "HKD")
        );
        assert_eq!(settlement.pair(), "HKD/MOP");
        assert_eq!(settlement.price().to_string(), "1.02487562");

        // The same through the table and the payment pricing function.
        let table = parse_rate_file("mid MOP/CNY 0.88156063\nmid HKD/MOP 1.02487562\n").unwrap();
        let mut ids = ["pq", "sq"].into_iter().map(String::from);
        let got = table
            .price_flow(
                &FlowRequest {
                    flow: Flow::Payment,
                    amount: money("100.00", "MOP"),
                    wallet: cur("CNY"),
                    settlement: cur("HKD"),
                    now_ms: 5,
                    validity_ms: 60_000,
                },
                || ids.next().unwrap(),
            )
            .unwrap();
        assert_eq!(got.wallet_amount, money("88.16", "CNY"));
        assert_eq!(got.settlement_amount, money("97.57", "HKD"));
        let pq = got.payment_quote.unwrap();
        assert_eq!(
            (pq.id(), pq.pair().as_str(), pq.price().to_string()),
            ("pq", "MOP/CNY", "0.88156063".into())
        );
        let sq = got.settlement_quote.unwrap();
        assert_eq!(
            (sq.id(), sq.pair().as_str(), sq.expiry_ms()),
            ("sq", "HKD/MOP", 60_005)
        );
    }

    #[test]
    fn rates_parse_and_print_exactly() {
        let check = |text: &str, expect: Result<&str, ()>| {
            let got = Rate::parse(text).map(|r| r.to_string()).map_err(|_| ());
            assert_eq!(got, expect.map(String::from), "{text}");
        };
        check("0.88156063", Ok("0.88156063"));
        check("1.0823", Ok("1.0823"));
        check("1.08230000", Ok("1.0823"));
        check("157", Ok("157"));
        check("157.0", Ok("157"));
        check("0.000012", Ok("0.000012"));
        check("0", Err(()));
        check("0.000", Err(()));
        check("-1.2", Err(()));
        check("1e3", Err(()));
        check(".5", Err(()));
        check("5.", Err(()));
        check("1234567890.123", Err(()));
        check("", Err(()));
    }

    #[test]
    fn rounding_is_half_even_in_both_signs() {
        let check =
            |n: i128, d: i128, expect: i128| assert_eq!(round_half_even(n, d), expect, "{n}/{d}");
        check(5, 2, 2);
        check(7, 2, 4);
        check(-5, 2, -2);
        check(-7, 2, -4);
        check(26, 10, 3);
        check(24, 10, 2);
        check(-26, 10, -3);
        check(0, 7, 0);
        check(i128::MIN, 1, i128::MIN);
        check(i128::MAX, 1, i128::MAX);
        check(i128::MAX, 2, i128::MAX / 2 + 1);
    }

    #[test]
    fn inverse_cross_and_spread_prices() {
        let table = parse_rate_file(
            "mid EUR/USD 1.0823\nmid EUR/JPY 162.37\nmid USD/SGD 1.3412\n\
             spread default 100 100\nspread SGD/USD 50 0\n",
        )
        .unwrap();
        // Inverse: 1 / 1.0823 = 0.92395823708...
        assert_eq!(
            table.mid(cur("USD"), cur("EUR")).unwrap().to_string(),
            "0.9239582371"
        );
        // Cross through USD (first pivot): EUR/SGD = 1.0823 * 1.3412 = 1.45158076.
        assert_eq!(
            table.mid(cur("EUR"), cur("SGD")).unwrap().to_string(),
            "1.45158076"
        );
        // Cross through EUR: JPY/USD = 1.0823 / 162.37.
        assert_eq!(
            table.mid(cur("JPY"), cur("USD")).unwrap().to_string(),
            "0.006665640204"
        );
        // Ask on EUR/USD with the default 100 bps: 1.0823 * 1.01.
        assert_eq!(
            table
                .price(cur("EUR"), cur("USD"), QuoteSide::Ask)
                .unwrap()
                .to_string(),
            "1.093123"
        );
        assert_eq!(
            table
                .price(cur("EUR"), cur("USD"), QuoteSide::Bid)
                .unwrap()
                .to_string(),
            "1.071477"
        );
        // USD/SGD uses SGD/USD's spread swapped: ask 0, bid 50.
        assert_eq!(
            table
                .price(cur("USD"), cur("SGD"), QuoteSide::Ask)
                .unwrap()
                .to_string(),
            "1.3412"
        );
        assert_eq!(
            table
                .price(cur("USD"), cur("SGD"), QuoteSide::Bid)
                .unwrap()
                .to_string(),
            "1.334494"
        );
        assert!(matches!(
            table.mid(cur("KRW"), cur("USD")),
            Err(FxError::NoRate { .. })
        ));
        assert!(matches!(
            table.mid(cur("USD"), cur("USD")),
            Err(FxError::SamePair(_))
        ));
    }

    #[test]
    fn conversion_respects_exponents() {
        let q = quote("USD/JPY", "157.123");
        assert_eq!(
            q.convert(money("10.00", "USD")).unwrap(),
            money("1571", "JPY")
        );
        assert_eq!(
            q.convert(money("1571", "JPY")).unwrap(),
            money("10.00", "USD")
        );
        let q = quote("KWD/USD", "3.2551");
        assert_eq!(
            q.convert(money("1.234", "KWD")).unwrap(),
            money("4.02", "USD")
        );
        assert_eq!(
            q.convert(money("4.02", "USD")).unwrap(),
            money("1.235", "KWD")
        );
        assert!(matches!(
            q.convert(money("1", "EUR")),
            Err(FxError::WrongCurrency { .. })
        ));
    }

    #[test]
    fn rate_file_errors_name_line_and_field() {
        let check = |text: &str, line: usize, field: &str| {
            let e = parse_rate_file(text).unwrap_err();
            assert_eq!((e.line, e.field), (line, field), "{text}: {e}");
        };
        check("# rates\nmid EUR/USD x\n", 2, "rate");
        check("mid EURUSD 1.1\n", 1, "pair");
        check("mid EUR/ZZZ 1.1\n", 1, "pair");
        check("mid EUR/EUR 1.1\n", 1, "pair");
        check("\n\nmid EUR/USD\n", 3, "directive");
        check("rate EUR/USD 1\n", 1, "directive");
        check("spread default 10 -1\n", 1, "bid_bps");
        check("spread default 10 10000\n", 1, "bid_bps");
        check("pivot usd\n", 1, "currency");
        let text = "mid EUR/USD 1.0823\nmid HKD/MOP 1.02487562\nspread default 40 60\n\
                    spread MOP/CNY 25 20\npivot EUR\n";
        let table = parse_rate_file(text).unwrap();
        assert_eq!(table.to_rate_file(), text);
        assert_eq!(parse_rate_file(&table.to_rate_file()).unwrap(), table);
        let e = parse_rate_file("mid EUR/USD abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rate file line 1, field rate: \"abc\" is not a positive decimal rate"
        );
    }

    proptest! {
        #[test]
        fn conversion_is_the_exact_value_rounded_half_even(
            amount_minor in -1_000_000_000_000i64..1_000_000_000_000,
            mantissa in 1u64..1_000_000_000_000,
            scale in 0u32..13,
            codes in prop::sample::subsequence(vec!["JPY", "SGD", "KWD", "CNY", "KRW"], 2),
            forward in any::<bool>(),
        ) {
            let price = Rate::normalized(mantissa, scale);
            let q = Quote::new("q".into(), cur(codes[0]), cur(codes[1]), price, 0, 1).unwrap();
            let from = if forward { q.base() } else { q.quote() };
            let to = if forward { q.quote() } else { q.base() };
            let Ok(got) = q.convert(Money::new(amount_minor, from)) else { return Ok(()); };
            prop_assert_eq!(got.currency(), to);
            // exact = amount * 10^(e_to - e_from) * price^(+-1); check |got - exact| <= 1/2
            // by cross-multiplying in i128 when the numbers fit.
            let (pn, pd) = (i128::from(mantissa), 10i128.pow(scale));
            let (pn, pd) = if forward { (pn, pd) } else { (pd, pn) };
            let shift = i32::from(to.exponent()) - i32::from(from.exponent());
            let (mut num, mut den) = (i128::from(amount_minor) * pn, pd);
            if shift >= 0 { num *= 10i128.pow(shift as u32) } else { den *= 10i128.pow((-shift) as u32) }
            let diff2 = (i128::from(got.amount_minor()) * den - num) * 2;
            prop_assert!(diff2.abs() <= den, "{} -> {}", amount_minor, got);
            if diff2.abs() == den {
                prop_assert_eq!(got.amount_minor() % 2, 0, "ties go to even");
            }
        }

        #[test]
        fn prices_have_bounded_digits_and_stay_close(
            mantissa in 1u64..1_000_000_000_000,
            scale in 0u32..13,
        ) {
            let rate = Rate::normalized(mantissa, scale);
            if let Some(inv) = Rate::from_ratio(rate.ratio().inverse()) {
                prop_assert!(inv.mantissa() < 10u64.pow(PRICE_SIGNIFICANT_DIGITS));
                // rate * inverse is within 1e-9 of 1: |m1*m2 - 10^(s1+s2)| * 1e9 <= 10^(s1+s2)
                let prod = u128::from(mantissa) * u128::from(inv.mantissa());
                let one = 10u128.pow(scale + inv.scale());
                prop_assert!(prod.abs_diff(one) * 1_000_000_000 <= one);
            }
            prop_assert_eq!(Rate::parse(&rate.to_string()).map(|r| r.to_string()), Ok(rate.to_string()));
        }
    }
}
