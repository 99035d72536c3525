//! Writes the vocabulary tables `src/tokens/vocab.rs` reads (see `vocab_layout.rs`) from the
//! vocabularies `bpe-openai` embeds: tiktoken's rank files, so the token ids are tiktoken's.

use std::error::Error;
use std::path::PathBuf;

#[path = "src/tokens/vocab_layout.rs"]
mod vocab_layout;

fn table(tokenizer: &bpe_openai::Tokenizer) -> Result<Vec<u8>, Box<dyn Error>> {
    let bpe = &tokenizer.bpe;
    let tokens: Vec<Vec<u8>> = (0..bpe.num_tokens())
        .map(|id| u32::try_from(id).map(|id| bpe.token_bytes(id).to_vec()))
        .collect::<Result<_, _>>()?;
    vocab_layout::write(&tokens).ok_or_else(|| "a vocabulary does not fit the table".into())
}

fn main() -> Result<(), Box<dyn Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("cl100k_base.vocab"), table(bpe_openai::cl100k_base())?)?;
    std::fs::write(out.join("o200k_base.vocab"), table(bpe_openai::o200k_base())?)?;
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tokens/vocab_layout.rs");
    Ok(())
}
