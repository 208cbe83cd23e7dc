//! `freshet acls add|remove|list` as an operator runs them: the real binary on a temporary
//! data directory, with kafka-acls.sh's flags.

use std::path::Path;
use std::process::Output;

use crate::common;
use common::freshet;

fn acls(dir: &Path, args: &[&str]) -> Output {
    freshet()
        .arg("acls")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run freshet acls")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Removes one of the ACLs the first test adds.
const REMOVE_ALICES_WRITE: &[&str] = &[
    "remove",
    "--allow-principal",
    "User:alice",
    "--operation",
    "Write",
    "--topic",
    "orders",
    "--resource-pattern-type",
    "prefixed",
];

#[test]
fn acls_are_added_listed_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let added = acls(
        dir.path(),
        &[
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "read",
            "--operation",
            "Write",
            "--topic",
            "orders",
            "--group",
            "alice-",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert_eq!(text(&added.stderr).matches("added").count(), 4);

    let listed = acls(dir.path(), &["list", "--topic", "orders"]);
    assert!(listed.status.success());
    let table = text(&listed.stdout);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("User:alice is allowed Read on Topic orders (prefixed) from host *"));

    let json = acls(dir.path(), &["list", "--json", "--principal", "User:alice"]);
    let bindings: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(bindings.as_array().map(Vec::len), Some(4));

    let removed = acls(dir.path(), REMOVE_ALICES_WRITE);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let left = acls(dir.path(), &["list", "--json"]);
    let bindings: serde_json::Value = serde_json::from_slice(&left.stdout).expect("json");
    assert_eq!(bindings.as_array().map(Vec::len), Some(3));

    // Removing what is not there fails and says so.
    let again = acls(dir.path(), REMOVE_ALICES_WRITE);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("no such ACL"));
}

#[test]
fn incomplete_or_invalid_acls_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, expected) in [
        (
            &["add", "--allow-principal", "User:a", "--operation", "Read"][..],
            "name at least one resource",
        ),
        (
            &["add", "--operation", "Read", "--topic", "t"][..],
            "name at least one principal",
        ),
        (
            &[
                "add",
                "--allow-principal",
                "alice",
                "--operation",
                "Read",
                "--topic",
                "t",
            ][..],
            "Type:name",
        ),
        (
            &[
                "add",
                "--allow-principal",
                "User:a",
                "--operation",
                "Eat",
                "--topic",
                "t",
            ][..],
            "unknown operation",
        ),
        (
            &[
                "add",
                "--allow-principal",
                "User:a",
                "--operation",
                "Read",
                "--topic",
                "t",
                "--host",
                "example.com",
            ][..],
            "neither * nor an IP address",
        ),
    ] {
        let output = acls(dir.path(), args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            text(&output.stderr).contains(expected),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}
