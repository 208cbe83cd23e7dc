//! Accounts: registration and password checks, with Argon2id hashes in the [`Store`].
//!
//! Hashing takes tens of milliseconds of CPU by design, so it runs on the blocking pool (never
//! on an async worker), at most a few at a time (a flood of logins queues instead of starving
//! everything else). A login for a user that does not exist verifies the password against a
//! dummy hash made with the same parameters, so it takes as long as a wrong password and an
//! attacker cannot tell the two apart by timing.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use super::now_ms;
use super::store::Store;
use super::GuardError;

/// Shortest user name accepted at registration (as in the old login service).
pub const MIN_USER_CHARS: usize = 3;
/// Longest user name: a key in Kafka topics and the database, so kept small.
pub const MAX_USER_CHARS: usize = 64;
/// Shortest password accepted at registration (as in the old login service).
pub const MIN_PASS_CHARS: usize = 8;
/// Longest password: bounds the work an attacker can ask of the hasher per request.
pub const MAX_PASS_CHARS: usize = 128;

/// Argon2id cost parameters of new hashes. Existing hashes keep theirs (it is in the string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory per hash in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommended minimum for Argon2id (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        Argon2Params {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    fn hasher(&self) -> Result<Argon2<'static>, GuardError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(GuardError::Argon2Params)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// The hasher and the dummy hash checked when a user does not exist.
struct Hasher {
    argon: Argon2<'static>,
    dummy: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    fn hash(&self, pass: &str) -> Result<String, GuardError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(pass.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(GuardError::Hash)
    }

    /// Whether `pass` matches `stored`; the dummy hash when there is no user, so both cases
    /// do the same work. A stored hash that does not parse matches nothing.
    fn verify(&self, pass: &str, stored: Option<&str>) -> bool {
        let exists = stored.is_some();
        let Ok(hash) = PasswordHash::new(stored.unwrap_or(&self.dummy)) else {
            tracing::error!("a stored password hash does not parse; the login is refused");
            return false;
        };
        let matches = self.argon.verify_password(pass.as_bytes(), &hash).is_ok();
        matches && exists
    }
}

/// Registration and login checks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: Store,
    hasher: Arc<Hasher>,
    /// Hashes running at once.
    permits: Arc<Semaphore>,
}

impl Accounts {
    /// Accounts over `store`, hashing new passwords with `params`.
    pub async fn new(store: Store, params: Argon2Params) -> Result<Accounts, GuardError> {
        let argon = params.hasher()?;
        // The dummy is a real hash of a random password with the live parameters: verifying
        // against it costs exactly what verifying a real user's hash costs.
        let dummy_pass = uuid::Uuid::new_v4().to_string();
        let hasher = run_blocking(move || {
            let hasher = Hasher {
                argon,
                dummy: String::new(),
            };
            let dummy = hasher.hash(&dummy_pass)?;
            Ok(Hasher { dummy, ..hasher })
        })
        .await?;
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Accounts {
            store,
            hasher: Arc::new(hasher),
            permits: Arc::new(Semaphore::new(parallel)),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates an account after checking the name and password rules. A taken name is a
    /// [`GuardError::UserExists`].
    pub async fn register(&self, user: &str, pass: &str) -> Result<(), GuardError> {
        validate_new_user(user)?;
        validate_new_password(pass)?;
        let hash = self.hash(pass.to_string()).await?;
        if self.store.insert_user(user, &hash, now_ms()).await? {
            tracing::info!(user, "account registered");
            Ok(())
        } else {
            Err(GuardError::UserExists {
                user: user.to_string(),
            })
        }
    }

    /// Whether `user` exists and `pass` is its password. Takes the same time either way.
    pub async fn verify(&self, user: &str, pass: &str) -> Result<bool, GuardError> {
        validate_login(user, pass)?;
        let stored = self.store.password_hash(user).await?;
        let hasher = self.hasher.clone();
        let pass = pass.to_string();
        let _permit = self.permit().await?;
        run_blocking(move || Ok(hasher.verify(&pass, stored.as_deref()))).await
    }

    async fn hash(&self, pass: String) -> Result<String, GuardError> {
        let hasher = self.hasher.clone();
        let _permit = self.permit().await?;
        run_blocking(move || hasher.hash(&pass)).await
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, GuardError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| GuardError::HasherClosed)
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, GuardError> + Send + 'static,
) -> Result<T, GuardError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(GuardError::HashTask)?
}

fn invalid(reason: impl Into<String>) -> GuardError {
    GuardError::Invalid(reason.into())
}

/// Name rules at registration: 3 to 64 characters, no control characters, no surrounding
/// spaces (two names that look the same must be the same name).
pub fn validate_new_user(user: &str) -> Result<(), GuardError> {
    let chars = user.chars().count();
    if chars < MIN_USER_CHARS {
        return Err(invalid(format!(
            "user must be at least {MIN_USER_CHARS} characters long"
        )));
    }
    if chars > MAX_USER_CHARS {
        return Err(invalid(format!(
            "user must be at most {MAX_USER_CHARS} characters long"
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(invalid("user must not contain control characters"));
    }
    if user.trim() != user {
        return Err(invalid("user must not start or end with spaces"));
    }
    Ok(())
}

/// Password rules at registration: 8 to 128 characters with at least one letter and one digit.
pub fn validate_new_password(pass: &str) -> Result<(), GuardError> {
    let chars = pass.chars().count();
    if chars < MIN_PASS_CHARS {
        return Err(invalid(format!(
            "pass must be at least {MIN_PASS_CHARS} characters long"
        )));
    }
    if chars > MAX_PASS_CHARS {
        return Err(invalid(format!(
            "pass must be at most {MAX_PASS_CHARS} characters long"
        )));
    }
    let letter = pass.chars().any(char::is_alphabetic);
    let digit = pass.chars().any(|c| c.is_ascii_digit());
    if !(letter && digit) {
        return Err(invalid("pass must contain both letters and digits"));
    }
    Ok(())
}

/// What a login must look like before any lookup: both present and within the length limits.
/// These checks do not depend on the account, so they reveal nothing about it.
pub fn validate_login(user: &str, pass: &str) -> Result<(), GuardError> {
    if user.is_empty() || pass.is_empty() {
        return Err(invalid("user and pass are required"));
    }
    if user.chars().count() > MAX_USER_CHARS {
        return Err(invalid(format!(
            "user must be at most {MAX_USER_CHARS} characters long"
        )));
    }
    if pass.chars().count() > MAX_PASS_CHARS {
        return Err(invalid(format!(
            "pass must be at most {MAX_PASS_CHARS} characters long"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules_name_the_broken_rule() {
        let cases = [
            ("al", "abcdefg1", "at least 3"),
            (&"u".repeat(65), "abcdefg1", "at most 64"),
            ("bob\n", "abcdefg1", "control characters"),
            (" bob", "abcdefg1", "spaces"),
            ("bob", "abc1", "at least 8"),
            ("bob", "abcdefgh", "letters and digits"),
            ("bob", "12345678", "letters and digits"),
            ("bob", &format!("a1{}", "x".repeat(127)), "at most 128"),
        ];
        for (user, pass, reason) in cases {
            let result = validate_new_user(user).and_then(|()| validate_new_password(pass));
            match result {
                Err(GuardError::Invalid(text)) => {
                    assert!(text.contains(reason), "{user:?}/{pass:?}: {text}")
                }
                other => panic!("{user:?}/{pass:?}: {other:?}"),
            }
        }
        assert!(validate_new_user("bob").is_ok());
        assert!(validate_new_password("hunter22").is_ok());
    }

    #[test]
    fn login_checks_only_presence_and_length() {
        assert!(validate_login("", "x").is_err());
        assert!(validate_login("x", "").is_err());
        assert!(validate_login(&"u".repeat(65), "x").is_err());
        assert!(validate_login("u", &"p".repeat(129)).is_err());
        assert!(validate_login("u", "p").is_ok());
    }
}
