use super::*;
use crate::ratelimit::{Rate, Which};

const SECOND: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SECOND;

fn rate(limit: u64) -> Option<Rate> {
    Some(Rate::new(limit, MINUTE, None).unwrap())
}

/// A tenant limited to `rpm`/`tpm`, and on the model to `model_rpm` with `slots` in flight.
fn tenant_and_model(rpm: u64, tpm: u64, model_rpm: u64, slots: u32) -> Shape {
    let tenant = Policy {
        requests: rate(rpm),
        tokens: rate(tpm),
        max_concurrent: None,
    };
    let model = Policy {
        requests: rate(model_rpm),
        tokens: None,
        max_concurrent: Some(slots),
    };
    Shape {
        scopes: vec![
            Scope {
                suffix: String::new(),
                policy: tenant,
                reserves_tokens: true,
            },
            Scope {
                suffix: "\u{1f}gpt-4o".into(),
                policy: model,
                reserves_tokens: false,
            },
        ],
        headers: vec![
            HeaderKind {
                tokens: false,
                buckets: vec![
                    HeaderBucket {
                        scope: 0,
                        tokens: false,
                        per_minute: rpm,
                    },
                    HeaderBucket {
                        scope: 1,
                        tokens: false,
                        per_minute: model_rpm,
                    },
                ],
            },
            HeaderKind {
                tokens: true,
                buckets: vec![HeaderBucket {
                    scope: 0,
                    tokens: true,
                    per_minute: tpm,
                }],
            },
        ],
    }
}

fn header<'a>(lines: &'a [u8], name: &str) -> &'a str {
    header_pairs(lines)
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {:?}", String::from_utf8_lossy(lines)))
}

fn duration(ms: u64) -> String {
    let mut out = Vec::new();
    write_duration(&mut out, ms);
    String::from_utf8(out).unwrap()
}

#[test]
fn the_tightest_limit_of_each_kind_speaks() {
    let limiter = Limiter::new(100);
    let shape = tenant_and_model(100, 10_000, 3, 10);
    let Admission::Admitted(headers) = shape.admit(&limiter, "acme", 250, 0) else {
        panic!("refused");
    };
    assert_eq!(header(&headers, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), "2");
    assert_eq!(header(&headers, "x-ratelimit-reset-requests"), "20s");
    assert_eq!(header(&headers, "x-ratelimit-limit-tokens"), "10000");
    assert_eq!(header(&headers, "x-ratelimit-remaining-tokens"), "9750");
    assert_eq!(header(&headers, "x-ratelimit-reset-tokens"), "1.5s");
    assert_eq!(header_pairs(&headers).len(), 6);
}

#[test]
fn keys_are_the_tenant_and_the_tenant_on_the_model() {
    let limiter = Limiter::new(100);
    let shape = tenant_and_model(100, 10_000, 3, 10);
    shape.admit(&limiter, "acme", 0, 0);
    let model = shape.scopes[1].policy;
    let seen = limiter.peek("acme\u{1f}gpt-4o", &model, 0);
    assert_eq!(seen.requests.unwrap().remaining, 2);
    assert_eq!(seen.in_flight, 1);
    assert_eq!(limiter.len(), 2);
}

#[test]
fn a_refusal_charges_no_scope_and_names_the_one_that_refused() {
    let limiter = Limiter::new(100);
    let shape = tenant_and_model(100, 10_000, 3, 1);
    assert!(matches!(
        shape.admit(&limiter, "acme", 10, 0),
        Admission::Admitted(_)
    ));
    let Admission::Refused(index, decision) = shape.admit(&limiter, "acme", 10, 0) else {
        panic!("admitted past the slot");
    };
    assert_eq!(index, 1);
    assert_eq!(decision.denied_by, Some(Which::Concurrency));
    let tenant = limiter.peek("acme", &shape.scopes[0].policy, 0);
    assert_eq!(tenant.requests.unwrap().remaining, 99);
    assert_eq!(tenant.tokens.unwrap().remaining, 9_990);
}

#[test]
fn settling_frees_the_slot_and_trues_up_the_tokens() {
    let limiter = Limiter::new(100);
    let shape = tenant_and_model(100, 10_000, 3, 1);
    shape.admit(&limiter, "acme", 1_000, 0);
    shape.settle(&limiter, "acme", 1_000, 40, 0);
    let tenant = limiter.peek("acme", &shape.scopes[0].policy, 0);
    assert_eq!(tenant.tokens.unwrap().remaining, 9_960);
    assert!(matches!(
        shape.admit(&limiter, "acme", 10, 0),
        Admission::Admitted(_)
    ));
}

#[test]
fn a_shape_without_headers_answers_none() {
    let limiter = Limiter::new(100);
    let shape = Shape {
        scopes: vec![Scope {
            suffix: String::new(),
            policy: Policy {
                requests: None,
                tokens: None,
                max_concurrent: Some(2),
            },
            reserves_tokens: false,
        }],
        headers: Vec::new(),
    };
    assert_eq!(
        shape.admit(&limiter, "acme", 5, 0),
        Admission::Admitted(Vec::new())
    );
}

#[test]
fn durations_are_written_as_openai_writes_them() {
    let cases = [
        (0, "0ms"),
        (12, "12ms"),
        (999, "999ms"),
        (1_000, "1s"),
        (1_500, "1.5s"),
        (1_230, "1.23s"),
        (1_001, "1.001s"),
        (59_999, "59.999s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (3_723_000, "1h2m3s"),
        (3_600_000, "1h0m0s"),
        (3_600_500, "1h0m0.5s"),
    ];
    for (ms, text) in cases {
        assert_eq!(duration(ms), text, "{ms} ms");
    }
}
