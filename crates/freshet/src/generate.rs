//! `freshet generate`: sends device events with a progress bar, then prints what the broker
//! acknowledged and exactly how many distinct device IPs that was.

use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use freshet_services::generator::{self, GeneratorParams, GeneratorSummary, JobProgress};
use freshet_services::{KafkaConfig, ServiceError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::GenerateArgs;

/// How often the progress bar is refreshed and the worker checked.
const TICK: Duration = Duration::from_millis(100);

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let mut params = params_from(&args);
    params.validate()?;
    // Chosen here rather than inside the run so it is printed before anything is sent: a run
    // that dies half-way can still be replayed.
    let seed = *params.seed.get_or_insert_with(generator::random_seed);
    eprintln!(
        "freshet generate: {} events from {} devices to {} at {} (seed {seed})",
        params.num_messages, params.num_devices, params.topic, args.kafka.bootstrap_servers
    );
    let kafka = args.kafka.to_config()?;
    let progress = Arc::new(JobProgress::new());
    let worker = start_worker(kafka, params.clone(), Arc::clone(&progress))?;
    let interrupted = watch(&worker, &progress, params.num_messages)?;
    let summary = worker
        .join()
        .map_err(|_| anyhow!("the generator thread panicked"))??;
    report(&summary, &params, args.json)?;
    if interrupted {
        bail!(
            "interrupted: {} of {} events sent",
            summary.sent,
            params.num_messages
        );
    }
    if summary.failed > 0 {
        bail!("{} events could not be delivered", summary.failed);
    }
    Ok(())
}

/// The flags as generator parameters; `--pause-ms` defaults to 100 only without `--rate`.
fn params_from(args: &GenerateArgs) -> GeneratorParams {
    let default_pause = match args.rate {
        Some(_) => 0,
        None => GeneratorParams::default().pause_ms,
    };
    GeneratorParams {
        num_devices: args.num_devices,
        num_messages: args.num_messages,
        pause_ms: args.pause_ms.unwrap_or(default_pause),
        rate: args.rate,
        seed: args.seed,
        ipv6_percent: args.ipv6_percent,
        topic: args.topic.clone(),
        round_robin: args.round_robin,
    }
}

type Worker = JoinHandle<Result<GeneratorSummary, ServiceError>>;

fn start_worker(
    kafka: KafkaConfig,
    params: GeneratorParams,
    progress: Arc<JobProgress>,
) -> anyhow::Result<Worker> {
    std::thread::Builder::new()
        .name("generator".into())
        .spawn(move || generator::run(&kafka, &params, &progress))
        .context("starting the generator thread")
}

/// Shows progress until the worker ends. The first Ctrl-C (or SIGTERM) cancels the run (it
/// still waits for what it queued), a second one exits at once. Returns whether the run was
/// interrupted.
fn watch(worker: &Worker, progress: &JobProgress, total: u64) -> anyhow::Result<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let bar = progress_bar(total);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let interrupted = runtime.block_on(async {
        // Listening from the start, so a signal between two ticks is not missed.
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut ticks = tokio::time::interval(TICK);
        let mut interrupted = false;
        while !worker.is_finished() {
            tokio::select! {
                _ = interrupt.recv() => interrupted = interrupt_once(interrupted, &bar, progress),
                _ = terminate.recv() => interrupted = interrupt_once(interrupted, &bar, progress),
                _ = ticks.tick() => show(&bar, progress),
            }
        }
        anyhow::Ok(interrupted)
    })?;
    show(&bar, progress);
    bar.finish_and_clear();
    Ok(interrupted)
}

/// Cancels the run on the first signal; exits the process on the second.
fn interrupt_once(already: bool, bar: &ProgressBar, progress: &JobProgress) -> bool {
    if already {
        bar.abandon();
        eprintln!("freshet generate: interrupted again, exiting without waiting");
        std::process::exit(130);
    }
    progress.cancel();
    bar.set_message("interrupted: waiting for queued events to be acknowledged");
    true
}

/// A bar on stderr; indicatif draws nothing when stderr is not a terminal.
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "[{elapsed_precise}] [{bar:40}] {pos}/{len} ({per_sec}, eta {eta}) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

fn show(bar: &ProgressBar, progress: &JobProgress) {
    bar.set_position(progress.sent() + progress.failed());
    if !progress.is_cancelled() {
        bar.set_message(format!("{} distinct IPs", progress.distinct_ips()));
    }
}

/// The human summary (stdout, or stderr with `--json`), then the JSON line on stdout.
fn report(summary: &GeneratorSummary, params: &GeneratorParams, json: bool) -> anyhow::Result<()> {
    let human = format!(
        "sent {} events to {} ({} failed) in {:.2} s: {:.0} events/s\n\
         distinct device IPs among them: {} (pool of {} devices), seed {}",
        summary.sent,
        summary.topic,
        summary.failed,
        summary.elapsed_ms as f64 / 1000.0,
        summary.events_per_sec,
        summary.distinct_ips,
        params.num_devices,
        summary.seed
    );
    let mut stdout = std::io::stdout().lock();
    if json {
        eprintln!("{human}");
        writeln!(stdout, "{}", serde_json::to_string(summary)?)?;
    } else {
        writeln!(stdout, "{human}")?;
    }
    stdout.flush()?;
    Ok(())
}
