//! Table definitions: columns, types, option lists and limits (reference §1, §6).

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
    Choice(&'static [i64]),
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

pub const CHANNELS: &[i64] = &[534120000, 534120001, 534120002, 534120003];
pub const CONSENT_LEVELS: &[i64] = &[534120000, 534120001];
pub const CONSENT_VALUES: &[i64] = &[534120000, 534120001, 534120002];
pub const SOURCES: &[i64] = &[
    534120000, 534120001, 534120002, 534120003, 534120004, 534120005, 534120006, 534120007,
];
pub const REASONS: &[i64] = &[
    534119999, 534120000, 534120001, 534120002, 534120003, 534120004, 534120005, 534120006,
    534120007,
];
pub const STATES: &[i64] = &[0, 1];
pub const STATUSES: &[i64] = &[1, 2];
pub const PURPOSE_TYPES: &[i64] = &[534120000, 534120001, 534120002];
pub const ENFORCEMENT: &[i64] = &[534120000, 534120001, 534120002];
/// Default `msdynmkt_source` (Internal).
pub const SOURCE_DEFAULT: i64 = 534120000;

const SYSTEM: [Column; 5] = [
    ro("_ownerid_value", Kind::Guid),
    ro("createdon", Kind::DateTime),
    ro("modifiedon", Kind::DateTime),
    ro("versionnumber", Kind::Int),
    col("statecode", Kind::Choice(STATES)),
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
    col("statuscode", Kind::Choice(STATUSES)),
];

const CONSENT_COLUMNS: &[Column] = &[
    col("msdynmkt_contactpointconsent4id", Kind::Guid),
    req("msdynmkt_contactpointvalue", Kind::Str(400)),
    req("msdynmkt_contactpointtype", Kind::Choice(CHANNELS)),
    col(
        "msdynmkt_contactpointconsenttype",
        Kind::Choice(CONSENT_LEVELS),
    ),
    req("msdynmkt_value", Kind::Choice(CONSENT_VALUES)),
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
    req("msdynmkt_source", Kind::Choice(SOURCES)),
    req("msdynmkt_logicalreason", Kind::Choice(REASONS)),
    col("msdynmkt_reason", Kind::Str(500)),
    col("msdynmkt_modifiedonbehalf", Kind::Str(500)),
    col("msdynmkt_migrationtimestamp", Kind::DateTime),
    SYSTEM[0],
    SYSTEM[1],
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
    col("statuscode", Kind::Choice(STATUSES)),
];

const PURPOSE_COLUMNS: &[Column] = &[
    col("msdynmkt_purposeid", Kind::Guid),
    col("msdynmkt_name", Kind::Str(100)),
    col("msdynmkt_type", Kind::Choice(PURPOSE_TYPES)),
    col("msdynmkt_enforcementmodel", Kind::Choice(ENFORCEMENT)),
    SYSTEM[0],
    SYSTEM[1],
    SYSTEM[2],
    SYSTEM[3],
    SYSTEM[4],
    col("statuscode", Kind::Choice(STATUSES)),
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
    col("statuscode", Kind::Choice(STATUSES)),
];

static CONTACT: EntityDef = EntityDef {
    kind: EntityKind::Contact,
    set: "contacts",
    logical: "contact",
    pk: "contactid",
    columns: CONTACT_COLUMNS,
};
static CONSENT: EntityDef = EntityDef {
    kind: EntityKind::Consent,
    set: "msdynmkt_contactpointconsent4s",
    logical: "msdynmkt_contactpointconsent4",
    pk: "msdynmkt_contactpointconsent4id",
    columns: CONSENT_COLUMNS,
};
static PURPOSE: EntityDef = EntityDef {
    kind: EntityKind::Purpose,
    set: "msdynmkt_purposes",
    logical: "msdynmkt_purpose",
    pk: "msdynmkt_purposeid",
    columns: PURPOSE_COLUMNS,
};
static TOPIC: EntityDef = EntityDef {
    kind: EntityKind::Topic,
    set: "msdynmkt_topics",
    logical: "msdynmkt_topic",
    pk: "msdynmkt_topicid",
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

    /// Table for an entity-set name (case-sensitive, as in Dataverse).
    pub fn from_set(set: &str) -> Option<Self> {
        [Self::Contact, Self::Consent, Self::Purpose, Self::Topic]
            .into_iter()
            .find(|k| k.def().set == set)
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
