use super::*;

const ALL: Options = Options {
    encoding: None,
    count_tokens: true,
    cache_key: true,
};

fn chat(body: &str) -> Result<Facts, CoreError> {
    inspect(body.as_bytes(), Endpoint::Chat, ALL)
}

fn param_of(result: Result<Facts, CoreError>) -> Option<String> {
    match result {
        Err(CoreError::InvalidBody { param, .. }) => param,
        other => panic!("expected an invalid body, got {other:?}"),
    }
}

#[test]
fn reads_every_fact_of_a_chat_request() {
    let facts = chat(
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,
        "stream_options":{"include_usage":true},"max_tokens":50,"max_completion_tokens":70,
        "n":2,"temperature":0}"#,
    )
    .unwrap();
    assert_eq!(facts.model, "gpt-4o-mini");
    assert!(facts.stream && facts.include_usage);
    assert_eq!(facts.max_tokens, Some(70));
    assert_eq!(facts.n, 2);
    assert_eq!(facts.temperature, Some(0.0));
    let enc = Encoding::O200kBase;
    assert_eq!(
        facts.prompt_tokens,
        3 + 3 + enc.count("user") as i64 + enc.count("hi") as i64
    );
}

#[test]
fn defaults_when_optional_fields_are_absent_or_null() {
    let facts =
        chat(r#"{"model":"m","messages":[{"role":"user"}],"n":null,"stream":null}"#).unwrap();
    assert!(!facts.stream && !facts.include_usage);
    assert_eq!(
        (facts.max_tokens, facts.n, facts.temperature),
        (None, 1, None)
    );
}

#[test]
fn tools_add_their_published_cost() {
    let base = r#"{"model":"gpt-4","messages":[{"role":"user","content":"x"}]"#;
    let without = chat(&format!("{base}}}")).unwrap().prompt_tokens;
    let tools = r#","tools":[{"type":"function","function":{"name":"f","description":"d"}}]}"#;
    let with = chat(&format!("{base}{tools}")).unwrap().prompt_tokens;
    let enc = Encoding::Cl100kBase;
    assert_eq!(with - without, 10 + enc.count("f:d") as i64 + 12);
}

#[test]
fn the_encoding_follows_the_model_unless_given() {
    let body = r#"{"model":"gpt-3.5-turbo","prompt":"hello world, again"}"#;
    let by_model = inspect(body.as_bytes(), Endpoint::Completions, ALL).unwrap();
    assert_eq!(
        by_model.prompt_tokens,
        Encoding::Cl100kBase.count("hello world, again") as i64
    );
    let given = Options {
        encoding: Some(Encoding::O200kBase),
        ..ALL
    };
    let forced = inspect(body.as_bytes(), Endpoint::Completions, given).unwrap();
    assert_eq!(
        forced.prompt_tokens,
        Encoding::O200kBase.count("hello world, again") as i64
    );
}

#[test]
fn embeddings_and_completions_accept_strings_and_token_ids() {
    let count = |body: &str, endpoint| {
        inspect(body.as_bytes(), endpoint, ALL)
            .unwrap()
            .prompt_tokens
    };
    assert_eq!(
        count(r#"{"model":"m","input":[1,2,3]}"#, Endpoint::Embeddings),
        3
    );
    assert_eq!(
        count(r#"{"model":"m","input":[[1,2],[3]]}"#, Endpoint::Embeddings),
        3
    );
    let two = Encoding::O200kBase.count("a") as i64 + Encoding::O200kBase.count("b c") as i64;
    assert_eq!(
        count(
            r#"{"model":"m","prompt":["a","b c"]}"#,
            Endpoint::Completions
        ),
        two
    );
}

#[test]
fn malformed_bodies_name_the_parameter() {
    assert_eq!(param_of(chat("{")), None);
    assert_eq!(param_of(chat("[]")), None);
    assert_eq!(
        param_of(chat(r#"{"messages":[]}"#)).as_deref(),
        Some("model")
    );
    assert_eq!(
        param_of(chat(r#"{"model":"m","messages":[]}"#)).as_deref(),
        Some("messages")
    );
    let m = r#"{"model":"m","messages":[{"role":"user"}]"#;
    assert_eq!(
        param_of(chat(r#"{"model":"m","messages":[{"role":1}]}"#)).as_deref(),
        Some("messages.[0]")
    );
    for content in ["5", "true", r#"{"text":"x"}"#] {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}},{{"role":"user","content":{content}}}]}}"#
        );
        assert_eq!(
            param_of(chat(&body)).as_deref(),
            Some("messages.[1].content"),
            "{content}"
        );
    }
    for content in ["null", r#""text""#, r#"[{"type":"text","text":"x"}]"#] {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"assistant","content":{content}}}]}}"#);
        assert!(chat(&body).is_ok(), "{content}");
    }
    for (field, value) in [
        ("stream", r#""yes""#),
        ("n", "0"),
        ("n", "1.5"),
        ("max_tokens", "-1"),
        ("max_completion_tokens", "true"),
        ("temperature", r#""hot""#),
        ("stream_options", "1"),
        ("stream_options", r#"{"include_usage":"yes"}"#),
        ("tools", "{}"),
    ] {
        let param = param_of(chat(&format!(r#"{m},"{field}":{value}}}"#)));
        assert!(
            param.as_deref().is_some_and(|p| p.starts_with(field)),
            "{field}: {param:?}"
        );
    }
    let bad_tool = format!(r#"{m},"tools":[{{"type":"function"}}]}}"#);
    assert_eq!(param_of(chat(&bad_tool)).as_deref(), Some("tools.[0]"));
    let bad_input = inspect(
        br#"{"model":"m","input":[1,"a"]}"#,
        Endpoint::Embeddings,
        ALL,
    );
    assert_eq!(param_of(bad_input).as_deref(), Some("input"));
}

#[test]
fn the_cache_key_ignores_what_cannot_change_the_answer() {
    let a = chat(
        r#"{"model":"a","messages":[{"role":"user","content":"x"}],"user":"u1","stream":true}"#,
    );
    let b = chat(r#"{"stream":false,"messages":[{"content":"x","role":"user"}],"model":"b"}"#);
    assert_eq!(a.unwrap().cache_key, b.unwrap().cache_key);
    let c = chat(r#"{"model":"a","messages":[{"role":"user","content":"x"}],"seed":1}"#);
    let d = chat(r#"{"model":"a","messages":[{"role":"user","content":"x"}],"seed":2}"#);
    assert_ne!(c.unwrap().cache_key, d.unwrap().cache_key);
}

#[test]
fn the_cache_key_is_worked_out_only_when_asked() {
    let body = br#"{"model":"a","messages":[{"role":"user","content":"x"}]}"#;
    let asked = inspect(body, Endpoint::Chat, ALL).unwrap();
    assert!(asked.cache_key.is_some());
    let skipped = Options { cache_key: false, ..ALL };
    assert_eq!(inspect(body, Endpoint::Chat, skipped).unwrap().cache_key, None);
}

#[test]
fn counting_can_be_skipped() {
    let options = Options {
        count_tokens: false,
        ..ALL
    };
    let body = br#"{"model":"m","messages":[{"role":"user","content":"some text"}]}"#;
    assert_eq!(
        inspect(body, Endpoint::Chat, options)
            .unwrap()
            .prompt_tokens,
        0
    );
    assert!("nope".parse::<Endpoint>().is_err());
}

#[test]
fn the_model_span_covers_the_name_between_its_quotes() {
    let body = r#"{ "messages":[{"role":"user","content":"hi"}], "model" : "gpt-4o-mini" }"#;
    let (start, end) = chat(body).unwrap().model_span.unwrap();
    assert_eq!(&body[start..end], "gpt-4o-mini");
}

#[test]
fn no_model_span_for_an_escaped_or_repeated_model() {
    let escaped = r#"{"model":"gpt\u002d4o","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(chat(escaped).unwrap().model, "gpt-4o");
    assert_eq!(chat(escaped).unwrap().model_span, None);
    let twice = r#"{"model":"a","model":"b","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(chat(twice).unwrap().model_span, None);
}
