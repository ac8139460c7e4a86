//! WIT types as JSON Schema (draft 2020-12), and as WIT text for descriptions and messages.
//!
//! The JSON encoding each schema describes is the one `convert` reads and writes; the two must
//! change together (the tests of `convert` validate its output against these schemas).

use serde_json::{Map, Value, json};
use wasmtime::component::ResourceType;
use wasmtime::component::types::Type;

/// The deepest nesting of WIT types a typed tool may use. wasmtime allows 100; a schema nests
/// two or three JSON levels per WIT level, and serde_json parses at most 128, so this host maps
/// at most this many. Every walk over a type or a value stops here, so none recurses unboundedly.
pub(crate) const MAX_TYPE_DEPTH: usize = 32;

/// The longest WIT text of one type in a description or message; past it the text is cut.
const MAX_TYPE_TEXT: usize = 400;

/// The strings that stand for the floats JSON has no number for.
pub(crate) const NON_FINITE: [&str; 3] = ["NaN", "Infinity", "-Infinity"];

/// The component's named types (records, variants, enums, flags) and resources, found among
/// its exports, to name them in descriptions: WIT names and doc comments do not survive into a
/// component's function types, only these exported type names do.
#[derive(Default)]
pub(crate) struct Names {
    types: Vec<(String, Type)>,
    resources: Vec<(String, ResourceType)>,
}

/// The most named types looked at: each lookup compares types structurally.
const MAX_NAMES: usize = 512;

impl Names {
    /// Remembers an exported type under `name`.
    pub(crate) fn add_type(&mut self, name: &str, ty: Type) {
        let named = matches!(
            ty,
            Type::Record(_) | Type::Variant(_) | Type::Enum(_) | Type::Flags(_)
        );
        if named && self.types.len() < MAX_NAMES {
            self.types.push((name.to_string(), ty));
        }
    }

    /// Remembers an exported resource under `name`.
    pub(crate) fn add_resource(&mut self, name: &str, ty: ResourceType) {
        if self.resources.len() < MAX_NAMES {
            self.resources.push((name.to_string(), ty));
        }
    }

    fn of(&self, ty: &Type) -> Option<&str> {
        match ty {
            Type::Record(_) | Type::Variant(_) | Type::Enum(_) | Type::Flags(_) => self
                .types
                .iter()
                .find(|(_, t)| t == ty)
                .map(|(n, _)| n.as_str()),
            _ => None,
        }
    }

    fn resource(&self, ty: &ResourceType) -> &str {
        self.resources
            .iter()
            .find(|(_, t)| t == ty)
            .map_or("…", |(n, _)| n.as_str())
    }
}

/// How deep `ty` nests, counting itself as 1, stopping at `MAX_TYPE_DEPTH + 1`.
pub(crate) fn depth(ty: &Type) -> usize {
    fn walk(ty: &Type, level: usize) -> usize {
        if level > MAX_TYPE_DEPTH {
            return level;
        }
        children(ty)
            .iter()
            .map(|c| walk(c, level + 1))
            .max()
            .unwrap_or(level)
    }
    walk(ty, 1)
}

/// The types directly inside `ty`.
fn children(ty: &Type) -> Vec<Type> {
    match ty {
        Type::List(l) => vec![l.ty()],
        Type::FixedLengthList(l) => vec![l.ty()],
        Type::Map(m) => vec![m.key(), m.value()],
        Type::Record(r) => r.fields().map(|f| f.ty).collect(),
        Type::Tuple(t) => t.types().collect(),
        Type::Variant(v) => v.cases().filter_map(|c| c.ty).collect(),
        Type::Option(o) => vec![o.ty()],
        Type::Result(r) => r.ok().into_iter().chain(r.err()).collect(),
        Type::Future(f) => f.ty().into_iter().collect(),
        Type::Stream(s) => s.ty().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The first part of `ty` that cannot be passed as JSON (a resource handle, a stream, a future,
/// an error-context), as WIT text with the word for what it is. `ty` nests at most
/// `MAX_TYPE_DEPTH` levels (checked before).
pub(crate) fn unmappable(ty: &Type, names: &Names) -> Option<(String, &'static str)> {
    fn walk(ty: &Type, names: &Names, level: usize) -> Option<(String, &'static str)> {
        let what = match ty {
            Type::Own(_) | Type::Borrow(_) => Some("resource"),
            Type::Stream(_) => Some("stream"),
            Type::Future(_) => Some("future"),
            Type::ErrorContext => Some("error-context"),
            _ => None,
        };
        if let Some(what) = what {
            return Some((wit_text(ty, names), what));
        }
        if level > MAX_TYPE_DEPTH {
            return None;
        }
        children(ty).iter().find_map(|c| walk(c, names, level + 1))
    }
    walk(ty, names, 1)
}

/// `ty` as WIT text (`list<point>`, `option<string>`, `own<counter>`), cut to a bounded length.
pub(crate) fn wit_text(ty: &Type, names: &Names) -> String {
    let mut out = String::new();
    write_wit(ty, names, &mut out, 1);
    if out.len() > MAX_TYPE_TEXT {
        out.truncate(out.floor_char_boundary(MAX_TYPE_TEXT));
        out.push('…');
    }
    out
}

fn write_wit(ty: &Type, names: &Names, out: &mut String, level: usize) {
    if out.len() > MAX_TYPE_TEXT {
        return;
    }
    if level > MAX_TYPE_DEPTH {
        out.push('…');
        return;
    }
    if let Some(name) = names.of(ty) {
        out.push_str(name);
        return;
    }
    let list = |out: &mut String, items: &[Type]| {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_wit(item, names, out, level + 1);
        }
    };
    match ty {
        Type::Bool => out.push_str("bool"),
        Type::S8 => out.push_str("s8"),
        Type::U8 => out.push_str("u8"),
        Type::S16 => out.push_str("s16"),
        Type::U16 => out.push_str("u16"),
        Type::S32 => out.push_str("s32"),
        Type::U32 => out.push_str("u32"),
        Type::S64 => out.push_str("s64"),
        Type::U64 => out.push_str("u64"),
        Type::Float32 => out.push_str("f32"),
        Type::Float64 => out.push_str("f64"),
        Type::Char => out.push_str("char"),
        Type::String => out.push_str("string"),
        Type::ErrorContext => out.push_str("error-context"),
        Type::List(l) => {
            out.push_str("list<");
            write_wit(&l.ty(), names, out, level + 1);
            out.push('>');
        }
        Type::FixedLengthList(l) => {
            out.push_str("list<");
            write_wit(&l.ty(), names, out, level + 1);
            out.push_str(&format!(", {}>", l.len()));
        }
        Type::Map(m) => {
            out.push_str("map<");
            list(out, &[m.key(), m.value()]);
            out.push('>');
        }
        Type::Tuple(t) => {
            out.push_str("tuple<");
            list(out, &t.types().collect::<Vec<_>>());
            out.push('>');
        }
        Type::Option(o) => {
            out.push_str("option<");
            write_wit(&o.ty(), names, out, level + 1);
            out.push('>');
        }
        Type::Result(r) => {
            out.push_str("result");
            match (r.ok(), r.err()) {
                (None, None) => {}
                (Some(ok), None) => {
                    out.push('<');
                    write_wit(&ok, names, out, level + 1);
                    out.push('>');
                }
                (ok, Some(err)) => {
                    out.push('<');
                    match ok {
                        Some(ok) => write_wit(&ok, names, out, level + 1),
                        None => out.push('_'),
                    }
                    out.push_str(", ");
                    write_wit(&err, names, out, level + 1);
                    out.push('>');
                }
            }
        }
        Type::Record(r) => {
            out.push_str("record { ");
            for (i, f) in r.fields().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(f.name);
                out.push_str(": ");
                write_wit(&f.ty, names, out, level + 1);
            }
            out.push_str(" }");
        }
        Type::Variant(v) => {
            out.push_str("variant { ");
            for (i, c) in v.cases().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(c.name);
                if let Some(ty) = &c.ty {
                    out.push('(');
                    write_wit(ty, names, out, level + 1);
                    out.push(')');
                }
            }
            out.push_str(" }");
        }
        Type::Enum(e) => {
            out.push_str("enum { ");
            out.push_str(&e.names().collect::<Vec<_>>().join(", "));
            out.push_str(" }");
        }
        Type::Flags(f) => {
            out.push_str("flags { ");
            out.push_str(&f.names().collect::<Vec<_>>().join(", "));
            out.push_str(" }");
        }
        Type::Own(r) => {
            out.push_str("own<");
            out.push_str(names.resource(r));
            out.push('>');
        }
        Type::Borrow(r) => {
            out.push_str("borrow<");
            out.push_str(names.resource(r));
            out.push('>');
        }
        Type::Future(f) => match f.ty() {
            Some(ty) => {
                out.push_str("future<");
                write_wit(&ty, names, out, level + 1);
                out.push('>');
            }
            None => out.push_str("future"),
        },
        Type::Stream(s) => match s.ty() {
            Some(ty) => {
                out.push_str("stream<");
                write_wit(&ty, names, out, level + 1);
                out.push('>');
            }
            None => out.push_str("stream"),
        },
    }
}

/// The JSON Schema of the JSON encoding of `ty`. `ty` is mappable and nests at most
/// `MAX_TYPE_DEPTH` levels (checked before); deeper parts become `{}`.
pub(crate) fn schema(ty: &Type, names: &Names) -> Value {
    schema_at(ty, names, 1)
}

fn int(name: &str, min: i128, max: i128) -> Value {
    // Both bounds fit an i64 or a u64, which serde_json keeps exact.
    let bound = |v: i128| -> Value {
        u64::try_from(v)
            .map(Value::from)
            .or_else(|_| i64::try_from(v).map(Value::from))
            .unwrap_or(Value::Null)
    };
    json!({"type": "integer", "minimum": bound(min), "maximum": bound(max), "description": name})
}

fn float(name: &str) -> Value {
    json!({
        "description": format!("{name}: a number, or \"NaN\", \"Infinity\" or \"-Infinity\""),
        "anyOf": [{"type": "number"}, {"enum": NON_FINITE}],
    })
}

/// An object with exactly the one property `key`.
fn single(key: &str, value: Value) -> Value {
    json!({
        "type": "object",
        "properties": {key: value},
        "required": [key],
        "additionalProperties": false,
    })
}

fn with_description(mut schema: Value, description: String) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("description".into(), Value::String(description));
    }
    schema
}

fn schema_at(ty: &Type, names: &Names, level: usize) -> Value {
    if level > MAX_TYPE_DEPTH {
        return json!({});
    }
    let sub = |ty: &Type| schema_at(ty, names, level + 1);
    let named = |kind: &str| names.of(ty).map(|n| format!("WIT {kind} `{n}`"));
    match ty {
        Type::Bool => json!({"type": "boolean"}),
        Type::S8 => int("s8", i8::MIN.into(), i8::MAX.into()),
        Type::U8 => int("u8", 0, u8::MAX.into()),
        Type::S16 => int("s16", i16::MIN.into(), i16::MAX.into()),
        Type::U16 => int("u16", 0, u16::MAX.into()),
        Type::S32 => int("s32", i32::MIN.into(), i32::MAX.into()),
        Type::U32 => int("u32", 0, u32::MAX.into()),
        Type::S64 => int("s64", i64::MIN.into(), i64::MAX.into()),
        Type::U64 => int("u64", 0, u64::MAX.into()),
        Type::Float32 => float("f32"),
        Type::Float64 => float("f64"),
        Type::Char => json!({
            "type": "string", "minLength": 1, "maxLength": 1,
            "description": "char: one Unicode scalar value",
        }),
        Type::String => json!({"type": "string"}),
        Type::List(l) => json!({"type": "array", "items": sub(&l.ty())}),
        Type::FixedLengthList(l) => json!({
            "type": "array", "items": sub(&l.ty()), "minItems": l.len(), "maxItems": l.len(),
        }),
        Type::Map(m) => json!({
            "type": "array",
            "items": {
                "type": "array",
                "prefixItems": [sub(&m.key()), sub(&m.value())],
                "minItems": 2, "maxItems": 2,
            },
            "description": "map: a list of [key, value] pairs",
        }),
        Type::Tuple(t) => {
            let items: Vec<Value> = t.types().map(|t| sub(&t)).collect();
            let n = items.len();
            json!({"type": "array", "prefixItems": items, "minItems": n, "maxItems": n})
        }
        Type::Record(r) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for field in r.fields() {
                if !matches!(field.ty, Type::Option(_)) {
                    required.push(Value::String(field.name.to_string()));
                }
                properties.insert(field.name.to_string(), sub(&field.ty));
            }
            let schema = json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            });
            match named("record") {
                Some(d) => with_description(schema, d),
                None => schema,
            }
        }
        Type::Variant(v) => {
            let cases: Vec<Value> = v
                .cases()
                .map(|case| match &case.ty {
                    None => json!({"const": case.name}),
                    Some(ty) => single(case.name, sub(ty)),
                })
                .collect();
            let kind = named("variant").unwrap_or_else(|| "WIT variant".into());
            json!({
                "oneOf": cases,
                "description": format!(
                    "{kind}: a case without a payload is its name, a case with one is \
                     {{\"case-name\": payload}}"
                ),
            })
        }
        Type::Enum(e) => {
            let schema = json!({"type": "string", "enum": e.names().collect::<Vec<_>>()});
            match named("enum") {
                Some(d) => with_description(schema, d),
                None => schema,
            }
        }
        Type::Flags(f) => {
            let schema = json!({
                "type": "array",
                "items": {"type": "string", "enum": f.names().collect::<Vec<_>>()},
                "uniqueItems": true,
            });
            let kind = named("flags").unwrap_or_else(|| "WIT flags".into());
            with_description(
                schema,
                format!("{kind}: the names of the flags that are set"),
            )
        }
        Type::Option(o) => {
            let inner = o.ty();
            // `null` is already a value of an inner option, so `some` of one is wrapped.
            let some = if matches!(inner, Type::Option(_)) {
                single("some", sub(&inner))
            } else {
                sub(&inner)
            };
            json!({"anyOf": [some, {"type": "null"}]})
        }
        Type::Result(r) => {
            let payload = |t: Option<Type>| t.map_or_else(|| json!({"type": "null"}), |t| sub(&t));
            json!({"oneOf": [single("ok", payload(r.ok())), single("err", payload(r.err()))]})
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            json!({})
        }
    }
}

/// The input schema of a function: one property per parameter, required unless an `option`.
pub(crate) fn input_schema(params: &[(String, Type)], names: &Names) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, ty) in params {
        if !matches!(ty, Type::Option(_)) {
            required.push(Value::String(name.clone()));
        }
        let mut schema = schema(ty, names);
        if let Value::Object(map) = &mut schema
            && !map.contains_key("description")
        {
            map.insert("description".into(), Value::String(wit_text(ty, names)));
        }
        properties.insert(name.clone(), schema);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The output schema of a function with result `result`: of the `ok` payload when the result is
/// a `result` (an `err` fails the call), `null` when there is none.
pub(crate) fn output_schema(result: Option<&Type>, names: &Names) -> Value {
    let mut schema = match result {
        None => json!({"type": "null"}),
        Some(Type::Result(r)) => r
            .ok()
            .map_or_else(|| json!({"type": "null"}), |ok| schema(&ok, names)),
        Some(ty) => schema(ty, names),
    };
    if let Value::Object(map) = &mut schema {
        map.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
    }
    schema
}
