//! Encryption at rest: the keyring, and sealing and opening record bodies (docs/STORAGE.md
//! §16).
//!
//! A sealed segment (format version 2) names its key id in its header. Its first record is a
//! *seal marker* (kind [`SEAL_KIND`], never itself sealed): a fresh 16-byte salt and a check
//! value that tells a wrong key from damage. Every later record's body is sealed with
//! XChaCha20-Poly1305 under that key, with the nonce `salt ‖ LSN` (the record's log position,
//! u64 little-endian) and the record's `len` and `kind` bytes as associated data, until the
//! next marker (appending resumed after a restart starts with a new marker and a new salt).
//!
//! Why the nonce never repeats under one key: within one salt, LSNs only grow (a record's LSN
//! is its position), and every salt is used by one run of appends only. A restart that cuts a
//! torn tail and appends again at the same LSN does so under a new marker with a new salt, so
//! the bytes lost in the crash and the bytes written after it never share a nonce. Salts are
//! `salt_seed` (fresh random bytes from the driver at every start) with a counter of the markers
//! made since folded in: two starts share a salt only if 64 random bits match.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

use serde::{Deserialize, Serialize};

use crate::ids::Lsn;

/// The record kind of a seal marker. A kind of the framing, not of the broker's records (§6).
pub const SEAL_KIND: u8 = 15;
/// Bytes of a key file and of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a marker's salt.
pub const SALT_LEN: usize = 16;
/// Bytes a sealed body gains: the Poly1305 tag at its end.
pub const TAG_LEN: usize = 16;
/// A marker's body: salt, then check value.
pub const MARKER_BODY_LEN: usize = SALT_LEN + TAG_LEN;

/// What the check value authenticates besides the key id: no record's header looks like it.
const CHECK_LABEL: &[u8] = b"chute seal check";

/// A key's id, as segment headers name it: 1 or more (0 is never a key).
pub type KeyId = u32;

/// `[storage.encryption]`: where the keys are. The driver reads the files (the core never
/// does) and hands the bytes over as a [`Keyring`]. Keys are read at the start only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// One key, with id 1: the simple case.
    pub key_file: Option<PathBuf>,
    /// Several keys, the first the current one (it seals new segments); the others are kept to
    /// read segments sealed before, until no segment uses them.
    pub keys: Vec<KeyFile>,
    /// Keep the keys for reading only: new segments are written in clear.
    pub write_in_clear: bool,
}

/// One key of [`EncryptionConfig::keys`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub id: KeyId,
    pub file: PathBuf,
}

impl EncryptionConfig {
    /// The key files in the configured order (the current one first), with their ids.
    pub fn key_files(&self) -> Vec<KeyFile> {
        match &self.key_file {
            Some(file) => vec![KeyFile { id: 1, file: file.clone() }],
            None => self.keys.clone(),
        }
    }

    /// What is wrong with the settings, if anything: one line.
    pub fn problem(&self) -> Option<String> {
        if self.key_file.is_some() && !self.keys.is_empty() {
            return Some("set key_file (one key, id 1) or keys, not both".into());
        }
        if self.write_in_clear && self.key_files().is_empty() {
            return Some("write_in_clear needs the keys to read with".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for key in &self.keys {
            if key.id == 0 {
                return Some("key id 0 is not allowed (ids start at 1)".into());
            }
            if !seen.insert(key.id) {
                return Some(format!("key id {} is given twice", key.id));
            }
        }
        None
    }
}

/// The keys the broker may read with, the one it seals new segments with, and the randomness
/// salts are made from. The key bytes never appear in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: BTreeMap<KeyId, [u8; KEY_LEN]>,
    current: Option<KeyId>,
    salt_seed: [u8; SALT_LEN],
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

/// A keyring that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    #[error("key id 0 is not allowed (ids start at 1)")]
    IdZero,
    #[error("key id {0} is given twice")]
    Duplicate(KeyId),
}

impl Keyring {
    /// `keys` in the configured order: the first seals new segments, the others are kept for
    /// reading segments sealed before. `salt_seed` must be fresh random bytes at every start
    /// (the driver's getrandom, the simulator's seed): it is what keeps two starts' salts apart.
    pub fn new(
        keys: impl IntoIterator<Item = (KeyId, [u8; KEY_LEN])>,
        salt_seed: [u8; SALT_LEN],
    ) -> Result<Keyring, KeyringError> {
        let mut ring = Keyring { salt_seed, ..Keyring::default() };
        for (id, key) in keys {
            if id == 0 {
                return Err(KeyringError::IdZero);
            }
            if ring.keys.insert(id, key).is_some() {
                return Err(KeyringError::Duplicate(id));
            }
            ring.current.get_or_insert(id);
        }
        Ok(ring)
    }

    /// The same keys for reading only: new segments are written in clear (encryption turned
    /// off while sealed segments remain).
    pub fn reading_only(mut self) -> Keyring {
        self.current = None;
        self
    }

    /// The key new segments are sealed with; `None`: new segments are written in clear.
    pub fn current(&self) -> Option<KeyId> {
        self.current
    }

    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// A sealer for a new run of appends under `key_id` (its marker goes first), with the
    /// `made`-th salt of this start.
    pub fn sealer(&self, key_id: KeyId, made: u64) -> Option<Sealer> {
        let mut salt = self.salt_seed;
        let low = u64::from_le_bytes(salt[..8].try_into().expect("8 bytes")) ^ made;
        salt[..8].copy_from_slice(&low.to_le_bytes());
        Some(Sealer::new(key_id, self.keys.get(&key_id)?, salt))
    }

    /// The opener for the marker `body` found at `lsn` in a segment sealed under `key_id`.
    pub fn open_marker(&self, key_id: KeyId, lsn: Lsn, body: &[u8]) -> Result<Sealer, SealError> {
        let key = self.keys.get(&key_id).ok_or(SealError::MissingKey { key_id })?;
        let (salt, check) = body
            .split_at_checked(SALT_LEN)
            .filter(|(_, check)| check.len() == TAG_LEN)
            .ok_or(SealError::BadMarker { len: body.len() })?;
        let sealer = Sealer::new(key_id, key, salt.try_into().expect("SALT_LEN bytes"));
        if sealer.check(lsn).as_ref() != check {
            return Err(SealError::WrongKey { key_id });
        }
        Ok(sealer)
    }
}

/// Why a sealed segment's records cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error(
        "sealed with key id {key_id}, which is not configured (add its key file to \
         storage.encryption.keys with id {key_id})"
    )]
    MissingKey { key_id: KeyId },
    #[error(
        "sealed with key id {key_id}, and the key configured with id {key_id} is not that key \
         (a different key file)"
    )]
    WrongKey { key_id: KeyId },
    #[error("seal marker of {len} bytes, not {MARKER_BODY_LEN}")]
    BadMarker { len: usize },
    #[error("sealed record before any seal marker")]
    NoMarker,
    #[error("sealed record of {len} bytes is shorter than its {TAG_LEN}-byte tag")]
    TooShort { len: usize },
    #[error(
        "sealed record fails authentication under key id {key_id}: its body was changed \
         (a flipped bit the checksum missed, or bytes moved from elsewhere)"
    )]
    Forged { key_id: KeyId },
}

/// Seals (or opens) the records of one run of appends: one key, one salt.
///
/// XChaCha20-Poly1305 is ChaCha20-Poly1305 (RFC 8439) under a subkey derived from the key and
/// the nonce's first 16 bytes by HChaCha20, with the nonce's last 8 bytes behind four zero
/// bytes as its 96-bit nonce. A run's salt is those first 16 bytes, so the subkey is derived
/// once per run here and every record is sealed by ring's ChaCha20-Poly1305 (assembly, the
/// same bytes as the one-shot construction, about a tenth of its cost per 256-byte record).
#[derive(Clone)]
pub struct Sealer {
    key_id: KeyId,
    subkey: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl Sealer {
    fn new(key_id: KeyId, key: &[u8; KEY_LEN], salt: [u8; SALT_LEN]) -> Sealer {
        let subkey = chacha20::hchacha::<chacha20::R20>(key.into(), &salt.into());
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice())
            .expect("HChaCha20 gives a 32-byte key, ChaCha20-Poly1305's length");
        Sealer { key_id, subkey: LessSafeKey::new(unbound), salt }
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The 96-bit nonce under the subkey: four zero bytes, then the LSN (u64 little-endian).
    fn nonce(lsn: Lsn) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&lsn.0.to_le_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    /// The check value of a marker at `lsn`: the tag of nothing, with the key id as associated
    /// data. Its nonce is the marker's own LSN, which no sealed record has.
    fn check(&self, lsn: Lsn) -> Tag {
        let mut aad = CHECK_LABEL.to_vec();
        aad.extend_from_slice(&self.key_id.to_le_bytes());
        self.subkey
            .seal_in_place_separate_tag(Self::nonce(lsn), Aad::from(aad), &mut [])
            .expect("an empty message seals")
    }

    /// The body of this run's marker, placed at `lsn`.
    pub fn marker_body(&self, lsn: Lsn) -> [u8; MARKER_BODY_LEN] {
        let mut body = [0u8; MARKER_BODY_LEN];
        body[..SALT_LEN].copy_from_slice(&self.salt);
        body[SALT_LEN..].copy_from_slice(self.check(lsn).as_ref());
        body
    }

    /// Seals `body` in place and appends the tag. `header` is the record's final `len` and
    /// `kind` bytes (the associated data).
    pub fn seal(&self, lsn: Lsn, header: &[u8; 5], out: &mut BytesMut, body_start: usize) {
        let tag = self
            .subkey
            .seal_in_place_separate_tag(Self::nonce(lsn), Aad::from(header), &mut out[body_start..])
            .expect("a record body is far below ChaCha20's message limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// The plain body of the sealed record at `lsn`, whose `len` and `kind` bytes are `header`
    /// and whose body on disk is `sealed` (ciphertext, then tag).
    pub fn open(&self, lsn: Lsn, header: &[u8; 5], sealed: &[u8]) -> Result<Bytes, SealError> {
        let plain_len =
            sealed.len().checked_sub(TAG_LEN).ok_or(SealError::TooShort { len: sealed.len() })?;
        let (ciphertext, tag) = sealed.split_at(plain_len);
        let mut plain = BytesMut::from(ciphertext);
        let tag = Tag::try_from(tag).expect("TAG_LEN bytes");
        self.subkey
            .open_in_place_separate_tag(Self::nonce(lsn), Aad::from(header), tag, &mut plain, 0..)
            .map_err(|_| SealError::Forged { key_id: self.key_id })?;
        Ok(plain.freeze())
    }
}
