//! DescribeTransactions: the coordinator's state of each transactional id asked for
//! (`kafka-transactions.sh describe`). Needs Describe on the transactional id.

use std::collections::BTreeMap;

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::transactions::state::TxnMetadata;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let name = id.to_string();
        let state = if !ctx.may(Operation::Describe, ResourceType::TransactionalId, &name) {
            TransactionState::default()
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else {
            match ctx.broker.transactions.describe(&name).await {
                Some(meta) => describe(&meta),
                None => TransactionState::default()
                    .with_error_code(ResponseError::TransactionalIdNotFound.code()),
            }
        };
        states.push(state.with_transactional_id(id));
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

fn describe(meta: &TxnMetadata) -> TransactionState {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &meta.partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    TransactionState::default()
        .with_transaction_state(str_bytes(meta.state.name()))
        .with_transaction_timeout_ms(meta.timeout_ms)
        .with_transaction_start_time_ms(meta.txn_start_ms)
        .with_producer_id(meta.producer_id.into())
        .with_producer_epoch(meta.producer_epoch)
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}
