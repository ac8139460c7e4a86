//! JSON to WIT values by a function's parameter types, and WIT values back to JSON, in the
//! encoding `schema` describes.
//!
//! Both walks are bounded: a value is walked along its type, which nests at most
//! `MAX_TYPE_DEPTH` levels (checked when the plugin is loaded), and each walk also stops by
//! itself past that depth, so a hostile value (what a guest hands back) cannot make either
//! recurse unboundedly. Neither panics.

use serde_json::{Map, Value};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

use super::schema::{MAX_TYPE_DEPTH, NON_FINITE};

/// A JSON pointer segment (`~` and `/` escaped).
fn segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts a tool's JSON input (an object, one property per parameter) into the arguments of
/// the function. The error names the field, as a JSON pointer.
pub(crate) fn args(params: &[(String, Type)], input: &Value) -> Result<Vec<Val>, String> {
    let Value::Object(map) = input else {
        return Err(format!("the input must be an object, not {}", kind(input)));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !params.iter().any(|(name, _)| name == *k))
    {
        return Err(format!(
            "field `/{}` is not a parameter of the function",
            segment(unknown)
        ));
    }
    params
        .iter()
        .map(|(name, ty)| {
            let path = format!("/{}", segment(name));
            match map.get(name) {
                Some(v) => to_val(ty, v, &path, 1),
                None if matches!(ty, Type::Option(_)) => Ok(Val::Option(None)),
                None => Err(format!("field `{path}` is missing")),
            }
        })
        .collect()
}

fn int_of(v: &Value) -> Option<i128> {
    let Value::Number(n) = v else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    // JSON Schema counts 3.0 as an integer; a float past 2^64 is out of every range anyway.
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 2f64.powi(100)).then_some(f as i128)
}

fn float_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Converts `v` by `ty`; `path` is where `v` sits in the input.
pub(crate) fn to_val(ty: &Type, v: &Value, path: &str, level: usize) -> Result<Val, String> {
    if level > MAX_TYPE_DEPTH {
        return Err(format!(
            "field `{path}` nests deeper than the {MAX_TYPE_DEPTH} levels this host maps"
        ));
    }
    let at = |what: &str| format!("field `{path}`: expected {what}, got {}", shown(v));
    let int = |name: &str, min: i128, max: i128| -> Result<i128, String> {
        match int_of(v) {
            Some(i) if (min..=max).contains(&i) => Ok(i),
            Some(_) => Err(format!(
                "field `{path}`: {} is out of range for {name} ({min} to {max})",
                shown(v)
            )),
            None => Err(at(&format!("an integer ({name}, {min} to {max})"))),
        }
    };
    // The range was checked, so the casts are exact.
    Ok(match ty {
        Type::Bool => Val::Bool(v.as_bool().ok_or_else(|| at("a boolean"))?),
        Type::S8 => Val::S8(int("s8", i8::MIN.into(), i8::MAX.into())? as i8),
        Type::U8 => Val::U8(int("u8", 0, u8::MAX.into())? as u8),
        Type::S16 => Val::S16(int("s16", i16::MIN.into(), i16::MAX.into())? as i16),
        Type::U16 => Val::U16(int("u16", 0, u16::MAX.into())? as u16),
        Type::S32 => Val::S32(int("s32", i32::MIN.into(), i32::MAX.into())? as i32),
        Type::U32 => Val::U32(int("u32", 0, u32::MAX.into())? as u32),
        Type::S64 => Val::S64(int("s64", i64::MIN.into(), i64::MAX.into())? as i64),
        Type::U64 => Val::U64(int("u64", 0, u64::MAX.into())? as u64),
        Type::Float64 => Val::Float64(
            float_of(v).ok_or_else(|| at("a number, \"NaN\", \"Infinity\" or \"-Infinity\""))?,
        ),
        Type::Float32 => {
            let f = float_of(v)
                .ok_or_else(|| at("a number, \"NaN\", \"Infinity\" or \"-Infinity\""))?;
            let narrowed = f as f32;
            if f.is_finite() && !narrowed.is_finite() {
                return Err(format!(
                    "field `{path}`: {} is out of range for f32",
                    shown(v)
                ));
            }
            Val::Float32(narrowed)
        }
        Type::Char => {
            let s = v.as_str().ok_or_else(|| at("a string of one character"))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(at("a string of exactly one character (char)")),
            }
        }
        Type::String => Val::String(v.as_str().ok_or_else(|| at("a string"))?.to_string()),
        Type::List(l) => {
            let items = v.as_array().ok_or_else(|| at("an array"))?;
            Val::List(elements(&l.ty(), items, path, level)?)
        }
        Type::FixedLengthList(l) => {
            let items = v.as_array().ok_or_else(|| at("an array"))?;
            if items.len() as u64 != u64::from(l.len()) {
                return Err(at(&format!("an array of exactly {} items", l.len())));
            }
            Val::FixedLengthList(elements(&l.ty(), items, path, level)?)
        }
        Type::Map(m) => {
            let pairs = v
                .as_array()
                .ok_or_else(|| at("an array of [key, value] pairs"))?;
            let mut out = Vec::with_capacity(pairs.len());
            for (i, pair) in pairs.iter().enumerate() {
                let here = format!("{path}/{i}");
                match pair.as_array().map(Vec::as_slice) {
                    Some([key, value]) => out.push((
                        to_val(&m.key(), key, &format!("{here}/0"), level + 1)?,
                        to_val(&m.value(), value, &format!("{here}/1"), level + 1)?,
                    )),
                    _ => {
                        return Err(format!(
                            "field `{here}`: expected a [key, value] pair, got {}",
                            shown(pair)
                        ));
                    }
                }
            }
            Val::Map(out)
        }
        Type::Tuple(t) => {
            let items = v.as_array().ok_or_else(|| at("an array"))?;
            let types: Vec<Type> = t.types().collect();
            if items.len() != types.len() {
                return Err(at(&format!("an array of exactly {} items", types.len())));
            }
            let vals = types
                .iter()
                .zip(items)
                .enumerate()
                .map(|(i, (ty, item))| to_val(ty, item, &format!("{path}/{i}"), level + 1))
                .collect::<Result<_, _>>()?;
            Val::Tuple(vals)
        }
        Type::Record(r) => {
            let map = v.as_object().ok_or_else(|| at("an object"))?;
            if let Some(unknown) = map.keys().find(|k| !r.fields().any(|f| f.name == *k)) {
                return Err(format!(
                    "field `{path}/{}` is not a field of the record",
                    segment(unknown)
                ));
            }
            let mut fields = Vec::with_capacity(r.fields().len());
            for field in r.fields() {
                let here = format!("{path}/{}", segment(field.name));
                let val = match map.get(field.name) {
                    Some(item) => to_val(&field.ty, item, &here, level + 1)?,
                    None if matches!(field.ty, Type::Option(_)) => Val::Option(None),
                    None => return Err(format!("field `{here}` is missing")),
                };
                fields.push((field.name.to_string(), val));
            }
            Val::Record(fields)
        }
        Type::Variant(variant) => {
            let names = || {
                variant
                    .cases()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (name, payload) = one_key(v).ok_or_else(|| {
                at(&format!(
                    "a case of the variant (one of {}): its name, or {{\"name\": payload}}",
                    names()
                ))
            })?;
            let Some(case) = variant.cases().find(|c| c.name == name) else {
                return Err(format!(
                    "field `{path}`: unknown case {} (the cases are {})",
                    shown(&Value::String(name.to_string())),
                    names()
                ));
            };
            let payload = match (&case.ty, payload) {
                (None, None) => None,
                (Some(ty), Some(p)) => Some(Box::new(to_val(
                    ty,
                    p,
                    &format!("{path}/{}", segment(name)),
                    level + 1,
                )?)),
                (None, Some(_)) => {
                    return Err(format!(
                        "field `{path}`: case `{name}` has no payload; write it as \"{name}\""
                    ));
                }
                (Some(_), None) => {
                    return Err(format!(
                        "field `{path}`: case `{name}` takes a payload; write it as {{\"{name}\": …}}"
                    ));
                }
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let s = v.as_str().ok_or_else(|| at("a string"))?;
            match e.names().find(|n| *n == s) {
                Some(n) => Val::Enum(n.to_string()),
                None => {
                    return Err(format!(
                        "field `{path}`: unknown enum value {} (the values are {})",
                        shown(v),
                        e.names()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        Type::Flags(f) => {
            let items = v.as_array().ok_or_else(|| at("an array of flag names"))?;
            let mut set: Vec<String> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}/{i}");
                let name = item.as_str().and_then(|s| f.names().find(|n| *n == s));
                match name {
                    Some(n) if set.iter().any(|s| s == n) => {
                        return Err(format!("field `{here}`: flag `{n}` is given twice"));
                    }
                    Some(n) => set.push(n.to_string()),
                    None => {
                        return Err(format!(
                            "field `{here}`: unknown flag {} (the flags are {})",
                            shown(item),
                            f.names()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
            Val::Flags(set)
        }
        Type::Option(o) => {
            let inner = o.ty();
            match v {
                Value::Null => Val::Option(None),
                _ if matches!(inner, Type::Option(_)) => match one_key(v) {
                    Some(("some", Some(p))) => Val::Option(Some(Box::new(to_val(
                        &inner,
                        p,
                        &format!("{path}/some"),
                        level + 1,
                    )?))),
                    _ => return Err(at("null or {\"some\": …} (an option of an option)")),
                },
                _ => Val::Option(Some(Box::new(to_val(&inner, v, path, level + 1)?))),
            }
        }
        Type::Result(r) => {
            let (which, payload) = match one_key(v) {
                Some((w @ ("ok" | "err"), p)) => (w, p),
                _ => return Err(at("{\"ok\": …} or {\"err\": …}")),
            };
            let ty = if which == "ok" { r.ok() } else { r.err() };
            let here = format!("{path}/{which}");
            let payload = match (ty, payload) {
                (None, None | Some(Value::Null)) => None,
                (None, Some(other)) => {
                    return Err(format!(
                        "field `{here}`: expected null (no payload), got {}",
                        shown(other)
                    ));
                }
                (Some(ty), Some(p)) => Some(Box::new(to_val(&ty, p, &here, level + 1)?)),
                (Some(_), None) => return Err(format!("field `{here}`: a payload is required")),
            };
            Val::Result(if which == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            })
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(format!(
                "field `{path}`: this type cannot be passed as JSON"
            ));
        }
    })
}

fn elements(ty: &Type, items: &[Value], path: &str, level: usize) -> Result<Vec<Val>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| to_val(ty, item, &format!("{path}/{i}"), level + 1))
        .collect()
}

/// A case name alone (`"name"`), or an object with one key (`{"name": payload}`).
fn one_key(v: &Value) -> Option<(&str, Option<&Value>)> {
    match v {
        Value::String(s) => Some((s.as_str(), None)),
        Value::Object(map) if map.len() == 1 => {
            map.iter().next().map(|(k, p)| (k.as_str(), Some(p)))
        }
        _ => None,
    }
}

/// A bounded preview of a value the caller sent, for a message.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.len() <= 80 {
        return text;
    }
    format!("{}…", &text[..text.floor_char_boundary(80)])
}

/// Converts a value the guest returned into JSON. The value is hostile: its size is bounded by
/// the hostcall fuel, and its depth is checked here.
pub(crate) fn to_json(v: &Val) -> Result<Value, String> {
    to_json_at(v, 1)
}

fn finite_or_name(f: f64) -> Value {
    if f.is_nan() {
        Value::String(NON_FINITE[0].into())
    } else if f == f64::INFINITY {
        Value::String(NON_FINITE[1].into())
    } else if f == f64::NEG_INFINITY {
        Value::String(NON_FINITE[2].into())
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(key.to_string(), value);
    Value::Object(map)
}

fn to_json_at(v: &Val, level: usize) -> Result<Value, String> {
    if level > MAX_TYPE_DEPTH {
        return Err(format!(
            "the plugin returned a value nested deeper than the {MAX_TYPE_DEPTH} levels this host maps"
        ));
    }
    let sub = |v: &Val| to_json_at(v, level + 1);
    let list = |items: &[Val]| -> Result<Value, String> {
        items
            .iter()
            .map(|i| to_json_at(i, level + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    };
    Ok(match v {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(i) => (*i).into(),
        Val::U8(i) => (*i).into(),
        Val::S16(i) => (*i).into(),
        Val::U16(i) => (*i).into(),
        Val::S32(i) => (*i).into(),
        Val::U32(i) => (*i).into(),
        Val::S64(i) => (*i).into(),
        Val::U64(i) => (*i).into(),
        // The shortest text that reads back as the same f32, rather than its exact f64 widening
        // (0.1, not 0.10000000149011612).
        Val::Float32(f) => match f.to_string().parse::<f64>() {
            Ok(shortest) if f.is_finite() => finite_or_name(shortest),
            _ => finite_or_name(f64::from(*f)),
        },
        Val::Float64(f) => finite_or_name(*f),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => list(items)?,
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| Ok(Value::Array(vec![sub(k)?, sub(v)?])))
                .collect::<Result<Vec<_>, String>>()?,
        ),
        Val::Record(fields) => {
            let mut map = Map::with_capacity(fields.len());
            for (name, value) in fields {
                map.insert(name.clone(), sub(value)?);
            }
            Value::Object(map)
        }
        Val::Variant(name, None) | Val::Enum(name) => Value::String(name.clone()),
        Val::Variant(name, Some(payload)) => single(name, sub(payload)?),
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Option(None) => Value::Null,
        Val::Option(Some(inner)) => match **inner {
            Val::Option(_) => single("some", sub(inner)?),
            _ => sub(inner)?,
        },
        Val::Result(r) => {
            let (key, payload) = match r {
                Ok(p) => ("ok", p),
                Err(p) => ("err", p),
            };
            let payload = match payload {
                Some(p) => sub(p)?,
                None => Value::Null,
            };
            single(key, payload)
        }
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            return Err("the plugin returned a handle, which has no JSON form".into());
        }
    })
}
