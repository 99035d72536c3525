//! The token counts an upstream's answer reports, read without parsing the whole answer.
//!
//! A chat or completion answer is mostly its generated text; accounting needs only
//! `usage.prompt_tokens` and `usage.completion_tokens`. The answer is scanned for its top-level
//! `usage` member: strings are skipped with memchr (the generated text is most of the bytes)
//! and nesting is followed, but the rest is not validated. The answer is relayed as the
//! upstream wrote it, and its counts are the upstream's word either way; validating every
//! byte cost more than the rest of the accounting.

/// `(prompt_tokens, completion_tokens)` from the answer's top-level `usage` object; a count is
/// `None` when it is missing or not an integer, both are when there is no `usage` object (or
/// the answer is not a JSON object, as far as the scan reads it).
pub fn usage_counts(body: &[u8]) -> (Option<i64>, Option<i64>) {
    let Some(usage) = member(body, b"usage") else {
        return (None, None);
    };
    if usage.first() != Some(&b'{') {
        return (None, None);
    }
    (integer(usage, b"prompt_tokens"), integer(usage, b"completion_tokens"))
}

fn integer(object: &[u8], key: &[u8]) -> Option<i64> {
    // An integer literal only: `5.0` and `5e0` are numbers the answer did not count in.
    std::str::from_utf8(member(object, key)?).ok()?.parse().ok()
}

/// The raw text of the first member named `key` (as spelled, without escapes) of the JSON
/// object `object`.
fn member<'a>(object: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut at = skip_space(object, 0);
    if object.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(object, at + 1);
    if object.get(at) == Some(&b'}') {
        return None;
    }
    loop {
        if object.get(at) != Some(&b'"') {
            return None;
        }
        let name_end = string_end(object, at)?;
        let name = &object[at + 1..name_end - 1];
        at = skip_space(object, name_end);
        if object.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(object, at + 1);
        let end = value_end(object, start)?;
        if name == key {
            return Some(&object[start..end]);
        }
        at = skip_space(object, end);
        match object.get(at) {
            Some(b',') => at = skip_space(object, at + 1),
            _ => return None, // `}` (no such member) or not JSON
        }
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Just past the string opening at `start` (its closing quote included).
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', text.get(at..)?)?;
        if text[at] == b'"' {
            return Some(at + 1);
        }
        at += 2; // an escape: the next byte is never the string's end
    }
}

/// Just past the value starting at `start`.
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    match text.get(start)? {
        b'"' => string_end(text, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = start;
            loop {
                match text.get(at)? {
                    b'"' => {
                        at = string_end(text, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            let rest = &text[start..];
            let end = rest
                .iter()
                .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            (end > 0).then_some(start + end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::usage_counts;
    use proptest::prelude::*;

    #[test]
    fn reads_both_counts_after_the_answer_text() {
        let body = br#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"a \"usage\": {\"prompt_tokens\": 9}"}}],"usage":{"prompt_tokens":42,"completion_tokens":24,"total_tokens":66,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(usage_counts(body), (Some(42), Some(24)));
    }

    #[test]
    fn spaces_escapes_and_brackets_in_text_are_stepped_over() {
        let body = b"{ \"choices\" : [ {\"text\": \"} ] \\\\\"usage\\\":{\" } ] ,\n  \"usage\" : { \"completion_tokens\" : 7 , \"prompt_tokens\" : 3 } }";
        assert_eq!(usage_counts(body), (Some(3), Some(7)));
    }

    #[test]
    fn a_missing_or_non_object_usage_gives_no_counts() {
        assert_eq!(usage_counts(br#"{"id":"x"}"#), (None, None));
        assert_eq!(usage_counts(br#"{}"#), (None, None));
        assert_eq!(usage_counts(br#"{"usage":null}"#), (None, None));
        assert_eq!(usage_counts(br#"{"usage":[1,2]}"#), (None, None));
        assert_eq!(usage_counts(br#"[{"usage":{"prompt_tokens":1}}]"#), (None, None));
        assert_eq!(usage_counts(b"not json"), (None, None));
        assert_eq!(usage_counts(b""), (None, None));
        assert_eq!(usage_counts(br#"{"id":"x","usage":{"prompt_tokens":1"#), (None, None));
        assert_eq!(usage_counts(br#"{"text":"never closed, "usage":{}"#), (None, None));
    }

    #[test]
    fn only_integer_counts_are_taken() {
        let body = br#"{"usage":{"prompt_tokens":5.0,"completion_tokens":"7"}}"#;
        assert_eq!(usage_counts(body), (None, None));
        let body = br#"{"usage":{"completion_tokens":-3}}"#;
        assert_eq!(usage_counts(body), (None, Some(-3)));
    }

    #[test]
    fn a_nested_usage_is_not_the_answers() {
        let body = br#"{"data":{"usage":{"prompt_tokens":1,"completion_tokens":2}}}"#;
        assert_eq!(usage_counts(body), (None, None));
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z_\"\\\\{}]{0,8}", inner, 0..4)
                    .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// What the scan reads is what a parser reads, in every answer a JSON writer writes.
        #[test]
        fn the_scan_agrees_with_a_parser(
            members in prop::collection::btree_map("[a-z_]{1,8}", arb_json(), 0..5),
            usage in prop::option::of(arb_json()),
            pretty in any::<bool>(),
        ) {
            let mut answer: serde_json::Map<String, serde_json::Value> = members.into_iter().collect();
            if let Some(usage) = usage {
                answer.insert("usage".into(), usage);
            }
            let answer = serde_json::Value::Object(answer);
            let text = if pretty {
                serde_json::to_vec_pretty(&answer)
            } else {
                serde_json::to_vec(&answer)
            }
            .unwrap();
            let count = |name: &str| answer.get("usage").and_then(|u| u.get(name)).and_then(|n| {
                // What the answer spelled as an integer literal.
                n.as_i64().filter(|_| !n.to_string().contains(['.', 'e', 'E']))
            });
            let expected = match answer.get("usage") {
                Some(serde_json::Value::Object(_)) => (count("prompt_tokens"), count("completion_tokens")),
                _ => (None, None),
            };
            prop_assert_eq!(usage_counts(&text), expected);
        }
    }
}
