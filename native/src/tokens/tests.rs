use super::*;
use proptest::prelude::*;

#[test]
fn known_ids_match_tiktoken() {
    // Reference ids from tiktoken 0.x for "hello world".
    assert_eq!(Encoding::Cl100kBase.encode("hello world"), vec![15339, 1917]);
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

proptest! {
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
    assert_eq!(Encoding::Cl100kBase.decode_bytes(&[15339]), Ok(b"hello".to_vec()));
}
