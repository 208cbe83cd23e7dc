//! Generator runs in the background, for the HTTP API: start, watch, list, cancel.
//!
//! Jobs live in this process's memory only: they are not written anywhere, a restart forgets
//! every one of them (a running job stops with the process), and job ids count from 1 again.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use utoipa::ToSchema;

use super::format::rfc3339_millis;
use super::{random_seed, run, GeneratorError, GeneratorParams, GeneratorSummary, JobProgress};
use crate::error::full_message;
use crate::panics::{self, PanicSite};
use crate::KafkaConfig;

/// Finished jobs beyond this many are forgotten, oldest first; running jobs are always kept.
pub const KEPT_JOBS: usize = 100;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Sending (or waiting for the last acknowledgements).
    Running,
    /// Every event was queued and then acknowledged or failed.
    Completed,
    /// The run stopped with an error (see `error`).
    Failed,
    /// Stopped on request; what it had queued was still delivered.
    Cancelled,
}

/// A job as the API reports it. Jobs are kept in memory only: a restart forgets them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobStatus {
    /// Job id, counting from 1 since the process started.
    pub id: u64,
    pub state: JobState,
    /// The parameters it runs with; `seed` is always set (chosen at start when not given).
    pub params: GeneratorParams,
    /// Events handed to the producer so far.
    pub queued: u64,
    /// Events the broker acknowledged so far.
    pub sent: u64,
    /// Events that could not be delivered so far.
    pub failed: u64,
    /// Distinct device addresses among the acknowledged events so far.
    pub distinct_ips: u64,
    /// Share of `num_messages` acknowledged or failed, from 0.0 to 1.0.
    pub progress: f64,
    /// Estimated seconds until every event is acknowledged or failed, rounded up: the events
    /// left of `num_messages` at the rate acknowledged or failed since sending started. Null
    /// until that rate is known (no event has been acknowledged or failed yet), and once the
    /// job has ended.
    pub eta_secs: Option<u64>,
    /// When the job started, RFC 3339 UTC with milliseconds.
    pub started_at: String,
    /// When it ended (null while running).
    pub finished_at: Option<String>,
    /// Milliseconds since the start, or from start to end once it ended.
    pub elapsed_ms: u64,
    /// Why it failed (null unless `state` is `failed`).
    pub error: Option<String>,
    /// The run's summary once it ended without an error.
    pub summary: Option<GeneratorSummary>,
}

/// The background jobs of one process. Cheap to clone: clones share the jobs.
#[derive(Debug, Clone)]
pub struct GeneratorJobs {
    kafka: KafkaConfig,
    registry: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    last_id: u64,
    /// Oldest first.
    jobs: VecDeque<Arc<Job>>,
}

#[derive(Debug)]
struct Job {
    id: u64,
    params: GeneratorParams,
    progress: JobProgress,
    started_at: SystemTime,
    outcome: Mutex<Option<Outcome>>,
}

#[derive(Debug)]
struct Outcome {
    finished_at: SystemTime,
    result: Result<GeneratorSummary, String>,
}

impl GeneratorJobs {
    pub fn new(kafka: KafkaConfig) -> Self {
        GeneratorJobs {
            kafka,
            registry: Arc::default(),
        }
    }

    /// Validates `params` and starts a job on a thread of its own; returns at once. The seed
    /// is chosen here when not given, so the status shows it from the start.
    pub fn start(&self, params: GeneratorParams) -> Result<JobStatus, GeneratorError> {
        self.start_with(params, run)
    }

    /// [`start`](Self::start) with the work a job does given, so tests can make it fail or
    /// panic.
    fn start_with(
        &self,
        mut params: GeneratorParams,
        work: impl FnOnce(
                &KafkaConfig,
                &GeneratorParams,
                &JobProgress,
            ) -> Result<GeneratorSummary, GeneratorError>
            + Send
            + 'static,
    ) -> Result<JobStatus, GeneratorError> {
        params.validate()?;
        params.seed = Some(params.seed.unwrap_or_else(random_seed));
        let job = self.register(params);
        let kafka = self.kafka.clone();
        let worker = Arc::clone(&job);
        std::thread::Builder::new()
            .name(format!("generator-{}", job.id))
            .spawn(move || worker.run_to_end(&kafka, work))
            .map_err(|source| {
                let error = GeneratorError::Start {
                    what: "a thread for the job",
                    source,
                };
                job.finish(Err(full_message(&error)));
                error
            })?;
        Ok(job.status())
    }

    pub fn get(&self, id: u64) -> Option<JobStatus> {
        self.find(id).map(|job| job.status())
    }

    /// Every kept job, newest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let jobs: Vec<Arc<Job>> = self.lock().jobs.iter().rev().cloned().collect();
        jobs.iter().map(|job| job.status()).collect()
    }

    /// Asks a running job to stop. It reports `cancelled` once it has delivered what it
    /// queued; a job that already ended is left as it is.
    pub fn cancel(&self, id: u64) -> Option<JobStatus> {
        let job = self.find(id)?;
        job.cancel_if_running();
        Some(job.status())
    }

    /// Forgets a job: from now on it is neither listed nor found. A running job is cancelled
    /// first; its thread delivers what it queued and ends on its own. Returns the job as it
    /// was when it was forgotten.
    pub fn remove(&self, id: u64) -> Option<JobStatus> {
        let job = {
            let mut registry = self.lock();
            let index = registry.jobs.iter().position(|job| job.id == id)?;
            registry.jobs.remove(index)?
        };
        job.cancel_if_running();
        Some(job.status())
    }

    fn find(&self, id: u64) -> Option<Arc<Job>> {
        self.lock().jobs.iter().find(|job| job.id == id).cloned()
    }

    fn register(&self, params: GeneratorParams) -> Arc<Job> {
        let mut registry = self.lock();
        registry.last_id += 1;
        let job = Arc::new(Job {
            id: registry.last_id,
            params,
            progress: JobProgress::new(),
            started_at: SystemTime::now(),
            outcome: Mutex::new(None),
        });
        registry.jobs.push_back(Arc::clone(&job));
        registry.forget_old_finished_jobs();
        job
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry holds plain data that no panic leaves half-updated.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registry {
    fn forget_old_finished_jobs(&mut self) {
        while self.jobs.len() > KEPT_JOBS {
            match self.jobs.iter().position(|job| job.is_finished()) {
                Some(oldest_finished) => {
                    self.jobs.remove(oldest_finished);
                }
                None => break,
            }
        }
    }
}

impl Job {
    /// Runs the job and records how it ended. A panic in the run is caught here: otherwise
    /// the job would report `running` forever, and cancelling it would change nothing.
    fn run_to_end(
        &self,
        kafka: &KafkaConfig,
        work: impl FnOnce(
            &KafkaConfig,
            &GeneratorParams,
            &JobProgress,
        ) -> Result<GeneratorSummary, GeneratorError>,
    ) {
        let run = AssertUnwindSafe(|| work(kafka, &self.params, &self.progress));
        let result = match std::panic::catch_unwind(run) {
            Ok(result) => result.map_err(|e| full_message(&e)),
            Err(payload) => {
                let context = format!("generator job {}", self.id);
                let message = panics::caught(PanicSite::GeneratorJob, &context, payload.as_ref());
                Err(format!("the job panicked: {message}"))
            }
        };
        if let Err(error) = &result {
            tracing::warn!(job = self.id, %error, "generator job failed");
        }
        self.finish(result);
    }

    /// Asks the run to stop unless it already ended: a job that ended keeps the state it
    /// ended in.
    fn cancel_if_running(&self) {
        // Holding the outcome lock while deciding, so the job cannot finish in between.
        let outcome = self.outcome();
        if outcome.is_none() {
            self.progress.cancel();
        }
    }

    fn finish(&self, result: Result<GeneratorSummary, String>) {
        *self.outcome() = Some(Outcome {
            finished_at: SystemTime::now(),
            result,
        });
    }

    fn is_finished(&self) -> bool {
        self.outcome().is_some()
    }

    fn outcome(&self) -> MutexGuard<'_, Option<Outcome>> {
        self.outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn status(&self) -> JobStatus {
        let outcome = self.outcome();
        let (state, finished_at, error, summary) = match &*outcome {
            None => (JobState::Running, None, None, None),
            Some(Outcome {
                finished_at,
                result,
            }) => {
                let (state, error, summary) = match result {
                    // A cancel that came after the last event was queued stopped nothing.
                    Ok(summary)
                        if self.progress.is_cancelled()
                            && summary.sent + summary.failed < self.params.num_messages =>
                    {
                        (JobState::Cancelled, None, Some(summary.clone()))
                    }
                    Ok(summary) => (JobState::Completed, None, Some(summary.clone())),
                    Err(error) => (JobState::Failed, Some(error.clone()), None),
                };
                (state, Some(*finished_at), error, summary)
            }
        };
        let end = finished_at.unwrap_or_else(SystemTime::now);
        let elapsed_ms = end
            .duration_since(self.started_at)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        let (sent, failed) = (self.progress.sent(), self.progress.failed());
        let eta_secs = match (state, self.progress.sending_since()) {
            (JobState::Running, Some(since)) => eta_secs(
                sent + failed,
                self.params.num_messages,
                Instant::now().saturating_duration_since(since),
            ),
            _ => None,
        };
        JobStatus {
            id: self.id,
            state,
            params: self.params.clone(),
            queued: self.progress.queued(),
            sent,
            failed,
            distinct_ips: self.progress.distinct_ips(),
            progress: fraction_done(sent + failed, self.params.num_messages),
            eta_secs,
            started_at: rfc3339_millis(self.started_at),
            finished_at: finished_at.map(rfc3339_millis),
            elapsed_ms,
            error,
            summary,
        }
    }
}

/// Seconds until `total` events are done, at the rate `done` of them took `sending_for`,
/// rounded up; `None` while there is no rate to go by (nothing done, or no time passed).
fn eta_secs(done: u64, total: u64, sending_for: Duration) -> Option<u64> {
    let seconds = sending_for.as_secs_f64();
    if done == 0 || seconds <= 0.0 {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    // At most a billion events at no less than one per ~10^10 s: far inside u64.
    Some((left * seconds / done as f64).ceil() as u64)
}

fn fraction_done(done: u64, total: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_params_start_no_job() {
        let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:1"));
        let params = GeneratorParams {
            num_devices: 0,
            ..GeneratorParams::default()
        };
        assert!(matches!(
            jobs.start(params),
            Err(GeneratorError::InvalidParams(_))
        ));
        assert!(jobs.list().is_empty());
        assert!(jobs.get(1).is_none());
        assert!(jobs.cancel(1).is_none());
    }

    #[test]
    fn only_finished_jobs_are_forgotten_oldest_first() {
        let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:1"));
        let running = jobs.register(GeneratorParams::default());
        for _ in 0..KEPT_JOBS + 5 {
            jobs.register(GeneratorParams::default())
                .finish(Err("test".into()));
        }
        let listed = jobs.list();
        assert_eq!(listed.len(), KEPT_JOBS);
        assert_eq!(listed[0].id, KEPT_JOBS as u64 + 6);
        assert!(listed.windows(2).all(|w| w[0].id > w[1].id));
        // The running job (id 1) survived; the oldest finished ones (ids 2..) went.
        assert_eq!(listed[KEPT_JOBS - 1].id, running.id);
        assert_eq!(listed[KEPT_JOBS - 2].id, 8);
        assert_eq!(listed[KEPT_JOBS - 1].state, JobState::Running);
        assert_eq!(listed[0].state, JobState::Failed);
        assert_eq!(listed[0].error.as_deref(), Some("test"));
    }

    /// Polls until the job is no longer running; its status then.
    fn wait_until_ended(jobs: &GeneratorJobs, id: u64) -> JobStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = jobs.get(id).expect("the job is kept");
            if status.state != JobState::Running {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running: {status:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_job_that_panics_is_failed_with_the_panic_message_and_counted() {
        let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:1"));
        let before = panics::count(PanicSite::GeneratorJob);
        let started = jobs
            .start_with(GeneratorParams::default(), |_, _, _| {
                panic!("cannot convert float seconds to Duration")
            })
            .expect("valid parameters");
        let ended = wait_until_ended(&jobs, started.id);
        assert_eq!(ended.state, JobState::Failed);
        assert_eq!(
            ended.error.as_deref(),
            Some("the job panicked: cannot convert float seconds to Duration")
        );
        assert!(ended.finished_at.is_some());
        assert!(panics::count(PanicSite::GeneratorJob) > before);
    }

    #[test]
    fn a_removed_job_is_forgotten_and_a_running_one_is_cancelled() {
        let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:1"));
        let (stopped, stop_seen) = std::sync::mpsc::channel();
        let running = jobs
            .start_with(GeneratorParams::default(), move |_, params, progress| {
                while !progress.is_cancelled() {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                let _ = stopped.send(());
                Err(GeneratorError::InvalidParams(params.topic.clone()))
            })
            .expect("valid parameters");
        let removed = jobs.remove(running.id).expect("the job exists");
        assert_eq!(removed.id, running.id);
        assert!(jobs.get(running.id).is_none());
        assert!(jobs.list().is_empty());
        assert!(jobs.remove(running.id).is_none());
        stop_seen
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the removed job was asked to stop");
    }

    #[test]
    fn eta_is_the_events_left_at_the_rate_so_far() {
        let secs = Duration::from_secs;
        // 250 of 1000 in 10 s: 25 a second, 750 left.
        assert_eq!(eta_secs(250, 1000, secs(10)), Some(30));
        // Rounded up: 1 left at 3 a second is still a second away.
        assert_eq!(eta_secs(3, 4, secs(1)), Some(1));
        assert_eq!(eta_secs(1000, 1000, secs(10)), Some(0));
        assert_eq!(eta_secs(5, 4, secs(1)), Some(0));
        assert_eq!(eta_secs(0, 1000, secs(10)), None, "no rate yet");
        assert_eq!(eta_secs(10, 1000, Duration::ZERO), None);
        // The slowest rate validation allows, over the most events: large, but no overflow.
        let slowest = eta_secs(1, 1_000_000_000, secs(100)).expect("a rate");
        assert_eq!(slowest, 99_999_999_900);
    }

    #[test]
    fn a_running_job_reports_an_eta_once_it_has_a_rate_and_none_once_ended() {
        let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:1"));
        let (sending, sending_seen) = std::sync::mpsc::channel();
        let (finish, finish_seen) = std::sync::mpsc::channel::<()>();
        let params = GeneratorParams {
            num_messages: 1000,
            ..GeneratorParams::default()
        };
        let started = jobs
            .start_with(params, move |_, params, progress| {
                let _ = sending.send(());
                let _ = finish_seen.recv_timeout(std::time::Duration::from_secs(10));
                progress.mark_sending();
                std::thread::sleep(std::time::Duration::from_millis(200));
                progress
                    .sent
                    .store(100, std::sync::atomic::Ordering::Relaxed);
                let _ = sending.send(());
                let _ = finish_seen.recv_timeout(std::time::Duration::from_secs(10));
                Ok(GeneratorSummary {
                    sent: 100,
                    distinct_ips: 1,
                    failed: 0,
                    seed: 1,
                    elapsed_ms: 200,
                    events_per_sec: 500.0,
                    topic: params.topic.clone(),
                })
            })
            .expect("valid parameters");
        sending_seen
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the job runs");
        assert_eq!(
            jobs.get(started.id).expect("kept").eta_secs,
            None,
            "no rate yet"
        );
        finish.send(()).expect("the job waits");
        sending_seen
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("100 events sent");
        let running = jobs.get(started.id).expect("kept");
        assert_eq!(running.state, JobState::Running);
        // 100 events in at least 200 ms: 900 left take at least 1.8 s; at most what they
        // take at 100 events per (10 s of a slow test machine).
        let eta = running.eta_secs.expect("an ETA once events are done");
        assert!((2..=90).contains(&eta), "{running:?}");
        finish.send(()).expect("the job waits");
        let ended = wait_until_ended(&jobs, started.id);
        assert_eq!(ended.state, JobState::Completed);
        assert_eq!(ended.eta_secs, None, "{ended:?}");
    }

    #[test]
    fn progress_fraction() {
        assert_eq!(fraction_done(0, 0), 1.0);
        assert_eq!(fraction_done(250, 1000), 0.25);
        assert_eq!(fraction_done(5, 4), 1.0);
    }
}
