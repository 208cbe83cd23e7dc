//! ListTransactions: transactional ids with their producer and state, filtered by state,
//! producer id, minimum duration (v1) and id pattern (v2), showing only ids the principal may
//! describe.

use freshet_security::acl::{Operation, ResourceType};
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use regex::Regex;

use super::{str_bytes, RequestContext};
use crate::broker::now_ms;
use crate::transactions::state::{TxnMetadata, TxnState};

const STATES: [TxnState; 6] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
];

pub async fn handle(
    ctx: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let pattern = match request
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(text) => match Regex::new(text) {
            Ok(regex) => Some(regex),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code())
            }
        },
    };
    let (known, unknown): (Vec<&StrBytes>, Vec<&StrBytes>) = request
        .state_filters
        .iter()
        .partition(|name| STATES.iter().any(|s| s.name() == name.as_str()));
    let now = now_ms();
    let matches = |meta: &TxnMetadata| {
        (known.is_empty() || known.iter().any(|s| s.as_str() == meta.state.name()))
            && (request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .iter()
                    .any(|p| p.0 == meta.producer_id))
            && (request.duration_filter < 0
                || (meta.state == TxnState::Ongoing
                    && now.saturating_sub(meta.txn_start_ms) >= request.duration_filter))
            && pattern
                .as_ref()
                .is_none_or(|re| re.is_match(&meta.transactional_id))
            && ctx.may(
                Operation::Describe,
                ResourceType::TransactionalId,
                &meta.transactional_id,
            )
    };
    let states = ctx
        .broker
        .transactions
        .list()
        .await
        .iter()
        .filter(|meta| matches(meta))
        .map(|meta| {
            TransactionState::default()
                .with_transactional_id(str_bytes(meta.transactional_id.clone()).into())
                .with_producer_id(meta.producer_id.into())
                .with_transaction_state(str_bytes(meta.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown.into_iter().cloned().collect())
        .with_transaction_states(states)
}
