//! The endpoints of the old generator and the old tracker nodes, with their exact paths and
//! response shapes (listed in `docs/REFERENCE.md`), so existing scripts and dashboards can
//! point at Freshet unchanged. Freshet's own API (`/api/v1/...`) has richer versions of each.
//! The old login service's routes are in [`crate::guard`].

use std::collections::BTreeMap;

use freshet_services::generator::{Compression, GeneratorParams};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Query};
use crate::generator::job_url;
use crate::state::{blocking, AppState, Generator, Tracker};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(is_node_active))
        .routes(routes!(number_ips))
        .routes(routes!(global_number_ips))
        .routes(routes!(unique_ip_count_v1))
        .routes(routes!(unique_device_ip_count))
        .routes(routes!(start_generator))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeActive {
    /// Whether this node's consumer is running.
    pub status: bool,
    /// This node's id.
    pub node_id: String,
}

/// Whether this tracker node is consuming
#[utoipa::path(
    get,
    path = "/is-node-active",
    tag = "compatible",
    responses(
        (status = 200, description = "The node's state", body = NodeActive,
         example = json!({"status": true, "node_id": "5f0c4f7e-5a3b-4f43-9a86-2f4b3f1c2d10"})),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn is_node_active(Tracker(tracker): Tracker) -> axum::Json<NodeActive> {
    axum::Json(NodeActive {
        status: tracker.is_active(),
        node_id: tracker.node_id().to_string(),
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeCount {
    /// Exact distinct IPs in the partitions this node consumes.
    pub counting: u64,
}

/// Distinct IPs this node counts
#[utoipa::path(
    get,
    path = "/number-ips",
    tag = "compatible",
    responses(
        (status = 200, description = "This node's count", body = NodeCount,
         example = json!({"counting": 1234})),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn number_ips(Tracker(tracker): Tracker) -> Result<axum::Json<NodeCount>, ApiError> {
    let counting = blocking(move || tracker.node_count()).await?;
    Ok(axum::Json(NodeCount { counting }))
}

/// The global count with its coverage, in the old tracker nodes' shape (`number`, `voted_by`,
/// `voting_nodes`, `votes`) and Freshet's own fields beside it.
///
/// The old nodes each counted what they saw and took a majority vote between their counts.
/// Freshet's nodes do not vote: every node holds every partition's exact set (its own live,
/// the others' from their checkpoints) and answers their union. So the vote fields say which
/// nodes' counts that one number includes: they all "vote" for it, and there is never a
/// second count to vote for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GlobalCount {
    /// Exact distinct IPs across all nodes.
    pub number: u64,
    /// The tracker nodes whose counts `number` includes, sorted: this node (its own
    /// partitions, live) and every node whose heartbeat this node read recently (their
    /// checkpoints up to that heartbeat, which each node writes right after its
    /// checkpoints). Nodes that left, or were not heard from for three checkpoint intervals
    /// and 5 s, are not listed, though the counts they checkpointed stay in `number`.
    #[schema(example = json!(["5f0c4f7e-5a3b-4f43-9a86-2f4b3f1c2d10", "9b2d1c3e-7f4a-4e8b-b1d2-3c4e5f6a7b8c"]))]
    pub voted_by: Vec<String>,
    /// How many nodes agree on `number`: all of `voted_by`, since the count is one exact
    /// union that includes each of them, not a majority among differing counts.
    pub voting_nodes: usize,
    /// Each count with the number of nodes that agree on it, the count written as a string
    /// key: always the one entry `{"<number>": voting_nodes}`.
    #[schema(example = json!({"5000": 2}))]
    pub votes: BTreeMap<String, usize>,
    /// Tracker nodes that wrote a heartbeat recently, as this node has read them (this node
    /// too once its first heartbeat is read back).
    pub nodes: usize,
    /// Partitions the count covers (checkpointed or consumed by this node).
    pub partitions_covered: u32,
    /// Partitions of the input topic.
    pub partitions_total: u32,
    /// Always true: the count is exact, not a vote or an estimate.
    pub exact: bool,
}

impl GlobalCount {
    /// The answer of node `node_id` counting `number`, having recently heard from the nodes
    /// in `nodes_seen`.
    fn new(
        number: u64,
        node_id: &str,
        nodes_seen: &[String],
        partitions_covered: u32,
        partitions_total: u32,
    ) -> Self {
        let mut voted_by = nodes_seen.to_vec();
        if !voted_by.iter().any(|node| node == node_id) {
            voted_by.push(node_id.to_string());
        }
        voted_by.sort();
        voted_by.dedup();
        let voting_nodes = voted_by.len();
        GlobalCount {
            number,
            voted_by,
            voting_nodes,
            votes: BTreeMap::from([(number.to_string(), voting_nodes)]),
            nodes: nodes_seen.len(),
            partitions_covered,
            partitions_total,
            exact: true,
        }
    }
}

/// Distinct IPs across all nodes
///
/// The old tracker nodes' route and shape: `number`, and the nodes whose counts it includes in
/// `voted_by`, `voting_nodes` and `votes` (no vote is taken: the number is an exact union,
/// the same on every node once it has read the same checkpoints). Freshet adds what the union
/// covers: `nodes`, `partitions_covered`, `partitions_total` and `exact`.
#[utoipa::path(
    get,
    path = "/global-number-ips",
    tag = "compatible",
    responses(
        (status = 200, description = "The global count, the nodes it includes and what it covers", body = GlobalCount,
         example = json!({
             "number": 5000,
             "voted_by": ["5f0c4f7e-5a3b-4f43-9a86-2f4b3f1c2d10", "9b2d1c3e-7f4a-4e8b-b1d2-3c4e5f6a7b8c"],
             "voting_nodes": 2,
             "votes": {"5000": 2},
             "nodes": 2,
             "partitions_covered": 3,
             "partitions_total": 3,
             "exact": true
         })),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn global_number_ips(
    Tracker(tracker): Tracker,
) -> Result<axum::Json<GlobalCount>, ApiError> {
    let ips = blocking(move || tracker.unique_ips()).await?;
    Ok(axum::Json(GlobalCount::new(
        ips.global_count,
        &ips.node_id,
        &ips.nodes_seen,
        ips.partitions_covered,
        ips.partitions_total,
    )))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UniqueIpCount {
    /// Exact distinct IPs across all nodes.
    pub unique_ip_count: u64,
}

/// Distinct IPs across all nodes
#[utoipa::path(
    get,
    path = "/api/v1/unique_ip_count",
    tag = "compatible",
    responses(
        (status = 200, description = "The global count", body = UniqueIpCount,
         example = json!({"unique_ip_count": 5000})),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn unique_ip_count_v1(
    Tracker(tracker): Tracker,
) -> Result<axum::Json<UniqueIpCount>, ApiError> {
    let unique_ip_count = blocking(move || tracker.global_count()).await?;
    Ok(axum::Json(UniqueIpCount { unique_ip_count }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UniqueDeviceIpCount {
    /// Exact distinct IPs across all nodes.
    pub unique_device_ip_count: u64,
}

/// Distinct IPs across all nodes
#[utoipa::path(
    get,
    path = "/unique_ip_count",
    tag = "compatible",
    responses(
        (status = 200, description = "The global count", body = UniqueDeviceIpCount,
         example = json!({"unique_device_ip_count": 5000})),
        (status = 503, description = "No tracker runs in this process", body = ApiError),
    )
)]
pub async fn unique_device_ip_count(
    Tracker(tracker): Tracker,
) -> Result<axum::Json<UniqueDeviceIpCount>, ApiError> {
    let unique_device_ip_count = blocking(move || tracker.global_count()).await?;
    Ok(axum::Json(UniqueDeviceIpCount {
        unique_device_ip_count,
    }))
}

/// The old generator's query parameters, plus `rate`, `seed` and `compression`. Unknown
/// parameters are refused: a misspelt `num_device` must not silently become 100 devices.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StartQuery {
    /// Distinct simulated devices (default 100, 1 to 10,000,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 10_000_000)]
    pub num_devices: Option<u64>,
    /// Events to send (default 1000, at most 1,000,000,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(maximum = 1_000_000_000)]
    pub num_messages: Option<u64>,
    /// Milliseconds to wait after each send (default 100, or 0 when `rate` is given; at most
    /// 60,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(maximum = 60_000)]
    pub pause_ms: Option<u64>,
    /// Most events per second, paced evenly (0.01 to 10,000,000). With a `pause_ms` above 0
    /// too, the slower of the two sets the pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 0.01, maximum = 10_000_000.0)]
    pub rate: Option<f64>,
    /// Seed of the random choices (at most 2^53 - 1); chosen at random and reported when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(maximum = 9_007_199_254_740_991_u64)]
    pub seed: Option<u64>,
    /// Compression codec of the record batches (default `none`, which every client reads):
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

impl StartQuery {
    /// Goes through the generator's own JSON form, so the defaults (including "no default
    /// pause when a rate is given") come from the one place that defines them.
    fn into_params(self) -> Result<GeneratorParams, ApiError> {
        let rate = self.rate;
        let mut params: GeneratorParams = serde_json::to_value(&self)
            .and_then(serde_json::from_value)
            .map_err(|e| ApiError::bad_request(format!("invalid generator parameters: {e}")))?;
        // JSON has no infinity or NaN: the round trip turns `rate=inf` into null, which would
        // start an unpaced job. The rate as given goes to validation instead.
        params.rate = rate;
        Ok(params)
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Started {
    /// Always true: a request that cannot start gets a 400 instead.
    pub started: bool,
    /// The job's id in `/api/v1/generator/jobs`.
    pub job_id: u64,
    /// Where the job's progress is.
    pub status_url: String,
}

/// Start sending device events
///
/// The old generator's endpoint: builds a pool of `num_devices` random addresses and sends
/// `num_messages` events to `device-events` in the background, pausing `pause_ms` between
/// sends, uncompressed unless `compression` says otherwise. Returns at once with the job's
/// id; its progress is at `status_url` (kept in this process's memory only, like every job).
#[utoipa::path(
    get,
    path = "/start",
    tag = "compatible",
    params(StartQuery),
    responses(
        (status = 200, description = "The job started", body = Started,
         example = json!({"started": true, "job_id": 1, "status_url": "/api/v1/generator/jobs/1"})),
        (status = 400, description = "A parameter is not a number, out of range, an unknown compression, or unknown", body = ApiError),
        (status = 503, description = "No generator runs in this process", body = ApiError),
    )
)]
pub async fn start_generator(
    Generator(jobs): Generator,
    Query(query): Query<StartQuery>,
) -> Result<axum::Json<Started>, ApiError> {
    let params = query.into_params()?;
    let status = blocking(move || jobs.start(params)).await??;
    Ok(axum::Json(Started {
        started: true,
        job_id: status.id,
        status_url: job_url(status.id),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_query_takes_the_generator_defaults() {
        let params = StartQuery::default().into_params().expect("defaults");
        assert_eq!(params, GeneratorParams::default());
        let paced = StartQuery {
            rate: Some(500.0),
            num_messages: Some(7),
            ..StartQuery::default()
        }
        .into_params()
        .expect("rate only");
        assert_eq!(
            (paced.pause_ms, paced.rate, paced.num_messages),
            (0, Some(500.0), 7)
        );
        assert_eq!(paced.compression, Compression::None);
        let gzip = StartQuery {
            compression: Some(Compression::Gzip),
            ..StartQuery::default()
        }
        .into_params()
        .expect("gzip");
        assert_eq!(gzip.compression, Compression::Gzip);
    }

    #[test]
    fn the_global_count_lists_the_nodes_it_includes_as_their_votes() {
        let seen = ["b".to_string(), "a".to_string()];
        let count = GlobalCount::new(5000, "a", &seen, 3, 3);
        let json = serde_json::to_value(&count).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({
                "number": 5000,
                "voted_by": ["a", "b"],
                "voting_nodes": 2,
                "votes": {"5000": 2},
                "nodes": 2,
                "partitions_covered": 3,
                "partitions_total": 3,
                "exact": true
            })
        );
        // Before this node has read back its own first heartbeat: its count is still in the
        // number, so it is listed; `nodes` stays what the heartbeats say.
        let alone = GlobalCount::new(7, "c", &seen, 1, 3);
        assert_eq!(alone.voted_by, ["a", "b", "c"]);
        assert_eq!((alone.voting_nodes, alone.nodes), (3, 2));
        assert_eq!(alone.votes, BTreeMap::from([("7".to_string(), 3)]));
        let first = GlobalCount::new(0, "solo", &[], 0, 3);
        assert_eq!(first.voted_by, ["solo"]);
        assert_eq!(first.votes, BTreeMap::from([("0".to_string(), 1)]));
    }
}
