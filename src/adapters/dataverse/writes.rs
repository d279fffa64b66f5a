//! The writes: every create and update of a batch as top-level parts of one
//! `$batch` with `odata.continue-on-error`, so one failing part cannot roll
//! back another message's; throttled parts are re-sent once; an answer that
//! does not match its requests one to one is refused whole.

use futures_util::future::join_all;
use reqwest::Method;
use tokio::time::Instant;

use super::batch::{self, BatchPart};
use super::send::{Request, http_error, request_id};
use super::{API_PATH, DataverseClient, DataverseError, ErrorKind, Inner, protocol, retry};
use crate::domain::cpc::WriteOp;

impl DataverseClient {
    /// Executes `ops` in one `$batch` (several side by side for large
    /// batches, see `write_requests`, and beyond 1000 parts) with
    /// `Prefer: odata.continue-on-error`. Each op is its own top-level part,
    /// not in a change set, so one failure does not roll back the others.
    ///
    /// Returns one result per op, in order. Parts that failed with 429 or a
    /// 5xx are re-sent once, in a new `$batch` of only those parts, if the
    /// deadline allows. The outer `Err` means the (first) `$batch` as a whole
    /// could not be done.
    pub async fn execute_writes(
        &self,
        ops: &[WriteOp],
        deadline: Instant,
    ) -> Result<Vec<Result<(), DataverseError>>, DataverseError> {
        let mut results: Vec<Result<(), DataverseError>> =
            vec![Err(DataverseError::new("$batch", ErrorKind::NoAnswer)); ops.len()];
        let mut pending: Vec<(usize, BatchPart)> = Vec::new();
        for (index, op) in ops.iter().enumerate() {
            match batch::part_for(op, API_PATH) {
                Ok(part) => pending.push((index, part)),
                Err(message) => {
                    results[index] = Err(DataverseError::new(
                        part_operation(index, op_label(op)),
                        ErrorKind::InvalidInput(message),
                    ));
                }
            }
        }
        let requests = self.inner.write_requests(pending.len());
        let chunk_len = pending.len().div_ceil(requests.max(1)).max(1);
        let chunks: Vec<&[(usize, BatchPart)]> = pending.chunks(chunk_len).collect();
        // The chunks go out together: the pacer keeps them within the hint.
        let answers = join_all(
            chunks
                .iter()
                .map(|chunk| self.inner.run_batch(chunk, deadline)),
        )
        .await;
        let all_failed = answers.iter().all(Result::is_err);
        for (chunk_index, (chunk, answer)) in chunks.iter().zip(answers).enumerate() {
            match answer {
                Ok(outcomes) => {
                    for ((index, _), outcome) in chunk.iter().zip(outcomes) {
                        results[*index] = outcome;
                    }
                }
                Err(error) if chunk_index == 0 && all_failed => return Err(error),
                Err(error) => {
                    for (index, part) in chunk.iter() {
                        results[*index] = Err(error
                            .clone()
                            .with_operation(part_operation(*index, part.label)));
                    }
                }
            }
        }
        self.inner
            .resend_throttled(&pending, &mut results, deadline)
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        tracing::info!(writes = ops.len(), failed, "Dataverse $batch done");
        Ok(results)
    }
}

impl Inner {
    /// How many `$batch` requests `writes` writes go in: one, unless the
    /// batch is large enough that each of several requests still carries
    /// `min_parts_per_request` writes (the server runs a `$batch`'s parts one
    /// after another, so only large batches gain from running side by side);
    /// then at most the pacer's parallelism (`min(x-ms-dop-hint, cap)`,
    /// lowered after 429s). Never more than 1000 parts in one.
    fn write_requests(&self, writes: usize) -> usize {
        let worth = writes / self.min_parts_per_request.max(1);
        let parallel = worth.clamp(1, self.pacer.parallelism().max(1));
        parallel.max(writes.div_ceil(batch::MAX_PARTS))
    }

    /// Posts `parts` as one `$batch` (continue on error) and returns one
    /// answer per part, in order: answers are matched to their requests by
    /// Content-ID, and a count or id mismatch fails the whole call. Shared by
    /// the queries (`lookup.rs`) and the writes.
    pub(super) async fn post_batch(
        &self,
        parts: &[BatchPart],
        deadline: Instant,
    ) -> Result<Vec<batch::PartResponse>, DataverseError> {
        const OPERATION: &str = "$batch";
        let boundary = batch::new_boundary();
        let body = batch::build_body(&boundary, parts);
        let content_type = batch::content_type(&boundary);
        let mut url = self.api.clone();
        url.set_path(&format!("{API_PATH}$batch"));
        let request = Request {
            operation: OPERATION,
            method: Method::POST,
            url: &url,
            body: Some((&content_type, body.as_bytes())),
            prefer: Some("odata.continue-on-error"),
        };
        let answer = self.send(&request, deadline).await?;
        let text = String::from_utf8_lossy(&answer.body);
        let responses = batch::parse_response(answer.content_type(), &text)
            .map_err(|e| protocol(OPERATION, e).with_request_id(request_id(&answer.headers)))?;
        check_one_answer_per_request(&responses, parts.len())
            .map_err(|e| e.with_request_id(request_id(&answer.headers)))?;
        Ok(responses)
    }

    /// Sends `parts` as one `$batch` and maps each answer part to a result.
    async fn run_batch(
        &self,
        parts: &[(usize, BatchPart)],
        deadline: Instant,
    ) -> Result<Vec<Result<(), DataverseError>>, DataverseError> {
        let owned: Vec<BatchPart> = parts.iter().map(|(_, part)| part.clone()).collect();
        let responses = self.post_batch(&owned, deadline).await?;
        Ok(parts
            .iter()
            .enumerate()
            .map(|(position, (index, part))| {
                let operation = part_operation(*index, part.label);
                match responses.get(position) {
                    Some(response) if (200..300).contains(&response.status) => Ok(()),
                    Some(response) => Err(part_error(&operation, response, part.create_only)),
                    None => Err(DataverseError::new(operation, ErrorKind::NoAnswer)),
                }
            })
            .collect())
    }

    /// Re-sends, once, the parts that failed with 429 or 5xx (the rest of the
    /// batch already went through), waiting for the longest `Retry-After`.
    async fn resend_throttled(
        &self,
        pending: &[(usize, BatchPart)],
        results: &mut [Result<(), DataverseError>],
        deadline: Instant,
    ) {
        let again: Vec<(usize, BatchPart)> = pending
            .iter()
            .filter(|(index, _)| {
                results[*index]
                    .as_ref()
                    .err()
                    .and_then(DataverseError::status)
                    .is_some_and(|status| status == 429 || (500..600).contains(&status))
            })
            .cloned()
            .collect();
        if again.is_empty() {
            return;
        }
        let retry_after = again
            .iter()
            .filter_map(|(index, _)| results[*index].as_ref().err()?.retry_after())
            .max();
        if again.iter().any(|(index, _)| {
            results[*index]
                .as_ref()
                .err()
                .and_then(DataverseError::status)
                == Some(429)
        }) {
            self.pacer.throttled(retry_after);
        }
        let wait = self.policy.wait_before_retry(0, retry_after);
        if !retry::wait_fits(Instant::now(), wait, deadline) {
            for (index, _) in &again {
                if let Err(error) = &mut results[*index] {
                    *error = error.clone().with_deadline_reached();
                }
            }
            return;
        }
        tracing::warn!(
            parts = again.len(),
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "re-sending throttled or failed $batch parts once"
        );
        tokio::time::sleep(wait).await;
        let chunks: Vec<&[(usize, BatchPart)]> = again.chunks(batch::MAX_PARTS).collect();
        let answers = join_all(chunks.iter().map(|chunk| self.run_batch(chunk, deadline))).await;
        for (chunk, answer) in chunks.iter().zip(answers) {
            // A failure of the re-send as a whole keeps the first answers.
            if let Ok(outcomes) = answer {
                for ((index, _), outcome) in chunk.iter().zip(outcomes) {
                    results[*index] = outcome;
                }
            }
        }
    }
}

/// The error of one failed `$batch` part.
pub(super) fn part_error(
    operation: &str,
    response: &batch::PartResponse,
    create_only: bool,
) -> DataverseError {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    let status = reqwest::StatusCode::from_u16(response.status)
        .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    http_error(
        operation,
        status,
        &headers,
        response.body.as_bytes(),
        create_only,
    )
}

/// "$batch part 3 (create consent)", numbered from 1 in the caller's order.
/// A `$batch` answer must hold exactly one part per request, in order: a
/// missing, extra or reordered part means no part can be matched to its
/// request with certainty, so the whole batch fails (retryably: every write
/// is idempotent, and the next delivery re-reads).
fn check_one_answer_per_request(
    responses: &[batch::PartResponse],
    sent: usize,
) -> Result<(), DataverseError> {
    let mismatch =
        |message: String| DataverseError::new("$batch", ErrorKind::BatchMismatch(message));
    if responses.len() != sent {
        return Err(mismatch(format!(
            "{sent} requests, {} answer parts",
            responses.len()
        )));
    }
    for (position, response) in responses.iter().enumerate() {
        let expected = (position + 1).to_string();
        if let Some(id) = &response.content_id
            && id.trim() != expected
        {
            return Err(mismatch(format!(
                "answer part {} has Content-ID {id:?}, expected {expected}",
                position + 1
            )));
        }
    }
    Ok(())
}

fn part_operation(index: usize, label: &str) -> String {
    format!("$batch part {} ({label})", index + 1)
}

fn op_label(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::CreateContact(_) => "create contact",
        WriteOp::CreateConsent(_) => "create consent",
        WriteOp::UpdateConsent(_) => "update consent",
    }
}
