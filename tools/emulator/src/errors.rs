//! Dataverse-shaped errors: `{"error":{"code":"0x…","message":"…"}}`.

use serde_json::json;

/// One Dataverse error: HTTP status, hex `error.code`, message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Help link Dataverse embeds in payload errors.
const PAYLOAD_HELP: &str = "For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293";

impl DvError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// JSON body bytes.
    pub fn body(&self) -> Vec<u8> {
        json!({"error": {"code": self.code, "message": self.message}})
            .to_string()
            .into_bytes()
    }

    pub fn record_not_found(logical: &str, id: &str) -> Self {
        Self::new(
            404,
            "0x80040217",
            format!("{logical} With Id = {id} Does Not Exist"),
        )
    }

    pub fn bind_target_missing(logical: &str, id: &str) -> Self {
        Self::new(
            404,
            "0x80040217",
            format!("Entity '{logical}' With Id = {id} Does Not Exist"),
        )
    }

    pub fn segment_not_found(segment: &str) -> Self {
        Self::new(
            404,
            "0x8006088a",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub fn unknown_property(logical: &str, name: &str) -> Self {
        Self::new(
            400,
            "0x0",
            format!(
                "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical}'."
            ),
        )
    }

    pub fn invalid_body_property(logical: &str, name: &str) -> Self {
        Self::new(
            400,
            "0x0",
            format!(
                "An error occurred while validating input parameters: Microsoft.Crm.CrmException: Invalid property '{name}' was found in entity 'Microsoft.Dynamics.CRM.{logical}'. ---> Microsoft.OData.ODataException: Does not support untyped value in non-open type."
            ),
        )
    }

    /// `0x80048d19`: the OData reader rejected the payload.
    pub fn payload(set: &str, inner: &str) -> Self {
        Self::new(
            400,
            "0x80048d19",
            format!(
                "Error identified in Payload provided by the user for Entity :'{set}', {PAYLOAD_HELP}  ---->  InnerException : {inner}"
            ),
        )
    }

    pub fn undeclared_annotation_only(set: &str, name: &str) -> Self {
        Self::payload(
            set,
            &format!(
                "Microsoft.OData.ODataException: An undeclared property '{name}' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."
            ),
        )
    }

    pub fn choice_out_of_range(value: &str, attr: &str, logical: &str, accepted: &[i64]) -> Self {
        let list: Vec<String> = accepted.iter().map(i64::to_string).collect();
        Self::new(
            400,
            "0x8004431a",
            format!(
                "A validation error occurred. The value {value} of '{attr}' on record of type '{logical}' is outside the valid range. Accepted Values: {}",
                list.join(",")
            ),
        )
    }

    pub fn too_long(attr: &str, logical: &str, max: usize) -> Self {
        Self::new(
            400,
            "0x80044331",
            format!(
                "A validation error occurred.  The length of the '{attr}' attribute of the '{logical}' entity exceeded the maximum allowed length of '{max}'."
            ),
        )
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(400, "0x80060888", message)
    }

    pub fn duplicate_key() -> Self {
        Self::new(
            412,
            "0x80040237",
            "A record with matching key values already exists.",
        )
    }

    /// 412 `ConcurrencyVersionMismatch` (`If-Match` names an older ETag).
    pub fn version_mismatch() -> Self {
        Self::new(
            412,
            "0x80060882",
            "The version of the existing record doesn't match the RowVersion property provided.",
        )
    }

    pub fn not_app_user() -> Self {
        Self::new(
            403,
            "0x80072560",
            "The user is not a member of the organization.",
        )
    }
}
