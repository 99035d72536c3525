//! The token counts an upstream's answer reports, read without parsing the whole answer.
//!
//! A chat or completion answer is mostly its generated text; accounting needs only
//! `usage.prompt_tokens` and `usage.completion_tokens`. Building the whole answer as Python
//! objects to read two integers cost more than the rest of relaying it, so the answer is
//! skip-scanned (sonic-rs) for its top-level `usage` object and the two members inside it.

/// `(prompt_tokens, completion_tokens)` from the answer's top-level `usage` object; a count is
/// `None` when it is missing or not an integer, both are when there is no `usage` object (or
/// the text before it is not JSON).
pub fn usage_counts(body: &[u8]) -> (Option<i64>, Option<i64>) {
    let Ok(usage) = sonic_rs::get_from_slice(body, ["usage"]) else {
        return (None, None);
    };
    let usage = usage.as_raw_str().as_bytes();
    if usage.first() != Some(&b'{') {
        return (None, None);
    }
    (integer(usage, "prompt_tokens"), integer(usage, "completion_tokens"))
}

fn integer(object: &[u8], key: &str) -> Option<i64> {
    let value = sonic_rs::get_from_slice(object, [key]).ok()?;
    // An integer literal only: `5.0` and `5e0` are numbers the answer did not count in.
    value.as_raw_str().parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::usage_counts;

    #[test]
    fn reads_both_counts_after_the_answer_text() {
        let body = br#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"a \"usage\": {\"prompt_tokens\": 9}"}}],"usage":{"prompt_tokens":42,"completion_tokens":24,"total_tokens":66,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(usage_counts(body), (Some(42), Some(24)));
    }

    #[test]
    fn a_missing_or_non_object_usage_gives_no_counts() {
        assert_eq!(usage_counts(br#"{"id":"x"}"#), (None, None));
        assert_eq!(usage_counts(br#"{"usage":null}"#), (None, None));
        assert_eq!(usage_counts(br#"{"usage":[1,2]}"#), (None, None));
        assert_eq!(usage_counts(br#"[{"usage":{"prompt_tokens":1}}]"#), (None, None));
        assert_eq!(usage_counts(b"not json"), (None, None));
        assert_eq!(usage_counts(b""), (None, None));
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
}
