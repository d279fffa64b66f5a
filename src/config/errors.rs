//! Configuration errors that name the field and the fix.

use std::fmt;

/// One problem in the configuration: which field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`authentication.instance`, `mappings[2].id`,
    /// or an environment variable name).
    pub field: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.problem)
    }
}

/// Every problem found in one configuration, reported together so an operator
/// fixes them in one pass. Never retryable: the same document fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A single problem.
    pub fn one(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self(vec![ConfigError::new(field, problem)])
    }

    /// True when `field` has a problem (for tests and callers that branch).
    pub fn mentions(&self, field: &str) -> bool {
        self.0.iter().any(|error| error.field == field)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.0.len())?;
        if self.0.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for error in &self.0 {
            write!(f, "\n  - {error}")?;
        }
        Ok(())
    }
}
