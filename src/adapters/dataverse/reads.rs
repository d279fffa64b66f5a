//! The queries: contacts and consent rows in sets, purposes and topics, and
//! `WhoAmI`. Each follows `@odata.nextLink` pages (only to the environment's
//! own origin) and splits long value lists so no URL grows past the limit.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, Url};
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use super::send::Request;
use super::wire::{self, CONSENT_SET, CONTACT_SET, PURPOSE_SET, TOPIC_SET};
use super::{DataverseClient, DataverseError, ErrorKind, Inner, odata, protocol};
use crate::domain::cpc::{CHANNEL_EMAIL, ConsentRow, Contact, Purpose, Topic};
use crate::domain::reverse::ChangedRow;

/// Most pages followed for one query; a server that keeps sending nextLinks
/// beyond this is looping, and an endless loop is worse than an error.
const MAX_PAGES: usize = 1000;

impl DataverseClient {
    /// Contacts whose `match_field` equals any of `values` (case-insensitive,
    /// as Dataverse compares), with `contactid`, `match_field` and `point_field`.
    pub async fn find_contacts(
        &self,
        match_field: &str,
        point_field: &str,
        values: &[String],
        deadline: Instant,
    ) -> Result<Vec<Contact>, DataverseError> {
        const OPERATION: &str = "query contacts";
        let select = contact_select(OPERATION, match_field, point_field)?;
        let rows = self
            .query_any_eq(
                OPERATION,
                CONTACT_SET,
                &select,
                ("", ""),
                match_field,
                values,
                deadline,
            )
            .await?;
        let contacts = decode_contacts(OPERATION, rows, match_field, point_field)?;
        tracing::debug!(
            asked = values.len(),
            found = contacts.len(),
            "Dataverse contacts queried"
        );
        Ok(contacts)
    }

    /// Every Email-channel consent row (active and inactive, all purposes and
    /// topics) for these contact point values. No `statecode` filter:
    /// Customer Insights – Journeys enforces inactive rows too.
    pub async fn consent_rows(
        &self,
        contact_points: &[String],
        deadline: Instant,
    ) -> Result<Vec<ConsentRow>, DataverseError> {
        const OPERATION: &str = "query consent rows";
        let prefix = email_rows_prefix();
        let rows = self
            .query_any_eq(
                OPERATION,
                CONSENT_SET,
                &wire::CONSENT_SELECT,
                (&prefix, ")"),
                wire::CONSENT_VALUE_COLUMN,
                contact_points,
                deadline,
            )
            .await?;
        let consents = decode_consent_rows(OPERATION, rows)?;
        tracing::debug!(
            contact_points = contact_points.len(),
            rows = consents.len(),
            "Dataverse consent rows queried"
        );
        Ok(consents)
    }

    /// Active Email-channel consent rows changed at or after `since` by
    /// anyone but `own_user`, from one of `sources` (reverse sync), oldest
    /// first, every page followed; each with its `msdynmkt_source`. No
    /// sources: no query, no rows.
    pub async fn changed_consent_rows(
        &self,
        since: DateTime<Utc>,
        own_user: Uuid,
        sources: &[i32],
        deadline: Instant,
    ) -> Result<Vec<ChangedRow>, DataverseError> {
        const OPERATION: &str = "query changed consent rows";
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = wire::CONSENT_SELECT.to_vec();
        select.push(wire::CONSENT_SOURCE_COLUMN);
        let sources = sources
            .iter()
            .map(|source| format!("{} eq {source}", wire::CONSENT_SOURCE_COLUMN))
            .collect::<Vec<_>>()
            .join(" or ");
        let filter = format!(
            "{} eq {CHANNEL_EMAIL} and statecode eq 0 and modifiedon ge {} and _modifiedby_value ne {own_user} and ({sources})",
            wire::CONSENT_CHANNEL_COLUMN,
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let query = format!(
            "{}&$orderby={}",
            odata::query_string(&select, Some(&filter)),
            odata::encode_query_value(&format!("modifiedon asc,{} asc", wire::CONSENT_ID))
        );
        let url = self.collection_url(CONSENT_SET, &query)?;
        let mut seen = HashSet::new();
        let mut changed = Vec::new();
        for row in self.inner.get_all(OPERATION, url, deadline).await? {
            let source = row
                .get(wire::CONSENT_SOURCE_COLUMN)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok());
            let row = wire::consent_row(row).map_err(|e| protocol(OPERATION, e))?;
            if seen.insert(row.id) {
                changed.push(ChangedRow { row, source });
            }
        }
        tracing::debug!(
            rows = changed.len(),
            "Dataverse changed consent rows queried"
        );
        Ok(changed)
    }

    /// The systemuser id of the application user this client writes as
    /// (`GET WhoAmI` → `UserId`).
    pub async fn who_am_i(&self, deadline: Instant) -> Result<Uuid, DataverseError> {
        const OPERATION: &str = "WhoAmI";
        let url = self.collection_url("WhoAmI", "")?;
        let request = Request {
            operation: OPERATION,
            method: Method::GET,
            url: &url,
            body: None,
            prefer: None,
        };
        let answer = self.inner.send(&request, deadline).await?;
        wire::who_am_i(&answer.body).map_err(|e| protocol(OPERATION, e))
    }

    /// All purposes, for start-up checks of the mapping.
    pub async fn purposes(&self, deadline: Instant) -> Result<Vec<Purpose>, DataverseError> {
        const OPERATION: &str = "query purposes";
        let url = self.collection_url(
            PURPOSE_SET,
            &odata::query_string(&wire::PURPOSE_SELECT, None),
        )?;
        self.inner
            .get_all(OPERATION, url, deadline)
            .await?
            .into_iter()
            .map(|row| wire::purpose(row).map_err(|e| protocol(OPERATION, e)))
            .collect()
    }

    /// All topics with their parent purpose, for start-up checks of the mapping.
    pub async fn topics(&self, deadline: Instant) -> Result<Vec<Topic>, DataverseError> {
        const OPERATION: &str = "query topics";
        let url =
            self.collection_url(TOPIC_SET, &odata::query_string(&wire::TOPIC_SELECT, None))?;
        self.inner
            .get_all(OPERATION, url, deadline)
            .await?
            .into_iter()
            .map(|row| wire::topic(row).map_err(|e| protocol(OPERATION, e)))
            .collect()
    }

    /// Runs one GET per group of values (URLs stay short) and returns all
    /// rows; the filter is `<prefix>p eq 'a' or p eq 'b'<suffix>`.
    #[allow(clippy::too_many_arguments)]
    async fn query_any_eq(
        &self,
        operation: &str,
        set: &str,
        select: &[&str],
        (prefix, suffix): (&str, &str),
        property: &str,
        values: &[String],
        deadline: Instant,
    ) -> Result<Vec<Value>, DataverseError> {
        let values = odata::distinct_values(values);
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let base = format!(
            "{}{set}{}&$filter=",
            self.inner.api,
            odata::query_string(select, None)
        );
        let fixed = base.len()
            + odata::encode_query_value(prefix).len()
            + odata::encode_query_value(suffix).len();
        let groups = odata::split_by_url_len(&values, fixed, self.inner.max_url_len, |value| {
            odata::eq_term(property, value)
        });
        let mut rows = Vec::new();
        for group in groups {
            let filter = format!("{prefix}{}{suffix}", odata::any_eq(property, &group));
            let url = Url::parse(&format!("{base}{}", odata::encode_query_value(&filter)))
                .map_err(|e| protocol(operation, format!("query URL does not parse: {e}")))?;
            rows.extend(self.inner.get_all(operation, url, deadline).await?);
        }
        Ok(rows)
    }
}

/// The columns a contact query selects (`contactid`, the match field and,
/// when different, the contact point field), after checking both names.
pub(super) fn contact_select<'a>(
    operation: &'static str,
    match_field: &'a str,
    point_field: &'a str,
) -> Result<Vec<&'a str>, DataverseError> {
    for field in [match_field, point_field] {
        odata::check_property(field)
            .map_err(|e| DataverseError::new(operation, ErrorKind::InvalidInput(e)))?;
    }
    let mut select = vec![wire::CONTACT_ID, match_field];
    if point_field != match_field {
        select.push(point_field);
    }
    Ok(select)
}

/// The filter prefix (closed by `)`) that keeps a consent-row query to the
/// Email channel; the address terms go inside the parentheses.
pub(super) fn email_rows_prefix() -> String {
    format!("{} eq {CHANNEL_EMAIL} and (", wire::CONSENT_CHANNEL_COLUMN)
}

/// Contacts from query rows, each once: split value lists and pages can
/// return a contact twice.
pub(super) fn decode_contacts(
    operation: &'static str,
    rows: impl IntoIterator<Item = Value>,
    match_field: &str,
    point_field: &str,
) -> Result<Vec<Contact>, DataverseError> {
    let mut seen = HashSet::new();
    let mut contacts = Vec::new();
    for row in rows {
        let contact =
            wire::contact(&row, match_field, point_field).map_err(|e| protocol(operation, e))?;
        if seen.insert(contact.id) {
            contacts.push(contact);
        }
    }
    Ok(contacts)
}

/// Consent rows from query rows, each once.
pub(super) fn decode_consent_rows(
    operation: &'static str,
    rows: impl IntoIterator<Item = Value>,
) -> Result<Vec<ConsentRow>, DataverseError> {
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut consents = Vec::new();
    for row in rows {
        let row = wire::consent_row(row).map_err(|e| protocol(operation, e))?;
        if seen.insert(row.id) {
            consents.push(row);
        }
    }
    Ok(consents)
}

impl Inner {
    /// GETs `first` and every page after it.
    pub(super) async fn get_all(
        &self,
        operation: &str,
        first: Url,
        deadline: Instant,
    ) -> Result<Vec<Value>, DataverseError> {
        let prefer = self
            .max_page_size
            .map(|rows| format!("odata.maxpagesize={rows}"));
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(protocol(
                    operation,
                    format!("more than {MAX_PAGES} pages; refusing to follow further nextLinks"),
                ));
            }
            let request = Request {
                operation,
                method: Method::GET,
                url: &url,
                body: None,
                prefer: prefer.as_deref(),
            };
            let answer = self.send(&request, deadline).await?;
            let page: wire::Page = serde_json::from_slice(&answer.body).map_err(|e| {
                protocol(
                    operation,
                    format!("the answer is not an OData collection: {e}"),
                )
            })?;
            rows.extend(page.value);
            if let Some(link) = page.next_link {
                let url = next_link(&self.instance, &link).map_err(|e| protocol(operation, e))?;
                if !seen.insert(url.as_str().to_owned()) {
                    return Err(protocol(
                        operation,
                        "a nextLink repeats; stopping to avoid a loop",
                    ));
                }
                next = Some(url);
            }
        }
        Ok(rows)
    }
}

/// Checks a nextLink before the bearer token follows it: same scheme, host
/// and port as the environment, or refused. Relative links resolve against
/// the environment.
pub fn next_link(instance: &Url, link: &str) -> Result<Url, String> {
    let url = match Url::parse(link) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => instance
            .join(link)
            .map_err(|e| format!("the nextLink does not parse: {e}"))?,
        Err(e) => return Err(format!("the nextLink does not parse: {e}")),
    };
    let same_origin = url.scheme() == instance.scheme()
        && url.host_str() == instance.host_str()
        && url.port_or_known_default() == instance.port_or_known_default();
    if same_origin {
        Ok(url)
    } else {
        Err(format!(
            "the nextLink points to {}://{}:{} instead of the environment; the bearer token is not sent there",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        ))
    }
}
