//! API tokens: `stn_<id>_<secret>`. The id is a non-secret lookup key, so checking a token costs
//! one primary-key read and at most one argon2 verification; the secret is stored only as an
//! argon2id hash. Verified tokens are remembered (as a SHA-256 of the whole token) for a short
//! while so argon2 does not run on every request, but the token row (with its revocation) is
//! read on every request, so revocation takes effect at once, across processes too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "stn_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 40;
const MIN_FOREIGN_TOKEN_LEN: usize = 24;

/// Random text from the 62 ASCII letters and digits (OS-seeded CSPRNG).
pub fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A token in clear, held only between creation and being shown once. Its `Debug` is redacted.
pub struct TokenSecret(String);

impl TokenSecret {
    /// A fresh token and its id.
    pub fn generate() -> (String, TokenSecret) {
        let id = random_alnum(ID_LEN).to_ascii_lowercase();
        let secret = random_alnum(SECRET_LEN);
        let token = format!("{PREFIX}{id}_{secret}");
        (id, TokenSecret(token))
    }

    /// Takes an operator-chosen token (e.g. from `STADION_ADMIN_TOKEN`).
    pub fn from_text(text: String) -> Result<(String, TokenSecret), String> {
        if text.len() < MIN_FOREIGN_TOKEN_LEN
            || !text.is_ascii()
            || text.contains(char::is_whitespace)
        {
            return Err(format!(
                "a token is at least {MIN_FOREIGN_TOKEN_LEN} ASCII characters without spaces"
            ));
        }
        let id = lookup_id(&text);
        Ok((id, TokenSecret(text)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// The id a token is looked up by: the embedded one for `stn_` tokens, otherwise a digest
/// prefix (operator-chosen tokens carry no id).
pub fn lookup_id(token: &str) -> String {
    if let Some(rest) = token.strip_prefix(PREFIX)
        && let Some((id, secret)) = rest.split_once('_')
        && id.len() == ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && !secret.is_empty()
    {
        return id.to_owned();
    }
    let digest = Sha256::digest(token.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes a token for storage (argon2id, default parameters, random salt).
pub fn hash(token: &TokenSecret) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes are a valid salt length");
    Argon2::default()
        .hash_password(token.0.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

/// Verifies a presented token against its stored hash (slow by design).
pub fn verify(token: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(token.as_bytes(), &h)
            .is_ok()
    })
}

/// Remembers recently verified tokens by id → SHA-256 of the whole token.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    entries: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl VerifiedCache {
    const TTL: Duration = Duration::from_secs(300);
    const MAX_ENTRIES: usize = 10_000;

    pub fn is_verified(&self, id: &str, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(id)
            .is_some_and(|(known, at)| at.elapsed() < Self::TTL && bool::from(known.ct_eq(&digest)))
    }

    pub fn remember(&self, id: &str, token: &str) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < Self::TTL);
        }
        entries.insert(id.to_owned(), (digest, Instant::now()));
    }

    pub fn forget(&self, id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_carry_their_id_and_verify() {
        let (id, token) = TokenSecret::generate();
        assert_eq!(lookup_id(token.expose()), id);
        let h = hash(&token);
        assert!(!h.contains(token.expose()));
        assert!(verify(token.expose(), &h));
        assert!(!verify(&format!("{}x", token.expose()), &h));
        assert!(!verify(token.expose(), "not a hash"));
        assert_eq!(format!("{token:?}"), "TokenSecret(<redacted>)");
    }

    #[test]
    fn foreign_tokens_get_a_digest_id() {
        assert!(TokenSecret::from_text("short".into()).is_err());
        assert!(TokenSecret::from_text("has a space in it, which is refused".into()).is_err());
        let (id, t) = TokenSecret::from_text("correct-horse-battery-staple-42".into()).unwrap();
        assert_eq!(id.len(), 16);
        assert_eq!(lookup_id(t.expose()), id);
    }

    #[test]
    fn cache_matches_only_the_same_token() {
        let cache = VerifiedCache::default();
        cache.remember("abc", "stn_abc_secret");
        assert!(cache.is_verified("abc", "stn_abc_secret"));
        assert!(!cache.is_verified("abc", "stn_abc_other"));
        cache.forget("abc");
        assert!(!cache.is_verified("abc", "stn_abc_secret"));
    }
}
