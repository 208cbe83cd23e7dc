//! `freshet generate`: sends device events with a progress bar, then prints what the broker
//! acknowledged and exactly how many distinct device IPs that was.

use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use freshet_services::generator::{self, GeneratorParams, GeneratorSummary, JobProgress};
use freshet_services::kafka::{wait_for_broker, BROKER_WAIT};
use freshet_services::{GeneratorError, KafkaConfig};
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

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
        "freshet generate: {} events from {} devices to {} at {} ({} compression, seed {seed})",
        HumanCount(params.num_messages),
        HumanCount(params.num_devices),
        params.topic,
        args.kafka.bootstrap_servers,
        params.compression
    );
    let kafka = args.kafka.to_config()?;
    check_broker(&kafka)?;
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
        compression: args.compression,
    }
}

/// Fails within [`BROKER_WAIT`] when no broker answers at the bootstrap servers, rather than
/// after librdkafka's own timeouts.
fn check_broker(kafka: &KafkaConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime to reach the cluster")?;
    Ok(runtime.block_on(wait_for_broker(kafka, BROKER_WAIT))?)
}

type Worker = JoinHandle<Result<GeneratorSummary, GeneratorError>>;

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
    bar.set_style(progress_style());
    bar
}

/// Counts with thousands separators (`1,234,567/10,000,000`) and the rate in whole events a
/// second (`48,213/s`): indicatif's `{per_sec}` prints four decimals of a rate that moves
/// every tick.
fn progress_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "[{elapsed_precise}] [{bar:40}] {human_pos}/{human_len} ({rate}, eta {eta}) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = out.write_str(&rate_text(state.per_sec()));
        },
    )
    .progress_chars("=> ")
}

/// Events a second, rounded to a whole number, with thousands separators.
fn rate_text(per_sec: f64) -> String {
    // `as` saturates: NaN (no time passed) is 0, infinity the largest count.
    format!("{}/s", HumanCount(per_sec.round() as u64))
}

fn show(bar: &ProgressBar, progress: &JobProgress) {
    bar.set_position(progress.sent() + progress.failed());
    if !progress.is_cancelled() {
        bar.set_message(format!(
            "{} distinct IPs",
            HumanCount(progress.distinct_ips())
        ));
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn text(&self) -> String {
            self.0.lock().map(|text| text.clone()).unwrap_or_default()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, line: &str) -> io::Result<()> {
            self.write_str(&format!("{line}\n"))
        }
        fn write_str(&self, text: &str) -> io::Result<()> {
            if let Ok(mut screen) = self.0.lock() {
                screen.push_str(text);
            }
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rates_are_whole_numbers_with_separators() {
        assert_eq!(rate_text(0.0), "0/s");
        assert_eq!(rate_text(9.4), "9/s");
        assert_eq!(rate_text(999.5), "1,000/s");
        assert_eq!(rate_text(48_213.456_7), "48,213/s");
        assert_eq!(rate_text(1_234_567.89), "1,234,568/s");
        assert_eq!(rate_text(f64::NAN), "0/s");
    }

    #[test]
    fn the_bar_shows_counts_with_separators_and_a_whole_rate() {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(
            Some(10_000_000),
            ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        bar.set_style(progress_style());
        bar.set_position(1_234_567);
        bar.set_message("4,321 distinct IPs");
        bar.tick();
        std::thread::sleep(Duration::from_millis(50));
        bar.set_position(2_345_678);
        bar.tick();
        let text = screen.text();
        assert!(text.contains("2,345,678/10,000,000 ("), "{text}");
        assert!(text.contains("4,321 distinct IPs"), "{text}");
        let line = text.lines().last().unwrap_or_default().to_string();
        let rate = line
            .split(" (")
            .nth(1)
            .and_then(|rest| rest.split("/s, eta").next())
            .unwrap_or_else(|| panic!("no rate in {line:?}"));
        assert!(
            !rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit() || c == ','),
            "the rate {rate:?} is a whole number: {line:?}"
        );
        bar.finish_and_clear();
    }
}
