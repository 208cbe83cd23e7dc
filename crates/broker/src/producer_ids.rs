//! Durable allocation of idempotent-producer ids.
//!
//! Ids are handed out from blocks; the end of the current block is fsynced before any id in it
//! is used, so after a crash the broker continues after that block and never reuses an id
//! (which would let a new producer collide with an old one's sequence state in the logs).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::topics::write_atomically;

const BLOCK_SIZE: i64 = 1000;

#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    /// `(next id to hand out, end of the durable block)`.
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join("producer-ids");
        let block_end = match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIds {
            path,
            state: Mutex::new((block_end, block_end)),
        })
    }

    /// The next unused producer id.
    pub fn allocate(&self) -> io::Result<i64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (next, block_end) = *state;
        if next >= block_end {
            let new_end = next + BLOCK_SIZE;
            write_atomically(&self.path, new_end.to_string().as_bytes())?;
            state.1 = new_end;
        }
        state.0 = next + 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = ProducerIds::open(dir.path()).expect("open");
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().expect("id")).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(ids);
        let reopened = ProducerIds::open(dir.path()).expect("reopen");
        let next = reopened.allocate().expect("id");
        assert!(next > 2, "id {next} reused after restart");
    }
}
