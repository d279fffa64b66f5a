//! The reverse sync's state in a DynamoDB table (the stack's
//! `ReverseSyncStateTable`, partition key `pk` of type String), shared by the
//! scheduled function and `cpc-sync reverse-sync --once --state-table TABLE`:
//!
//! - item `pk = "watermark"`: `modifiedon` (RFC 3339) and `version` (a
//!   number, one more on every advance). Advances are conditional on the
//!   version read under the lock (`attribute_not_exists(pk)` for the first).
//! - item `pk = "lock"`: `holder` and `expires_at` (Unix seconds). Taken with
//!   a conditional put that succeeds only when there is no lock or its lease
//!   is over, and deleted only by its holder.
//!
//! Reads are strongly consistent. Only GetItem, PutItem, UpdateItem and
//! DeleteItem are used (the function's policy allows exactly these).

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};

use crate::service::reverse::{Held, StateError, Watermark, WatermarkStore};

/// The partition key attribute.
pub const KEY: &str = "pk";
/// The watermark item's key.
pub const WATERMARK_ITEM: &str = "watermark";
/// The lock item's key.
pub const LOCK_ITEM: &str = "lock";

/// A DynamoDB client from the environment (region, credentials, and the
/// SDK's own endpoint overrides `AWS_ENDPOINT_URL_DYNAMODB` /
/// `AWS_ENDPOINT_URL`), with short timeouts and the SDK's standard retries
/// (three attempts) for throttling and 5xx.
pub async fn sdk_client() -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// The watermark and lock items of one table.
#[derive(Clone, Debug)]
pub struct DynamoStateStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStateStore {
    /// State in `table` through `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The watermark and its version (0: no watermark yet), read consistently.
    pub async fn read(&self) -> Result<(Option<Watermark>, u64), StateError> {
        let item = self.item(WATERMARK_ITEM).await?;
        let Some(item) = item else {
            return Ok((None, 0));
        };
        let modifiedon = item
            .get("modifiedon")
            .and_then(|value| value.as_s().ok())
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|at| at.with_timezone(&Utc))
            .ok_or_else(|| {
                StateError::Invalid(format!(
                    "table {}: the watermark item has no RFC 3339 modifiedon",
                    self.table
                ))
            })?;
        let version = number(item.get("version")).ok_or_else(|| {
            StateError::Invalid(format!(
                "table {}: the watermark item has no numeric version",
                self.table
            ))
        })?;
        Ok((Some(Watermark { modifiedon }), version))
    }

    /// One item of the table, read consistently (a pass must see the last
    /// conditional write of any other).
    async fn item(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>, StateError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(answer.item)
    }

    async fn current_lock(&self) -> Result<Option<(String, DateTime<Utc>)>, StateError> {
        let item = self.item(LOCK_ITEM).await?;
        Ok(item.map(|item| {
            let holder = item
                .get("holder")
                .and_then(|value| value.as_s().ok())
                .cloned()
                .unwrap_or_default();
            let expires_at = number(item.get("expires_at"))
                .and_then(|secs| Utc.timestamp_opt(secs as i64, 0).single())
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            (holder, expires_at)
        }))
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_string())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn number(value: Option<&AttributeValue>) -> Option<u64> {
    value?.as_n().ok()?.parse().ok()
}

/// True when DynamoDB refused a conditional write because its condition failed.
fn condition_failed<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// Throttling, 5xx and transport failures are worth a later pass; a missing
/// table, denied access or a validation error need an operator.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: SdkError<E>,
) -> StateError {
    let detail = aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string();
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status().as_u16();
            let retryable = status >= 500
                || matches!(
                    code,
                    "ProvisionedThroughputExceededException"
                        | "RequestLimitExceeded"
                        | "ThrottlingException"
                        | "InternalServerError"
                        | "TransactionConflictException"
                );
            if retryable {
                StateError::Unavailable(detail)
            } else {
                StateError::Invalid(detail)
            }
        }
        SdkError::ConstructionFailure(_) => StateError::Invalid(detail),
        _ => StateError::Unavailable(detail),
    }
}

impl WatermarkStore for DynamoStateStore {
    async fn lock(&self, holder: &str, lease: Duration) -> Result<Held, StateError> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let taken = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(LOCK_ITEM))
            .item("holder", s(holder))
            .item("expires_at", n(expires_at.timestamp()))
            .item("acquired_at", s(&now.to_rfc3339()))
            .condition_expression("attribute_not_exists(#pk) OR expires_at < :now")
            .expression_attribute_names("#pk", KEY)
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match taken {
            Ok(_) => {}
            Err(error) if condition_failed(&error) => {
                let (holder, expires_at) = self
                    .current_lock()
                    .await?
                    .unwrap_or_else(|| ("(released meanwhile)".into(), now));
                return Err(StateError::Locked { holder, expires_at });
            }
            Err(error) => return Err(classify(error)),
        }
        let (watermark, version) = match self.read().await {
            Ok(read) => read,
            Err(error) => {
                let held = Held {
                    holder: holder.to_string(),
                    expires_at,
                    watermark: None,
                    version: 0,
                };
                let _ = self.release(&held).await;
                return Err(error);
            }
        };
        Ok(Held {
            holder: holder.to_string(),
            expires_at,
            watermark,
            version,
        })
    }

    async fn advance(&self, held: &Held, to: &Watermark) -> Result<(), StateError> {
        let modifiedon = s(&to
            .modifiedon
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        let written = if held.version == 0 {
            self.client
                .put_item()
                .table_name(&self.table)
                .item(KEY, s(WATERMARK_ITEM))
                .item("modifiedon", modifiedon)
                .item("version", n(1))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", KEY)
                .send()
                .await
                .map(|_| ())
                .map_err(|error| (condition_failed(&error), classify(error)))
        } else {
            self.client
                .update_item()
                .table_name(&self.table)
                .key(KEY, s(WATERMARK_ITEM))
                .update_expression("SET modifiedon = :modifiedon, version = :next")
                .condition_expression("version = :expected")
                .expression_attribute_values(":modifiedon", modifiedon)
                .expression_attribute_values(":next", n(held.version + 1))
                .expression_attribute_values(":expected", n(held.version))
                .send()
                .await
                .map(|_| ())
                .map_err(|error| (condition_failed(&error), classify(error)))
        };
        match written {
            Ok(()) => Ok(()),
            Err((true, _)) => Err(StateError::Conflict {
                expected: held.version,
            }),
            Err((false, error)) => Err(error),
        }
    }

    async fn release(&self, held: &Held) -> Result<(), StateError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(LOCK_ITEM))
            .condition_expression("holder = :holder")
            .expression_attribute_values(":holder", s(&held.holder))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // Taken over after our lease ended (or already gone): not ours to delete.
            Err(error) if condition_failed(&error) => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }
}
