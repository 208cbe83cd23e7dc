//! `freshet log dump <segment>`.

use std::path::Path;

use anyhow::Context;

pub fn dump(segment: &Path) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    freshet_log::dump_segment(segment, &mut out)
        .with_context(|| format!("dumping {}", segment.display()))
}
