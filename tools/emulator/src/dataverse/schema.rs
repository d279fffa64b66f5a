//! Table definitions: columns, types, option lists and limits (reference §1, §6).

use crate::dataverse::options::{self, OptionSet};

/// The tables the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Contact,
    Consent,
    Purpose,
    Topic,
}

/// Column value types, as far as validation and `$filter` typing need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Guid,
    Str(usize),
    Choice(&'static OptionSet),
    Bool,
    DateTime,
    Int,
    /// Single-valued lookup written through `<nav>@odata.bind`, read back as `_<column>_value`.
    Lookup {
        nav: &'static str,
        target: EntityKind,
    },
}

/// One column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub writable: bool,
    /// ApplicationRequired (only enforced in strict mode).
    pub required: bool,
}

/// One table.
#[derive(Debug)]
pub struct EntityDef {
    pub kind: EntityKind,
    pub set: &'static str,
    pub logical: &'static str,
    pub pk: &'static str,
    /// PrimaryNameAttribute (metadata only).
    pub primary_name: &'static str,
    pub columns: &'static [Column],
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        writable: true,
        required: false,
    }
}
const fn req(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        writable: true,
        required: true,
    }
}
const fn ro(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        writable: false,
        required: false,
    }
}

/// Default `msdynmkt_source` (Internal).
pub const SOURCE_DEFAULT: i64 = 534120000;

/// Columns every table here has. `_createdby_value` / `_modifiedby_value` are the systemuser
/// lookups Dataverse stamps on every write (read-only, so plain GUIDs here).
const SYSTEM: [Column; 7] = [
    ro("_ownerid_value", Kind::Guid),
    ro("_createdby_value", Kind::Guid),
    ro("_modifiedby_value", Kind::Guid),
    ro("createdon", Kind::DateTime),
    ro("modifiedon", Kind::DateTime),
    ro("versionnumber", Kind::Int),
    col("statecode", Kind::Choice(&options::STATES)),
];

const CONTACT_COLUMNS: &[Column] = &[
    col("contactid", Kind::Guid),
    col("emailaddress1", Kind::Str(100)),
    col("emailaddress2", Kind::Str(100)),
    col("emailaddress3", Kind::Str(100)),
    col("firstname", Kind::Str(50)),
    col("lastname", Kind::Str(50)),
    ro("fullname", Kind::Str(160)),
    col("mobilephone", Kind::Str(50)),
    col("donotemail", Kind::Bool),
    col("donotbulkemail", Kind::Bool),
    SYSTEM[0],
    SYSTEM[1],
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
    SYSTEM[5],
    SYSTEM[6],
    col("statuscode", Kind::Choice(&options::STATUSES)),
];

const CONSENT_COLUMNS: &[Column] = &[
    col("msdynmkt_contactpointconsent4id", Kind::Guid),
    req("msdynmkt_contactpointvalue", Kind::Str(400)),
    req(
        "msdynmkt_contactpointtype",
        Kind::Choice(&options::CHANNELS),
    ),
    col(
        "msdynmkt_contactpointconsenttype",
        Kind::Choice(&options::CONSENT_LEVELS),
    ),
    req("msdynmkt_value", Kind::Choice(&options::CONSENT_VALUES)),
    req(
        "msdynmkt_purposeid",
        Kind::Lookup {
            nav: "msdynmkt_purposeId",
            target: EntityKind::Purpose,
        },
    ),
    col(
        "msdynmkt_topicid",
        Kind::Lookup {
            nav: "msdynmkt_topicId",
            target: EntityKind::Topic,
        },
    ),
    req("msdynmkt_source", Kind::Choice(&options::SOURCES)),
    req("msdynmkt_logicalreason", Kind::Choice(&options::REASONS)),
    col("msdynmkt_reason", Kind::Str(500)),
    col("msdynmkt_modifiedonbehalf", Kind::Str(500)),
    col("msdynmkt_migrationtimestamp", Kind::DateTime),
    SYSTEM[0],
    SYSTEM[1],
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
    SYSTEM[5],
    SYSTEM[6],
    col("statuscode", Kind::Choice(&options::STATUSES)),
];

const PURPOSE_COLUMNS: &[Column] = &[
    col("msdynmkt_purposeid", Kind::Guid),
    col("msdynmkt_name", Kind::Str(100)),
    col("msdynmkt_type", Kind::Choice(&options::PURPOSE_TYPES)),
    col(
        "msdynmkt_enforcementmodel",
        Kind::Choice(&options::ENFORCEMENT),
    ),
    SYSTEM[0],
    SYSTEM[1],
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
    SYSTEM[5],
    SYSTEM[6],
    col("statuscode", Kind::Choice(&options::STATUSES)),
];

const TOPIC_COLUMNS: &[Column] = &[
    col("msdynmkt_topicid", Kind::Guid),
    col("msdynmkt_name", Kind::Str(100)),
    col(
        "msdynmkt_purposeid",
        Kind::Lookup {
            nav: "msdynmkt_purposeId",
            target: EntityKind::Purpose,
        },
    ),
    SYSTEM[0],
    SYSTEM[1],
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
    SYSTEM[5],
    SYSTEM[6],
    col("statuscode", Kind::Choice(&options::STATUSES)),
];

static CONTACT: EntityDef = EntityDef {
    kind: EntityKind::Contact,
    set: "contacts",
    logical: "contact",
    pk: "contactid",
    primary_name: "fullname",
    columns: CONTACT_COLUMNS,
};
static CONSENT: EntityDef = EntityDef {
    kind: EntityKind::Consent,
    set: "msdynmkt_contactpointconsent4s",
    logical: "msdynmkt_contactpointconsent4",
    pk: "msdynmkt_contactpointconsent4id",
    primary_name: "msdynmkt_contactpointvalue",
    columns: CONSENT_COLUMNS,
};
static PURPOSE: EntityDef = EntityDef {
    kind: EntityKind::Purpose,
    set: "msdynmkt_purposes",
    logical: "msdynmkt_purpose",
    pk: "msdynmkt_purposeid",
    primary_name: "msdynmkt_name",
    columns: PURPOSE_COLUMNS,
};
static TOPIC: EntityDef = EntityDef {
    kind: EntityKind::Topic,
    set: "msdynmkt_topics",
    logical: "msdynmkt_topic",
    pk: "msdynmkt_topicid",
    primary_name: "msdynmkt_name",
    columns: TOPIC_COLUMNS,
};

impl EntityKind {
    /// Static definition of this table.
    pub fn def(self) -> &'static EntityDef {
        match self {
            EntityKind::Contact => &CONTACT,
            EntityKind::Consent => &CONSENT,
            EntityKind::Purpose => &PURPOSE,
            EntityKind::Topic => &TOPIC,
        }
    }

    /// Every table, in a fixed order.
    pub const ALL: [EntityKind; 4] = [Self::Contact, Self::Consent, Self::Purpose, Self::Topic];

    /// Table for a logical name (lower case in Dataverse, so compared exactly).
    pub fn from_logical(logical: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.def().logical == logical)
    }

    /// Table for an entity-set name (case-sensitive, as in Dataverse).
    pub fn from_set(set: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.def().set == set)
    }
}

impl Column {
    /// Name under which the value appears in responses, `$select`, `$filter` and `$orderby`.
    pub fn read_name(&self) -> String {
        match self.kind {
            Kind::Lookup { .. } => format!("_{}_value", self.name),
            _ => self.name.to_string(),
        }
    }
}

impl EntityDef {
    /// Column by its read-back name (`_msdynmkt_purposeid_value` for lookups).
    pub fn readable(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.read_name() == name)
    }

    /// Column by logical name (the name used in write bodies).
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Lookup column whose navigation property is exactly `nav` (case-sensitive).
    pub fn lookup_by_nav(&self, nav: &str) -> Option<&'static Column> {
        self.columns
            .iter()
            .find(|c| matches!(c.kind, Kind::Lookup { nav: n, .. } if n == nav))
    }

    /// All read-back names in column order.
    pub fn read_names(&self) -> Vec<String> {
        self.columns.iter().map(Column::read_name).collect()
    }
}
