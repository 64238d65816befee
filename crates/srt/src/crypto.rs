//! SRT payload encryption (libsrt's "haicrypt"): AES-CTR with keys from a passphrase.
//!
//! The key-encrypting key (KEK) is PBKDF2-HMAC-SHA1(passphrase, last 8 bytes of the 16-byte salt,
//! 2048 iterations); stream-encrypting keys (SEKs) travel RFC 3394-wrapped in KMREQ messages.
//! A packet's counter block is the salt's first 14 bytes XOR (packet sequence number at bytes
//! 10..14), with a 16-bit block counter in the last two bytes.

use aes::cipher::StreamCipher;
use rand_core::RngCore;

use crate::packet::{KeyMaterial, KeyParity};

const PBKDF2_ITERATIONS: u32 = 2048;
/// SRT defaults: a new key every 2^24 packets, announced 2^12 packets ahead.
pub const DEFAULT_REFRESH_RATE: u64 = 1 << 24;
pub const DEFAULT_PRE_ANNOUNCE: u64 = 1 << 12;

/// Why key material was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("key material could not be unwrapped: wrong passphrase")]
    BadSecret,
    #[error("key length {0} is not 16, 24 or 32")]
    BadKeyLength(usize),
    #[error("passphrase must be 10 to 79 characters, got {0}")]
    BadPassphrase(usize),
}

/// Checks a passphrase the way libsrt does (10..=79 bytes).
pub fn check_passphrase(p: &str) -> Result<(), CryptoError> {
    if (10..=79).contains(&p.len()) {
        Ok(())
    } else {
        Err(CryptoError::BadPassphrase(p.len()))
    }
}

fn derive_kek(passphrase: &str, salt: &[u8; 16], key_len: usize) -> Vec<u8> {
    let mut kek = vec![0u8; key_len];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(
        passphrase.as_bytes(),
        &salt[8..],
        PBKDF2_ITERATIONS,
        &mut kek,
    );
    kek
}

fn wrap(kek: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; plain.len() + 8];
    let res = match kek.len() {
        16 => aes_kw::KekAes128::new(kek.into()).wrap(plain, &mut out),
        24 => aes_kw::KekAes192::new(kek.into()).wrap(plain, &mut out),
        32 => aes_kw::KekAes256::new(kek.into()).wrap(plain, &mut out),
        n => return Err(CryptoError::BadKeyLength(n)),
    };
    res.map_err(|_| CryptoError::BadKeyLength(plain.len()))?;
    Ok(out)
}

fn unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; wrapped.len().saturating_sub(8)];
    let res = match kek.len() {
        16 => aes_kw::KekAes128::new(kek.into()).unwrap(wrapped, &mut out),
        24 => aes_kw::KekAes192::new(kek.into()).unwrap(wrapped, &mut out),
        32 => aes_kw::KekAes256::new(kek.into()).unwrap(wrapped, &mut out),
        n => return Err(CryptoError::BadKeyLength(n)),
    };
    res.map_err(|_| CryptoError::BadSecret)?;
    Ok(out)
}

/// An expanded AES key for CTR mode.
#[derive(Clone)]
enum Sek {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

impl Sek {
    fn new(key: &[u8]) -> Result<Sek, CryptoError> {
        use aes::cipher::KeyInit;
        Ok(match key.len() {
            16 => Sek::A128(aes::Aes128::new(key.into())),
            24 => Sek::A192(aes::Aes192::new(key.into())),
            32 => Sek::A256(aes::Aes256::new(key.into())),
            n => return Err(CryptoError::BadKeyLength(n)),
        })
    }

    fn apply(&self, iv: &[u8; 16], buf: &mut [u8]) {
        use aes::cipher::InnerIvInit;
        let iv = iv.into();
        match self {
            Sek::A128(k) => {
                ctr::Ctr128BE::<aes::Aes128>::from_core(ctr::CtrCore::inner_iv_init(k.clone(), iv))
                    .apply_keystream(buf)
            }
            Sek::A192(k) => {
                ctr::Ctr128BE::<aes::Aes192>::from_core(ctr::CtrCore::inner_iv_init(k.clone(), iv))
                    .apply_keystream(buf)
            }
            Sek::A256(k) => {
                ctr::Ctr128BE::<aes::Aes256>::from_core(ctr::CtrCore::inner_iv_init(k.clone(), iv))
                    .apply_keystream(buf)
            }
        }
    }
}

/// Encryption state of one connection: the passphrase-derived KEK, salt and the even/odd SEKs,
/// plus the sender's key-refresh schedule.
#[derive(Clone)]
pub struct CryptoContext {
    kek: Vec<u8>,
    salt: [u8; 16],
    key_len: usize,
    keys: [Option<(Vec<u8>, Sek)>; 2],
    /// Parity the sender currently encrypts with.
    active: KeyParity,
    sent_with_active: u64,
    refresh_rate: u64,
    pre_announce: u64,
}

impl std::fmt::Debug for CryptoContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoContext")
            .field("key_len", &self.key_len)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// What the sender must announce after encrypting a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// Send this KMREQ to the peer (new key pre-announced, or old key retired).
    Announce(KeyMaterial),
}

fn parity_index(p: KeyParity) -> Option<usize> {
    match p {
        KeyParity::Even => Some(0),
        KeyParity::Odd => Some(1),
        KeyParity::None => None,
    }
}

impl CryptoContext {
    /// Initiator side: fresh salt and even key; returns the context and its KMREQ.
    pub fn initiate(
        passphrase: &str,
        key_len: usize,
        rng: &mut dyn RngCore,
    ) -> Result<(Self, KeyMaterial), CryptoError> {
        if !matches!(key_len, 16 | 24 | 32) {
            return Err(CryptoError::BadKeyLength(key_len));
        }
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut sek = vec![0u8; key_len];
        rng.fill_bytes(&mut sek);
        let mut ctx = CryptoContext {
            kek: derive_kek(passphrase, &salt, key_len),
            salt,
            key_len,
            keys: [Some((sek.clone(), Sek::new(&sek)?)), None],
            active: KeyParity::Even,
            sent_with_active: 0,
            refresh_rate: DEFAULT_REFRESH_RATE,
            pre_announce: DEFAULT_PRE_ANNOUNCE,
        };
        let km = ctx.key_material()?;
        ctx.sent_with_active = 0;
        Ok((ctx, km))
    }

    /// Responder side: unwraps the peer's KMREQ with our passphrase.
    pub fn respond(passphrase: &str, km: &KeyMaterial) -> Result<Self, CryptoError> {
        let kek = derive_kek(passphrase, &km.salt, km.key_len);
        let mut ctx = CryptoContext {
            kek,
            salt: km.salt,
            key_len: km.key_len,
            keys: [None, None],
            active: KeyParity::Even,
            sent_with_active: 0,
            refresh_rate: DEFAULT_REFRESH_RATE,
            pre_announce: DEFAULT_PRE_ANNOUNCE,
        };
        ctx.install(km)?;
        ctx.active = if ctx.keys[0].is_some() {
            KeyParity::Even
        } else {
            KeyParity::Odd
        };
        Ok(ctx)
    }

    /// Overrides the refresh schedule (tests and operators; libsrt's `kmrefreshrate`/`kmpreannounce`).
    pub fn set_refresh(&mut self, refresh_rate: u64, pre_announce: u64) {
        self.refresh_rate = refresh_rate.max(2);
        self.pre_announce = pre_announce.clamp(1, self.refresh_rate / 2);
    }

    pub fn key_len(&self) -> usize {
        self.key_len
    }

    /// Installs the keys of a KMREQ from the peer (handshake or refresh).
    pub fn install(&mut self, km: &KeyMaterial) -> Result<(), CryptoError> {
        if km.key_len != self.key_len || km.salt != self.salt {
            // A new salt means a new KEK (libsrt keeps the salt across refreshes, but be lenient).
            if km.salt != self.salt {
                return Err(CryptoError::BadSecret);
            }
            return Err(CryptoError::BadKeyLength(km.key_len));
        }
        let plain = unwrap(&self.kek, &km.wrapped)?;
        let mut chunks = plain.chunks_exact(self.key_len);
        for (bit, idx) in [(1u8, 0usize), (2, 1)] {
            if km.keys & bit != 0 {
                let k = chunks
                    .next()
                    .ok_or(CryptoError::BadKeyLength(plain.len()))?;
                self.keys[idx] = Some((k.to_vec(), Sek::new(k)?));
            }
        }
        Ok(())
    }

    /// KMREQ for the keys currently held (both if a refresh is pending).
    fn key_material(&self) -> Result<KeyMaterial, CryptoError> {
        let mut plain = Vec::with_capacity(2 * self.key_len);
        let mut flags = 0;
        for (idx, bit) in [(0usize, 1u8), (1, 2)] {
            if let Some((k, _)) = &self.keys[idx] {
                plain.extend_from_slice(k);
                flags |= bit;
            }
        }
        Ok(KeyMaterial::new(
            flags,
            self.salt,
            self.key_len,
            wrap(&self.kek, &plain)?,
        ))
    }

    fn iv(&self, seq: u32) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[10..14].copy_from_slice(&seq.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(&self.salt[..14]) {
            *b ^= s;
        }
        iv
    }

    /// Encrypts a payload for sending; returns the parity used and any key announcement due.
    pub fn encrypt(
        &mut self,
        seq: u32,
        buf: &mut [u8],
        rng: &mut dyn RngCore,
    ) -> (KeyParity, Option<KeyEvent>) {
        let parity = self.active;
        let iv = self.iv(seq);
        if let Some((_, sek)) = parity_index(parity).and_then(|i| self.keys[i].as_ref()) {
            sek.apply(&iv, buf);
        }
        self.sent_with_active += 1;
        (parity, self.refresh_step(rng))
    }

    /// Re-encrypts a retransmission with the parity it was first sent with (if still held).
    pub fn encrypt_with(&self, parity: KeyParity, seq: u32, buf: &mut [u8]) -> bool {
        let iv = self.iv(seq);
        match parity_index(parity).and_then(|i| self.keys[i].as_ref()) {
            Some((_, sek)) => {
                sek.apply(&iv, buf);
                true
            }
            None => false,
        }
    }

    /// Decrypts a received payload in place; false if the key for `parity` is unknown.
    pub fn decrypt(&self, parity: KeyParity, seq: u32, buf: &mut [u8]) -> bool {
        self.encrypt_with(parity, seq, buf)
    }

    fn refresh_step(&mut self, rng: &mut dyn RngCore) -> Option<KeyEvent> {
        let n = self.sent_with_active;
        let other = match self.active {
            KeyParity::Even => 1,
            _ => 0,
        };
        let current = 1 - other;
        if n == self.refresh_rate - self.pre_announce {
            let mut sek = vec![0u8; self.key_len];
            rng.fill_bytes(&mut sek);
            self.keys[other] = Some((sek.clone(), Sek::new(&sek).ok()?));
            return self.key_material().ok().map(KeyEvent::Announce);
        }
        if n == self.refresh_rate {
            self.active = if other == 0 {
                KeyParity::Even
            } else {
                KeyParity::Odd
            };
            self.sent_with_active = 0;
            return None;
        }
        if n == self.pre_announce && self.keys[other].is_some() && self.keys[current].is_some() {
            // The previous key's packets have drained: retire it.
            self.keys[other] = None;
            return self.key_material().ok().map(KeyEvent::Announce);
        }
        None
    }
}

/// Per-connection key generator seeded by the caller's RNG at connection setup.
///
/// Written by hand because the core must not reach for the OS RNG and the workspace has no
/// seedable CSPRNG crate: HMAC-SHA1 in counter mode over a 32-byte secret seed is a standard
/// PRF-based generator (the HMAC_DRBG idea without reseeding), enough for the few keys a
/// connection draws (one per 2^24 packets).
pub struct SeededRng {
    seed: [u8; 32],
    counter: u64,
}

impl SeededRng {
    pub fn new(seed: [u8; 32]) -> Self {
        SeededRng { seed, counter: 0 }
    }
}

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededRng")
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        use hmac::Mac;
        for chunk in dst.chunks_mut(20) {
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&self.seed)
                .expect("HMAC takes any key length");
            mac.update(&self.counter.to_be_bytes());
            self.counter += 1;
            let block = mac.finalize().into_bytes();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn wrong_passphrase_is_bad_secret() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (_, km) = CryptoContext::initiate("correct horse battery", 16, &mut rng).unwrap();
        assert_eq!(
            CryptoContext::respond("wrong passphrase!!", &km).err(),
            Some(CryptoError::BadSecret)
        );
    }

    #[test]
    fn both_sides_agree_and_refresh() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for key_len in [16, 24, 32] {
            let (mut tx, km) = CryptoContext::initiate("0123456789abc", key_len, &mut rng).unwrap();
            tx.set_refresh(100, 10);
            let mut rx = CryptoContext::respond("0123456789abc", &km).unwrap();
            let mut announcements = 0;
            for seq in 0..350u32 {
                let plain: Vec<u8> = (0..100).map(|i| (i as u32 + seq) as u8).collect();
                let mut buf = plain.clone();
                let (parity, ev) = tx.encrypt(seq, &mut buf, &mut rng);
                assert_ne!(buf, plain);
                if let Some(KeyEvent::Announce(km)) = ev {
                    rx.install(&km).unwrap();
                    announcements += 1;
                }
                assert!(rx.decrypt(parity, seq, &mut buf));
                assert_eq!(buf, plain, "seq {seq} parity {parity:?}");
            }
            assert!(announcements >= 5, "{announcements}");
        }
    }
}
