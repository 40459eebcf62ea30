//! Importer for the European Central Bank's daily reference rates (`eurofxref-daily.xml`).
//!
//! The format is tiny and stable — `<Cube time="YYYY-MM-DD">` holding
//! `<Cube currency="USD" rate="1.0823"/>` elements, every rate being `EUR/XXX` — so a minimal
//! scanner over the text replaces an XML library. It reads only `Cube` elements and their
//! attributes (single or double quotes); everything else in the envelope is ignored.

use crate::Currency;
use crate::fx::{FxError, Rate, RateTable};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcbError {
    #[error("no <Cube time=...> element: not an ECB daily reference-rate file")]
    NoDate,
    #[error("the file holds several days ({0} and {1}); import the daily file")]
    SeveralDays(String, String),
    #[error("date {0:?} is not YYYY-MM-DD")]
    BadDate(String),
    #[error("unterminated <Cube element at byte {0}")]
    Unterminated(usize),
    #[error("rate for {currency}: {source}")]
    BadRate { currency: String, source: FxError },
    #[error("<Cube currency={0:?}> has no rate attribute")]
    MissingRate(String),
    #[error("the file holds no rates")]
    NoRates,
    #[error("{0} has two rates in the file; which one holds is not clear")]
    Duplicate(String),
}

/// One day of ECB reference rates: `EUR/currency` mids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcbRates {
    date: String,
    rates: Vec<(Currency, Rate)>,
    skipped: Vec<String>,
}

impl EcbRates {
    /// The reference day, `YYYY-MM-DD`.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// `(currency, rate)`: one euro buys `rate` of `currency`.
    pub fn rates(&self) -> &[(Currency, Rate)] {
        &self.rates
    }

    /// Currency codes in the file that paycode does not know (reported, not imported).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Sets every `EUR/XXX` mid in `table`, leaving its spreads and other pairs untouched.
    pub fn apply_to(&self, table: &mut RateTable) -> Result<(), FxError> {
        let eur = Currency::parse("EUR").expect("EUR is an ISO 4217 currency");
        for &(currency, rate) in &self.rates {
            table.set_mid(eur, currency, rate)?;
        }
        Ok(())
    }
}

/// Parses the daily reference-rate XML.
pub fn parse(xml: &str) -> Result<EcbRates, EcbError> {
    let mut date: Option<String> = None;
    let mut rates = Vec::new();
    let mut skipped = Vec::new();
    let mut rest = xml;
    let mut offset = 0;
    while let Some(pos) = rest.find("<Cube") {
        let start = offset + pos;
        let after = &rest[pos + "<Cube".len()..];
        let end = after.find('>').ok_or(EcbError::Unterminated(start))?;
        let element = &after[..end];
        offset = start + "<Cube".len() + end + 1;
        rest = &after[end + 1..];
        if let Some(time) = attribute(element, "time") {
            if !is_iso_date(time) {
                return Err(EcbError::BadDate(time.to_string()));
            }
            if let Some(first) = &date {
                return Err(EcbError::SeveralDays(first.clone(), time.to_string()));
            }
            date = Some(time.to_string());
        }
        if let Some(code) = attribute(element, "currency") {
            let text = attribute(element, "rate")
                .ok_or_else(|| EcbError::MissingRate(code.to_string()))?;
            let rate = Rate::parse(text).map_err(|source| EcbError::BadRate {
                currency: code.to_string(),
                source,
            })?;
            match Currency::parse(code) {
                Ok(c) if rates.iter().any(|(seen, _)| *seen == c) => {
                    return Err(EcbError::Duplicate(code.to_string()));
                }
                Ok(c) if code != "EUR" => rates.push((c, rate)),
                _ => skipped.push(code.to_string()),
            }
        }
    }
    let date = date.ok_or(EcbError::NoDate)?;
    if rates.is_empty() {
        return Err(EcbError::NoRates);
    }
    Ok(EcbRates {
        date,
        rates,
        skipped,
    })
}

/// The value of `name="…"` or `name='…'` inside an element's attribute text.
fn attribute<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = element;
    while let Some(pos) = rest.find(name) {
        let before_ok = pos == 0 || rest.as_bytes()[pos - 1].is_ascii_whitespace();
        let after = rest[pos + name.len()..].trim_start();
        if before_ok && let Some(value) = after.strip_prefix('=') {
            let value = value.trim_start();
            let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let value = &value[1..];
            return value.find(quote).map(|end| &value[..end]);
        }
        rest = &rest[pos + name.len()..];
    }
    None
}

fn is_iso_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Money;

    /// Found by the ECB fuzz target: a currency listed twice was imported twice, the second
    /// rate silently replacing the first in the table.
    #[test]
    fn a_currency_with_two_rates_is_refused() {
        let xml = r#"<Cube time="2026-11-30"><Cube currency="ISK" rate="150.1"/><Cube currency='ISK' rate='151.9'/></Cube>"#;
        assert_eq!(parse(xml), Err(EcbError::Duplicate("ISK".into())));
    }
    use crate::fx::QuoteSide;

    const SAMPLE: &str = include_str!("../testdata/eurofxref-daily.xml");

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn sample_file_imports_into_a_table() {
        let ecb = parse(SAMPLE).unwrap();
        assert_eq!(ecb.date(), "2026-11-26");
        assert!(ecb.skipped().is_empty(), "{:?}", ecb.skipped());
        let codes: Vec<&str> = ecb.rates().iter().map(|(c, _)| c.code()).collect();
        for code in [
            "USD", "JPY", "CNY", "HKD", "SGD", "PHP", "KRW", "GBP", "MYR", "THB",
        ] {
            assert!(codes.contains(&code), "{code} missing");
        }
        let usd = ecb
            .rates()
            .iter()
            .find(|(c, _)| c.code() == "USD")
            .unwrap()
            .1;
        assert_eq!(usd.to_string(), "1.0823");

        let mut table = RateTable::new();
        ecb.apply_to(&mut table).unwrap();
        // Cross rate through EUR: SGD/JPY = 162.37 / 1.4512.
        assert_eq!(
            table.mid(cur("SGD"), cur("JPY")).unwrap().to_string(),
            "111.8867144"
        );
        let q = table
            .quote("q".into(), cur("SGD"), cur("JPY"), QuoteSide::Ask, 0, 1)
            .unwrap();
        let jpy = q
            .convert(Money::from_decimal_str("10.00", cur("SGD")).unwrap())
            .unwrap();
        assert_eq!(jpy, Money::new(1119, cur("JPY")));
    }

    #[test]
    fn malformed_files_are_rejected() {
        let check =
            |xml: &str, expect: EcbError| assert_eq!(parse(xml).unwrap_err(), expect, "{xml}");
        check(
            "<Cube><Cube currency='USD' rate='1.1'/></Cube>",
            EcbError::NoDate,
        );
        check("<Cube time='2026-11-26'></Cube>", EcbError::NoRates);
        check(
            "<Cube time='26.11.2026'>",
            EcbError::BadDate("26.11.2026".into()),
        );
        check(
            "<Cube time='2026-11-26'><Cube time='2026-11-25'>",
            EcbError::SeveralDays("2026-11-26".into(), "2026-11-25".into()),
        );
        check(
            "<Cube time='2026-11-26'><Cube currency='USD'/>",
            EcbError::MissingRate("USD".into()),
        );
        check(
            "<Cube time='2026-11-26'><Cube currency='USD' rate='1.1'",
            EcbError::Unterminated(24),
        );
        assert!(matches!(
            parse("<Cube time=\"2026-11-26\"><Cube currency=\"USD\" rate=\"-1\"/>"),
            Err(EcbError::BadRate { .. })
        ));
        let ecb = parse("<Cube time=\"2026-11-26\"><Cube currency=\"ZZZ\" rate=\"2\"/><Cube currency=\"USD\" rate=\"1.1\"/>").unwrap();
        assert_eq!(ecb.skipped(), ["ZZZ".to_string()]);
        assert_eq!(ecb.rates().len(), 1);
    }
}
