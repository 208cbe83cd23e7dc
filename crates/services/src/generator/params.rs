//! What a generator run is asked to do, and the limits a request must stay within.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::GeneratorError;
use crate::event::DEVICE_EVENTS;
use crate::kafka::check_topic_name;

/// Devices of the old generator's `GET /start` when the caller names none.
pub const DEFAULT_NUM_DEVICES: u64 = 100;
/// Events of the old generator's `GET /start` when the caller names none.
pub const DEFAULT_NUM_MESSAGES: u64 = 1000;
/// Pause of the old generator's `GET /start` when the caller names none.
pub const DEFAULT_PAUSE_MS: u64 = 100;

/// More devices than this would make the pool (and the acknowledged-device bitset) a memory
/// hazard for a request anyone with HTTP access can send.
pub const MAX_NUM_DEVICES: u64 = 10_000_000;
/// A billion events is hours of sending even unpaced; more is almost certainly a typo.
pub const MAX_NUM_MESSAGES: u64 = 1_000_000_000;
/// A pause longer than a minute between events is not a load generator any more.
pub const MAX_PAUSE_MS: u64 = 60_000;
/// Far above what one producer can send; a larger rate would simply mean "unpaced".
pub const MAX_RATE: f64 = 10_000_000.0;
/// One event every 100 s. Slower is a pause (`pause_ms`, up to a minute) rather than a rate;
/// and far slower rates (1e-300) put the next event past any time a clock can represent.
pub const MIN_RATE: f64 = 0.01;
/// The largest integer a JSON number holds exactly everywhere (JavaScript, most dashboards):
/// a seed above it could not be read back and replayed.
pub const MAX_SEED: u64 = (1 << 53) - 1;

/// Parameters of one generator run: `freshet generate` flags, and the JSON body of
/// `POST /api/v1/generator/jobs`. Missing fields take the old generator's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
// `default` and `deny_unknown_fields` only tell the OpenAPI schema that every field may be
// left out and no other may be given; deserialising goes through `ParamsBody`, which
// enforces both.
#[serde(from = "ParamsBody", default, deny_unknown_fields)]
pub struct GeneratorParams {
    /// Distinct simulated devices, each with its own IP address (default 100, 1 to
    /// 10,000,000).
    #[schema(default = 100, minimum = 1, maximum = 10_000_000)]
    pub num_devices: u64,
    /// Events to send, each from a device picked uniformly at random (default 1000, at most
    /// 1,000,000,000).
    #[schema(default = 1000, maximum = 1_000_000_000)]
    pub num_messages: u64,
    /// Milliseconds to wait after each send (default 100, or 0 when `rate` is given; at most
    /// 60,000). 0 sends as fast as the broker acknowledges.
    #[schema(default = 100, maximum = 60_000)]
    pub pause_ms: u64,
    /// Most events per second, paced evenly (0.01 to 10,000,000; null or absent: not paced by
    /// rate). Given with a `pause_ms` above 0, both hold: the slower of the two sets the pace.
    #[schema(minimum = 0.01, maximum = 10_000_000.0)]
    pub rate: Option<f64>,
    /// Seed of the random choices (device addresses, which device sends, error codes,
    /// timestamp forms): the same seed gives the same events apart from their timestamps.
    /// Chosen at random and reported when absent. At most 2^53 - 1, so that it survives
    /// JSON everywhere.
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    pub seed: Option<u64>,
    /// Share of devices with an IPv6 address, in percent (default 0: all IPv4).
    #[schema(default = 0, maximum = 100)]
    pub ipv6_percent: u8,
    /// Topic to write to (default `device-events`); created with 3 partitions if missing.
    #[schema(schema_with = generator_topic_schema)]
    pub topic: String,
    /// Devices take turns (in pool order, itself random) instead of each event picking one
    /// at random (default false). With `num_messages` at least `num_devices`, every device
    /// sends, so the distinct count is exactly `num_devices`.
    #[schema(default = false)]
    pub round_robin: bool,
    /// Compression codec of the record batches: `none` (default, Kafka's producer default),
    /// `gzip`, `snappy`, `lz4` or `zstd`. Every Kafka client reads `none` and `gzip`; the
    /// others need the codec in the consumer (kafka-python, for one, needs an optional
    /// package for each).
    #[schema(default = "none")]
    pub compression: Compression,
}

impl Default for GeneratorParams {
    fn default() -> Self {
        GeneratorParams {
            num_devices: DEFAULT_NUM_DEVICES,
            num_messages: DEFAULT_NUM_MESSAGES,
            pause_ms: DEFAULT_PAUSE_MS,
            rate: None,
            seed: None,
            ipv6_percent: 0,
            topic: DEVICE_EVENTS.to_string(),
            round_robin: false,
            compression: Compression::None,
        }
    }
}

/// The codec a generator run compresses its record batches with (librdkafka's
/// `compression.type`, and the codec bits of each batch's attributes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed (codec 0): what Kafka's producers send unless told otherwise, and what
    /// every client can read.
    #[default]
    None,
    /// gzip (codec 1).
    Gzip,
    /// snappy (codec 2).
    Snappy,
    /// lz4 (codec 3).
    Lz4,
    /// zstd (codec 4).
    Zstd,
}

impl Compression {
    /// Every codec, in the order of their codec numbers.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The name, as `compression.type` (librdkafka's and Kafka's) and the API spell it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec number in a record batch's attributes (their lowest three bits).
    pub fn codec(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A compression name that is none of [`Compression::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCompression(pub String);

impl std::fmt::Display for UnknownCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown compression {:?}: expected none, gzip, snappy, lz4 or zstd",
            self.0
        )
    }
}

impl std::error::Error for UnknownCompression {}

impl std::str::FromStr for Compression {
    type Err = UnknownCompression;

    /// Exactly the names Kafka's producers take (lower case); anything else is refused rather
    /// than guessed.
    fn from_str(name: &str) -> Result<Self, UnknownCompression> {
        Compression::ALL
            .into_iter()
            .find(|codec| codec.name() == name)
            .ok_or_else(|| UnknownCompression(name.to_string()))
    }
}

/// By name, with [`UnknownCompression`]'s message for any other string (in a JSON body and
/// in `/start`'s query alike).
impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Compression;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a compression name: none, gzip, snappy, lz4 or zstd")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Compression, E> {
                name.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// The JSON body as sent. `pause_ms` defaults to 100 only when no `rate` is given, so
/// `{"rate": 5000}` means "pace to 5000/s", not "5000/s with 100 ms pauses".
/// Unknown fields are refused: a misspelt `num_device` must not silently become 100 devices.
/// A field may be left out for its default, but only `rate` and `seed` may be null (the
/// schema says which are nullable; `"topic": null` is a mistake, not a request for the
/// default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsBody {
    #[serde(default, deserialize_with = "present")]
    num_devices: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    num_messages: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pause_ms: Option<u64>,
    rate: Option<f64>,
    seed: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    ipv6_percent: Option<u8>,
    #[serde(default, deserialize_with = "present")]
    topic: Option<String>,
    #[serde(default, deserialize_with = "present")]
    round_robin: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    compression: Option<Compression>,
}

/// A field that may be left out (`None`, through `#[serde(default)]`) but not null.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// The topic field's schema: Kafka's name rules, defaulting to `device-events`.
fn generator_topic_schema() -> utoipa::openapi::schema::Object {
    crate::kafka::topic_name_schema()
        .default(Some(serde_json::Value::from(DEVICE_EVENTS)))
        .description(Some(
            "Topic to write to (default `device-events`), created with 3 partitions if \
             missing: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`",
        ))
        .build()
}

impl From<ParamsBody> for GeneratorParams {
    fn from(body: ParamsBody) -> Self {
        let defaults = GeneratorParams::default();
        let default_pause = if body.rate.is_some() {
            0
        } else {
            defaults.pause_ms
        };
        GeneratorParams {
            num_devices: body.num_devices.unwrap_or(defaults.num_devices),
            num_messages: body.num_messages.unwrap_or(defaults.num_messages),
            pause_ms: body.pause_ms.unwrap_or(default_pause),
            rate: body.rate,
            seed: body.seed,
            ipv6_percent: body.ipv6_percent.unwrap_or(defaults.ipv6_percent),
            topic: body.topic.unwrap_or(defaults.topic),
            round_robin: body.round_robin.unwrap_or(defaults.round_robin),
            compression: body.compression.unwrap_or(defaults.compression),
        }
    }
}

impl GeneratorParams {
    /// Checks every limit; the error names the parameter, its value and what is allowed.
    pub fn validate(&self) -> Result<(), GeneratorError> {
        self.check_counts()
            .and_then(|()| self.check_pacing())
            .and_then(|()| self.check_seed())
            .and_then(|()| self.check_ipv6_percent())
            .and_then(|()| check_topic_name(&self.topic))
            .map_err(GeneratorError::InvalidParams)
    }

    fn check_counts(&self) -> Result<(), String> {
        if self.num_devices > MAX_NUM_DEVICES {
            return Err(format!(
                "num_devices {} is more than the {MAX_NUM_DEVICES} allowed",
                self.num_devices
            ));
        }
        if self.num_messages > MAX_NUM_MESSAGES {
            return Err(format!(
                "num_messages {} is more than the {MAX_NUM_MESSAGES} allowed",
                self.num_messages
            ));
        }
        if self.num_devices == 0 {
            return Err("num_devices is 0: events need at least one device".into());
        }
        Ok(())
    }

    fn check_pacing(&self) -> Result<(), String> {
        if self.pause_ms > MAX_PAUSE_MS {
            return Err(format!(
                "pause_ms {} is more than the {MAX_PAUSE_MS} allowed",
                self.pause_ms
            ));
        }
        let Some(rate) = self.rate else {
            return Ok(());
        };
        // Written so that NaN fails too. `{rate:?}` prints 1e-300 as such, not as 300 digits.
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(format!(
                "rate {rate:?} must be a number of events per second from {MIN_RATE} to {MAX_RATE}"
            ));
        }
        Ok(())
    }

    fn check_seed(&self) -> Result<(), String> {
        match self.seed {
            Some(seed) if seed > MAX_SEED => Err(format!(
                "seed {seed} is more than {MAX_SEED} (2^53 - 1), the largest JSON keeps exactly"
            )),
            _ => Ok(()),
        }
    }

    fn check_ipv6_percent(&self) -> Result<(), String> {
        if self.ipv6_percent > 100 {
            return Err(format!(
                "ipv6_percent {} is not a percentage from 0 to 100",
                self.ipv6_percent
            ));
        }
        Ok(())
    }

    /// How many of the devices get an IPv6 address: the percentage of `num_devices`, rounded
    /// to the nearest device.
    pub(crate) fn ipv6_devices(&self) -> u64 {
        let scaled = u128::from(self.num_devices) * u128::from(self.ipv6_percent.min(100));
        // `num_devices` is at most u64::MAX, so the rounded quotient fits back into a u64.
        u64::try_from((scaled + 50) / 100).unwrap_or(self.num_devices)
    }
}

/// A seed for a run that was given none. Kept below 2^53 so it survives a round trip through
/// JSON numbers in JavaScript (the console and most dashboards), letting users replay it.
pub fn random_seed() -> u64 {
    rand::random::<u64>() & MAX_SEED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(params: &GeneratorParams) -> String {
        match params.validate() {
            Err(GeneratorError::InvalidParams(reason)) => reason,
            other => panic!("expected InvalidParams for {params:?}, got {other:?}"),
        }
    }

    fn with(change: impl FnOnce(&mut GeneratorParams)) -> GeneratorParams {
        let mut params = GeneratorParams::default();
        change(&mut params);
        params
    }

    #[test]
    fn defaults_are_the_compatible_ones_and_valid() {
        let params = GeneratorParams::default();
        assert_eq!(
            (params.num_devices, params.num_messages, params.pause_ms),
            (100, 1000, 100)
        );
        assert_eq!(params.topic, "device-events");
        assert_eq!(params.ipv6_percent, 0);
        assert_eq!(params.compression, Compression::None);
        params.validate().expect("defaults are valid");
    }

    #[test]
    fn compression_defaults_to_none_and_takes_every_codec_by_name() {
        let empty: GeneratorParams = serde_json::from_str("{}").expect("empty body");
        assert_eq!(empty.compression, Compression::None);
        for (name, codec, number) in [
            ("none", Compression::None, 0),
            ("gzip", Compression::Gzip, 1),
            ("snappy", Compression::Snappy, 2),
            ("lz4", Compression::Lz4, 3),
            ("zstd", Compression::Zstd, 4),
        ] {
            let body = format!(r#"{{"compression": "{name}"}}"#);
            let params: GeneratorParams = serde_json::from_str(&body).expect(name);
            assert_eq!(params.compression, codec, "{name}");
            params.validate().expect("every codec is valid");
            assert_eq!(codec.codec(), number, "{name}");
            assert_eq!(name.parse::<Compression>(), Ok(codec));
            assert_eq!(codec.to_string(), name);
            // Reported as it was asked for.
            let echoed = serde_json::to_value(&params).expect("serialize");
            assert_eq!(echoed["compression"], name, "{echoed}");
        }
        assert_eq!(
            Compression::ALL.map(Compression::codec),
            [0, 1, 2, 3, 4],
            "ALL is in codec order"
        );
    }

    #[test]
    fn an_unknown_compression_is_refused_by_name() {
        for name in [
            "lz5",
            "LZ4",
            "Gzip",
            "",
            "uncompressed",
            "producer",
            " none",
        ] {
            let expected =
                format!("unknown compression {name:?}: expected none, gzip, snappy, lz4 or zstd");
            assert_eq!(
                name.parse::<Compression>().map_err(|e| e.to_string()),
                Err(expected.clone())
            );
            let body = serde_json::json!({ "compression": name }).to_string();
            let refused =
                serde_json::from_str::<GeneratorParams>(&body).expect_err("unknown codec");
            assert!(refused.to_string().contains(&expected), "{refused}");
        }
        let number = serde_json::from_str::<GeneratorParams>(r#"{"compression": 1}"#)
            .expect_err("a number is no codec name");
        assert!(
            number.to_string().contains("expected a compression name"),
            "{number}"
        );
    }

    #[test]
    fn every_bad_parameter_is_refused_with_its_reason() {
        let cases: Vec<(GeneratorParams, &str)> = vec![
            (with(|p| p.num_devices = 0), "num_devices is 0"),
            (
                with(|p| {
                    p.num_devices = 0;
                    p.num_messages = 0;
                }),
                "events need at least one device",
            ),
            (
                with(|p| p.num_devices = MAX_NUM_DEVICES + 1),
                "num_devices 10000001 is more than",
            ),
            (
                with(|p| p.num_messages = MAX_NUM_MESSAGES + 1),
                "num_messages 1000000001 is more than",
            ),
            (
                with(|p| p.pause_ms = MAX_PAUSE_MS + 1),
                "pause_ms 60001 is more than",
            ),
            (
                with(|p| {
                    p.pause_ms = 0;
                    p.rate = Some(f64::NAN);
                }),
                "rate NaN must be",
            ),
            (
                with(|p| {
                    p.pause_ms = 0;
                    p.rate = Some(f64::INFINITY);
                }),
                "rate inf must be",
            ),
            (
                with(|p| {
                    p.pause_ms = 0;
                    p.rate = Some(0.0);
                }),
                "rate 0.0 must be",
            ),
            (
                with(|p| {
                    p.pause_ms = 0;
                    p.rate = Some(-5.0);
                }),
                "rate -5.0 must be",
            ),
            (
                with(|p| {
                    p.pause_ms = 0;
                    p.rate = Some(MAX_RATE * 2.0);
                }),
                "rate 20000000.0 must be",
            ),
            (
                with(|p| {
                    p.pause_ms = 0;
                    p.rate = Some(1e-300);
                }),
                "rate 1e-300 must be",
            ),
            (
                with(|p| {
                    p.pause_ms = 0;
                    p.rate = Some(MIN_RATE / 2.0);
                }),
                "rate 0.005 must be a number of events per second from 0.01 to 10000000",
            ),
            (
                with(|p| p.seed = Some(MAX_SEED + 1)),
                "seed 9007199254740992 is more than 9007199254740991",
            ),
            (
                with(|p| p.ipv6_percent = 101),
                "ipv6_percent 101 is not a percentage",
            ),
            (with(|p| p.topic = String::new()), "topic must not be empty"),
            (with(|p| p.topic = "..".into()), "is not a valid topic name"),
            (with(|p| p.topic = "a b".into()), "contains ' '"),
            (with(|p| p.topic = "é".into()), "contains 'é'"),
            (
                with(|p| p.topic = "t".repeat(250)),
                "250 characters long, more than Kafka's 249",
            ),
        ];
        for (params, expected) in cases {
            let reason = reason(&params);
            assert!(reason.contains(expected), "{params:?}: {reason}");
        }
    }

    #[test]
    fn limits_themselves_are_allowed() {
        for params in [
            with(|p| p.num_devices = MAX_NUM_DEVICES),
            with(|p| p.num_messages = MAX_NUM_MESSAGES),
            with(|p| p.pause_ms = MAX_PAUSE_MS),
            with(|p| {
                p.pause_ms = 0;
                p.rate = Some(MAX_RATE);
            }),
            with(|p| {
                p.pause_ms = 0;
                p.rate = Some(MIN_RATE);
            }),
            with(|p| {
                p.num_devices = 1;
                p.num_messages = 0;
            }),
            // Both hold; the slower sets the pace.
            with(|p| p.rate = Some(50.0)),
            with(|p| p.ipv6_percent = 100),
            with(|p| p.seed = Some(MAX_SEED)),
            with(|p| p.topic = "a.B_c-9".repeat(35)),
        ] {
            params.validate().expect("at the limit is valid");
        }
    }

    #[test]
    fn json_body_takes_defaults_and_drops_the_default_pause_for_a_rate() {
        let empty: GeneratorParams = serde_json::from_str("{}").expect("empty body");
        assert_eq!(empty, GeneratorParams::default());
        let paced: GeneratorParams =
            serde_json::from_str(r#"{"rate": 5000, "num_messages": 7}"#).expect("rate body");
        assert_eq!((paced.pause_ms, paced.rate), (0, Some(5000.0)));
        assert_eq!(paced.num_messages, 7);
        paced.validate().expect("rate alone is valid");
        let both: GeneratorParams =
            serde_json::from_str(r#"{"rate": 5000, "pause_ms": 10}"#).expect("both");
        assert_eq!((both.pause_ms, both.rate), (10, Some(5000.0)));
        both.validate().expect("a pause and a rate both hold");
        let nulls: GeneratorParams =
            serde_json::from_str(r#"{"rate": null, "seed": null}"#).expect("nullable fields");
        assert_eq!(nulls, GeneratorParams::default());
        for field in [
            "num_devices",
            "num_messages",
            "pause_ms",
            "ipv6_percent",
            "topic",
            "round_robin",
            "compression",
        ] {
            let body = format!(r#"{{"{field}": null}}"#);
            let null = serde_json::from_str::<GeneratorParams>(&body).expect_err("not nullable");
            assert!(
                null.to_string().contains("invalid type: null"),
                "{field}: {null}"
            );
        }
        let typo = serde_json::from_str::<GeneratorParams>(r#"{"num_device": 5}"#)
            .expect_err("unknown field");
        assert!(typo.to_string().contains("num_device"), "{typo}");
        let negative = serde_json::from_str::<GeneratorParams>(r#"{"num_messages": -1}"#);
        assert!(negative.is_err());
    }

    #[test]
    fn ipv6_share_rounds_to_whole_devices() {
        let share = |devices, percent| {
            with(|p| {
                p.num_devices = devices;
                p.ipv6_percent = percent;
            })
            .ipv6_devices()
        };
        assert_eq!(share(100, 0), 0);
        assert_eq!(share(100, 100), 100);
        assert_eq!(share(10, 25), 3);
        assert_eq!(share(3, 10), 0);
        assert_eq!(share(MAX_NUM_DEVICES, 33), 3_300_000);
    }

    #[test]
    fn random_seeds_survive_javascript_numbers() {
        for _ in 0..1000 {
            assert!(random_seed() < 1 << 53);
        }
    }
}
