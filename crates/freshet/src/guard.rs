//! `freshet guard` and the guard's settings in `freshet up`: accounts, logins, and the
//! blocker of brute-forced users.

use std::path::Path;

use anyhow::Context;
use freshet_api::guard::{GuardOptions, RateLimit};
use freshet_api::AppState;
use freshet_services::guard::accounts::Argon2Params;
use freshet_services::guard::rules::Rules;
use freshet_services::guard::secret::{GuardSecret, SECRET_FILE};
use freshet_services::guard::store::redact;
use freshet_services::guard::{Guard, GuardConfig};
use freshet_services::kafka::{wait_for_broker, BROKER_WAIT};
use freshet_services::KafkaConfig;

use crate::cli::{GuardArgs, GuardNodeArgs};
use crate::serve::{bind_http, http_tls, local_addr, runtime, scheme, serve_until_signal};

impl GuardArgs {
    /// The guard's settings; reads (or first creates) the secret file unless
    /// `--guard-secret` is given.
    pub fn to_config(&self, data_dir: &Path) -> anyhow::Result<GuardConfig> {
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("guard.db").display()));
        Ok(GuardConfig {
            argon2: Argon2Params {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                parallelism: self.argon2_parallelism,
            },
            group: self.guard_group.clone(),
            rules: Rules {
                max_failures: self.max_failures,
                window_ms: (self.window_secs * 1000) as i64,
                block_for_ms: self.block_for_secs.map(|s| (s * 1000) as i64),
            },
            ..GuardConfig::with_secret(url, self.secret(data_dir)?)
        })
    }

    /// `--guard-secret`, or the data directory's secret file.
    fn secret(&self, data_dir: &Path) -> anyhow::Result<GuardSecret> {
        let (secret, source) = match &self.guard_secret {
            Some(text) => (
                GuardSecret::parse(text).context("--guard-secret")?,
                "--guard-secret".to_string(),
            ),
            None => {
                let path = data_dir.join(SECRET_FILE);
                let secret = GuardSecret::load_or_create(&path).with_context(|| {
                    format!(
                        "the guard secret (fix {} or give one with --guard-secret)",
                        path.display()
                    )
                })?;
                (secret, path.display().to_string())
            }
        };
        // The fingerprint lets operators check that nodes share the key without showing it.
        tracing::info!(
            source,
            fingerprint = secret.fingerprint(),
            "guard records are signed; nodes sharing the guard's topics need the same fingerprint"
        );
        Ok(secret)
    }

    pub fn options(&self) -> GuardOptions {
        GuardOptions {
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            rate_limit: RateLimit {
                per_second: self.login_rate,
                burst: self.login_burst.max(1.0),
            },
            trust_forwarded_for: self.trust_forwarded_for,
        }
    }
}

/// Starts the guard, naming the database without its password when it fails.
pub async fn start(
    kafka: &KafkaConfig,
    args: &GuardArgs,
    data_dir: &Path,
) -> anyhow::Result<Guard> {
    let config = args.to_config(data_dir)?;
    let url = redact(&config.database_url);
    Guard::start(kafka, config)
        .await
        .with_context(|| format!("starting the guard (database {url})"))
}

/// The guard's shutdown waits for the blocker's last checkpoint: blocking, off the runtime.
pub async fn stop(guard: Guard) {
    if tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .is_err()
    {
        tracing::error!("the guard panicked while stopping");
    }
}

/// One guard node with its own HTTP API.
pub fn node(args: GuardNodeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let kafka = args
            .kafka_security
            .apply(KafkaConfig::new(&args.bootstrap_servers))?;
        wait_for_broker(&kafka, BROKER_WAIT).await?;
        let http = bind_http(args.http_listen).await?;
        let tls = http_tls(&args.http, None)?;
        let guard = start(&kafka, &args.guard, &args.data_dir).await?;
        eprintln!(
            "freshet: guard node in group {}; HTTP API on {}://{}{}",
            args.guard.guard_group,
            scheme(&tls),
            local_addr(&http),
            admin_note(&args.guard)
        );
        let state = AppState::new().with_guard(guard.handle(), args.guard.options());
        serve_until_signal(http, state, args.http.limits(), tls).await;
        stop(guard).await;
        Ok(())
    })
}

/// Said at start, so an operator knows why admin routes refuse every token (401).
pub fn admin_note(args: &GuardArgs) -> &'static str {
    if args.options().admin_token.is_some() {
        ""
    } else {
        " (admin routes disabled: no --admin-token)"
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        guard: GuardArgs,
    }

    fn args(extra: &[&str]) -> GuardArgs {
        let argv = std::iter::once("freshet").chain(extra.iter().copied());
        Command::try_parse_from(argv).expect("arguments").guard
    }

    fn fingerprint(args: &GuardArgs, dir: &Path) -> String {
        args.to_config(dir).expect("config").secret.fingerprint()
    }

    #[test]
    fn the_secret_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let first = fingerprint(&args(&[]), &data_dir);
        let path = data_dir.join(SECRET_FILE);
        let mode = std::fs::metadata(&path)
            .expect("created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let content = std::fs::read_to_string(&path).expect("readable");
        assert_eq!(content.trim().len(), 64, "32 bytes as hex");
        assert_eq!(
            fingerprint(&args(&[]), &data_dir),
            first,
            "reused on restart"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), content);
        let same = format!("--guard-secret={}", content.trim());
        assert_eq!(
            fingerprint(&args(&[&same]), dir.path()),
            first,
            "another machine"
        );
    }

    #[test]
    fn guard_secret_overrides_the_file_and_is_never_printed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = "ab".repeat(32);
        let given = args(&["--guard-secret", &key]);
        let expected = GuardSecret::parse(&key).expect("key").fingerprint();
        assert_eq!(fingerprint(&given, dir.path()), expected);
        assert!(!dir.path().join(SECRET_FILE).exists(), "no file is created");
        assert!(!format!("{given:?}").contains(&key));
        let short = args(&["--guard-secret", &"ab".repeat(31)]);
        let error = format!("{:#}", short.to_config(dir.path()).expect_err("31 bytes"));
        assert!(error.contains("at least 32"), "{error}");
        assert!(!error.contains(&"ab".repeat(31)), "{error}");
    }
}
