//! All mutable emulator state behind one `std::sync::Mutex` (never held across an await).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::{self, WriteClock};
use crate::cost::CostModel;
use crate::dataverse::schema::{EntityKind, Kind};
use crate::faults::FaultSlot;
use crate::limits::{Limiter, ThrottleCounts};
use crate::odata::filter::is_guid;
use crate::seed::{Credential, DEFAULT_OWNER, Seed};
use crate::users;

/// One logged request (admin requests are not logged; tokens never are).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestRecord {
    /// 1-based arrival order.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Whether an `Authorization: Bearer` header was present.
    pub bearer: bool,
    /// Response status; `None` when the connection was dropped without a response.
    pub status: Option<u16>,
    /// For `$batch`: the number of operations (requests inside change sets included).
    pub batch_parts: Option<usize>,
    /// For `$batch`: how many of those operations are not `GET`.
    pub batch_writes: Option<usize>,
    /// Wall time spent, including injected delays.
    pub duration_ms: u64,
    /// Injected fault, if any (e.g. `status 429`, `drop after`).
    pub fault: Option<String>,
}

/// One Secrets Manager secret version.
#[derive(Debug, Clone)]
pub struct SecretEntry {
    pub value: String,
    pub version_id: String,
    pub created: f64,
}

impl SecretEntry {
    pub fn new(value: String) -> Self {
        let now = chrono::Utc::now();
        Self {
            value,
            version_id: uuid::Uuid::new_v4().to_string(),
            created: now.timestamp_millis() as f64 / 1000.0,
        }
    }
}

/// A table row: every readable property, nulls included.
pub type Row = Map<String, Value>;

/// Rows of the four tables, in creation order, with an index by primary key:
/// a backlog drain looks a row up for every write, and a linear search made the
/// emulator itself the bottleneck once the tables held tens of thousands of rows.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    rows: [Vec<Row>; 4],
    /// Lower-case primary key → position in `rows`, per table.
    index: [HashMap<String, usize>; 4],
}

fn slot(kind: EntityKind) -> usize {
    match kind {
        EntityKind::Contact => 0,
        EntityKind::Consent => 1,
        EntityKind::Purpose => 2,
        EntityKind::Topic => 3,
    }
}

fn key_of(kind: EntityKind, row: &Row) -> Option<String> {
    row.get(kind.def().pk)
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
}

impl Tables {
    /// A table's rows, in creation order.
    pub fn rows(&self, kind: EntityKind) -> &Vec<Row> {
        &self.rows[slot(kind)]
    }

    /// Appends a row (its primary key set).
    pub fn push(&mut self, kind: EntityKind, row: Row) {
        let at = slot(kind);
        if let Some(key) = key_of(kind, &row) {
            self.index[at].insert(key, self.rows[at].len());
        }
        self.rows[at].push(row);
    }

    /// Replaces the row at `pos` (the primary key does not change).
    pub fn replace(&mut self, kind: EntityKind, pos: usize, row: Row) {
        self.rows[slot(kind)][pos] = row;
    }

    /// Removes the row at `pos`; later rows move up, so the index is rebuilt.
    pub fn remove(&mut self, kind: EntityKind, pos: usize) {
        let at = slot(kind);
        self.rows[at].remove(pos);
        self.index[at] = self.rows[at]
            .iter()
            .enumerate()
            .filter_map(|(i, row)| key_of(kind, row).map(|key| (key, i)))
            .collect();
    }

    /// Index of the row with this primary key (GUIDs compare case-insensitively).
    pub fn position(&self, kind: EntityKind, id: &str) -> Option<usize> {
        self.index[slot(kind)]
            .get(&id.to_ascii_lowercase())
            .copied()
    }

    /// The row with this primary key.
    pub fn find(&self, kind: EntityKind, id: &str) -> Option<&Row> {
        self.position(kind, id).map(|i| &self.rows(kind)[i])
    }
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub tenant_id: String,
    pub instance: Option<String>,
    pub app_user: bool,
    pub strict_required: bool,
    pub token_lifetime: Duration,
}

/// An issued access token: until when it is valid and which app it was issued to.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// End of validity.
    pub expires: Instant,
    /// Entra client the token was issued to (its Application User is the caller).
    pub client_id: String,
}

/// Counters for the admin API (`GET /_emulator/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Non-admin requests answered (any service, faults and 429s included).
    pub requests_served: u64,
    /// Dataverse requests refused by the service-protection limits, per limit.
    pub throttled: ThrottleCounts,
    /// Requests currently held by a `hold_until_applied` fault.
    pub held_now: u64,
}

/// The whole mutable state.
#[derive(Debug)]
pub struct State {
    pub config: Config,
    pub credentials: Vec<Credential>,
    pub tokens: HashMap<String, IssuedToken>,
    pub tables: Tables,
    pub clock: WriteClock,
    pub version: u64,
    pub faults: Vec<FaultSlot>,
    pub secrets: BTreeMap<String, SecretEntry>,
    pub requests: Vec<RequestRecord>,
    pub next_seq: u64,
    /// Operation cost, parallelism and limits in force.
    pub cost: CostModel,
    /// Service-protection windows.
    pub limiter: Limiter,
    /// Non-admin requests answered (throttle counts live in `limiter`).
    pub served: u64,
    /// Requests held by a `hold_until_applied` fault right now.
    pub held_now: u64,
    /// Execution slots when `cost.parallelism` caps concurrent operations.
    pub parallel: Option<Arc<tokio::sync::Semaphore>>,
}

/// Shared handle to the state.
pub type Shared = Arc<Mutex<State>>;

/// Locks the state; a poisoned lock is still usable because every write is self-contained.
pub fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl State {
    /// Builds the initial state from a seed, checking its rows against the table definitions.
    pub fn from_seed(seed: Seed) -> io::Result<Self> {
        let mut state = State {
            config: Config {
                tenant_id: seed.tenant_id,
                instance: seed.instance,
                app_user: seed.app_user,
                strict_required: seed.strict_required,
                token_lifetime: Duration::from_secs(seed.token_lifetime_secs),
            },
            credentials: seed.credentials,
            tokens: HashMap::new(),
            tables: Tables::default(),
            clock: WriteClock::default(),
            version: 4_648_000,
            faults: seed.faults.into_iter().map(FaultSlot::new).collect(),
            secrets: seed
                .secrets
                .into_iter()
                .map(|(k, v)| (k, SecretEntry::new(v)))
                .collect(),
            requests: Vec::new(),
            next_seq: 1,
            cost: CostModel::default(),
            limiter: Limiter::default(),
            served: 0,
            held_now: 0,
            parallel: None,
        };
        state.set_cost(seed.cost);
        state.clock.set(seed.clock);
        for p in seed.purposes {
            let owner = p.owner_id.unwrap_or_else(|| DEFAULT_OWNER.to_string());
            let mut row = json!({
                "msdynmkt_purposeid": p.id,
                "msdynmkt_name": p.name,
                "msdynmkt_type": p.purpose_type.unwrap_or(534120000),
                "msdynmkt_enforcementmodel": p.enforcement_model.unwrap_or(534120001),
                "_ownerid_value": owner,
            });
            state.seed_row(EntityKind::Purpose, take(&mut row), p.active)?;
            for t in p.topics {
                let mut row = json!({
                    "msdynmkt_topicid": t.id,
                    "msdynmkt_name": t.name,
                    "_msdynmkt_purposeid_value": p.id,
                    "_ownerid_value": owner,
                });
                state.seed_row(EntityKind::Topic, take(&mut row), t.active)?;
            }
        }
        for c in seed.contacts {
            state.seed_row(EntityKind::Contact, c, true)?;
        }
        for c in seed.consents {
            state.seed_row(EntityKind::Consent, c, true)?;
        }
        Ok(state)
    }

    fn seed_row(&mut self, kind: EntityKind, given: Row, active: bool) -> io::Result<()> {
        let def = kind.def();
        let mut row = self.blank_row(kind);
        row.insert("statecode".into(), json!(if active { 0 } else { 1 }));
        row.insert("statuscode".into(), json!(if active { 1 } else { 2 }));
        for (k, v) in given {
            let col = def
                .readable(&k)
                .ok_or_else(|| invalid(format!("seed {}: unknown column '{k}'", def.set)))?;
            if let Kind::Choice(set) = col.kind
                && !v.as_i64().is_some_and(|n| set.contains(n))
            {
                return Err(invalid(format!("seed {}: {k} = {v} out of range", def.set)));
            }
            row.insert(k, v);
        }
        // Seeded statecode without statuscode keeps the two consistent.
        if let Some(1) = row.get("statecode").and_then(Value::as_i64)
            && row.get("statuscode").and_then(Value::as_i64) == Some(1)
        {
            row.insert("statuscode".into(), json!(2));
        }
        let id = match row.get(def.pk).and_then(Value::as_str) {
            Some(id) if is_guid(id) => id.to_ascii_lowercase(),
            Some(other) => return Err(invalid(format!("seed {}: bad id '{other}'", def.set))),
            None => uuid::Uuid::new_v4().to_string(),
        };
        if self.tables.find(kind, &id).is_some() {
            return Err(invalid(format!("seed {}: duplicate id {id}", def.set)));
        }
        row.insert(def.pk.into(), json!(id));
        if kind == EntityKind::Consent {
            let purpose = row
                .get("_msdynmkt_purposeid_value")
                .and_then(Value::as_str)
                .and_then(|p| self.tables.find(EntityKind::Purpose, p))
                .and_then(|p| p.get("_ownerid_value").cloned());
            if row.get("_ownerid_value").is_none_or(Value::is_null) {
                row.insert(
                    "_ownerid_value".into(),
                    purpose.unwrap_or(json!(DEFAULT_OWNER)),
                );
            }
            if row.get("msdynmkt_source").is_none_or(Value::is_null) {
                row.insert("msdynmkt_source".into(), json!(534120000));
            }
        }
        if kind == EntityKind::Contact {
            crate::dataverse::write::compute_fullname(&mut row);
        }
        // Seeded rows were written by someone else, as far as the app user can tell.
        for by in ["_createdby_value", "_modifiedby_value"] {
            if row.get(by).is_none_or(Value::is_null) {
                row.insert(by.into(), json!(users::SOMEONE_ELSE));
            }
        }
        for stamp in ["createdon", "modifiedon"] {
            match row.get(stamp).and_then(Value::as_str).map(clock::parse) {
                Some(Some(t)) => self.clock.observe(t),
                Some(None) => return Err(invalid(format!("seed {}: bad {stamp}", def.set))),
                None => {}
            }
        }
        let now = clock::format(self.clock.next());
        for stamp in ["createdon", "modifiedon"] {
            if row.get(stamp).is_none_or(Value::is_null) {
                row.insert(stamp.into(), json!(now));
            }
        }
        let version = self.next_version();
        row.insert("versionnumber".into(), json!(version));
        self.tables.push(kind, row);
        Ok(())
    }

    /// A row with every readable property set to null.
    pub fn blank_row(&self, kind: EntityKind) -> Row {
        kind.def()
            .read_names()
            .into_iter()
            .map(|n| (n, Value::Null))
            .collect()
    }

    pub fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// systemuserid of the Application User a valid token belongs to.
    pub fn token_user(&self, token: &str) -> Option<String> {
        let issued = self
            .tokens
            .get(token)
            .filter(|t| t.expires > Instant::now())?;
        Some(self.app_user_of(&issued.client_id))
    }

    /// Application User of an Entra client: the seed's `user_id`, else the derived default.
    pub fn app_user_of(&self, client_id: &str) -> String {
        self.credentials
            .iter()
            .find(|c| c.client_id == client_id)
            .and_then(|c| c.user_id.clone())
            .unwrap_or_else(|| users::default_app_user(client_id))
    }

    /// Replaces the cost model: new execution slots, fresh service-protection windows.
    pub fn set_cost(&mut self, cost: CostModel) {
        self.parallel = cost
            .parallelism
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self.limiter.reset_windows();
        self.cost = cost;
    }

    /// Counters for the admin API.
    pub fn stats(&self) -> Stats {
        Stats {
            requests_served: self.served,
            throttled: self.limiter.refused,
            held_now: self.held_now,
        }
    }

    /// Revokes every issued token.
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Rows sorted by `createdon` (stable, so creation order breaks ties).
    pub fn dump(&self, kind: EntityKind) -> Vec<Value> {
        let mut rows: Vec<&Row> = self.tables.rows(kind).iter().collect();
        rows.sort_by(|a, b| {
            let ka = a.get("createdon").and_then(Value::as_str).unwrap_or("");
            let kb = b.get("createdon").and_then(Value::as_str).unwrap_or("");
            ka.cmp(kb)
        });
        rows.into_iter().map(|r| Value::Object(r.clone())).collect()
    }

    /// Appends a log record, assigning its sequence number.
    pub fn log(&mut self, mut record: RequestRecord) {
        record.seq = self.next_seq;
        self.next_seq += 1;
        self.requests.push(record);
    }
}

fn take(v: &mut Value) -> Row {
    match v.take() {
        Value::Object(m) => m,
        _ => Row::new(),
    }
}
