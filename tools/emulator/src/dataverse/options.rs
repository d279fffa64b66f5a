//! Choice (option set) values with their English labels (reference §1, `dataverse-consent.md`).
//!
//! Writes validate against the values; the metadata endpoints publish the labels, which is what
//! clients such as Microsoft's Python SDK read to turn `"Opted In"` into `534120001`.

/// One option set: its name, whether it is a global choice, and `(value, label)` pairs.
#[derive(Debug, PartialEq, Eq)]
pub struct OptionSet {
    /// Global choice name; `None` for a local set, named `<entity>_<attribute>` in metadata.
    pub global: Option<&'static str>,
    /// `(Value, English label)` in display order.
    pub options: &'static [(i64, &'static str)],
}

impl OptionSet {
    /// Whether `value` is one of the options.
    pub fn contains(&self, value: i64) -> bool {
        self.options.iter().any(|(v, _)| *v == value)
    }

    /// All option values, for error messages ("Accepted Values: …").
    pub fn values(&self) -> Vec<i64> {
        self.options.iter().map(|(v, _)| *v).collect()
    }
}

/// Global choice `msdynmkt_contactpointtype` ("Channel").
pub static CHANNELS: OptionSet = OptionSet {
    global: Some("msdynmkt_contactpointtype"),
    options: &[
        (534120000, "Email"),
        (534120001, "Text Message"),
        (534120002, "Custom"),
        (534120003, "Voice"),
    ],
};

/// Global choice `msdynmkt_consentlevel` ("Consent type").
pub static CONSENT_LEVELS: OptionSet = OptionSet {
    global: Some("msdynmkt_consentlevel"),
    options: &[(534120000, "Purpose"), (534120001, "Topic")],
};

/// Global choice `msdynmkt_consentvalue` ("Consent status").
pub static CONSENT_VALUES: OptionSet = OptionSet {
    global: Some("msdynmkt_consentvalue"),
    options: &[
        (534120000, "Not Set"),
        (534120001, "Opted In"),
        (534120002, "Opted Out"),
    ],
};

/// Global choice `msdynmkt_consentsource` ("Source").
pub static SOURCES: OptionSet = OptionSet {
    global: Some("msdynmkt_consentsource"),
    options: &[
        (534120000, "Internal"),
        (534120001, "Preference page"),
        (534120002, "Text message"),
        (534120003, "Loaded"),
        (534120004, "Preference Center"),
        (534120005, "Realtime Marketing Form"),
        (534120006, "Subscription Center"),
        (534120007, "Email - list-unsubscribe"),
    ],
};

/// Global choice `msdynmkt_reason` ("Reason").
pub static REASONS: OptionSet = OptionSet {
    global: Some("msdynmkt_reason"),
    options: &[
        (534119999, "No reasons"),
        (534120000, "Opt-in - Advertisement"),
        (534120001, "Opt-in - Landing page"),
        (534120002, "Opt-in - Events"),
        (534120003, "Opt-out - Content was irrelevant"),
        (534120004, "Opt-out - Received too frequently"),
        (534120005, "Opt-out - Didn\u{2019}t recall signing up"),
        (534120006, "Opt-out - Privacy concerns"),
        (534120007, "Opt-out - One-click unsubscribe"),
    ],
};

/// Global choice `msdynmkt_purposetype`.
pub static PURPOSE_TYPES: OptionSet = OptionSet {
    global: Some("msdynmkt_purposetype"),
    options: &[
        (534120000, "Commercial Communication"),
        (534120001, "Transactional Communication"),
        (534120002, "Tracking"),
    ],
};

/// Global choice `msdynmkt_purposeenforcementmodel`.
pub static ENFORCEMENT: OptionSet = OptionSet {
    global: Some("msdynmkt_purposeenforcementmodel"),
    options: &[
        (534120000, "Restrictive"),
        (534120001, "Non-Restrictive"),
        (534120002, "Disabled"),
    ],
};

/// `statecode` of every table here (local set).
pub static STATES: OptionSet = OptionSet {
    global: None,
    options: &[(0, "Active"), (1, "Inactive")],
};

/// `statuscode` of every table here (local set).
pub static STATUSES: OptionSet = OptionSet {
    global: None,
    options: &[(1, "Active"), (2, "Inactive")],
};
