//! PostgreSQL values to and from the contract's `sql-value`.
//!
//! Parameters are sent in PostgreSQL's text format (a `bytea` blob in binary), so the server
//! parses each one as whatever type the statement needs: an integer binds to an `int4` column, a
//! string to a `date` or a `uuid`, and a value that does not fit is the server's clear error.
//!
//! Results arrive in binary. Numbers and booleans become numbers and booleans; `numeric` becomes
//! exact text; dates, times, UUIDs, JSON, network addresses and enums become their usual text;
//! arrays become JSON text. Any other type is refused with the cast that would read it.

use std::error::Error;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::bindings::data::SqlValue;

type BoxError = Box<dyn Error + Sync + Send>;

/// A parameter, bound in text format.
#[derive(Debug)]
pub(super) struct PgParam<'a>(pub &'a SqlValue);

impl ToSql for PgParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            SqlValue::Null => return Ok(IsNull::Yes),
            SqlValue::Boolean(b) => out.put_slice(if *b { b"true" } else { b"false" }),
            SqlValue::Integer(i) => out.put_slice(i.to_string().as_bytes()),
            SqlValue::Real(r) => out.put_slice(real_text(*r).as_bytes()),
            SqlValue::Text(t) => out.put_slice(t.as_bytes()),
            SqlValue::Blob(b) if *ty == Type::BYTEA => out.put_slice(b),
            // bytea's text form, for a blob bound where the statement wants another type.
            SqlValue::Blob(b) => out.put_slice(format!("\\x{}", hex::encode(b)).as_bytes()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> tokio_postgres::types::Format {
        if matches!(self.0, SqlValue::Blob(_)) && *ty == Type::BYTEA {
            tokio_postgres::types::Format::Binary
        } else {
            tokio_postgres::types::Format::Text
        }
    }

    to_sql_checked!();
}

/// A float as PostgreSQL's input accepts it.
fn real_text(r: f64) -> String {
    if r.is_nan() {
        "NaN".into()
    } else if r.is_infinite() {
        if r > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        r.to_string()
    }
}

/// The size of one result cell as it arrived, learnt without decoding it; NULL counts 1, as in
/// `value_size`.
#[derive(Debug)]
pub(super) struct PgRawSize(pub u64);

impl<'a> FromSql<'a> for PgRawSize {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(PgRawSize(raw.len() as u64))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(PgRawSize(1))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// One result cell.
#[derive(Debug)]
pub(super) struct PgCell(pub SqlValue);

impl<'a> FromSql<'a> for PgCell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(ty, raw).map(PgCell).map_err(Into::into)
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(PgCell(SqlValue::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Decodes one binary value of type `ty`.
pub(super) fn decode(ty: &Type, raw: &[u8]) -> Result<SqlValue, String> {
    let text = |raw: &[u8]| SqlValue::Text(String::from_utf8_lossy(raw).into_owned());
    Ok(match *ty {
        Type::BOOL => SqlValue::Boolean(fixed::<1>(raw)?[0] != 0),
        Type::INT2 => SqlValue::Integer(i16::from_be_bytes(fixed(raw)?).into()),
        Type::INT4 => SqlValue::Integer(i32::from_be_bytes(fixed(raw)?).into()),
        Type::INT8 => SqlValue::Integer(i64::from_be_bytes(fixed(raw)?)),
        Type::OID => SqlValue::Integer(u32::from_be_bytes(fixed(raw)?).into()),
        Type::FLOAT4 => SqlValue::Real(f32::from_be_bytes(fixed(raw)?).into()),
        Type::FLOAT8 => SqlValue::Real(f64::from_be_bytes(fixed(raw)?)),
        Type::NUMERIC => SqlValue::Text(numeric_text(raw)?),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::XML
        | Type::JSON
        | Type::REFCURSOR => text(raw),
        // Binary regclass and its kin are bare OIDs.
        Type::REGPROC | Type::REGCLASS | Type::REGTYPE => {
            SqlValue::Integer(u32::from_be_bytes(fixed(raw)?).into())
        }
        // jsonb and jsonpath: a version byte, then the text.
        Type::JSONB | Type::JSONPATH => text(raw.get(1..).unwrap_or_default()),
        Type::CHAR => SqlValue::Text(char::from(fixed::<1>(raw)?[0]).to_string()),
        Type::BYTEA => SqlValue::Blob(raw.to_vec()),
        Type::UUID => SqlValue::Text(uuid_text(&fixed::<16>(raw)?)),
        Type::DATE => SqlValue::Text(date_text(i32::from_be_bytes(fixed(raw)?))),
        Type::TIME => SqlValue::Text(time_text(i64::from_be_bytes(fixed(raw)?))),
        Type::TIMETZ => {
            let raw = fixed::<12>(raw)?;
            let micros = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
            let west = i32::from_be_bytes(raw[8..].try_into().expect("4 bytes"));
            SqlValue::Text(format!("{}{}", time_text(micros), offset_text(-west)))
        }
        Type::TIMESTAMP => SqlValue::Text(timestamp_text(i64::from_be_bytes(fixed(raw)?), false)),
        Type::TIMESTAMPTZ => SqlValue::Text(timestamp_text(i64::from_be_bytes(fixed(raw)?), true)),
        Type::INTERVAL => SqlValue::Text(interval_text(&fixed::<16>(raw)?)),
        Type::INET | Type::CIDR => SqlValue::Text(inet_text(raw)?),
        _ => match ty.kind() {
            Kind::Enum(_) => text(raw),
            Kind::Domain(base) => decode(base, raw)?,
            Kind::Array(element) => SqlValue::Text(array_json(element, raw)?),
            // Extension types whose binary form is their text.
            _ if matches!(ty.name(), "citext" | "ltree" | "lquery") => text(raw),
            _ => return Err(format!("type `{}` is not converted", ty.name())),
        },
    })
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

fn be_i16(raw: &[u8], at: usize) -> Result<i16, String> {
    raw.get(at..at + 2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "a value ended early".to_string())
}

fn be_i32(raw: &[u8], at: usize) -> Result<i32, String> {
    raw.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "a value ended early".to_string())
}

/// `numeric` as exact decimal text: base-10000 digit groups with a weight and a display scale.
fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let ndigits = be_i16(raw, 0)?.max(0) as usize;
    let weight = i32::from(be_i16(raw, 2)?);
    let sign = be_i16(raw, 4)? as u16;
    let dscale = be_i16(raw, 6)?.max(0) as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits = (0..ndigits)
        .map(|i| be_i16(raw, 8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(out, "{}", digit(i));
            } else {
                let _ = write!(out, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        for j in 0..dscale.div_ceil(4) as i32 {
            let _ = write!(fraction, "{:04}", digit(weight + 1 + j));
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Days since 2000-01-01 (PostgreSQL's epoch) as a proleptic Gregorian date.
fn civil(days_since_2000: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil, from 1970-01-01.
    let z = days_since_2000 + 10_957 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn date_part(days: i64) -> (String, &'static str) {
    let (year, month, day) = civil(days);
    if year <= 0 {
        (format!("{:04}-{month:02}-{day:02}", 1 - year), " BC")
    } else {
        (format!("{year:04}-{month:02}-{day:02}"), "")
    }
}

fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => {
            let (date, era) = date_part(days.into());
            format!("{date}{era}")
        }
    }
}

/// Microseconds since midnight as `HH:MM:SS[.ffffff]`.
fn time_text(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let mut out = format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// A UTC offset in seconds east as `+HH[:MM[:SS]]`.
fn offset_text(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let east = east.unsigned_abs();
    let mut out = format!("{sign}{:02}", east / 3600);
    if !east.is_multiple_of(3600) {
        let _ = write!(out, ":{:02}", east / 60 % 60);
        if !east.is_multiple_of(60) {
            let _ = write!(out, ":{:02}", east % 60);
        }
    }
    out
}

/// Microseconds since 2000-01-01 00:00:00; with `utc`, a `timestamptz` shown in UTC.
fn timestamp_text(micros: i64, utc: bool) -> String {
    match micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => {
            let day = 86_400_000_000;
            let (date, era) = date_part(micros.div_euclid(day));
            let time = time_text(micros.rem_euclid(day));
            format!("{date} {time}{}{era}", if utc { "+00" } else { "" })
        }
    }
}

/// An interval as PostgreSQL prints it: `1 year 2 mons 3 days 04:05:06`.
fn interval_text(raw: &[u8; 16]) -> String {
    let micros = i64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let days = i32::from_be_bytes(raw[8..12].try_into().expect("4 bytes"));
    let months = i32::from_be_bytes(raw[12..].try_into().expect("4 bytes"));
    let mut parts = Vec::new();
    let plural =
        |n: i32, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if months / 12 != 0 {
        parts.push(plural(months / 12, "year", "years"));
    }
    if months % 12 != 0 {
        parts.push(plural(months % 12, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let abs = micros.unsigned_abs();
        let hours = abs / 3_600_000_000;
        let rest = time_text((abs % 3_600_000_000) as i64);
        // `time_text` printed 00:MM:SS; put the real hours in front.
        parts.push(format!("{sign}{hours:02}{}", &rest[2..]));
    }
    parts.join(" ")
}

/// `inet` / `cidr`: family, prefix bits, is-cidr, length, then the address bytes.
fn inet_text(raw: &[u8]) -> Result<String, String> {
    let [family, bits, is_cidr, len] = raw
        .get(..4)
        .and_then(|h| <[u8; 4]>::try_from(h).ok())
        .ok_or("a network address ended early")?;
    let address = raw
        .get(4..4 + len as usize)
        .ok_or("a network address ended early")?;
    let (text, full) = match (family, address.len()) {
        (2, 4) => (
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(address).expect("4 bytes")).to_string(),
            32,
        ),
        (3, 16) => (
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(address).expect("16 bytes")).to_string(),
            128,
        ),
        _ => return Err("an unknown network address family".into()),
    };
    Ok(if is_cidr != 0 || bits != full {
        format!("{text}/{bits}")
    } else {
        text
    })
}

/// An array (of any dimension) as JSON text, its elements decoded like single values.
fn array_json(element: &Type, raw: &[u8]) -> Result<String, String> {
    let ndim = usize::try_from(be_i32(raw, 0)?).map_err(|_| "a malformed array")?;
    // Then a has-nulls flag and the element type's OID, then (length, lower bound) per dimension.
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(usize::try_from(be_i32(raw, 12 + 8 * d)?).map_err(|_| "a malformed array")?);
    }
    let mut at = 12 + 8 * ndim;
    let mut elements = Vec::new();
    let count: usize = if ndim == 0 { 0 } else { dims.iter().product() };
    for _ in 0..count {
        let len = be_i32(raw, at)?;
        at += 4;
        if len < 0 {
            elements.push(serde_json::Value::Null);
            continue;
        }
        let bytes = raw
            .get(at..at + len as usize)
            .ok_or("an array ended early")?;
        at += len as usize;
        elements.push(json_of(decode(element, bytes)?));
    }
    // Fold the flat elements into nested arrays, innermost dimension first.
    let mut nested = elements;
    for &len in dims.iter().skip(1).rev() {
        nested = nested
            .chunks(len.max(1))
            .map(|chunk| serde_json::Value::Array(chunk.to_vec()))
            .collect();
    }
    Ok(serde_json::Value::Array(nested).to_string())
}

fn json_of(value: SqlValue) -> serde_json::Value {
    match value {
        SqlValue::Null => serde_json::Value::Null,
        SqlValue::Boolean(b) => b.into(),
        SqlValue::Integer(i) => i.into(),
        SqlValue::Real(r) => {
            serde_json::Number::from_f64(r).map_or(serde_json::Value::Null, Into::into)
        }
        SqlValue::Text(t) => t.into(),
        SqlValue::Blob(b) => format!("\\x{}", hex::encode(b)).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend(ndigits.to_be_bytes());
        raw.extend(weight.to_be_bytes());
        raw.extend(sign.to_be_bytes());
        raw.extend(dscale.to_be_bytes());
        for d in digits {
            raw.extend(d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_are_exact_text() {
        assert_eq!(
            numeric_text(&numeric(2, 0, 0, 2, &[12, 5000])).unwrap(),
            "12.50"
        );
        assert_eq!(numeric_text(&numeric(1, -1, 0, 3, &[10])).unwrap(), "0.001");
        assert_eq!(numeric_text(&numeric(1, 1, 0, 0, &[1])).unwrap(), "10000");
        assert_eq!(
            numeric_text(&numeric(2, 1, 0x4000, 1, &[3, 1415])).unwrap(),
            "-31415.0"
        );
        assert_eq!(numeric_text(&numeric(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
    }

    #[test]
    fn dates_and_times_print_like_postgres() {
        assert_eq!(date_text(0), "2000-01-01");
        assert_eq!(date_text(-1), "1999-12-31");
        assert_eq!(date_text(8_826), "2024-03-01");
        assert_eq!(time_text(3_723_500_000), "01:02:03.5");
        let micros = 8_826 * 86_400_000_000 + 45_296_000_001;
        assert_eq!(
            timestamp_text(micros, true),
            "2024-03-01 12:34:56.000001+00"
        );
        assert_eq!(timestamp_text(i64::MAX, false), "infinity");
        assert_eq!(offset_text(-5 * 3600 - 1800), "-05:30");
    }

    #[test]
    fn intervals_print_like_postgres() {
        let mut raw = [0u8; 16];
        raw[..8]
            .copy_from_slice(&(4 * 3_600_000_000i64 + 5 * 60_000_000 + 6_000_000).to_be_bytes());
        raw[8..12].copy_from_slice(&3i32.to_be_bytes());
        raw[12..].copy_from_slice(&14i32.to_be_bytes());
        assert_eq!(interval_text(&raw), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(interval_text(&[0; 16]), "00:00:00");
    }

    #[test]
    fn arrays_become_json_text() {
        let mut raw = Vec::new();
        raw.extend(1i32.to_be_bytes());
        raw.extend(1i32.to_be_bytes());
        raw.extend(23u32.to_be_bytes());
        raw.extend(2i32.to_be_bytes());
        raw.extend(1i32.to_be_bytes());
        raw.extend(4i32.to_be_bytes());
        raw.extend(7i32.to_be_bytes());
        raw.extend((-1i32).to_be_bytes());
        assert_eq!(array_json(&Type::INT4, &raw).unwrap(), "[7,null]");
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(decode(&Type::TS_VECTOR, b"x").is_err());
    }

    #[test]
    fn floats_bind_as_postgres_reads_them() {
        assert_eq!(real_text(0.1), "0.1");
        assert_eq!(real_text(f64::NEG_INFINITY), "-Infinity");
    }
}
