//! `freshet users add|remove|list` as an operator runs them: the real binary on a temporary
//! data directory, passwords from the environment or standard input.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use crate::common;
use common::freshet;

/// Runs `freshet users ARGS --data-dir DIR` with extra environment and standard input.
fn users(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut command = freshet();
    command
        .arg("users")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start freshet");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("freshet output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "status {}; stderr: {}",
        output.status,
        text(&output.stderr)
    );
}

fn assert_failure(output: &Output, message: &str) {
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        text(&output.stderr)
    );
    assert!(
        text(&output.stderr).contains(message),
        "stderr {:?} lacks {message:?}",
        text(&output.stderr)
    );
}

fn list_json(dir: &Path) -> serde_json::Value {
    let output = users(dir, &["list", "--json"], &[], b"");
    assert_success(&output);
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[test]
fn adds_lists_and_removes_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = "s3cret-from-env";
    let added = users(
        dir.path(),
        &["add", "alice"],
        &[("FRESHET_USER_PASSWORD", password)],
        b"",
    );
    assert_success(&added);
    assert!(
        text(&added.stderr)
            .contains("added user alice (SCRAM-SHA-256, SCRAM-SHA-512, 8192 iterations)"),
        "{}",
        text(&added.stderr)
    );
    let file = std::fs::read(dir.path().join("security/users.json")).expect("users file");
    assert!(!text(&file).contains(password));

    let added = users(
        dir.path(),
        &[
            "add",
            "bob",
            "--password-stdin",
            "--mechanism",
            "SCRAM-SHA-512",
            "--iterations",
            "4096",
        ],
        &[],
        b"from stdin\n",
    );
    assert_success(&added);

    let table = users(dir.path(), &["list"], &[], b"");
    assert_success(&table);
    let table = text(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("NAME"));
    assert!(lines[1].starts_with("alice"));
    assert!(lines[1].contains("SCRAM-SHA-256 (8192 iterations), SCRAM-SHA-512 (8192 iterations)"));
    assert!(lines[2].starts_with("bob"));
    assert!(lines[2].contains("SCRAM-SHA-512 (4096 iterations)"));

    assert_eq!(
        list_json(dir.path())[1],
        serde_json::json!({
            "name": "bob",
            "mechanisms": [{ "mechanism": "SCRAM-SHA-512", "iterations": 4096 }]
        })
    );

    assert_success(&users(dir.path(), &["remove", "alice"], &[], b""));
    let remaining = list_json(dir.path());
    assert_eq!(remaining.as_array().map(Vec::len), Some(1));
    assert_eq!(remaining[0]["name"], "bob");
    assert_failure(
        &users(dir.path(), &["remove", "alice"], &[], b""),
        "no user \"alice\"",
    );
}

#[test]
fn add_needs_exactly_one_non_empty_password_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_failure(
        &users(dir.path(), &["add", "alice"], &[], b"ignored\n"),
        "no password",
    );
    assert_failure(
        &users(
            dir.path(),
            &["add", "alice", "--password-stdin"],
            &[("FRESHET_USER_PASSWORD", "x")],
            b"y\n",
        ),
        "not both",
    );
    assert_failure(
        &users(
            dir.path(),
            &["add", "alice", "--password-stdin"],
            &[],
            b"\n",
        ),
        "password is empty",
    );
    assert_failure(
        &users(
            dir.path(),
            &["add", " alice"],
            &[("FRESHET_USER_PASSWORD", "x")],
            b"",
        ),
        "whitespace",
    );
    assert_eq!(list_json(dir.path()), serde_json::json!([]));
}

#[test]
fn unknown_mechanisms_and_iteration_counts_out_of_range_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("FRESHET_USER_PASSWORD", "x")];
    for args in [
        &["add", "alice", "--mechanism", "scram-sha-256"][..],
        &["add", "alice", "--iterations", "1000"][..],
    ] {
        let output = users(dir.path(), args, &env, b"");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}
