//! Dataverse Web API client (being written).
