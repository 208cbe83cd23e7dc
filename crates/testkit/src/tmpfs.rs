//! A small tmpfs for disk-full tests: mounted on a temporary directory, filled to a chosen
//! headroom, unmounted when dropped. Mounting needs root, so tests using it are `#[ignore]`d
//! and run from `.ci/run`; without root they fail with a message, never pass.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a temporary directory for the life of the value.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `"8m"`).
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "freshet-test"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => Tmpfs { dir },
            other => panic!(
                "cannot mount a tmpfs on {} ({other:?}): this test needs root (.ci/run runs it \
                 as root with --ignored)",
                dir.path().display()
            ),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full, then gives back `spare` bytes of it: a disk
    /// nearly full, where small files still fit and a large write does not. Returns its path.
    pub fn fill(&self, spare: u64) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xa5_u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let len = file.metadata().expect("filler size").len();
        file.set_len(len.saturating_sub(spare))
            .expect("give space back");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a broker thread that still holds a file open must not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}
