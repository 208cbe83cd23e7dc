//! DescribeCluster (KIP-700): the cluster id, this node as the only broker (at the advertised
//! address of the listener the client came in on, as Metadata answers) and as the controller.
//!
//! Authorization is Kafka's: anyone may describe the cluster this way; the cluster's authorized
//! operations, when asked for, are reported to principals with Describe on the cluster and
//! are 0 for everyone else. Endpoint types (v1+): this node answers as a broker endpoint, so a
//! request for controller endpoints answers MISMATCHED_ENDPOINT_TYPE and an unknown type
//! UNSUPPORTED_ENDPOINT_TYPE, each with Kafka's message.

use freshet_security::acl::{Operation, ResourceType, CLUSTER_NAME};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext, OPERATIONS_NOT_REQUESTED};

/// Kafka's `EndpointType` ids.
const BROKER_ENDPOINT: i8 = 1;
const CONTROLLER_ENDPOINT: i8 = 2;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // v0 has no endpoint type: the default (brokers) is what a v0 client means.
    if request.endpoint_type != BROKER_ENDPOINT {
        let (error, message) = if request.endpoint_type == CONTROLLER_ENDPOINT {
            (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint \
                 of type CONTROLLER"
                    .to_owned(),
            )
        } else {
            (
                ResponseError::UnsupportedEndpointType,
                format!("Unsupported endpoint type {}", request.endpoint_type),
            )
        };
        return DescribeClusterResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)));
    }
    let node_id = ctx.broker.config.node_id;
    let (host, port) = ctx.listener.advertised();
    let authorized_operations = if !request.include_cluster_authorized_operations {
        OPERATIONS_NOT_REQUESTED
    } else if ctx.may_on_cluster(Operation::Describe) {
        ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    };
    // A single node is never fenced, so `include_fenced_brokers` (v2) changes nothing.
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(ctx.broker.cluster_id.clone()))
        .with_controller_id(node_id.into())
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node_id.into())
            .with_host(str_bytes(host))
            .with_port(i32::from(port))])
        .with_cluster_authorized_operations(authorized_operations)
}
