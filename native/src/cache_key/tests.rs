use proptest::prelude::*;

use super::*;

fn key(body: &str) -> u128 {
    cache_key("chat", &Json::parse(body.as_bytes()).unwrap())
}

/// Write `value` as JSON text, members in order or reversed, compact or spaced, integral
/// floats as `N.0` or `Ne0`.
fn write_json(value: &Json<'_>, reverse: bool, spaced: bool, out: &mut String) {
    let gap = if spaced { " \n\t" } else { "" };
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(Number::Unsigned(v)) => out.push_str(&v.to_string()),
        Json::Number(Number::Signed(v)) => out.push_str(&v.to_string()),
        Json::Number(Number::Float(v)) if v.fract() == 0.0 && v.abs() < 1e15 && spaced => {
            out.push_str(&format!("{}e0", *v as i64))
        }
        Json::Number(Number::Float(v)) => out.push_str(&format!("{v:?}")),
        Json::String(s) => out.push_str(&serde_json::to_string(s.as_ref()).unwrap()),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(gap);
                write_json(item, reverse, spaced, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            let order: Vec<_> = if reverse {
                members.iter().rev().collect()
            } else {
                members.iter().collect()
            };
            for (i, (k, v)) in order.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(gap);
                out.push_str(&serde_json::to_string(k.as_ref()).unwrap());
                out.push(':');
                out.push_str(gap);
                write_json(v, reverse, spaced, out);
            }
            out.push('}');
        }
    }
}

fn text(value: &Json<'_>, reverse: bool, spaced: bool) -> String {
    let mut out = String::new();
    write_json(value, reverse, spaced, &mut out);
    out
}

fn arb_json() -> impl Strategy<Value = Json<'static>> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<u64>().prop_map(|v| Json::Number(Number::Unsigned(v))),
        (i64::MIN..0).prop_map(|v| Json::Number(Number::Signed(v))),
        (-1e12f64..1e12).prop_map(|v| Json::Number(Number::Float(v))),
        (-1000i64..1000).prop_map(|v| Json::Number(Number::Float(v as f64))),
        any::<String>().prop_map(|s| Json::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6).prop_map(|m| {
                Json::Object(m.into_iter().map(|(k, v)| (k.into(), v)).collect())
            }),
        ]
    })
}

fn object(members: Vec<(&'static str, Json<'static>)>) -> Json<'static> {
    Json::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

#[derive(PartialEq)]
enum Num {
    Int(i128),
    Float(u64),
}

fn num(n: Number) -> Num {
    match n {
        Number::Unsigned(v) => Num::Int(v.into()),
        Number::Signed(v) => Num::Int(v.into()),
        Number::Float(v) if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 => {
            Num::Int(v as i128)
        }
        Number::Float(v) => Num::Float(v.to_bits()),
    }
}

/// Structural equality where only number spelling is ignored (objects here have sorted keys).
fn same_meaning(a: &Json<'_>, b: &Json<'_>) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => num(*x) == num(*y),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_meaning(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| p.0 == q.0 && same_meaning(&p.1, &q.1))
        }
        _ => a == b,
    }
}

const ANSWER_CHANGING: [&str; 16] = [
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "temperature",
    "top_p",
    "stop",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "reasoning_effort",
    "prompt",
];

proptest! {
    #[test]
    fn spelling_and_order_do_not_change_the_key(
        members in prop::collection::btree_map("[a-z_]{1,10}", arb_json(), 0..8)
    ) {
        let body = Json::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect());
        let plain = key(&text(&body, false, false));
        prop_assert_eq!(plain, key(&text(&body, true, true)));
        prop_assert_eq!(plain, cache_key("chat", &body));
    }

    #[test]
    fn left_out_members_do_not_change_the_key(
        base in arb_json(), extra in arb_json(), which in 0usize..NOT_IN_KEY.len()
    ) {
        let without = object(vec![("messages", base.clone())]);
        let with = object(vec![("messages", base), (NOT_IN_KEY[which], extra)]);
        prop_assert_eq!(cache_key("chat", &without), cache_key("chat", &with));
    }

    #[test]
    fn answer_changing_members_change_the_key(
        a in arb_json(), b in arb_json(), which in 0usize..ANSWER_CHANGING.len()
    ) {
        let field = ANSWER_CHANGING[which];
        let (ka, kb) = (
            cache_key("chat", &object(vec![("messages", Json::Null), (field, a.clone())])),
            cache_key("chat", &object(vec![("messages", Json::Null), (field, b.clone())])),
        );
        prop_assert_eq!(ka == kb, same_meaning(&a, &b));
    }
}

#[test]
fn number_spellings_agree_and_values_differ() {
    assert_eq!(key(r#"{"temperature": 1}"#), key(r#"{"temperature": 1.0}"#));
    assert_eq!(key(r#"{"temperature": 1}"#), key(r#"{"temperature": 1e0}"#));
    assert_eq!(
        key(r#"{"temperature": 0.5}"#),
        key(r#"{"temperature": 5e-1}"#)
    );
    assert_ne!(
        key(r#"{"temperature": 0.5}"#),
        key(r#"{"temperature": 0.6}"#)
    );
    assert_ne!(key(r#"{"seed": 1}"#), key(r#"{"seed": "1"}"#));
    assert_ne!(key(r#"{"stop": ["a","b"]}"#), key(r#"{"stop": ["ab"]}"#));
    assert_ne!(key(r#"{"stop": ["a","b"]}"#), key(r#"{"stop": ["b","a"]}"#));
}

#[test]
fn nulls_are_absent_and_endpoints_are_apart() {
    assert_eq!(key(r#"{"seed": null, "n": 2}"#), key(r#"{"n": 2}"#));
    let body = Json::parse(br#"{"prompt": "x"}"#).unwrap();
    assert_ne!(cache_key("chat", &body), cache_key("completions", &body));
    assert_eq!(to_hex(1), format!("{}1", "0".repeat(31)));
}
