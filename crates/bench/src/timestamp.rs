//! `freshet bench timestamp`: normalisations per second of `freshet-timestamp` over a mix of the
//! forms devices send, beside the same job done with jiff's own parsers and formatter in the
//! same run (single-threaded, inputs pre-built, median of several rounds).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use freshet_timestamp::{normalize, TsInput};
use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::Timestamp;

#[derive(Debug, Clone, Args)]
pub struct TimestampBenchArgs {
    /// Normalisations per round and per implementation.
    #[arg(long, env = "FRESHET_BENCH_ITERATIONS", default_value_t = 4_000_000)]
    pub iterations: usize,
    /// Rounds; the median round is reported.
    #[arg(long, env = "FRESHET_BENCH_ROUNDS", default_value_t = 7)]
    pub rounds: usize,
    /// Print one JSON object instead of the table.
    #[arg(long, env = "FRESHET_BENCH_JSON")]
    pub json: bool,
}

/// One input form of the mix.
#[derive(Debug, Clone, Copy)]
enum Form {
    IsoZ,
    IsoNoZone,
    IsoOffset,
    IsoSpace,
    EpochSeconds,
    EpochMillis,
    EpochMillisString,
    FloatSeconds,
}

const FORMS: [Form; 8] = [
    Form::IsoZ,
    Form::IsoNoZone,
    Form::IsoOffset,
    Form::IsoSpace,
    Form::EpochSeconds,
    Form::EpochMillis,
    Form::EpochMillisString,
    Form::FloatSeconds,
];

/// A pre-built input (owned, so both implementations read the same bytes).
#[derive(Debug, Clone)]
enum Sample {
    Str(String),
    Int(i64),
    Float(f64),
}

impl Sample {
    fn input(&self) -> TsInput<'_> {
        match self {
            Sample::Str(s) => TsInput::Str(s),
            Sample::Int(n) => TsInput::Int(*n),
            Sample::Float(f) => TsInput::Float(*f),
        }
    }
}

/// `count` samples cycling through the forms, instants spread over 2000-2035.
fn samples(count: usize) -> anyhow::Result<Vec<Sample>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let ms = 946_684_800_000 + (next() % 1_100_000_000_000) as i64;
        let ts = Timestamp::from_millisecond(ms)?;
        let offset = ((next() % 27) as i32 - 12) * 3600 + (next() % 2) as i32 * 1800;
        out.push(sample(FORMS[i % FORMS.len()], ts, offset)?);
    }
    Ok(out)
}

fn sample(form: Form, ts: Timestamp, offset_secs: i32) -> anyhow::Result<Sample> {
    let utc = jiff::tz::TimeZone::UTC;
    Ok(match form {
        Form::IsoZ => Sample::Str(format!("{ts:.3}")),
        Form::IsoNoZone => Sample::Str(
            ts.to_zoned(utc)
                .strftime("%Y-%m-%dT%H:%M:%S%.6f")
                .to_string(),
        ),
        Form::IsoOffset => {
            let tz = jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(offset_secs)?);
            Sample::Str(
                ts.to_zoned(tz)
                    .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
                    .to_string(),
            )
        }
        Form::IsoSpace => Sample::Str(ts.to_zoned(utc).strftime("%Y-%m-%d %H:%M:%SZ").to_string()),
        Form::EpochSeconds => Sample::Int(ts.as_second()),
        Form::EpochMillis => Sample::Int(ts.as_millisecond()),
        Form::EpochMillisString => Sample::Str(ts.as_millisecond().to_string()),
        Form::FloatSeconds => Sample::Float(ts.as_millisecond() as f64 / 1000.0),
    })
}

/// The same job with jiff: its own ISO parser, the same magnitude rule for numbers, and its
/// own RFC 3339 formatter at millisecond precision, into a reused buffer.
fn jiff_normalize(sample: &Sample, out: &mut String) -> anyhow::Result<()> {
    let ts = match sample {
        Sample::Str(s) if s.as_bytes().get(4) == Some(&b'-') => jiff_iso(s)?,
        Sample::Str(s) => jiff_epoch(s.parse()?)?,
        Sample::Int(n) => jiff_epoch(*n)?,
        // jiff's `SignedDuration::from_secs_f64` truncates the binary value (1014515271.407
        // becomes .406); rounding to the millisecond gives the decimal's answer for this mix,
        // and is cheaper than reading the shortest decimal as freshet-timestamp does.
        Sample::Float(f) => Timestamp::from_millisecond((f * 1000.0).round() as i64)?,
    };
    out.clear();
    write!(out, "{ts:.3}")?;
    Ok(())
}

fn jiff_iso(s: &str) -> anyhow::Result<Timestamp> {
    let pieces = Pieces::parse(s)?;
    let time = pieces.time().context("no time")?;
    let datetime = pieces.date().to_datetime(time);
    let offset = match pieces.offset() {
        Some(PiecesOffset::Numeric(numeric)) => numeric.offset(),
        _ => jiff::tz::Offset::UTC,
    };
    Ok(offset.to_timestamp(datetime)?)
}

fn jiff_epoch(n: i64) -> anyhow::Result<Timestamp> {
    let abs = n.unsigned_abs();
    Ok(match abs {
        0..100_000_000_000 => Timestamp::from_second(n)?,
        100_000_000_000..100_000_000_000_000 => Timestamp::from_millisecond(n)?,
        100_000_000_000_000..100_000_000_000_000_000 => Timestamp::from_microsecond(n)?,
        _ => Timestamp::from_nanosecond(i128::from(n))?,
    })
}

/// Normalisations per second of the median of `rounds` rounds of `iterations` calls.
fn measure(rounds: usize, iterations: usize, mut job: impl FnMut(usize)) -> f64 {
    let mut rates: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                job(i);
            }
            iterations as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

pub fn run(args: TimestampBenchArgs) -> anyhow::Result<()> {
    const DISTINCT: usize = 8192; // a power of two: `i & MASK` picks the sample
    let samples = samples(DISTINCT)?;
    let inputs: Vec<TsInput<'_>> = samples.iter().map(Sample::input).collect();
    // Both sides must agree on every sample before anything is timed.
    let mut buf = String::with_capacity(32);
    for (sample, input) in samples.iter().zip(&inputs) {
        let ours = normalize(*input).with_context(|| format!("{sample:?}"))?;
        jiff_normalize(sample, &mut buf).with_context(|| format!("{sample:?}"))?;
        anyhow::ensure!(ours.as_str() == buf, "{sample:?}: {ours} vs jiff {buf}");
    }
    let mask = DISTINCT - 1;
    let ours = measure(args.rounds, args.iterations, |i| {
        let _ = black_box(normalize(black_box(inputs[i & mask])));
    });
    let jiff = measure(args.rounds, args.iterations, |i| {
        let _ = black_box(jiff_normalize(black_box(&samples[i & mask]), &mut buf));
    });
    report(&args, ours, jiff);
    if !args.json {
        per_form(&args, &samples, &inputs);
    }
    Ok(())
}

fn report(args: &TimestampBenchArgs, ours: f64, jiff: f64) {
    let ratio = ours / jiff;
    if args.json {
        let json = serde_json::json!({
            "bench": "timestamp", "iterations": args.iterations, "rounds": args.rounds,
            "forms": FORMS.len(), "freshet_per_s": ours, "jiff_per_s": jiff, "ratio": ratio,
        });
        println!("{json}");
        return;
    }
    println!(
        "timestamp normalisation, {} forms, single thread, median of {} rounds of {}",
        FORMS.len(),
        args.rounds,
        args.iterations
    );
    println!("  freshet-timestamp  {:>8.2} M/s", ours / 1e6);
    println!("  jiff 0.2           {:>8.2} M/s", jiff / 1e6);
    println!("  ratio              {ratio:>8.2}x");
}

/// The same comparison for each form alone (a quarter of the iterations), to show where time goes.
fn per_form(args: &TimestampBenchArgs, samples: &[Sample], inputs: &[TsInput<'_>]) {
    let mut buf = String::with_capacity(32);
    let iterations = (args.iterations / 4).max(1);
    for (k, form) in FORMS.iter().enumerate() {
        let picked: Vec<usize> = (k..samples.len()).step_by(FORMS.len()).collect();
        let n = picked.len();
        let ours = measure(args.rounds, iterations, |i| {
            let _ = black_box(normalize(black_box(inputs[picked[i % n]])));
        });
        let jiff = measure(args.rounds, iterations, |i| {
            let _ = black_box(jiff_normalize(black_box(&samples[picked[i % n]]), &mut buf));
        });
        println!(
            "    {:<18} {:>8.2} M/s  jiff {:>8.2} M/s  {:>5.2}x",
            format!("{form:?}"),
            ours / 1e6,
            jiff / 1e6,
            ours / jiff
        );
    }
}
