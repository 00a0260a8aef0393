//! Deserialization adapters that make the server accept exactly what the JSON Schemas declare:
//! an object only where the schema says `type: object` (serde's derived structs also take a
//! JSON array of the fields in order), an `integer` also when it is written with a zero
//! fraction (`5.0`, which JSON Schema counts as an integer and serde does not), and a
//! date-time exactly as its `pattern` says (chrono's parser takes more).

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// A `T` that must be written as a JSON object (the API's request bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonObject<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(JsonObject)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

/// For `#[serde(default, deserialize_with = …)]` on an `Option<T>` field whose schema is not
/// nullable: absent is `None`; `null` is refused like any other wrong type.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// For `#[serde(default, deserialize_with = …)]` on an `Option<T>` field whose schema is an
/// object (not nullable): absent is `None`; `null`, an array or a scalar are refused.
pub(crate) fn present_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer
        .deserialize_map(ObjectVisitor(PhantomData))
        .map(Some)
}

/// For `#[serde(deserialize_with = …)]` on an integer field: a JSON integer, or a number with
/// a zero fraction (`5.0`), within `T`'s range.
pub(crate) fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let n = deserializer.deserialize_i64(IntegerVisitor)?;
    T::try_from(n).map_err(|_| de::Error::custom(format_args!("integer {n} is out of range")))
}

/// [`integer`] for an `Option` field (`null` or absent is `None`; use with `serde(default)`).
pub(crate) fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    Option::<Integer>::deserialize(deserializer)?
        .map(|Integer(n)| {
            T::try_from(n)
                .map_err(|_| de::Error::custom(format_args!("integer {n} is out of range")))
        })
        .transpose()
}

struct Integer(i128);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(IntegerVisitor).map(Integer)
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = i128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i128, E> {
        // Past ±2^64 no target type fits anyway; the bound keeps the cast exact.
        if v.is_finite() && v.fract() == 0.0 && v.abs() <= 18_446_744_073_709_551_616.0 {
            Ok(v as i128)
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }
}

/// The JSON Schema `pattern` of [`rfc3339`]: RFC 3339 `date-time` with real calendar dates
/// (leap years included), hours 00–23, seconds 00–59 (no leap second), any number of fraction
/// digits, and `Z` or a `±hh:mm` offset (`T` and `Z` in either case). `format: date-time` alone
/// is an annotation in OpenAPI 3.1, so the pattern is what binds.
pub const RFC3339_PATTERN: &str = "^([0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])\
                                   |[0-9]{4}-(0[13-9]|1[0-2])-(29|30)\
                                   |[0-9]{4}-(0[13578]|1[02])-31\
                                   |([0-9]{2}(0[48]|[2468][048]|[13579][26])\
                                   |([02468][048]|[13579][26])00)-02-29)\
                                   [Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?\
                                   ([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// Parses `s` exactly as [`RFC3339_PATTERN`] says (chrono's own parser is more lenient: a space
/// for `T`, `UTC`, one-digit months, leap seconds), as UTC.
pub fn rfc3339(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0, |n, c| n * 10 + u32::from(c - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0;
    if at(i, b".") {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        // Nanoseconds from the first nine digits; further digits are below chrono's precision.
        nanos = b[i + 1..i + 1 + digits.min(9)]
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(9)
            .fold(0, |n, c| n * 10 + u32::from(c - b'0'));
        i += 1 + digits;
    }
    let offset_secs = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let local = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)?;
    let offset = FixedOffset::east_opt(offset_secs)?;
    Some(
        local
            .and_local_timezone(offset)
            .single()?
            .with_timezone(&Utc),
    )
}

/// For `#[serde(default, deserialize_with = …)]` on an `Option<DateTime<Utc>>` field: a string
/// matching [`RFC3339_PATTERN`], or `null`/absent for `None`.
pub(crate) fn optional_rfc3339<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<Rfc3339>::deserialize(deserializer)?.map(|Rfc3339(t)| t))
}

struct Rfc3339(DateTime<Utc>);

impl<'de> Deserialize<'de> for Rfc3339 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(Rfc3339Visitor).map(Rfc3339)
    }
}

struct Rfc3339Visitor;

impl Visitor<'_> for Rfc3339Visitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 date-time such as 2026-05-01T12:00:00Z")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DateTime<Utc>, E> {
        rfc3339(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::JsonObject;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::integer")]
        size: u64,
        #[serde(default, deserialize_with = "super::optional_integer")]
        limit: Option<i64>,
        #[serde(default, deserialize_with = "super::present_object")]
        inner: Option<Inner>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        #[serde(default)]
        a: Option<i64>,
    }

    fn parse(s: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str::<JsonObject<Body>>(s).map(|JsonObject(b)| b)
    }

    #[test]
    fn objects_only_and_integers_with_a_zero_fraction() {
        let b = parse(r#"{"size": 5.0, "limit": 7, "inner": {"a": 1}}"#).unwrap();
        assert_eq!(
            b,
            Body {
                size: 5,
                limit: Some(7),
                inner: Some(Inner { a: Some(1) })
            }
        );
        assert_eq!(parse(r#"{"size": 1, "limit": null}"#).unwrap().limit, None);
        assert_eq!(
            parse(r#"{"size": 1, "limit": 2.0}"#).unwrap().limit,
            Some(2)
        );
        for bad in [
            r#"[5]"#,
            r#"null"#,
            r#"{"size": 5.5}"#,
            r#"{"size": -1}"#,
            r#"{"size": 1e30}"#,
            r#"{"size": "5"}"#,
            r#"{"size": 1, "inner": null}"#,
            r#"{"size": 1, "inner": [null]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// Expected answers computed with the pattern (Python `re`, `$` as end of string).
    const DATE_TIMES: [(&str, bool); 36] = [
        ("2024-01-01T00:00:00Z", true),
        ("2024-01-01t00:00:00z", true),
        ("2024-01-01 00:00:00Z", false),
        ("2024-01-01T00:00:00+0000", false),
        ("2024-01-01T00:00:00.123456789012Z", true),
        ("2024-02-29T00:00:00Z", true),
        ("2023-02-29T00:00:00Z", false),
        ("1900-02-29T00:00:00Z", false),
        ("2000-02-29T00:00:00Z", true),
        ("0000-02-29T00:00:00Z", true),
        ("2024-01-01T23:59:60Z", false),
        ("0000-01-01T00:00:00+23:59", true),
        ("9999-12-31T23:59:59-23:59", true),
        ("2024-01-01T00:00Z", false),
        ("2024-01-01T00:00:00", false),
        ("+2024-01-01T00:00:00Z", false),
        ("2024-1-01T00:00:00Z", false),
        ("2024-01-01T00:00:00+24:00", false),
        ("2024-01-01T00:00:00.Z", false),
        ("2024-01-01T00:00:00,5Z", false),
        ("2024-01-01T00:00:00 Z", false),
        ("2024-01-01T00:00:00UTC", false),
        ("2024-01-01T00:00:00+00", false),
        ("2024-04-31T00:00:00Z", false),
        ("2024-13-01T00:00:00Z", false),
        ("2024-00-10T00:00:00Z", false),
        ("2024-01-00T00:00:00Z", false),
        ("2024-01-01T24:00:00Z", false),
        ("2024-01-01T00:60:00Z", false),
        ("2024-01-01T00:00:00+05:60", false),
        ("2024-01-01T00:00:00.5+05:30", true),
        ("2024-01-01T00:00:00Zx", false),
        ("x2024-01-01T00:00:00Z", false),
        ("", false),
        ("\u{662}\u{660}\u{662}\u{664}-01-01T00:00:00Z", false),
        ("2024-01-01T00:00:00+05:30\n", false),
    ];

    #[test]
    fn rfc3339_accepts_exactly_what_its_pattern_matches() {
        for (s, expected) in DATE_TIMES {
            assert_eq!(super::rfc3339(s).is_some(), expected, "{s:?}");
        }
        assert_eq!(
            super::rfc3339("2024-01-01T00:30:00.25+01:00").unwrap(),
            chrono::DateTime::parse_from_rfc3339("2023-12-31T23:30:00.25Z").unwrap()
        );
        assert_eq!(
            super::rfc3339("2024-01-01T00:00:00.123456789999Z")
                .unwrap()
                .timestamp_subsec_nanos(),
            123_456_789
        );
        assert!(super::rfc3339("0000-01-01T00:00:00+23:59").is_some());
    }
}
