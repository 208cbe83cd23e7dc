//! The guard's secret file: created once, private, never replaced, the same key for every
//! node that starts on the data directory.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use freshet_services::guard::secret::{GuardSecret, SECRET_FILE};

#[test]
fn the_file_is_created_private_and_reused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join(SECRET_FILE);
    let created = GuardSecret::load_or_create(&path).expect("created");
    let mode = std::fs::metadata(&path)
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let content = std::fs::read_to_string(&path).expect("readable");
    assert_eq!(
        content.trim().len(),
        64,
        "32 random bytes as hex: {content:?}"
    );

    let reused = GuardSecret::load_or_create(&path).expect("reused");
    assert_eq!(reused.fingerprint(), created.fingerprint());
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), content);
    let given = GuardSecret::parse(&content).expect("the file's text is a valid --guard-secret");
    assert_eq!(given.fingerprint(), created.fingerprint());
}

#[test]
fn an_existing_file_is_never_replaced_even_when_unusable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(SECRET_FILE);
    std::fs::write(&path, "too short\n").expect("written");
    let error = GuardSecret::load_or_create(&path).expect_err("not a key");
    assert!(error.to_string().contains(SECRET_FILE), "{error}");
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "too short\n");
}

#[test]
fn nodes_starting_together_all_use_the_one_key_on_disk() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(SECRET_FILE);
        let nodes: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || GuardSecret::load_or_create(&path).expect("secret"))
            })
            .collect();
        let fingerprints: BTreeSet<String> = nodes
            .into_iter()
            .map(|node| node.join().expect("node").fingerprint())
            .collect();
        let on_disk = GuardSecret::load_or_create(&path).expect("secret");
        assert_eq!(
            fingerprints.into_iter().collect::<Vec<_>>(),
            [on_disk.fingerprint()]
        );
        let entries = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(entries, 1, "no temporary file is left behind");
    }
}
