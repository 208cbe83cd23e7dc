//! The account store and the accounts on it, against a real SQLite file and (under
//! `.ci/run`, which starts Debian's PostgreSQL) a real PostgreSQL server. Both backends run
//! the same checks.

use freshet_services::guard::accounts::{Accounts, Argon2Params};
use freshet_services::guard::store::Store;
use freshet_services::GuardError;

/// Cheap parameters: these tests check behaviour, not cost.
const FAST: Argon2Params = Argon2Params {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

/// Names unique to this run, so a reused database never already has them.
fn name(base: &str) -> String {
    format!(
        "{base}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn accounts_behave(store: Store) {
    let accounts = Accounts::new(store.clone(), FAST).await.expect("accounts");
    let alice = name("alice");
    accounts
        .register(&alice, "correct1horse")
        .await
        .expect("registers");

    let hash = store
        .password_hash(&alice)
        .await
        .expect("query")
        .expect("stored");
    assert!(
        hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
        "an Argon2id PHC string with the configured parameters: {hash}"
    );
    assert!(!hash.contains("correct1horse"));

    assert!(accounts
        .verify(&alice, "correct1horse")
        .await
        .expect("verify"));
    assert!(!accounts
        .verify(&alice, "wrong1horse")
        .await
        .expect("verify"));
    assert!(!accounts
        .verify(&name("nobody"), "correct1horse")
        .await
        .expect("an unknown user is a plain false"));

    match accounts.register(&alice, "other1pass").await {
        Err(error @ GuardError::UserExists { .. }) => {
            assert!(error.to_string().contains("already exists"), "{error}")
        }
        other => panic!("a taken name: {other:?}"),
    }
    assert!(
        accounts
            .verify(&alice, "correct1horse")
            .await
            .expect("verify"),
        "the failed registration left the password as it was"
    );
    match accounts.register(&name("bob"), "short1").await {
        Err(GuardError::Invalid(reason)) => assert!(reason.contains("at least 8")),
        other => panic!("a short password: {other:?}"),
    }
}

async fn concurrent_registrations_of_one_name_create_one_account(store: Store) {
    let accounts = Accounts::new(store, FAST).await.expect("accounts");
    let carol = name("carol");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let accounts = accounts.clone();
            let carol = carol.clone();
            tokio::spawn(async move { accounts.register(&carol, &format!("pass{i}word")).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => created += 1,
            Err(GuardError::UserExists { .. }) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(created, 1);
}

#[tokio::test]
async fn sqlite_accounts_hash_verify_and_refuse_taken_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/nested/guard.db", dir.path().display());
    accounts_behave(Store::connect(&url).await.expect("connects")).await;
}

#[tokio::test]
async fn sqlite_concurrent_registrations_of_one_name_create_one_account() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/guard.db", dir.path().display());
    concurrent_registrations_of_one_name_create_one_account(
        Store::connect(&url).await.expect("connects"),
    )
    .await;
}

#[tokio::test]
async fn sqlite_accounts_survive_a_restart_and_migrations_run_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/guard.db", dir.path().display());
    let store = Store::connect(&url).await.expect("connects");
    let accounts = Accounts::new(store.clone(), FAST).await.expect("accounts");
    accounts
        .register("dave", "dave1234")
        .await
        .expect("registers");
    store.close().await;

    let reopened = Store::connect(&url)
        .await
        .expect("reconnects and migrates again");
    assert_eq!(reopened.user_count().await.expect("count"), 1);
    let accounts = Accounts::new(reopened, FAST).await.expect("accounts");
    assert!(accounts.verify("dave", "dave1234").await.expect("verify"));
}

#[tokio::test]
async fn an_unknown_database_scheme_is_refused() {
    match Store::connect("mysql://localhost/guard").await {
        Err(error @ GuardError::UnknownDatabase { .. }) => {
            assert!(error.to_string().contains("sqlite"), "{error}")
        }
        other => panic!("{other:?}"),
    }
}

fn postgres_url() -> String {
    std::env::var("FRESHET_TEST_DATABASE_URL")
        .expect("FRESHET_TEST_DATABASE_URL names the PostgreSQL server (.ci/run sets it)")
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn postgres_accounts_hash_verify_and_refuse_taken_names() {
    let store = Store::connect(&postgres_url()).await.expect("connects");
    assert_eq!(store.backend(), "postgres");
    accounts_behave(store).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn postgres_concurrent_registrations_of_one_name_create_one_account() {
    let store = Store::connect(&postgres_url()).await.expect("connects");
    concurrent_registrations_of_one_name_create_one_account(store).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run by .ci/run"]
async fn postgres_migrations_apply_once_across_reconnects() {
    let first = Store::connect(&postgres_url()).await.expect("connects");
    let count = first.user_count().await.expect("count");
    first.close().await;
    let second = Store::connect(&postgres_url()).await.expect("reconnects");
    assert_eq!(second.user_count().await.expect("count"), count);
}
