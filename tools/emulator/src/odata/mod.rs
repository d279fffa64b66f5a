//! OData URL conventions: percent-decoding, system query options, `$filter`.

pub mod filter;
pub mod pct;
pub mod query;
