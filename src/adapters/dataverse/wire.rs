//! JSON shapes on the wire ↔ the plain records of [`crate::domain::cpc`].
//!
//! Entity-set, column and navigation-property names live here and nowhere
//! else. Reading is lenient
//! where Dataverse may legitimately send `null` (rows written by others) and
//! strict where a missing value means the answer is not what was asked for.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::domain::cpc::{
    CHANNEL_EMAIL, ConsentRow, ConsentType, ConsentUpdate, Contact, LOGICAL_REASON_NONE,
    NewConsent, NewContact, Purpose, Topic,
};
use crate::domain::decision::ConsentValue;

/// Entity set of the Contact Point Consent table.
pub const CONSENT_SET: &str = "msdynmkt_contactpointconsent4s";
/// Primary key column of the Contact Point Consent table.
pub const CONSENT_ID: &str = "msdynmkt_contactpointconsent4id";
/// Entity set of purposes.
pub const PURPOSE_SET: &str = "msdynmkt_purposes";
/// Entity set of topics.
pub const TOPIC_SET: &str = "msdynmkt_topics";
/// Entity set of contacts.
pub const CONTACT_SET: &str = "contacts";
/// Navigation property for the purpose lookup (case-sensitive, capital `I`).
pub const PURPOSE_NAV: &str = "msdynmkt_purposeId";
/// Navigation property for the topic lookup (case-sensitive, capital `I`).
pub const TOPIC_NAV: &str = "msdynmkt_topicId";

/// Columns read from consent rows (no `statecode` filter: inactive rows are enforced too).
pub const CONSENT_SELECT: [&str; 11] = [
    CONSENT_ID,
    "msdynmkt_contactpointvalue",
    "msdynmkt_contactpointtype",
    "msdynmkt_contactpointconsenttype",
    "msdynmkt_value",
    "_msdynmkt_purposeid_value",
    "_msdynmkt_topicid_value",
    "msdynmkt_reason",
    "statecode",
    "modifiedon",
    "_modifiedby_value",
];
/// Column holding the contact point value (filtered on).
pub const CONSENT_VALUE_COLUMN: &str = "msdynmkt_contactpointvalue";
/// Column holding the source of the last change (reverse sync reads it).
pub const CONSENT_SOURCE_COLUMN: &str = "msdynmkt_source";
/// Column holding the channel (filtered on).
pub const CONSENT_CHANNEL_COLUMN: &str = "msdynmkt_contactpointtype";
/// Columns read from purposes.
pub const PURPOSE_SELECT: [&str; 3] = ["msdynmkt_purposeid", "msdynmkt_name", "statecode"];
/// Columns read from topics.
pub const TOPIC_SELECT: [&str; 4] = [
    "msdynmkt_topicid",
    "msdynmkt_name",
    "_msdynmkt_purposeid_value",
    "statecode",
];
/// Primary key of contacts.
pub const CONTACT_ID: &str = "contactid";

/// One page of a collection query.
#[derive(Debug, Deserialize)]
pub struct Page {
    /// The rows, kept as JSON so one odd row gives a precise error.
    #[serde(default)]
    pub value: Vec<Value>,
    /// Where the next page is, if any.
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// Dataverse's error body: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    /// The inner object.
    #[serde(default)]
    pub error: ErrorDetail,
}

/// The inner object of [`ErrorBody`].
#[derive(Debug, Default, Deserialize)]
pub struct ErrorDetail {
    /// Hex error code such as `0x80040217`; may be empty.
    #[serde(default)]
    pub code: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
}

/// Reads an error body; an empty or non-JSON body (a 401, a proxy's HTML) gives no code or message.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    (parsed.error.code, parsed.error.message.unwrap_or_default())
}

#[derive(Deserialize)]
struct ConsentRowWire {
    #[serde(rename = "@odata.etag")]
    etag: String,
    msdynmkt_contactpointconsent4id: Uuid,
    #[serde(default)]
    msdynmkt_contactpointvalue: Option<String>,
    #[serde(default)]
    msdynmkt_contactpointtype: Option<i32>,
    #[serde(default)]
    msdynmkt_contactpointconsenttype: Option<i32>,
    #[serde(default)]
    msdynmkt_value: Option<i32>,
    #[serde(default)]
    _msdynmkt_purposeid_value: Option<Uuid>,
    #[serde(default)]
    _msdynmkt_topicid_value: Option<Uuid>,
    #[serde(default)]
    msdynmkt_reason: Option<String>,
    #[serde(default)]
    statecode: Option<i32>,
    modifiedon: DateTime<Utc>,
    #[serde(default)]
    _modifiedby_value: Option<Uuid>,
}

/// A consent row from its JSON.
pub fn consent_row(row: Value) -> Result<ConsentRow, String> {
    let wire: ConsentRowWire = serde_json::from_value(row).map_err(|e| e.to_string())?;
    Ok(ConsentRow {
        id: wire.msdynmkt_contactpointconsent4id,
        contact_point: wire.msdynmkt_contactpointvalue.unwrap_or_default(),
        // Only Email rows are asked for, so a missing channel can only be Email.
        channel: wire.msdynmkt_contactpointtype.unwrap_or(CHANNEL_EMAIL),
        consent_type: wire
            .msdynmkt_contactpointconsenttype
            .and_then(ConsentType::from_option_value),
        purpose_id: wire._msdynmkt_purposeid_value,
        topic_id: wire._msdynmkt_topicid_value,
        value: wire
            .msdynmkt_value
            .and_then(ConsentValue::from_option_value),
        reason: wire.msdynmkt_reason,
        state: wire.statecode.unwrap_or(0),
        modified_on: wire.modifiedon,
        modified_by: wire._modifiedby_value,
        etag: checked_etag(&wire.etag)?,
    })
}

/// The `UserId` of a `WhoAmI` answer.
pub fn who_am_i(body: &[u8]) -> Result<Uuid, String> {
    #[derive(Deserialize)]
    struct WhoAmI {
        #[serde(rename = "UserId")]
        user_id: Uuid,
    }
    serde_json::from_slice::<WhoAmI>(body)
        .map(|answer| answer.user_id)
        .map_err(|e| format!("the WhoAmI answer has no UserId GUID: {e}"))
}

/// An ETag fit to travel in an `If-Match` header: printable ASCII only, so a
/// hostile or broken answer cannot inject headers into a `$batch` part.
pub fn checked_etag(etag: &str) -> Result<String, String> {
    if !etag.is_empty() && etag.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(etag.to_string())
    } else {
        Err(format!(
            "the row's @odata.etag {etag:?} is not a valid ETag"
        ))
    }
}

#[derive(Deserialize)]
struct PurposeWire {
    msdynmkt_purposeid: Uuid,
    #[serde(default)]
    msdynmkt_name: Option<String>,
    #[serde(default)]
    statecode: Option<i32>,
}

/// A purpose from its JSON.
pub fn purpose(row: Value) -> Result<Purpose, String> {
    let wire: PurposeWire = serde_json::from_value(row).map_err(|e| e.to_string())?;
    Ok(Purpose {
        id: wire.msdynmkt_purposeid,
        name: wire.msdynmkt_name.unwrap_or_default(),
        active: wire.statecode.unwrap_or(0) == 0,
    })
}

#[derive(Deserialize)]
struct TopicWire {
    msdynmkt_topicid: Uuid,
    #[serde(default)]
    msdynmkt_name: Option<String>,
    #[serde(default)]
    _msdynmkt_purposeid_value: Option<Uuid>,
    #[serde(default)]
    statecode: Option<i32>,
}

/// A topic from its JSON.
pub fn topic(row: Value) -> Result<Topic, String> {
    let wire: TopicWire = serde_json::from_value(row).map_err(|e| e.to_string())?;
    Ok(Topic {
        id: wire.msdynmkt_topicid,
        name: wire.msdynmkt_name.unwrap_or_default(),
        purpose_id: wire._msdynmkt_purposeid_value,
        active: wire.statecode.unwrap_or(0) == 0,
    })
}

/// A contact from its JSON; the two field names are configurable, so the row is read as a map.
pub fn contact(row: &Value, match_field: &str, point_field: &str) -> Result<Contact, String> {
    let id = row
        .get(CONTACT_ID)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a contact row has no {CONTACT_ID}"))?;
    let id = Uuid::parse_str(id).map_err(|e| format!("contactid is not a GUID: {e}"))?;
    let text = |field: &str| row.get(field).and_then(Value::as_str).map(str::to_owned);
    Ok(Contact {
        id,
        match_value: text(match_field),
        contact_point: text(point_field),
    })
}

/// Body of a create-only consent row: every ApplicationRequired column plus the binds.
pub fn create_consent_body(row: &NewConsent) -> Value {
    let mut body = Map::new();
    body.insert(
        "msdynmkt_contactpointvalue".into(),
        json!(row.contact_point),
    );
    body.insert("msdynmkt_contactpointtype".into(), json!(CHANNEL_EMAIL));
    body.insert(
        "msdynmkt_contactpointconsenttype".into(),
        json!(row.consent_type.option_value()),
    );
    body.insert("msdynmkt_value".into(), json!(row.value.option_value()));
    body.insert("msdynmkt_source".into(), json!(row.source));
    body.insert("msdynmkt_logicalreason".into(), json!(LOGICAL_REASON_NONE));
    body.insert("msdynmkt_reason".into(), json!(row.reason));
    body.insert(
        format!("{PURPOSE_NAV}@odata.bind"),
        json!(format!("/{PURPOSE_SET}({})", row.purpose_id)),
    );
    if let Some(topic) = row.topic_id {
        body.insert(
            format!("{TOPIC_NAV}@odata.bind"),
            json!(format!("/{TOPIC_SET}({topic})")),
        );
    }
    Value::Object(body)
}

/// Body of an update: only the columns that carry the decision, so CI-J
/// plug-ins and audit see exactly what changed.
pub fn update_consent_body(update: &ConsentUpdate) -> Value {
    json!({
        "msdynmkt_value": update.value.option_value(),
        "msdynmkt_source": update.source,
        "msdynmkt_logicalreason": LOGICAL_REASON_NONE,
        "msdynmkt_reason": update.reason,
    })
}

/// Body of a new contact: the match field and the contact point field (one key when they are the same).
pub fn create_contact_body(contact: &NewContact) -> Value {
    let mut body = Map::new();
    body.insert(contact.match_field.clone(), json!(contact.match_value));
    if contact.contact_point_field != contact.match_field {
        body.insert(
            contact.contact_point_field.clone(),
            json!(contact.contact_point),
        );
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cpc::SOURCE_INTERNAL;

    #[test]
    fn consent_row_from_reference_sample() {
        // the row shape Microsoft documents for a consent query
        let row = json!({
            "@odata.etag": "W/\"4648337\"",
            "msdynmkt_contactpointconsent4id": "e73ffc82-e292-ed11-aad1-000d3a9933c9",
            "msdynmkt_contactpointvalue": "jane.doe@example.com",
            "msdynmkt_contactpointtype": 534120000,
            "msdynmkt_contactpointconsenttype": 534120000,
            "msdynmkt_value": 534120001,
            "_msdynmkt_purposeid_value": "10000000-0000-0000-0000-000000000003",
            "_msdynmkt_topicid_value": null,
            "msdynmkt_source": 534120000,
            "msdynmkt_logicalreason": 534119999,
            "msdynmkt_reason": "didomi-sync",
            "statecode": 1,
            "modifiedon": "2024-05-14T09:12:33Z"
        });
        let row = consent_row(row).unwrap();
        assert_eq!(row.contact_point, "jane.doe@example.com");
        assert_eq!(row.value, Some(ConsentValue::OptedIn));
        assert_eq!(row.topic_id, None);
        assert_eq!(row.state, 1);
        assert_eq!(row.modified_on.to_rfc3339(), "2024-05-14T09:12:33+00:00");
    }

    #[test]
    fn odd_rows_are_errors_not_panics() {
        assert!(consent_row(json!({})).is_err());
        assert!(
            consent_row(json!({"msdynmkt_contactpointconsent4id": "nope", "modifiedon": "x"}))
                .is_err()
        );
        assert!(purpose(json!(null)).is_err());
        assert!(topic(json!([1, 2])).is_err());
        assert!(contact(&json!({"contactid": 5}), "emailaddress1", "emailaddress1").is_err());
        let c = contact(
            &json!({"contactid": "70bf4d48-34cb-ed11-b596-0022481d68cd", "emailaddress1": null}),
            "emailaddress1",
            "emailaddress2",
        )
        .unwrap();
        assert_eq!((c.match_value, c.contact_point), (None, None));
    }

    #[test]
    fn create_body_binds_with_capital_i() {
        let body = create_consent_body(&NewConsent {
            id: Uuid::nil(),
            contact_point: "a+b@x.com".into(),
            consent_type: ConsentType::Topic,
            value: ConsentValue::OptedIn,
            purpose_id: Uuid::from_u128(3),
            topic_id: Some(Uuid::from_u128(4)),
            source: SOURCE_INTERNAL,
            reason: "marker".into(),
        });
        assert_eq!(
            body["msdynmkt_purposeId@odata.bind"],
            "/msdynmkt_purposes(00000000-0000-0000-0000-000000000003)"
        );
        assert_eq!(
            body["msdynmkt_topicId@odata.bind"],
            "/msdynmkt_topics(00000000-0000-0000-0000-000000000004)"
        );
        assert_eq!(body["msdynmkt_contactpointtype"], 534_120_000);
        assert_eq!(body["msdynmkt_logicalreason"], 534_119_999);
        assert!(body.get("msdynmkt_purposeid@odata.bind").is_none());
        assert_eq!(body.as_object().unwrap().len(), 9);
    }

    #[test]
    fn contact_body_has_one_key_when_fields_match() {
        let mut contact = NewContact {
            id: Uuid::nil(),
            match_field: "emailaddress1".into(),
            match_value: "a@x.com".into(),
            contact_point_field: "emailaddress1".into(),
            contact_point: "a@x.com".into(),
        };
        assert_eq!(
            create_contact_body(&contact),
            json!({"emailaddress1": "a@x.com"})
        );
        contact.match_field = "new_didomiid".into();
        contact.match_value = "crm-1".into();
        assert_eq!(
            create_contact_body(&contact),
            json!({"new_didomiid": "crm-1", "emailaddress1": "a@x.com"})
        );
    }

    #[test]
    fn error_bodies() {
        let (code, message) =
            parse_error_body(br#"{"error":{"code":"0x80072322","message":"Number of requests"}}"#);
        assert_eq!(code.as_deref(), Some("0x80072322"));
        assert_eq!(message, "Number of requests");
        assert_eq!(parse_error_body(b""), (None, String::new()));
        assert_eq!(parse_error_body(b"<html>"), (None, String::new()));
    }

    #[test]
    fn etags_that_could_inject_headers_are_refused() {
        assert_eq!(checked_etag("W/\"4648337\"").unwrap(), "W/\"4648337\"");
        for bad in ["", "W/\"1\"\r\nIf-Match: *", "W/\"\u{7f}\""] {
            assert!(checked_etag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_consent_row_without_an_etag_is_refused() {
        let row = json!({"msdynmkt_contactpointconsent4id": "e73ffc82-e292-ed11-aad1-000d3a9933c9",
                         "modifiedon": "2025-01-01T00:00:00Z"});
        assert!(consent_row(row).is_err());
    }
}
