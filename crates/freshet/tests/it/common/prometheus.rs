//! A small reader of the Prometheus text exposition format, strict enough to catch what a
//! scraper would reject: every sample belongs to a family declared (`# HELP` and `# TYPE`)
//! before it, named like it (histograms: `_bucket`, `_sum`, `_count`), no family twice.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name → type.
    pub types: HashMap<String, String>,
}

/// Parses `text`, panicking with the offending line on anything malformed.
pub fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    let mut helped = Vec::new();
    let mut family: Option<(String, String)> = None;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("a name");
            helped.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("name and type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "not a Prometheus type: {line}"
            );
            assert_eq!(
                helped.last().map(String::as_str),
                Some(name),
                "HELP before {line}"
            );
            let previous = exposition.types.insert(name.into(), kind.into());
            assert!(previous.is_none(), "family declared twice: {line}");
            family = Some((name.into(), kind.into()));
        } else if line.starts_with('#') {
            panic!("a comment Prometheus text does not have: {line}");
        } else {
            let sample = parse_sample(line);
            let (name, kind) = family
                .as_ref()
                .unwrap_or_else(|| panic!("no TYPE before {line}"));
            let belongs = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| sample.name == format!("{name}{suffix}")),
                _ => &sample.name == name,
            };
            assert!(belongs, "{line} is not in family {name} ({kind})");
            exposition.samples.push(sample);
        }
    }
    exposition
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let body = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed: {line}"));
            (name, parse_labels(body, line))
        }
        None => (series, BTreeMap::new()),
    };
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name: {line}"
    );
    Sample {
        name: name.into(),
        labels,
        value,
    }
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes in values.
fn parse_labels(mut body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label: {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape: {line}"),
                },
                Some((at, '"')) => break at,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        labels.insert(key.to_string(), value);
        body = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Like [`get`](Self::get), 0 when absent (a counter not yet seen).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// A histogram's `(le, cumulative count)` buckets, checked to be cumulative and to end in
    /// `+Inf` equal to its count; returns them with the count.
    pub fn histogram(&self, name: &str) -> (Vec<(f64, f64)>, f64) {
        assert_eq!(
            self.types.get(name).map(String::as_str),
            Some("histogram"),
            "{name} is a histogram"
        );
        let bucket = format!("{name}_bucket");
        let buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| s.name == bucket)
            .map(|s| {
                let le = &s.labels["le"];
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le")
                };
                (le, s.value)
            })
            .collect();
        let count = self.get(&format!("{name}_count"), &[]).expect("a count");
        assert!(
            buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name} buckets are ordered and cumulative: {buckets:?}"
        );
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, count)), "{name}");
        (buckets, count)
    }
}
