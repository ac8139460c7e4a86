//! Schema derivation and JSON ↔ WIT value conversion, on function types read from real
//! components (imports, so that no core code is needed to declare them).

use serde_json::{Value, json};
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, Val};
use wasmtime::{Config, Engine};

use super::convert::{args, to_json};
use super::schema::{self, MAX_TYPE_DEPTH, Names};
use super::short_name;

struct Func {
    params: Vec<(String, Type)>,
    result: Option<Type>,
    names: Names,
}

/// The function `f` declared by `(import "f" (func SIG))` after the type definitions `defs`.
/// Imported types and resources are named as exported ones would be.
fn func(defs: &str, sig: &str) -> Func {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let wat = format!("(component {defs} (import \"f\" (func {sig})))");
    let bytes = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
    let component = Component::new(&engine, bytes).unwrap();
    let ty = component.component_type();
    let mut names = Names::default();
    let mut found = None;
    for (name, item) in ty.imports(&engine) {
        match item.ty {
            ComponentItem::ComponentFunc(f) if name == "f" => found = Some(f),
            ComponentItem::Type(t) => names.add_type(name, t),
            ComponentItem::Resource(r) => names.add_resource(name, r),
            _ => {}
        }
    }
    let f = found.expect("the component declares `f`");
    Func {
        params: f.params().map(|(n, t)| (n.to_string(), t)).collect(),
        result: f.results().next(),
        names,
    }
}

impl Func {
    fn input_schema(&self) -> Value {
        schema::input_schema(&self.params, &self.names)
    }
    fn output_schema(&self) -> Value {
        schema::output_schema(self.result.as_ref(), &self.names)
    }
    fn param(&self, i: usize) -> Value {
        self.input_schema()["properties"][&self.params[i].0].clone()
    }
    /// Converts `input`, then each argument back to JSON: the round trip must be exact, and the
    /// JSON must match the input schema.
    fn round_trip(&self, input: Value) -> Vec<Val> {
        let validator = jsonschema::validator_for(&self.input_schema()).unwrap();
        assert!(validator.is_valid(&input), "schema refuses {input}");
        let vals = args(&self.params, &input).unwrap_or_else(|e| panic!("{input}: {e}"));
        for ((name, _), val) in self.params.iter().zip(&vals) {
            let back = to_json(val).unwrap();
            let sent = input.get(name).cloned().unwrap_or(Value::Null);
            assert_eq!(back, sent, "parameter `{name}`");
        }
        vals
    }
    fn refuse(&self, input: Value) -> String {
        args(&self.params, &input).expect_err(&format!("{input} is accepted"))
    }
}

const SHAPES: &str = r#"
    (type $point (record (field "x" s32) (field "y" s32) (field "label" (option string))))
    (import "point" (type $p (eq $point)))
    (type $color (enum "red" "green" "blue"))
    (import "color" (type $c (eq $color)))
    (type $perms (flags "read" "write" "exec"))
    (import "perms" (type $fl (eq $perms)))
    (type $shape (variant (case "circle" f64) (case "square" $p) (case "empty")))
    (import "shape" (type $s (eq $shape)))
"#;

#[test]
fn integers_keep_their_exact_ranges() {
    let f = func(
        "",
        r#"(param "a" s8) (param "b" u8) (param "c" s16) (param "d" u16) (param "e" s32)
           (param "g" u32) (param "h" s64) (param "i" u64)"#,
    );
    let s = f.input_schema();
    let range = |p: &str| {
        let p = &s["properties"][p];
        assert_eq!(p["type"], "integer");
        (p["minimum"].to_string(), p["maximum"].to_string())
    };
    assert_eq!(range("a"), ("-128".into(), "127".into()));
    assert_eq!(range("b"), ("0".into(), "255".into()));
    assert_eq!(range("c"), ("-32768".into(), "32767".into()));
    assert_eq!(range("d"), ("0".into(), "65535".into()));
    assert_eq!(range("e"), ("-2147483648".into(), "2147483647".into()));
    assert_eq!(range("g"), ("0".into(), "4294967295".into()));
    assert_eq!(
        range("h"),
        ("-9223372036854775808".into(), "9223372036854775807".into())
    );
    assert_eq!(range("i"), ("0".into(), "18446744073709551615".into()));
    assert_eq!(s["properties"]["i"]["description"], "u64");
    assert_eq!(
        s["required"],
        json!(["a", "b", "c", "d", "e", "g", "h", "i"])
    );
    assert_eq!(s["additionalProperties"], false);
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");

    let vals = f.round_trip(json!({
        "a": -128, "b": 255, "c": -32768, "d": 65535, "e": -2147483648, "g": 4294967295u32,
        "h": i64::MIN, "i": u64::MAX,
    }));
    assert_eq!(vals[7], Val::U64(u64::MAX));
    let all = |b: Value| json!({"a": 0, "b": b, "c": 0, "d": 0, "e": 0, "g": 0, "h": 0, "i": 0});
    let e = f.refuse(all(json!(256)));
    assert!(
        e.contains("field `/b`") && e.contains("out of range for u8"),
        "{e}"
    );
    assert!(f.refuse(all(json!(-1))).contains("0 to 255"));
    assert!(f.refuse(all(json!(1.5))).contains("expected an integer"));
    assert!(f.refuse(all(json!("1"))).contains("expected an integer"));
    // JSON Schema counts 2.0 as an integer, and so does the conversion.
    assert_eq!(args(&f.params, &all(json!(2.0))).unwrap()[1], Val::U8(2));
    let mut big = all(json!(0));
    big["i"] = serde_json::from_str("18446744073709551616").unwrap();
    assert!(f.refuse(big).contains("field `/i`"));
    let mut neg = all(json!(0));
    neg["i"] = json!(-1);
    assert!(f.refuse(neg).contains("out of range for u64"));
}

#[test]
fn scalars_floats_chars_and_strings() {
    let f = func(
        "",
        r#"(param "ok" bool) (param "x" f64) (param "y" f32) (param "c" char) (param "s" string)"#,
    );
    assert_eq!(
        f.param(0),
        json!({"type": "boolean", "description": "bool"})
    );
    assert_eq!(f.param(1)["anyOf"][0], json!({"type": "number"}));
    assert_eq!(
        f.param(1)["anyOf"][1],
        json!({"enum": ["NaN", "Infinity", "-Infinity"]})
    );
    let c = f.param(3);
    assert_eq!(
        (c["minLength"].clone(), c["maxLength"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(
        f.param(4),
        json!({"type": "string", "description": "string"})
    );
    f.round_trip(json!({"ok": true, "x": 1.5, "y": 0.1, "c": "é", "s": "hi"}));
    f.round_trip(json!({"ok": false, "x": "NaN", "y": "-Infinity", "c": "🦀", "s": ""}));
    let base = json!({"ok": true, "x": 1.0, "y": 1.0, "c": "a", "s": ""});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    assert!(f.refuse(with("c", json!("ab"))).contains("field `/c`"));
    assert!(
        f.refuse(with("c", json!("")))
            .contains("exactly one character")
    );
    assert!(
        f.refuse(with("y", json!(1e300)))
            .contains("out of range for f32")
    );
    assert!(
        f.refuse(with("ok", json!(1)))
            .contains("expected a boolean")
    );
    assert!(f.refuse(with("s", json!(null))).contains("field `/s`"));
    assert!(f.refuse(with("x", json!("nan"))).contains("field `/x`"));
    let mut unknown = base.clone();
    unknown["extra"] = json!(1);
    assert!(f.refuse(unknown).contains("`/extra` is not a parameter"));
    let mut missing = base;
    missing.as_object_mut().unwrap().remove("s");
    assert!(f.refuse(missing).contains("field `/s` is missing"));
    assert!(f.refuse(json!([1])).contains("must be an object"));
}

#[test]
fn records_leave_option_fields_out_of_required_and_refuse_unknown_fields() {
    let f = func(
        SHAPES,
        r#"(param "p" $p) (param "note" (option string)) (result $p)"#,
    );
    let s = f.input_schema();
    assert_eq!(s["required"], json!(["p"]));
    let p = &s["properties"]["p"];
    assert_eq!(p["type"], "object");
    assert_eq!(p["required"], json!(["x", "y"]));
    assert_eq!(p["additionalProperties"], false);
    assert_eq!(p["properties"]["x"]["minimum"], json!(i32::MIN));
    assert_eq!(
        p["properties"]["label"]["anyOf"],
        json!([{"type": "string"}, {"type": "null"}])
    );
    assert_eq!(f.output_schema()["required"], json!(["x", "y"]));

    let vals = f.round_trip(json!({"p": {"x": 1, "y": -2, "label": "a"}}));
    assert_eq!(vals[1], Val::Option(None));
    let vals = args(&f.params, &json!({"p": {"x": 1, "y": 2}})).unwrap();
    let Val::Record(fields) = &vals[0] else {
        panic!("{vals:?}")
    };
    assert_eq!(fields[2], ("label".into(), Val::Option(None)));
    let e = f.refuse(json!({"p": {"x": 1, "y": 2147483648u32}}));
    assert!(e.contains("field `/p/y`") && e.contains("s32"), "{e}");
    assert!(
        f.refuse(json!({"p": {"x": 1}}))
            .contains("field `/p/y` is missing")
    );
    assert!(
        f.refuse(json!({"p": {"x": 1, "y": 1, "z": 1}}))
            .contains("`/p/z` is not a field")
    );
    assert!(
        f.refuse(json!({"p": [1, 2]}))
            .contains("expected an object")
    );
}

#[test]
fn variants_enums_and_flags() {
    let f = func(SHAPES, r#"(param "s" $s) (param "c" $c) (param "f" $fl)"#);
    let s = f.param(0);
    assert_eq!(
        s["oneOf"][0],
        json!({"type": "object", "properties": {"circle": schema::schema(&Type::Float64, &Names::default())},
               "required": ["circle"], "additionalProperties": false})
    );
    assert_eq!(s["oneOf"][2], json!({"const": "empty"}));
    assert!(s["description"].as_str().unwrap().contains("WIT variant"));
    assert_eq!(
        f.param(1),
        // Names come from exported types; this WAT declares them as imports, so the
        // description is the type itself.
        json!({"type": "string", "enum": ["red", "green", "blue"], "description": "enum { red, green, blue }"})
    );
    let flags = f.param(2);
    assert_eq!(flags["items"]["enum"], json!(["read", "write", "exec"]));
    assert_eq!(flags["uniqueItems"], true);

    f.round_trip(json!({"s": {"circle": 2.5}, "c": "red", "f": ["read", "exec"]}));
    f.round_trip(json!({"s": {"square": {"x": 0, "y": 0, "label": null}}, "c": "blue", "f": []}));
    let vals = f.round_trip(json!({"s": "empty", "c": "green", "f": ["write"]}));
    assert_eq!(vals[0], Val::Variant("empty".into(), None));
    let base = |s: Value, c: Value, fl: Value| json!({"s": s, "c": c, "f": fl});
    let e = f.refuse(base(json!("triangle"), json!("red"), json!([])));
    assert!(
        e.contains("field `/s`") && e.contains("unknown case"),
        "{e}"
    );
    assert!(
        f.refuse(base(json!("circle"), json!("red"), json!([])))
            .contains("takes a payload")
    );
    assert!(
        f.refuse(base(json!({"empty": 1}), json!("red"), json!([])))
            .contains("no payload")
    );
    let e = f.refuse(base(json!("empty"), json!("pink"), json!([])));
    assert!(e.contains("field `/c`") && e.contains("`red`"), "{e}");
    let e = f.refuse(base(json!("empty"), json!("red"), json!(["read", "fly"])));
    assert!(
        e.contains("field `/f/1`") && e.contains("unknown flag"),
        "{e}"
    );
    assert!(
        f.refuse(base(json!("empty"), json!("red"), json!(["read", "read"])))
            .contains("twice")
    );
    let e = f.refuse(base(
        json!({"square": {"x": 0, "y": 300000000000u64}}),
        json!("red"),
        json!([]),
    ));
    assert!(e.contains("field `/s/square/y`"), "{e}");
}

#[test]
fn lists_tuples_options_and_results() {
    let f = func(
        SHAPES,
        r#"(param "l" (list u8)) (param "t" (tuple string u16 bool))
           (param "o" (option (option u32))) (param "r" (result $p (error string)))
           (param "u" (result)) (result (result (list $p) (error $c)))"#,
    );
    assert_eq!(f.param(0)["items"]["maximum"], 255);
    let t = f.param(1);
    assert_eq!(t["prefixItems"].as_array().unwrap().len(), 3);
    assert_eq!(
        (t["minItems"].clone(), t["maxItems"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(t["prefixItems"][1]["maximum"], 65535);
    let o = f.param(2);
    assert_eq!(o["anyOf"][0]["required"], json!(["some"]));
    let r = f.param(3);
    assert_eq!(r["oneOf"][0]["required"], json!(["ok"]));
    assert_eq!(
        r["oneOf"][1]["properties"]["err"],
        json!({"type": "string"})
    );
    assert_eq!(
        f.param(4)["oneOf"][0]["properties"]["ok"],
        json!({"type": "null"})
    );
    assert_eq!(f.input_schema()["required"], json!(["l", "t", "r", "u"]));
    // The output is the `ok` payload: a list of points.
    let out = f.output_schema();
    assert_eq!(out["type"], "array");
    assert_eq!(out["items"]["required"], json!(["x", "y"]));

    let full = |o: Value| json!({"l": [0, 255], "t": ["a", 1, true], "o": o, "r": {"ok": {"x": 1, "y": 2, "label": null}}, "u": {"ok": null}});
    f.round_trip(full(json!(null)));
    f.round_trip(full(json!({"some": null})));
    let vals = f.round_trip(full(json!({"some": 7})));
    assert_eq!(
        vals[2],
        Val::Option(Some(Box::new(Val::Option(Some(Box::new(Val::U32(7)))))))
    );
    let mut err = full(json!(null));
    err["r"] = json!({"err": "bad"});
    f.round_trip(err);
    let mut left_out = full(json!(null));
    left_out.as_object_mut().unwrap().remove("o");
    assert_eq!(args(&f.params, &left_out).unwrap()[2], Val::Option(None));

    let with = |k: &str, v: Value| {
        let mut b = full(json!(null));
        b[k] = v;
        b
    };
    assert!(
        f.refuse(with("l", json!([0, 256])))
            .contains("field `/l/1`")
    );
    assert!(
        f.refuse(with("t", json!(["a", 1])))
            .contains("exactly 3 items")
    );
    assert!(
        f.refuse(with("t", json!(["a", -1, true])))
            .contains("field `/t/1`")
    );
    assert!(f.refuse(with("o", json!(5))).contains("{\"some\""));
    assert!(
        f.refuse(with("r", json!({"maybe": 1})))
            .contains("field `/r`")
    );
    assert!(
        f.refuse(with("r", json!({"ok": {"x": 1}})))
            .contains("field `/r/ok/y` is missing")
    );
    assert!(
        f.refuse(with("u", json!({"ok": 1})))
            .contains("expected null")
    );
}

#[test]
fn outputs_match_their_schemas() {
    let f = func(
        SHAPES,
        r#"(param "a" u8) (result (tuple $s $c $fl (option $p) (list f32) u64 s64 char))"#,
    );
    let validator = jsonschema::validator_for(&f.output_schema()).unwrap();
    let value = Val::Tuple(vec![
        Val::Variant("circle".into(), Some(Box::new(Val::Float64(f64::INFINITY)))),
        Val::Enum("blue".into()),
        Val::Flags(vec!["exec".into()]),
        Val::Option(Some(Box::new(Val::Record(vec![
            ("x".into(), Val::S32(-1)),
            ("y".into(), Val::S32(2)),
            ("label".into(), Val::Option(None)),
        ])))),
        Val::List(vec![Val::Float32(0.1), Val::Float32(f32::NAN)]),
        Val::U64(u64::MAX),
        Val::S64(i64::MIN),
        Val::Char('x'),
    ]);
    let json = to_json(&value).unwrap();
    assert_eq!(
        json,
        json!([{"circle": "Infinity"}, "blue", ["exec"], {"x": -1, "y": 2, "label": null},
               [0.1, "NaN"], u64::MAX, i64::MIN, "x"])
    );
    // u64 and s64 stay exact JSON integers.
    assert!(
        json.to_string()
            .contains("18446744073709551615,-9223372036854775808")
    );
    assert!(validator.is_valid(&json), "{json}");
    assert_eq!(
        schema::output_schema(None, &Names::default())["type"],
        "null"
    );
}

#[test]
fn hostile_values_nested_past_the_depth_bound_are_refused_without_recursing_far() {
    let mut value = Val::Bool(true);
    for _ in 0..100_000 {
        value = Val::List(vec![value]);
    }
    let e = to_json(&value).unwrap_err();
    assert!(e.contains("deeper than"), "{e}");
    // Dropping a deep Val is wasmtime's business; keep the test about the conversion.
    std::mem::forget(value);
}

#[test]
fn types_nested_too_deep_and_handles_are_found() {
    let mut defs = String::from("(type $t0 (list u8))");
    for i in 1..=40 {
        defs.push_str(&format!("(type $t{i} (list $t{}))", i - 1));
    }
    let f = func(&defs, r#"(param "deep" $t40) (param "ok" $t20)"#);
    assert!(schema::depth(&f.params[0].1) > MAX_TYPE_DEPTH);
    assert_eq!(schema::depth(&f.params[1].1), 22);

    let f = func(
        r#"(import "counter" (type $r (sub resource)))
           (type $own (own $r)) (type $b (borrow $r))"#,
        r#"(param "c" (list $own)) (param "b" $b) (result u32)"#,
    );
    assert_eq!(
        schema::unmappable(&f.params[0].1, &f.names),
        Some(("own<counter>".into(), "resource"))
    );
    assert_eq!(
        schema::wit_text(&f.params[0].1, &f.names),
        "list<own<counter>>"
    );
    assert_eq!(
        schema::unmappable(&f.params[1].1, &f.names),
        Some(("borrow<counter>".into(), "resource"))
    );
    assert_eq!(
        schema::unmappable(f.result.as_ref().unwrap(), &f.names),
        None
    );
}

#[test]
fn wit_text_names_exported_types() {
    // Exported types are named by the component's exports; imported ones, as here, are added.
    let mut f = func(
        SHAPES,
        r#"(param "a" (list $p)) (result (result (option $s) (error string)))"#,
    );
    let Type::List(list) = &f.params[0].1 else {
        panic!("{:?}", f.params)
    };
    let point = list.ty();
    let Some(Type::Result(result)) = &f.result else {
        panic!("{:?}", f.result)
    };
    let Some(Type::Option(option)) = result.ok() else {
        panic!("{result:?}")
    };
    f.names.add_type("point", point);
    f.names.add_type("shape", option.ty());
    assert_eq!(schema::wit_text(&f.params[0].1, &f.names), "list<point>");
    assert_eq!(
        schema::wit_text(f.result.as_ref().unwrap(), &f.names),
        "result<option<shape>, string>"
    );
    let d = super::describe("`f`", "f", &f.params, f.result.as_ref(), &f.names);
    assert_eq!(
        d,
        "WIT function `f`: f(a: list<point>) -> result<option<shape>, string>. The output is the \
         `ok` value; an `err` fails the call"
    );
}

#[test]
fn interface_names_are_shortened_for_tool_names() {
    assert_eq!(short_name("acme:calc/ops@1.2.0"), "ops");
    assert_eq!(short_name("acme:calc/ops"), "ops");
    assert_eq!(short_name("inline-iface"), "inline-iface");
}
