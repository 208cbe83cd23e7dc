//! Hands the pages the allocators keep after a burst back to the kernel: glibc's (behind
//! librdkafka) and mimalloc's (behind every Rust allocation).
//!
//! Rust allocations in the `freshet` binary go through mimalloc, but librdkafka (C) allocates with
//! glibc's `malloc`: one small op per fetched message, and a tracker catching up keeps up to a
//! million of them queued. Once they are consumed and freed, glibc keeps the pages in its
//! arenas for reuse, so the process stays at its high-water mark: a tracker that had counted
//! 6.32 M distinct addresses (views off) sat at 357 MB resident, of which one `malloc_trim(0)`
//! returned 271 MB (to 86 MB). glibc has no setting that does this by itself: the memory is in
//! small chunks in the middle of the arenas, which only `malloc_trim` releases
//! (`GLIBC_TUNABLES=glibc.malloc.mmap_threshold` and `MALLOC_ARENA_MAX=1` changed nothing).
//!
//! mimalloc returns freed pages to the kernel only after a delay (1 s), and only when some
//! thread next allocates: a broker that received four 60 MiB requests and then went quiet
//! stayed at 354 MB resident (19 MB before) until the next request came. `mi_collect(true)`
//! purges every range whose delay has passed, from any thread, so memory follows the
//! connections that held it; pages reused within the delay are kept, as before.
//!
//! So the long-running commands start [`spawn_trimmer`], a thread calling `malloc_trim(0)` and
//! `mi_collect(true)` every few seconds. A call walks the free chunks of every arena (a few milliseconds for
//! hundreds of megabytes); pages freed while consuming are soon faulted back in, which costs
//! far less than the memory it returns when a node goes quiet.
//!
//! The trimmer cannot reach pages that another thread's heap still holds: mimalloc gives a
//! page that became empty back only when the thread that owns it next collects. A tracker
//! worker frees each checkpoint's deltas and encoded records once they are acknowledged, and
//! when its input goes quiet it allocates nothing more, so those pages stayed resident. Each
//! worker now collects its own heap after every checkpoint
//! ([`release_this_threads_free_pages`], called by the services' checkpointed loop): at 10 M
//! distinct addresses a tracker's settled memory went from 20.4 to 18.0 B per address with
//! views and from 6.9 to 5.3 without (means over 11 and 5 runs, docs/BENCHMARKS.md).
//!
//! Large glibc blocks are the other part. glibc serves a block of 128 KiB or more with a
//! mapping of its own, returned to the kernel when freed, but raises that threshold to the size
//! of each such block freed, up to 32 MiB. Once librdkafka's large blocks had raised it, they
//! came from the arenas and, freed, stayed resident: `malloc_trim` did not return them. The
//! long-running commands fix the threshold at 16 MiB ([`map_large_blocks_individually`]), as
//! `MALLOC_MMAP_THRESHOLD_` would. Settled memory of a tracker at 10 M distinct addresses with
//! views went from 5.9-12.4 B per address without a fixed threshold to 3.9-4.7 with one
//! (128 KiB, 1, 4 or 16 MiB gave the same; docs/BENCHMARKS.md). The highest of them keeps
//! the blocks below it (fetch responses, produced batches) recycled in the arenas instead of
//! freshly mapped and zeroed each time.
//!
//! This module holds the workspace's only `unsafe` code: four calls into C that take no
//! pointers.

use std::time::{Duration, Instant};

/// Time between two trims: short enough that memory follows load within seconds, long
/// enough that the arena walks cost nothing measurable.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// glibc blocks of at least this size get a mapping of their own, returned when freed.
const MMAP_THRESHOLD: libc::c_int = 16 << 20;

/// Fixes glibc's mmap threshold at 16 MiB (`MMAP_THRESHOLD`; see the module docs). Call it first
/// thing, before the C libraries allocate. Does nothing where the C allocator is not glibc's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn map_large_blocks_individually() {
    // SAFETY: `mallopt` takes no pointers; setting M_MMAP_THRESHOLD only changes where later
    // allocations come from, and glibc takes its own lock for it.
    let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if applied != 1 {
        tracing::warn!(
            "glibc refused a fixed mmap threshold; large freed blocks may stay resident"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn map_large_blocks_individually() {}

/// Starts the thread that trims glibc's heap every 2 s (`TRIM_INTERVAL`); it lives as long as the
/// process. Does nothing where the C allocator is not glibc's.
pub fn spawn_trimmer() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("heap-trim".into())
        .spawn(|| loop {
            std::thread::sleep(TRIM_INTERVAL);
            let started = Instant::now();
            let released = trim();
            tracing::trace!(released, took = ?started.elapsed(), "trimmed the C heap");
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the heap trimmer; memory freed by librdkafka stays resident");
    }
}

/// Returns free pages of every glibc arena and mimalloc's expired free ranges to the kernel;
/// true if glibc released any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: `mi_collect` takes no pointers; it collects the calling thread's heap and purges
    // the shared arenas under their own locks, which mimalloc allows from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
    // SAFETY: `malloc_trim` takes no pointers and has no preconditions; glibc takes each
    // arena's lock while it walks it, so calling it while other threads allocate is sound.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// Hands the pages the calling thread's mimalloc heap holds empty back to mimalloc (which
/// returns them to the kernel after its purge delay). For a thread that frees a burst and
/// then idles; a no-op where mimalloc is not the global allocator (tests), since its own
/// heap is then empty.
#[allow(unsafe_code)]
pub fn release_this_threads_free_pages() {
    // SAFETY: `mi_collect` takes no pointers; with `force = false` it frees the calling
    // thread's delayed frees and empty pages, which mimalloc allows at any time.
    unsafe { libmimalloc_sys::mi_collect(false) };
}
