use super::*;
use proptest::prelude::*;

#[test]
fn known_ids_match_tiktoken() {
    // Reference ids from tiktoken 0.x for "hello world".
    assert_eq!(
        Encoding::Cl100kBase.encode("hello world"),
        vec![15339, 1917]
    );
    assert_eq!(Encoding::O200kBase.encode("hello world"), vec![24912, 2375]);
}

#[test]
fn empty_text_has_no_tokens() {
    assert_eq!(Encoding::O200kBase.count(""), 0);
    assert!(Encoding::Cl100kBase.encode("").is_empty());
}

#[test]
fn unknown_encoding_is_an_error() {
    assert_eq!(
        "p50k_base".parse::<Encoding>(),
        Err(CoreError::UnknownEncoding("p50k_base".into()))
    );
    assert_eq!("o200k_base".parse::<Encoding>(), Ok(Encoding::O200kBase));
}

#[test]
fn repeated_character_is_counted() {
    let text = "a".repeat(100_000);
    assert!(Encoding::O200kBase.count(&text) > 0);
}

#[test]
fn words_counted_again_from_the_memo_count_the_same() {
    // Most of these words are no one token: merged the first time, remembered after.
    let text = "오늘은 날씨가 좋네요, 산책하러 갑시다. Привет мир, проверка токенизатора. 天下大勢";
    for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
        let exact = enc.encode(text).len(); // encoding merges every piece, memo or not
        assert_eq!(enc.count(text), exact, "{enc:?}");
        assert_eq!(enc.count(text), exact, "{enc:?}, again");
        let elsewhere = std::thread::spawn(move || enc.count(text)).join().ok();
        assert_eq!(elsewhere, Some(exact), "{enc:?}, on a thread with a memo of its own");
    }
}

proptest! {
    // Cases run on one thread: later ones find earlier ones' words in the memo.
    #[test]
    fn count_equals_encode_len(text in any::<String>()) {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            prop_assert_eq!(enc.count(&text), enc.encode(&text).len());
        }
    }

    #[test]
    fn decode_inverts_encode(text in any::<String>()) {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            prop_assert_eq!(enc.decode(&enc.encode(&text)), Some(text.clone()));
        }
    }
}

#[test]
fn decode_bytes_rejects_ids_outside_the_vocabulary() {
    assert_eq!(
        Encoding::Cl100kBase.decode_bytes(&[15339, u32::MAX]),
        Err(CoreError::InvalidToken(u32::MAX))
    );
    assert_eq!(
        Encoding::Cl100kBase.decode_bytes(&[15339]),
        Ok(b"hello".to_vec())
    );
}

#[test]
fn model_names_pick_their_encoding() {
    for (model, encoding) in [
        ("gpt-4o-mini", Encoding::O200kBase),
        ("openai/gpt-4.1", Encoding::O200kBase),
        ("gpt-4", Encoding::Cl100kBase),
        ("gpt-4-turbo", Encoding::Cl100kBase),
        ("gpt-3.5-turbo", Encoding::Cl100kBase),
        ("text-embedding-3-small", Encoding::Cl100kBase),
        ("llama-3-70b", Encoding::O200kBase),
        ("", Encoding::O200kBase),
    ] {
        assert_eq!(Encoding::for_model(model), encoding, "{model}");
    }
}

fn stream_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("  \t".to_string()),
        Just("'ll".to_string()),
        Just("'S".to_string()),
        "[a-zA-Z]{1,6}",
        "[0-9]{1,5}",
        "[.,!?/:;-]{1,3}",
        "\\PC{1,3}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn counting_a_settled_prefix_first_is_exact(
        text in stream_text(), cut in any::<prop::sample::Index>(),
    ) {
        let boundaries: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        let cut = boundaries[cut.index(boundaries.len())];
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let (head, rest) = text.split_at(cut);
            let (tokens, consumed) = enc.count_prefix(head);
            prop_assert!(consumed <= head.len());
            let carried = format!("{}{rest}", &head[consumed..]);
            prop_assert_eq!(tokens + enc.count(&carried), enc.count(&text));
        }
    }
}

#[test]
fn a_prefix_of_plain_prose_is_mostly_settled() {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(100);
    let (tokens, consumed) = Encoding::O200kBase.count_prefix(&text);
    assert!(consumed > text.len() - 32 && tokens > 0);
    assert_eq!(Encoding::O200kBase.count_prefix("   \n  "), (0, 0));
}

#[test]
fn the_vocabulary_tables_hold_every_token_of_the_rank_files() {
    for (enc, size) in [(Encoding::Cl100kBase, 100_256), (Encoding::O200kBase, 199_998)] {
        let (vocab, reference) = (enc.vocab(), &enc.reference().bpe);
        assert_eq!((vocab.len(), reference.num_tokens()), (size, size), "{enc:?}");
        for id in 0..size as u32 {
            let bytes = reference.token_bytes(id);
            assert_eq!(vocab.token(id), bytes, "{enc:?} {id}");
            assert_eq!(vocab.rank(bytes), Some(id), "{enc:?} {id}");
        }
        assert_eq!(vocab.token(size as u32), b"");
        assert_eq!(vocab.rank(b""), None);
        assert_eq!(vocab.rank(&[b'x'; 300]), None);
    }
}

#[test]
fn a_table_that_is_not_one_is_refused() {
    let table = vocab_layout::write(&[b"a".to_vec(), b"b".to_vec(), b"ab".to_vec()]);
    let table: &'static [u8] = Box::leak(table.unwrap_or_default().into_boxed_slice());
    let read = vocab::Vocab::read(table).map(|vocab| (vocab.len(), vocab.rank(b"ab")));
    assert_eq!(read, Some((3, Some(2))));
    assert!(vocab::Vocab::read(&table[..table.len() - 1]).is_none());
    assert!(vocab::Vocab::read(&table[..8]).is_none());
    assert!(vocab_layout::write(&[b"a".to_vec(), b"a".to_vec()]).is_none());
}

/// Pieces longer than the short-piece limit: runs from a small alphabet merge deep.
fn long_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ab]{90,400}",
        "[a-c0-1]{200,600}",
        "[A-Za-z+/=]{100,800}",
        "[é中😀a]{30,200}",
        "(ab|ba|aab|abc){30,120}",
    ]
}

proptest! {
    #[test]
    fn encoding_matches_the_reference_encoder(text in any::<String>()) {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            prop_assert_eq!(enc.encode(&text), enc.reference().encode(text.as_str()));
        }
    }

    #[test]
    fn long_pieces_match_the_reference_encoder(text in long_text()) {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            prop_assert_eq!(enc.encode(&text), enc.reference().encode(text.as_str()));
            prop_assert_eq!(enc.count(&text), enc.reference().count(text.as_str()));
        }
    }
}
