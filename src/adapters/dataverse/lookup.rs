//! The read step in one round trip: the contact query and the consent-row
//! query as GET parts of one `$batch` (one request toward the service
//! protection limits). GET parts inside a `$batch` may carry URLs up to
//! 64 KB (reference §3.9), so even a 100-message batch stays one request;
//! value lists are split into several GET parts of the same `$batch` beyond
//! that. Later pages (`@odata.nextLink`, over 5000 rows) are followed with
//! ordinary GETs.

use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

use super::batch::{self, BatchPart};
use super::reads::{contact_select, decode_consent_rows, decode_contacts, email_rows_prefix};
use super::wire::{self, CONSENT_SET, CONTACT_SET};
use super::{API_PATH, DataverseClient, DataverseError, Inner, odata, protocol};
use crate::domain::cpc::{ConsentRow, Contact};

/// Longest GET part URL inside a `$batch`: 64 KB, less room for the
/// request line and headers.
pub const BATCH_GET_URL_LEN: usize = 60 * 1024;

const OPERATION: &str = "$batch of queries";

/// Which query a GET part belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Query {
    Contacts,
    Rows,
}

impl DataverseClient {
    /// The contacts whose `match_field` equals any of `values` and every
    /// Email-channel consent row of the `contact_points`, in one `$batch` of
    /// GETs: one sequential round trip instead of two.
    pub async fn contacts_and_rows(
        &self,
        match_field: &str,
        point_field: &str,
        values: &[String],
        contact_points: &[String],
        deadline: Instant,
    ) -> Result<(Vec<Contact>, Vec<ConsentRow>), DataverseError> {
        let select = contact_select(OPERATION, match_field, point_field)?;
        let rows_prefix = email_rows_prefix();
        let mut parts: Vec<(Query, BatchPart)> = Vec::new();
        for path in get_paths(CONTACT_SET, &select, ("", ""), match_field, values) {
            parts.push((Query::Contacts, get_part(path, "query contacts")));
        }
        for path in get_paths(
            CONSENT_SET,
            &wire::CONSENT_SELECT,
            (&rows_prefix, ")"),
            wire::CONSENT_VALUE_COLUMN,
            contact_points,
        ) {
            parts.push((Query::Rows, get_part(path, "query consent rows")));
        }
        let mut contact_rows = Vec::new();
        let mut consent_rows = Vec::new();
        for chunk in parts.chunks(batch::MAX_PARTS) {
            let pages = self.inner.run_get_batch(chunk, deadline).await?;
            for ((query, _), rows) in chunk.iter().zip(pages) {
                match query {
                    Query::Contacts => contact_rows.extend(rows),
                    Query::Rows => consent_rows.extend(rows),
                }
            }
        }
        let contacts = decode_contacts("query contacts", contact_rows, match_field, point_field)?;
        let consents = decode_consent_rows("query consent rows", consent_rows)?;
        tracing::debug!(
            asked = values.len(),
            contacts = contacts.len(),
            rows = consents.len(),
            "Dataverse contacts and consent rows queried in one $batch"
        );
        Ok((contacts, consents))
    }
}

/// Relative GET URLs (`/api/data/v9.2/<set>?$select=…&$filter=…`), one per
/// group of values that fits [`BATCH_GET_URL_LEN`].
fn get_paths(
    set: &str,
    select: &[&str],
    (prefix, suffix): (&str, &str),
    property: &str,
    values: &[String],
) -> Vec<String> {
    let values = odata::distinct_values(values);
    if values.is_empty() {
        return Vec::new();
    }
    let base = format!(
        "{API_PATH}{set}{}&$filter=",
        odata::query_string(select, None)
    );
    let fixed = base.len()
        + odata::encode_query_value(prefix).len()
        + odata::encode_query_value(suffix).len();
    odata::split_by_url_len(&values, fixed, BATCH_GET_URL_LEN, |value| {
        odata::eq_term(property, value)
    })
    .into_iter()
    .map(|group| {
        let filter = format!("{prefix}{}{suffix}", odata::any_eq(property, &group));
        format!("{base}{}", odata::encode_query_value(&filter))
    })
    .collect()
}

fn get_part(path: String, label: &'static str) -> BatchPart {
    BatchPart {
        method: "GET",
        path,
        headers: Vec::new(),
        body: String::new(),
        create_only: false,
        label,
    }
}

impl Inner {
    /// Sends GET `parts` as one `$batch`; returns each part's rows, every
    /// page followed. Any failed part fails the whole call.
    async fn run_get_batch(
        &self,
        parts: &[(Query, BatchPart)],
        deadline: Instant,
    ) -> Result<Vec<Vec<Value>>, DataverseError> {
        let mut owned: Vec<BatchPart> = parts.iter().map(|(_, part)| part.clone()).collect();
        if let Some(rows) = self.max_page_size {
            for part in &mut owned {
                part.headers
                    .push(("Prefer", format!("odata.maxpagesize={rows}")));
            }
        }
        let responses = self.post_batch(&owned, deadline).await?;
        let mut out = Vec::with_capacity(parts.len());
        for ((_, part), response) in parts.iter().zip(&responses) {
            if !(200..300).contains(&response.status) {
                return Err(super::writes::part_error(part.label, response, false));
            }
            let page: wire::Page = serde_json::from_str(&response.body).map_err(|e| {
                protocol(
                    part.label,
                    format!("the answer is not an OData collection: {e}"),
                )
            })?;
            let mut rows = page.value;
            if let Some(link) = page.next_link {
                let next: Url =
                    super::next_link(&self.instance, &link).map_err(|e| protocol(part.label, e))?;
                rows.extend(self.get_all(part.label, next, deadline).await?);
            }
            out.push(rows);
        }
        Ok(out)
    }
}
