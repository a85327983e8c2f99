//! Hashing while streaming: the sha256 and the size of bytes that pass through in chunks (a
//! dump being uploaded, an object read back, an artifact checked), kept in one place so that
//! every caller agrees on what "the sha256" of a stream is (lowercase hex of the bytes stored).

use sha2::{Digest, Sha256};

/// Feeds chunks to sha256 and counts their bytes; [`HashingSink::finish`] gives both.
#[derive(Default)]
pub(super) struct HashingSink {
    hasher: Sha256,
    bytes: u64,
}

impl HashingSink {
    pub(super) fn new() -> HashingSink {
        HashingSink::default()
    }

    /// Feeds one chunk; returns the bytes fed so far.
    pub(super) fn update(&mut self, chunk: &[u8]) -> u64 {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.bytes
    }

    /// The sha256 (lowercase hex) and the size of everything fed.
    pub(super) fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hash_and_count_like_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut sink = HashingSink::new();
        let mut fed = 0;
        for chunk in data.chunks(4093) {
            fed = sink.update(chunk);
        }
        assert_eq!(fed, data.len() as u64, "update returns the running total");
        assert_eq!(
            sink.finish(),
            (hex::encode(Sha256::digest(&data)), data.len() as u64)
        );
    }

    #[test]
    fn nothing_fed_is_the_sha256_of_nothing() {
        let mut sink = HashingSink::new();
        assert_eq!(sink.update(&[]), 0);
        assert_eq!(
            sink.finish(),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string(),
                0
            )
        );
    }
}
