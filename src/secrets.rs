//! AWS Secrets Manager source of the integration document (being written).
