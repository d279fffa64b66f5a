//! Which hosts may receive credentials and tokens: the Dynamics instance and
//! the Entra authority. HTTPS on Microsoft's hosts only, unless
//! `ALLOW_INSECURE_HTTP=true` lets local runs use `http://` on loopback.

use reqwest::Url;

/// Host suffixes of Dataverse environments in the public and sovereign clouds
/// (commercial and GCC `*.dynamics.com`, GCC High `*.microsoftdynamics.us`,
/// DoD `*.appsplatform.us`, China `*.dynamics.cn`, Germany `*.microsoftdynamics.de`).
pub const DYNAMICS_HOST_SUFFIXES: [&str; 5] = [
    ".dynamics.com",
    ".microsoftdynamics.us",
    ".appsplatform.us",
    ".dynamics.cn",
    ".microsoftdynamics.de",
];

/// Microsoft Entra authority hosts (public, US Government, China, Germany).
pub const ENTRA_AUTHORITY_HOSTS: [&str; 5] = [
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
];

/// The Entra authority used when `AZURE_AUTHORITY_HOST` is not set.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// What is wrong with an endpoint URL (the caller adds the field name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not an absolute URL.
    #[error("`{0}` is not an absolute URL")]
    NotAUrl(String),
    /// `http://` on a non-loopback host, or on loopback without the opt-in.
    #[error(
        "`{0}` must use https; plain http is accepted only for loopback addresses (127.0.0.1, ::1, localhost) with ALLOW_INSECURE_HTTP=true"
    )]
    Insecure(String),
    /// A scheme other than http(s).
    #[error("`{0}` must be an https URL")]
    BadScheme(String),
    /// Path, query, fragment or credentials where only an origin belongs.
    #[error(
        "`{0}` must be just scheme and host (like https://contoso.crm4.dynamics.com), without path, query or user info"
    )]
    NotAnOrigin(String),
    /// The host is not one this product sends credentials to.
    #[error("`{url}` is not {expected}")]
    UnexpectedHost {
        /// The URL given.
        url: String,
        /// What was expected, in words.
        expected: &'static str,
    },
}

/// Validates the Dynamics instance URL and returns it without trailing slash.
pub fn validate_instance(raw: &str, allow_insecure_http: bool) -> Result<Url, EndpointError> {
    validate_origin(raw, allow_insecure_http, |host| {
        let host = host.to_ascii_lowercase();
        DYNAMICS_HOST_SUFFIXES.iter().any(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
    })
    .map_err(|err| match err {
        EndpointError::UnexpectedHost { url, .. } => EndpointError::UnexpectedHost {
            url,
            expected: "a Dynamics 365 host (*.dynamics.com, *.microsoftdynamics.us, *.appsplatform.us, *.dynamics.cn)",
        },
        other => other,
    })
}

/// Validates the Entra authority host (`AZURE_AUTHORITY_HOST`).
pub fn validate_authority(raw: &str, allow_insecure_http: bool) -> Result<Url, EndpointError> {
    validate_origin(raw, allow_insecure_http, |host| {
        ENTRA_AUTHORITY_HOSTS.contains(&host.to_ascii_lowercase().as_str())
    })
    .map_err(|err| match err {
        EndpointError::UnexpectedHost { url, .. } => EndpointError::UnexpectedHost {
            url,
            expected: "a Microsoft Entra authority (login.microsoftonline.com, login.microsoftonline.us, login.chinacloudapi.cn)",
        },
        other => other,
    })
}

/// True for `127.0.0.0/8`, `::1` and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn validate_origin(
    raw: &str,
    allow_insecure_http: bool,
    trusted_host: impl Fn(&str) -> bool,
) -> Result<Url, EndpointError> {
    let trimmed = raw.trim();
    let url = Url::parse(trimmed).map_err(|_| EndpointError::NotAUrl(trimmed.to_string()))?;
    let origin_only = (url.path().is_empty() || url.path() == "/")
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !origin_only {
        return Err(EndpointError::NotAnOrigin(trimmed.to_string()));
    }
    let loopback_opt_in = allow_insecure_http && is_loopback(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback_opt_in => {}
        "http" => return Err(EndpointError::Insecure(trimmed.to_string())),
        _ => return Err(EndpointError::BadScheme(trimmed.to_string())),
    }
    let host = url.host_str().unwrap_or_default();
    if !loopback_opt_in && (!trusted_host(host) || url.port().is_some()) {
        return Err(EndpointError::UnexpectedHost {
            url: trimmed.to_string(),
            expected: "",
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_cloud_instance_is_accepted() {
        let url = validate_instance("https://contoso.crm4.dynamics.com/", false).unwrap();
        assert_eq!(url.host_str(), Some("contoso.crm4.dynamics.com"));
    }

    #[test]
    fn sovereign_cloud_instances_are_accepted() {
        for raw in [
            "https://contoso.crm9.dynamics.com",
            "https://contoso.crm.microsoftdynamics.us",
            "https://contoso.crm.appsplatform.us",
            "https://contoso.crm.dynamics.cn",
        ] {
            assert!(validate_instance(raw, false).is_ok(), "{raw}");
        }
    }

    #[test]
    fn instance_on_another_host_is_rejected() {
        let err = validate_instance("https://contoso.example.com", false).unwrap_err();
        assert!(err.to_string().contains("Dynamics 365 host"), "{err}");
    }

    #[test]
    fn lookalike_host_is_rejected() {
        assert!(validate_instance("https://dynamics.com.evil.example", false).is_err());
        assert!(validate_instance("https://evil-dynamics.com", false).is_err());
    }

    #[test]
    fn instance_with_path_is_rejected() {
        let err =
            validate_instance("https://contoso.crm.dynamics.com/api/data/v9.2", false).unwrap_err();
        assert!(matches!(err, EndpointError::NotAnOrigin(_)), "{err}");
    }

    #[test]
    fn http_instance_is_rejected_without_opt_in() {
        let err = validate_instance("http://127.0.0.1:8080", false).unwrap_err();
        assert!(matches!(err, EndpointError::Insecure(_)), "{err}");
    }

    #[test]
    fn http_loopback_instance_is_accepted_with_opt_in() {
        assert!(validate_instance("http://127.0.0.1:8080", true).is_ok());
        assert!(validate_instance("http://localhost:8080", true).is_ok());
        assert!(validate_instance("http://[::1]:8080", true).is_ok());
    }

    #[test]
    fn http_non_loopback_is_rejected_even_with_opt_in() {
        let err = validate_instance("http://contoso.crm.dynamics.com", true).unwrap_err();
        assert!(matches!(err, EndpointError::Insecure(_)), "{err}");
    }

    #[test]
    fn authority_must_be_an_entra_host() {
        assert!(validate_authority(DEFAULT_AUTHORITY_HOST, false).is_ok());
        assert!(validate_authority("https://login.microsoftonline.us", false).is_ok());
        let err = validate_authority("https://login.example.com", false).unwrap_err();
        assert!(err.to_string().contains("Entra authority"), "{err}");
    }

    #[test]
    fn non_default_port_on_a_trusted_host_is_rejected() {
        assert!(validate_instance("https://contoso.crm.dynamics.com:8443", false).is_err());
    }
}
