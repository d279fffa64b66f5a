//! AWS Secrets Manager source of the integration document (README, "Where the document comes from").
//!
//! The secret named by `SECRET_ID` holds, as JSON text in its `SecretString`,
//! either the whole Didomi integration document or just its `authentication`
//! object. [`SecretsManagerSource`] reads it with `GetSecretValue`, caches the
//! text for a TTL ([`DEFAULT_SECRET_TTL`]) and serves the Entra credentials in
//! it as a [`CredentialSource`]; a forced refresh (after Entra rejected the
//! client secret) reads the secret again, so a rotated secret is picked up
//! without a cold start.
//!
//! The secret's value never appears in an error or a log line: errors name the
//! secret, the field or the position in the text, and what to fix.

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use serde_json::Value;
use tokio::time::Instant;

use crate::adapters::entra::{AuthError, BoxFuture, CredentialSource};
use crate::config::Credentials;
use crate::redact::SecretString;

/// How long a secret read is reused before `GetSecretValue` is called again:
/// 15 minutes. A warm Lambda thus sees a rotated secret within 15 minutes
/// (at once, when Entra rejects the old one) while a busy function makes at
/// most four calls an hour per instance.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(15 * 60);

/// A Secrets Manager client configured the standard way: region and
/// credentials from the environment/profile/role chain, and the endpoint from
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER` or `AWS_ENDPOINT_URL` when set (read by
/// the SDK itself; this is how tests and local runs reach `moto_server`).
/// Attempts time out after 5 s and a whole call, retries included, after 15 s,
/// so a stuck call cannot eat a Lambda invocation.
pub async fn sdk_client() -> aws_sdk_secretsmanager::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&config)
}

/// Why the integration secret could not be read or used. Messages name what
/// an operator has to fix and never contain the secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// `ResourceNotFoundException`.
    #[error(
        "secret `{secret_id}` was not found (ResourceNotFoundException): check SECRET_ID and the region (AWS_REGION) the function runs in"
    )]
    NotFound {
        /// The `SECRET_ID` used.
        secret_id: String,
    },
    /// `AccessDeniedException`, or a KMS failure (`DecryptionFailure`, KMS access denied).
    #[error("{}", access_denied_message(secret_id, *kms))]
    AccessDenied {
        /// The `SECRET_ID` used.
        secret_id: String,
        /// True when decrypting with the secret's KMS key failed.
        kms: bool,
    },
    /// The secret holds binary data (`SecretBinary`) instead of text.
    #[error(
        "secret `{secret_id}` has no SecretString (it is a binary secret): store the integration document as JSON text"
    )]
    NoSecretString {
        /// The `SECRET_ID` used.
        secret_id: String,
    },
    /// The text is not a JSON object. `detail` names the position, never the content.
    #[error(
        "the secret's SecretString is not a JSON object ({detail}): store the Didomi integration document, or just its `authentication` object, as JSON"
    )]
    NotJson {
        /// What is wrong and where (line and column), without the text itself.
        detail: String,
    },
    /// Authentication fields are missing or empty.
    #[error(
        "the secret lacks {}: it needs client_id, client_secret, tenant_id and instance (in `authentication`, or at the top level)",
        fields.join(", ")
    )]
    Incomplete {
        /// The missing fields, e.g. `authentication.client_secret`.
        fields: Vec<String>,
    },
    /// The fields are present but not valid (the problems name field and fix).
    #[error("the secret's authentication is not valid: {problems}")]
    Invalid {
        /// The validation problems, one per line.
        problems: String,
    },
    /// Secrets Manager refused the request for a reason other than the above
    /// (secret scheduled for deletion, bad parameter, client misconfiguration).
    #[error("Secrets Manager refused to return secret `{secret_id}` ({code}): {detail}")]
    Rejected {
        /// The `SECRET_ID` used.
        secret_id: String,
        /// The AWS error code.
        code: String,
        /// AWS's message.
        detail: String,
    },
    /// Network failure, timeout, throttling or a 5xx: retrying may help.
    #[error("Secrets Manager is unavailable ({detail}); retrying later may help")]
    Unavailable {
        /// What failed.
        detail: String,
    },
}

fn access_denied_message(secret_id: &str, kms: bool) -> String {
    if kms {
        format!(
            "secret `{secret_id}` could not be decrypted: grant the function's role kms:Decrypt on the secret's KMS key (and secretsmanager:GetSecretValue on the secret)"
        )
    } else {
        format!(
            "access to secret `{secret_id}` was denied (AccessDeniedException): grant the function's role secretsmanager:GetSecretValue on it (and kms:Decrypt on its key if it uses a customer managed key)"
        )
    }
}

impl SecretsError {
    /// True when the same read may succeed later (network, throttling, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecretsError::Unavailable { .. })
    }
}

impl From<SecretsError> for AuthError {
    fn from(error: SecretsError) -> Self {
        AuthError::Credentials {
            retryable: error.is_retryable(),
            message: error.to_string(),
        }
    }
}

/// The Entra credentials in a secret's text: the whole integration document
/// (its `authentication` object is used) or the bare `authentication` object.
pub fn credentials_from_document(
    document: &str,
    allow_insecure_http: bool,
) -> Result<Credentials, SecretsError> {
    let parsed: Value = serde_json::from_str(document).map_err(|err| SecretsError::NotJson {
        detail: format!(
            "{} at line {} column {}",
            match err.classify() {
                serde_json::error::Category::Eof => "the text ends early",
                _ => "syntax error",
            },
            err.line(),
            err.column()
        ),
    })?;
    let Value::Object(root) = &parsed else {
        return Err(SecretsError::NotJson {
            detail: format!("it is a JSON {}", json_kind(&parsed)),
        });
    };
    let authentication = match root.get("authentication") {
        None => &parsed,
        Some(value @ Value::Object(_)) => value,
        Some(Value::Null) => {
            return Err(SecretsError::Incomplete {
                fields: vec!["authentication".into()],
            });
        }
        Some(other) => {
            return Err(SecretsError::Invalid {
                problems: format!(
                    "`authentication` is a JSON {}, not an object",
                    json_kind(other)
                ),
            });
        }
    };
    let missing = Credentials::missing_fields(authentication);
    if !missing.is_empty() {
        return Err(SecretsError::Incomplete { fields: missing });
    }
    Credentials::from_json(&parsed, allow_insecure_http).map_err(|errors| SecretsError::Invalid {
        problems: errors
            .0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The integration secret, read with `GetSecretValue` and cached for a TTL.
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    allow_insecure_http: bool,
    /// The last text read and when; the lock also makes concurrent readers
    /// share one `GetSecretValue` call.
    cache: tokio::sync::Mutex<Option<CachedSecret>>,
}

struct CachedSecret {
    value: SecretString,
    read_at: Instant,
}

impl SecretsManagerSource {
    /// A source for `secret_id` (name or ARN), re-read after `ttl`
    /// (usually [`DEFAULT_SECRET_TTL`]). `allow_insecure_http` is passed to the
    /// instance URL validation (`ALLOW_INSECURE_HTTP`).
    pub fn new(
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        ttl: Duration,
        allow_insecure_http: bool,
    ) -> Self {
        Self {
            client,
            secret_id,
            ttl,
            allow_insecure_http,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The secret name or ARN read.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The secret's `SecretString`: from the cache when read less than the
    /// TTL ago and `force_refresh` is false, else from Secrets Manager.
    pub async fn document(&self, force_refresh: bool) -> Result<String, SecretsError> {
        let mut cache = self.cache.lock().await;
        if !force_refresh
            && let Some(cached) = cache.as_ref()
            && cached.read_at.elapsed() < self.ttl
        {
            return Ok(cached.value.expose().to_string());
        }
        let value = self.read().await.inspect_err(|error| {
            tracing::warn!(secret_id = %self.secret_id, error = %error, "could not read the integration secret");
        })?;
        tracing::info!(secret_id = %self.secret_id, force_refresh, "read the integration secret from Secrets Manager");
        let text = value.expose().to_string();
        *cache = Some(CachedSecret {
            value,
            read_at: Instant::now(),
        });
        Ok(text)
    }

    async fn read(&self) -> Result<SecretString, SecretsError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|err| map_sdk_error(&self.secret_id, err))?;
        match output.secret_string() {
            Some(text) => Ok(SecretString::new(text)),
            None => Err(SecretsError::NoSecretString {
                secret_id: self.secret_id.clone(),
            }),
        }
    }
}

impl fmt::Debug for SecretsManagerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerSource")
            .field("secret_id", &self.secret_id)
            .field("ttl", &self.ttl)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

impl CredentialSource for SecretsManagerSource {
    fn credentials(&self, force_refresh: bool) -> BoxFuture<'_, Result<Credentials, AuthError>> {
        Box::pin(async move {
            let document = self.document(force_refresh).await?;
            Ok(credentials_from_document(
                &document,
                self.allow_insecure_http,
            )?)
        })
    }
}

fn map_sdk_error(secret_id: &str, err: SdkError<GetSecretValueError>) -> SecretsError {
    let unavailable = |detail: String| SecretsError::Unavailable { detail };
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown").to_string();
            let message = service.err().message().unwrap_or_default().to_string();
            match code.as_str() {
                "ResourceNotFoundException" => SecretsError::NotFound {
                    secret_id: secret_id.into(),
                },
                "DecryptionFailure"
                | "KMSAccessDeniedException"
                | "KMSDisabledException"
                | "KMSInvalidStateException"
                | "KMSNotFoundException" => SecretsError::AccessDenied {
                    secret_id: secret_id.into(),
                    kms: true,
                },
                "AccessDeniedException" => SecretsError::AccessDenied {
                    secret_id: secret_id.into(),
                    kms: message.to_ascii_lowercase().contains("kms"),
                },
                "ThrottlingException"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "InternalServiceError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "RequestTimeout"
                | "ExpiredTokenException" => unavailable(format!("{code}, HTTP {status}")),
                _ if status == 429 || status >= 500 => {
                    unavailable(format!("{code}, HTTP {status}"))
                }
                _ => SecretsError::Rejected {
                    secret_id: secret_id.into(),
                    code,
                    detail: message,
                },
            }
        }
        SdkError::ConstructionFailure(_) => SecretsError::Rejected {
            secret_id: secret_id.into(),
            code: "ClientConfiguration".into(),
            detail: DisplayErrorContext(&err).to_string(),
        },
        SdkError::TimeoutError(_) => unavailable("the call timed out".into()),
        SdkError::DispatchFailure(_) => unavailable(DisplayErrorContext(&err).to_string()),
        // The response could not be read; its detail could quote the body.
        _ => unavailable("the response could not be read".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHOLE: &str = r#"{"type_id":"microsoft-dynamics-cpc","authentication":{"client_id":"535fb089-9ff3-47b6-9bfb-4f1264799865","client_secret":"s3cret-VALUE","tenant_id":"72f988bf-0000-0000-0000-000000000001","instance":"https://contoso.crm4.dynamics.com"},"mappings":[]}"#;

    #[test]
    fn whole_document_yields_its_authentication() {
        let credentials = credentials_from_document(WHOLE, false).unwrap();
        assert_eq!(credentials.client_secret.expose(), "s3cret-VALUE");
        assert_eq!(
            credentials.scope(),
            "https://contoso.crm4.dynamics.com/.default"
        );
    }

    #[test]
    fn bare_authentication_object_is_accepted() {
        let bare =
            serde_json::to_string(&serde_json::from_str::<Value>(WHOLE).unwrap()["authentication"])
                .unwrap();
        let credentials = credentials_from_document(&bare, false).unwrap();
        assert_eq!(
            credentials.tenant_id,
            "72f988bf-0000-0000-0000-000000000001"
        );
    }

    #[test]
    fn non_json_names_the_position_but_not_the_content() {
        let error = credentials_from_document("client_secret=hunter2-VALUE", false).unwrap_err();
        assert!(matches!(error, SecretsError::NotJson { .. }), "{error:?}");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("line 1 column 1"), "{shown}");
    }

    #[test]
    fn a_json_string_is_not_an_object() {
        let error = credentials_from_document(r#""hunter2-VALUE""#, false).unwrap_err();
        assert_eq!(
            error,
            SecretsError::NotJson {
                detail: "it is a JSON string".into()
            }
        );
    }

    #[test]
    fn missing_and_empty_fields_are_listed() {
        let error = credentials_from_document(
            r#"{"authentication":{"client_id":"535fb089-9ff3-47b6-9bfb-4f1264799865","client_secret":"  "}}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(
            error,
            SecretsError::Incomplete {
                fields: vec![
                    "authentication.client_secret".into(),
                    "authentication.tenant_id".into(),
                    "authentication.instance".into()
                ]
            }
        );
    }

    #[test]
    fn invalid_values_are_invalid_without_the_secret() {
        let document = WHOLE.replace(
            "https://contoso.crm4.dynamics.com",
            "https://evil.example.com",
        );
        let error = credentials_from_document(&document, false).unwrap_err();
        assert!(matches!(error, SecretsError::Invalid { .. }), "{error:?}");
        assert!(
            error.to_string().contains("authentication.instance"),
            "{error}"
        );
        assert!(!error.to_string().contains("s3cret-VALUE"), "{error}");
    }

    #[test]
    fn only_unavailable_is_retryable_and_maps_to_a_retryable_auth_error() {
        let unavailable = SecretsError::Unavailable { detail: "x".into() };
        let not_found = SecretsError::NotFound {
            secret_id: "s".into(),
        };
        assert!(unavailable.is_retryable());
        assert!(!not_found.is_retryable());
        assert!(AuthError::from(unavailable).is_retryable());
        assert!(!AuthError::from(not_found).is_retryable());
    }

    #[test]
    fn access_denied_names_the_iam_action_to_grant() {
        let plain = SecretsError::AccessDenied {
            secret_id: "didomi".into(),
            kms: false,
        };
        let kms = SecretsError::AccessDenied {
            secret_id: "didomi".into(),
            kms: true,
        };
        assert!(
            plain.to_string().contains("secretsmanager:GetSecretValue"),
            "{plain}"
        );
        assert!(kms.to_string().contains("kms:Decrypt"), "{kms}");
    }
}
