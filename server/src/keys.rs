//! Encryption at rest, the server's side: the key files of `[storage.encryption]` read at the
//! start (refused when others may read them), and `chuted gen-key FILE`. The core seals and
//! opens; this only reads files and draws random bytes (docs/STORAGE.md §16).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chute_core::storage::seal::{EncryptionConfig, Keyring, KEY_LEN, SALT_LEN};

/// The keyring of `config`, its files read now, with fresh random bytes for this start's salts.
/// `Err` is one line naming the file.
pub fn read_keyring(config: &EncryptionConfig) -> Result<Keyring, String> {
    let mut keys = Vec::new();
    for key in config.key_files() {
        keys.push((key.id, read_key_file(&key.file)?));
    }
    let mut salt_seed = [0u8; SALT_LEN];
    getrandom::fill(&mut salt_seed)
        .map_err(|e| format!("no random bytes for the log's salts: {e}"))?;
    let keyring = Keyring::new(keys, salt_seed).map_err(|e| format!("storage.encryption: {e}"))?;
    Ok(if config.write_in_clear { keyring.reading_only() } else { keyring })
}

/// A key file: exactly 32 bytes, readable by its owner only. A key others can read protects
/// nothing, so the server refuses it rather than warn (as ssh does with private keys).
fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN], String> {
    let shown = path.display();
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
    let mode = file
        .metadata()
        .map_err(|e| format!("cannot read the key file {shown}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "the key file {shown} may be read or changed by group or others (mode {:04o}); \
             make it the owner's alone: chmod 600 {shown}",
            mode & 0o7777
        ));
    }
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    Read::by_ref(&mut file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        let size =
            if bytes.len() > KEY_LEN { "more than 32".into() } else { bytes.len().to_string() };
        format!(
            "the key file {shown} holds {size} bytes, not {KEY_LEN} (make one with chuted gen-key)"
        )
    })
}

/// `chuted gen-key FILE`: 32 random bytes in a new file of mode 0600. Never overwrites: a key
/// replaced by mistake makes every segment sealed with it unreadable.
pub fn gen_key(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| format!("no random bytes for the key: {e}"))?;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
        |e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{shown} exists; a key file is never overwritten (choose another name)")
            }
            _ => format!("cannot create the key file {shown}: {e}"),
        },
    )?;
    file.write_all(&key)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write the key file {shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use chute_core::storage::seal::KeyFile;

    use super::*;

    fn config(files: &[(u32, &Path)]) -> EncryptionConfig {
        let keys = files.iter().map(|(id, file)| KeyFile { id: *id, file: file.to_path_buf() });
        EncryptionConfig { keys: keys.collect(), ..EncryptionConfig::default() }
    }

    #[test]
    fn gen_key_writes_32_bytes_for_the_owner_only_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.key");
        gen_key(&path).unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        let first = std::fs::read(&path).unwrap();
        assert_eq!(first.len(), KEY_LEN);
        let error = gen_key(&path).unwrap_err();
        assert!(error.contains("never overwritten"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), first);
        let other = dir.path().join("other.key");
        gen_key(&other).unwrap();
        assert_ne!(std::fs::read(&other).unwrap(), first);
    }

    #[test]
    fn the_first_key_is_current_and_all_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let (two, one) = (dir.path().join("2.key"), dir.path().join("1.key"));
        gen_key(&two).unwrap();
        gen_key(&one).unwrap();
        let keyring = read_keyring(&config(&[(2, &two), (1, &one)])).unwrap();
        assert_eq!(keyring.current(), Some(2));
        assert_eq!(keyring.key_ids().collect::<Vec<_>>(), [1, 2]);
        let reading = EncryptionConfig { write_in_clear: true, ..config(&[(1, &one)]) };
        assert_eq!(read_keyring(&reading).unwrap().current(), None);
        let single = EncryptionConfig { key_file: Some(one), ..EncryptionConfig::default() };
        assert_eq!(read_keyring(&single).unwrap().current(), Some(1));
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.key");
        gen_key(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = read_keyring(&config(&[(1, &path)])).unwrap_err();
        assert!(error.contains("mode 0640") && error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn a_key_file_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (len, expected) in [(31, "holds 31 bytes"), (33, "holds more than 32 bytes")] {
            let path = dir.path().join(format!("{len}.key"));
            std::fs::write(&path, vec![7u8; len]).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let error = read_keyring(&config(&[(1, &path)])).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        let missing = read_keyring(&config(&[(1, &dir.path().join("none"))])).unwrap_err();
        assert!(missing.contains("cannot read the key file"), "{missing}");
    }
}
