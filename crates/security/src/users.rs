//! The durable user store: `<data-dir>/security/users.json`, one SCRAM credential per user and
//! mechanism, never a password.
//!
//! The broker and `freshet users` share the file: writes go through
//! [`files::update_json`], and reads notice another process's
//! write by the file's stamp, so a user added while the broker runs can log in at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::files::{self, FileStamp, StoreError};
use crate::scram::{
    Mechanism, ScramCredential, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS,
};

/// The format this code writes; a file from a newer Freshet is refused rather than rewritten
/// without what it added.
const FORMAT_VERSION: u32 = 1;
const MAX_NAME_CHARS: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UsersFile {
    version: u32,
    /// Each user's credentials, at most one per mechanism, sorted by mechanism.
    users: BTreeMap<String, Vec<ScramCredential>>,
}

impl Default for UsersFile {
    fn default() -> Self {
        UsersFile {
            version: FORMAT_VERSION,
            users: BTreeMap::new(),
        }
    }
}

/// A user as listed: the name and, per mechanism, the iteration count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub mechanisms: Vec<(Mechanism, u32)>,
}

/// The users of one data directory. Cheap to read from many threads; every read sees writes
/// made since by this or any other process.
pub struct UserStore {
    path: PathBuf,
    cache: Mutex<Cache>,
}

struct Cache {
    file: UsersFile,
    stamp: Option<FileStamp>,
    /// Whether an unchanged stamp proves an unchanged file (see [`FileStamp::is_settled`]).
    trusted: bool,
}

impl Cache {
    fn new(file: UsersFile, stamp: Option<FileStamp>) -> Self {
        Cache {
            file,
            trusted: stamp.is_none_or(|stamp| stamp.is_settled()),
            stamp,
        }
    }
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl UserStore {
    /// Opens the store of `data_dir`; a missing file is a store without users (the file is
    /// created by the first write).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("security").join("users.json");
        let (file, stamp) = load(&path)?;
        Ok(UserStore {
            path,
            cache: Mutex::new(Cache::new(file, stamp)),
        })
    }

    /// The file the users are kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.read(|file| {
            file.users
                .get(user)?
                .iter()
                .find(|credential| credential.mechanism == mechanism)
                .cloned()
        })
    }

    /// Whether `password` is `user`'s under any of the user's mechanisms (SASL PLAIN, HTTP
    /// Basic). Runs PBKDF2, a few milliseconds: callers on an async runtime run it on a
    /// blocking thread. An unknown user costs as much as a known one, so the time taken does
    /// not tell who exists.
    pub fn verify_password(&self, user: &str, password: &[u8]) -> bool {
        let credentials = self
            .read(|file| file.users.get(user).cloned())
            .unwrap_or_default();
        if credentials.is_empty() {
            std::hint::black_box(ScramCredential::derive(
                Mechanism::ScramSha256,
                password,
                user.as_bytes(),
                DEFAULT_ITERATIONS,
            ));
            return false;
        }
        credentials
            .iter()
            .any(|credential| credential.verifies_password(password))
    }

    pub fn is_empty(&self) -> bool {
        self.read(|file| file.users.is_empty())
    }

    /// Every user, sorted by name.
    pub fn list(&self) -> Vec<UserInfo> {
        self.read(|file| {
            file.users
                .iter()
                .map(|(name, credentials)| UserInfo {
                    name: name.clone(),
                    mechanisms: credentials
                        .iter()
                        .map(|credential| (credential.mechanism, credential.iterations))
                        .collect(),
                })
                .collect()
        })
    }

    /// Creates `user`, or replaces its credentials for `mechanisms` (others are kept), from a
    /// password with a fresh random salt per mechanism. Runs PBKDF2 once per mechanism.
    pub fn add(
        &self,
        user: &str,
        password: &[u8],
        mechanisms: &[Mechanism],
        iterations: u32,
    ) -> Result<(), StoreError> {
        validate_user_name(user)?;
        validate_iterations(iterations)?;
        if mechanisms.is_empty() {
            return Err(StoreError::Invalid("no SCRAM mechanism given".to_owned()));
        }
        if password.is_empty() {
            return Err(StoreError::Invalid("the password is empty".to_owned()));
        }
        let credentials: Vec<ScramCredential> = mechanisms
            .iter()
            .map(|&mechanism| ScramCredential::with_random_salt(mechanism, password, iterations))
            .collect();
        self.update(|file| {
            for credential in credentials {
                upsert(file, user, credential);
            }
            Ok(())
        })
    }

    /// Sets one credential of `user` (creating the user), as AlterUserScramCredentials does.
    pub fn upsert_credential(
        &self,
        user: &str,
        credential: ScramCredential,
    ) -> Result<(), StoreError> {
        validate_user_name(user)?;
        validate_iterations(credential.iterations)?;
        self.update(|file| {
            upsert(file, user, credential);
            Ok(())
        })
    }

    /// Deletes `user`'s credential for `mechanism`; the user goes when its last credential
    /// does. `false` when there was no such credential.
    pub fn delete_credential(&self, user: &str, mechanism: Mechanism) -> Result<bool, StoreError> {
        if self.credential(user, mechanism).is_none() {
            return Ok(false);
        }
        self.update(|file| {
            let Some(credentials) = file.users.get_mut(user) else {
                return Ok(false);
            };
            let before = credentials.len();
            credentials.retain(|credential| credential.mechanism != mechanism);
            let deleted = credentials.len() < before;
            if credentials.is_empty() {
                file.users.remove(user);
            }
            Ok(deleted)
        })
    }

    /// Deletes `user` and all its credentials; `false` when there was no such user.
    pub fn remove(&self, user: &str) -> Result<bool, StoreError> {
        if !self.read(|file| file.users.contains_key(user)) {
            return Ok(false);
        }
        self.update(|file| Ok(file.users.remove(user).is_some()))
    }

    /// Runs `read` on the current users, first re-reading the file if another writer replaced
    /// it.
    fn read<R>(&self, read: impl FnOnce(&UsersFile) -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.refresh(&mut cache);
        read(&cache.file)
    }

    fn refresh(&self, cache: &mut Cache) {
        let current = files::stamp(&self.path);
        if cache.trusted && current == cache.stamp {
            return;
        }
        match load(&self.path) {
            Ok((file, stamp)) => *cache = Cache::new(file, stamp),
            Err(error) => {
                // Authentication goes on with the users last read; the stamp is remembered so
                // the broken file is not re-read (and reported) on every login.
                tracing::warn!(%error, "keeping the users last read");
                cache.stamp = current;
                cache.trusted = current.is_none_or(|stamp| stamp.is_settled());
            }
        }
    }

    fn update<R>(
        &self,
        change: impl FnOnce(&mut UsersFile) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let (result, _) = files::update_json(&self.path, |file: &mut UsersFile| {
            check_version(&self.path, file)?;
            change(file)
        })?;
        // The next read re-reads the file: it may already hold a later write.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.trusted = false;
        Ok(result)
    }
}

fn load(path: &Path) -> Result<(UsersFile, Option<FileStamp>), StoreError> {
    let (file, stamp) = files::read_json::<UsersFile>(path)?;
    check_version(path, &file)?;
    Ok((file, stamp))
}

fn check_version(path: &Path, file: &UsersFile) -> Result<(), StoreError> {
    if file.version > FORMAT_VERSION {
        return Err(StoreError::Json {
            path: path.to_owned(),
            message: format!(
                "format version {} is newer than this Freshet's ({FORMAT_VERSION})",
                file.version
            ),
        });
    }
    Ok(())
}

fn upsert(file: &mut UsersFile, user: &str, credential: ScramCredential) {
    let credentials = file.users.entry(user.to_owned()).or_default();
    credentials.retain(|existing| existing.mechanism != credential.mechanism);
    credentials.push(credential);
    credentials.sort_by_key(|credential| credential.mechanism);
}

/// 1 to 256 characters, no control characters, no whitespace at either end: names an
/// operator can type and read back, and that ACL principals (`User:name`) can refer to.
pub fn validate_user_name(name: &str) -> Result<(), StoreError> {
    let problem = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some(format!("is longer than {MAX_NAME_CHARS} characters"))
    } else if name.chars().any(char::is_control) {
        Some("contains a control character".to_owned())
    } else if name.trim() != name {
        Some("starts or ends with whitespace".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(StoreError::Invalid(format!("user name {name:?} {problem}"))),
        None => Ok(()),
    }
}

pub fn validate_iterations(iterations: u32) -> Result<(), StoreError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{iterations} iterations is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const BOTH: &[Mechanism] = &Mechanism::ALL;

    #[test]
    fn the_store_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<UserStore>();
    }

    #[test]
    fn users_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = UserStore::open(dir.path()).expect("open");
        assert!(store.is_empty());
        store
            .add("alice", b"pencil", BOTH, MIN_ITERATIONS)
            .expect("add");
        drop(store);
        let store = UserStore::open(dir.path()).expect("reopen");
        assert!(store.verify_password("alice", b"pencil"));
        assert!(!store.verify_password("alice", b"crayon"));
        assert!(!store.verify_password("bob", b"pencil"));
        let credential = store
            .credential("alice", Mechanism::ScramSha512)
            .expect("credential");
        assert_eq!(credential.iterations, MIN_ITERATIONS);
        assert!(credential.verifies_password(b"pencil"));
    }

    #[test]
    fn a_second_store_sees_writes_without_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = UserStore::open(dir.path()).expect("open");
        let cli = UserStore::open(dir.path()).expect("open");
        assert!(broker.credential("alice", Mechanism::ScramSha256).is_none());
        cli.add("alice", b"pencil", BOTH, MIN_ITERATIONS)
            .expect("add");
        assert!(broker.credential("alice", Mechanism::ScramSha256).is_some());
        cli.add("bob", b"pencil", &[Mechanism::ScramSha256], MIN_ITERATIONS)
            .expect("add");
        assert_eq!(broker.list().len(), 2);
        assert!(cli.remove("alice").expect("remove"));
        assert!(broker.credential("alice", Mechanism::ScramSha256).is_none());
    }

    #[test]
    fn a_settled_cache_still_notices_a_replaced_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = UserStore::open(dir.path()).expect("open");
        let cli = UserStore::open(dir.path()).expect("open");
        cli.add("alice", b"pencil", BOTH, MIN_ITERATIONS)
            .expect("add");
        assert_eq!(broker.list().len(), 1);
        broker
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .trusted = true;
        cli.add("bob", b"pencil", BOTH, MIN_ITERATIONS)
            .expect("add");
        assert_eq!(broker.list().len(), 2);
    }

    #[test]
    fn adding_replaces_only_the_given_mechanisms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = UserStore::open(dir.path()).expect("open");
        store
            .add("alice", b"old", BOTH, MIN_ITERATIONS)
            .expect("add");
        store
            .add("alice", b"new", &[Mechanism::ScramSha512], MAX_ITERATIONS)
            .expect("add");
        let credential = |mechanism| store.credential("alice", mechanism).expect("credential");
        assert!(credential(Mechanism::ScramSha256).verifies_password(b"old"));
        assert!(credential(Mechanism::ScramSha512).verifies_password(b"new"));
        assert!(store.verify_password("alice", b"old"));
        assert!(store.verify_password("alice", b"new"));
        assert_eq!(
            store.list(),
            vec![UserInfo {
                name: "alice".to_owned(),
                mechanisms: vec![
                    (Mechanism::ScramSha256, MIN_ITERATIONS),
                    (Mechanism::ScramSha512, MAX_ITERATIONS)
                ],
            }]
        );
    }

    #[test]
    fn deleting_the_last_credential_removes_the_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = UserStore::open(dir.path()).expect("open");
        let credential =
            ScramCredential::with_random_salt(Mechanism::ScramSha256, b"pencil", MIN_ITERATIONS);
        store
            .upsert_credential("alice", credential.clone())
            .expect("upsert");
        assert_eq!(
            store.credential("alice", Mechanism::ScramSha256),
            Some(credential)
        );
        assert!(!store
            .delete_credential("alice", Mechanism::ScramSha512)
            .expect("delete"));
        assert!(store
            .delete_credential("alice", Mechanism::ScramSha256)
            .expect("delete"));
        assert!(store.is_empty());
        assert!(!store.remove("alice").expect("remove"));
    }

    #[test]
    fn invalid_requests_are_refused_as_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = UserStore::open(dir.path()).expect("open");
        let long = "x".repeat(257);
        for name in ["", " alice", "alice\n", "al\u{7}ice", long.as_str()] {
            let result = store.add(name, b"pencil", BOTH, MIN_ITERATIONS);
            assert!(matches!(result, Err(StoreError::Invalid(_))), "{name:?}");
        }
        assert!(store
            .add(&"é".repeat(256), b"pencil", BOTH, MIN_ITERATIONS)
            .is_ok());
        for iterations in [MIN_ITERATIONS - 1, MAX_ITERATIONS + 1] {
            let result = store.add("alice", b"pencil", BOTH, iterations);
            assert!(matches!(result, Err(StoreError::Invalid(_))));
        }
        assert!(matches!(
            store.add("alice", b"", BOTH, MIN_ITERATIONS),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.add("alice", b"pencil", &[], MIN_ITERATIONS),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn the_file_is_private_and_holds_no_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = UserStore::open(dir.path()).expect("open");
        let password = b"correct horse battery staple";
        store
            .add("alice", password, BOTH, MIN_ITERATIONS)
            .expect("add");
        let bytes = std::fs::read(store.path()).expect("read");
        assert!(!bytes
            .windows(password.len())
            .any(|window| window == password));
        let metadata = std::fs::metadata(store.path()).expect("metadata");
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["version"], 1);
        assert_eq!(json["users"]["alice"][0]["mechanism"], "SCRAM-SHA-256");
    }

    #[test]
    fn a_broken_file_refuses_to_open_and_a_running_store_keeps_its_users() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = UserStore::open(dir.path()).expect("open");
        store
            .add("alice", b"pencil", BOTH, MIN_ITERATIONS)
            .expect("add");
        assert!(store.credential("alice", Mechanism::ScramSha256).is_some());
        std::fs::write(store.path(), b"{").expect("write");
        assert!(matches!(
            UserStore::open(dir.path()),
            Err(StoreError::Json { .. })
        ));
        assert!(store.credential("alice", Mechanism::ScramSha256).is_some());
    }

    #[test]
    fn a_file_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("security")).expect("mkdir");
        std::fs::write(
            dir.path().join("security/users.json"),
            br#"{"version": 2, "users": {}}"#,
        )
        .expect("write");
        assert!(matches!(
            UserStore::open(dir.path()),
            Err(StoreError::Json { .. })
        ));
    }
}
