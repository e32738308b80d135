//! Domain value types, parsed at the edge: once a handler holds one, it is valid.
//!
//! Untrusted input (JSON bodies, sensor payloads, device messages) becomes one of these types
//! before it reaches a decision; nothing inside the core checks a raw string again.
//! Personal data ([`PhoneNumber`], [`PersonName`]) never shows in `Debug` output or in errors.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Input that is not a valid value. Never holds personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct InvalidValue {
    /// Which value was being parsed, such as `latitude` or `priority`.
    pub what: &'static str,
    /// What is wrong with it, in words a user can act on.
    pub reason: String,
}

impl InvalidValue {
    fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out.escape_debug().to_string()
}

// ---------------------------------------------------------------------------------------------
// Location

/// A WGS 84 position: geodata's, the one position type of every crate (finite, latitude
/// in [-90, 90], longitude in [-180, 180], held to 1e-7 degree, `{"lat": .., "lon": ..}` in
/// JSON).
pub use muster_geodata::LatLon;

impl From<muster_geodata::point::LatLonError> for InvalidValue {
    fn from(e: muster_geodata::point::LatLonError) -> Self {
        use muster_geodata::point::LatLonError;
        let what = match e {
            LatLonError::Latitude => "latitude",
            LatLonError::Longitude => "longitude",
        };
        InvalidValue::new(what, e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Priority

/// Incident priority, P1 (most urgent) to P5. Orders so that P1 < P5: sort ascending to put
/// the most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    /// Immediate threat to life.
    P1,
    /// Urgent.
    P2,
    /// Prompt.
    P3,
    /// Routine.
    P4,
    /// Scheduled or informational.
    P5,
}

crate::schema::json_schema!(
    Priority,
    "Priority",
    crate::schema::codes(
        &["P1", "P2", "P3", "P4", "P5"],
        "P1 (immediate threat to life) to P5 (scheduled)."
    )
);

impl Priority {
    /// All priorities, most urgent first.
    pub const ALL: [Priority; 5] = [Self::P1, Self::P2, Self::P3, Self::P4, Self::P5];

    /// Parses `P1` to `P5` (either case, surrounding white space ignored).
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let bad = || {
            InvalidValue::new(
                "priority",
                format!("{:?} is not one of P1 to P5", shorten(input)),
            )
        };
        let t = input.trim();
        let digits = t
            .strip_prefix('P')
            .or_else(|| t.strip_prefix('p'))
            .ok_or_else(bad)?;
        match digits {
            "1" => Ok(Self::P1),
            "2" => Ok(Self::P2),
            "3" => Ok(Self::P3),
            "4" => Ok(Self::P4),
            "5" => Ok(Self::P5),
            _ => Err(bad()),
        }
    }

    /// 1 for P1 up to 5 for P5.
    pub fn level(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.level())
    }
}

// ---------------------------------------------------------------------------------------------
// Personal data

/// Fewest digits of a phone number: short emergency and service numbers have three.
pub const MIN_PHONE_DIGITS: usize = 3;
/// Most digits of a phone number (E.164).
pub const MAX_PHONE_DIGITS: usize = 15;
/// Longest phone number input, separators included.
pub const MAX_PHONE_INPUT_CHARS: usize = 32;

/// A call-back number: an optional leading `+` and 3 to 15 digits, stored without separators.
/// Personal data: `Debug` shows only its last two digits, and there is no `Display`; use
/// [`PhoneNumber::expose`] where the number is really needed (sending it to a unit).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number written with spaces, dashes, dots or parentheses between digits.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        // Errors never repeat the input: it is personal data.
        let bad = |reason: &str| InvalidValue::new("phone number", reason);
        if input.chars().count() > MAX_PHONE_INPUT_CHARS {
            return Err(bad("is longer than 32 characters"));
        }
        let t = input.trim();
        let (plus, rest) = match t.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let mut digits = String::with_capacity(16);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                '+' => return Err(bad("has a '+' that is not at the start")),
                _ => {
                    return Err(bad(
                        "may hold only digits, '+', spaces, '-', '.', '(' and ')'",
                    ));
                }
            }
        }
        if digits.len() < MIN_PHONE_DIGITS {
            return Err(bad("has fewer than 3 digits"));
        }
        if digits.len() > MAX_PHONE_DIGITS {
            return Err(bad("has more than 15 digits"));
        }
        Ok(Self(if plus { format!("+{digits}") } else { digits }))
    }

    /// The number itself, normalized (`+` and digits). Personal data: never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        write!(f, "PhoneNumber(***{tail})")
    }
}

/// Longest caller name, in characters.
pub const MAX_PERSON_NAME_CHARS: usize = 120;

/// A caller's name: 1 to 120 characters, no control characters, trimmed. Personal data:
/// `Debug` hides it; use [`PersonName::expose`] where it is really needed.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

impl PersonName {
    /// Parses a name.
    pub fn parse(input: &str) -> Result<Self, InvalidValue> {
        let bad = |reason: &str| InvalidValue::new("caller name", reason);
        let t = input.trim();
        if t.is_empty() {
            return Err(bad("is empty"));
        }
        if t.chars().count() > MAX_PERSON_NAME_CHARS {
            return Err(bad("is longer than 120 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(bad("contains a control character"));
        }
        Ok(Self(t.to_owned()))
    }

    /// The name itself. Personal data: never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PersonName {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PersonName> for String {
    fn from(p: PersonName) -> String {
        p.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

/// Who called and how to call them back. Both parts are personal data and both are optional
/// (a sensor alarm has neither; a caller may hang up before giving a name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerDetails {
    /// The caller's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    /// The call-back number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_back: Option<PhoneNumber>,
    /// Both, sealed under the incident's data key ([`crate::sealing`]); then `name` and
    /// `call_back` are absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::sealing::SealedCaller>,
}

impl CallerDetails {
    /// Whether there is anything: a name, a number, or both sealed.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.call_back.is_none() && self.sealed.is_none()
    }
}

// ---------------------------------------------------------------------------------------------
// Incident types

/// Which service an incident type needs first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Fire and rescue.
    Fire,
    /// Emergency medical services.
    Ems,
    /// Police.
    Police,
}

/// Groups of incident types that callers often describe differently for the same emergency,
/// used to decide whether two reports may be duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Family {
    Fire,
    Medical,
    Violence,
    Collision,
    Rescue,
    Water,
}

macro_rules! code_enum {
    (
        $(#[$doc:meta])* $name:ident, $what:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vdoc])* #[serde(rename = $code)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable code used in events, run cards and the API.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// Parses a code (either case, surrounding white space ignored).
            pub fn parse(input: &str) -> Result<Self, InvalidValue> {
                let t = input.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.code().eq_ignore_ascii_case(t))
                    .ok_or_else(|| InvalidValue::new(
                        $what,
                        format!("{:?} is not a known {}; known: {}", shorten(input), $what,
                            Self::ALL.iter().map(|v| v.code()).collect::<Vec<_>>().join(", ")),
                    ))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }

        crate::schema::json_schema!($name, stringify!($name),
            crate::schema::codes(&[$($code),+], concat!("A ", $what, ".")));

        impl std::str::FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

code_enum! {
    /// What kind of emergency an incident is.
    IncidentType, "incident type" {
        /// Fire in a building.
        StructureFire = "structure_fire",
        /// Burning vehicle.
        VehicleFire = "vehicle_fire",
        /// Vegetation fire.
        WildlandFire = "wildland_fire",
        /// Automatic fire alarm or smoke detector.
        FireAlarm = "fire_alarm",
        /// Gas smell or leak.
        GasLeak = "gas_leak",
        /// Dangerous goods released.
        Hazmat = "hazmat",
        /// Technical rescue: trapped people, collapse.
        Rescue = "rescue",
        /// People in water.
        WaterRescue = "water_rescue",
        /// Flooding.
        Flooding = "flooding",
        /// Road traffic collision.
        TrafficCollision = "traffic_collision",
        /// Illness or injury.
        Medical = "medical",
        /// Cardiac arrest.
        CardiacArrest = "cardiac_arrest",
        /// Overdose or poisoning.
        Overdose = "overdose",
        /// Assault.
        Assault = "assault",
        /// Burglary.
        Burglary = "burglary",
        /// Robbery.
        Robbery = "robbery",
        /// Disturbance, fight, noise.
        Disturbance = "disturbance",
        /// Shots fired.
        ShotsFired = "shots_fired",
        /// Anything else; related to every type for duplicate checks.
        Other = "other",
    }
}

impl IncidentType {
    /// The service that leads the response.
    pub fn lead_service(self) -> Service {
        use IncidentType::*;
        match self {
            StructureFire | VehicleFire | WildlandFire | FireAlarm | GasLeak | Hazmat | Rescue
            | WaterRescue | Flooding | TrafficCollision | Other => Service::Fire,
            Medical | CardiacArrest | Overdose => Service::Ems,
            Assault | Burglary | Robbery | Disturbance | ShotsFired => Service::Police,
        }
    }

    fn families(self) -> &'static [Family] {
        use Family as F;
        use IncidentType::*;
        match self {
            StructureFire | WildlandFire | FireAlarm | GasLeak | Hazmat => &[F::Fire],
            VehicleFire => &[F::Fire, F::Collision],
            Rescue => &[F::Rescue, F::Collision],
            WaterRescue => &[F::Rescue, F::Water],
            Flooding => &[F::Water],
            TrafficCollision => &[F::Collision, F::Medical],
            Medical | CardiacArrest | Overdose => &[F::Medical],
            Assault | ShotsFired => &[F::Violence, F::Medical],
            Burglary | Robbery | Disturbance => &[F::Violence],
            Other => &[],
        }
    }

    /// Whether two reports of these types may describe the same emergency: the same type, a
    /// shared family (a fire alarm and a structure fire; a collision and a medical call), or
    /// either one is `other`.
    pub fn is_related_to(self, other: IncidentType) -> bool {
        self == other
            || self == IncidentType::Other
            || other == IncidentType::Other
            || self.families().iter().any(|f| other.families().contains(f))
    }
}

code_enum! {
    /// What kind of resource a unit is.
    UnitKind, "unit kind" {
        /// Fire engine (pumper).
        Engine = "engine",
        /// Aerial ladder or platform.
        Ladder = "ladder",
        /// Heavy rescue.
        HeavyRescue = "heavy_rescue",
        /// Hazardous materials unit.
        Hazmat = "hazmat",
        /// Water tanker.
        Tanker = "tanker",
        /// Wildland (brush) engine.
        Brush = "brush",
        /// Boat.
        Boat = "boat",
        /// Fire chief or battalion command.
        FireCommand = "fire_command",
        /// Advanced life support ambulance.
        AlsAmbulance = "als_ambulance",
        /// Basic life support ambulance.
        BlsAmbulance = "bls_ambulance",
        /// EMS supervisor or rapid response car.
        EmsSupervisor = "ems_supervisor",
        /// Police patrol car.
        PatrolCar = "patrol_car",
        /// Police supervisor.
        PoliceSupervisor = "police_supervisor",
    }
}

impl UnitKind {
    /// The service the unit belongs to.
    pub fn service(self) -> Service {
        use UnitKind::*;
        match self {
            Engine | Ladder | HeavyRescue | Hazmat | Tanker | Brush | Boat | FireCommand => {
                Service::Fire
            }
            AlsAmbulance | BlsAmbulance | EmsSupervisor => Service::Ems,
            PatrolCar | PoliceSupervisor => Service::Police,
        }
    }
}

code_enum! {
    /// How an incident came in.
    IncidentSource, "incident source" {
        /// A call taker on the emergency line.
        Hotline = "hotline",
        /// A sensor alarm.
        Sensor = "sensor",
        /// A field unit raised it.
        Field = "field",
        /// A citizen report through an app or web form.
        Citizen = "citizen",
    }
}

code_enum! {
    /// How an incident ended.
    Disposition, "disposition" {
        /// Handled.
        Resolved = "resolved",
        /// Nothing was wrong.
        FalseAlarm = "false_alarm",
        /// Nobody found at the location.
        NothingFound = "nothing_found",
        /// Cancelled by the caller or the dispatcher before arrival.
        Cancelled = "cancelled",
        /// Handed to another agency.
        Transferred = "transferred",
    }
}

// ---------------------------------------------------------------------------------------------
// Short codes and labels

fn parse_slug(what: &'static str, input: &str, max_chars: usize) -> Result<String, InvalidValue> {
    let t = input.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(InvalidValue::new(what, "is empty"));
    }
    if t.chars().count() > max_chars {
        return Err(InvalidValue::new(
            what,
            format!("{:?} is longer than {max_chars} characters", shorten(input)),
        ));
    }
    if !t.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(InvalidValue::new(
            what,
            format!("{:?} must start with a letter", shorten(input)),
        ));
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(InvalidValue::new(
            what,
            format!(
                "{:?} has {c:?}; only letters, digits, '_' and '-' are allowed",
                shorten(input)
            ),
        ));
    }
    Ok(t)
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $parse:expr, $schema:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and normalizes the input.
            pub fn parse(input: &str) -> Result<Self, InvalidValue> {
                let f: fn(&str) -> Result<String, InvalidValue> = $parse;
                f(input).map(Self)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        crate::schema::json_schema!($name, stringify!($name), $schema);
    };
}

text_newtype!(
    /// Something a unit can do or carries, such as `aed`, `als`, `thermal_camera`: 1 to 48
    /// characters, lower case letters, digits, `_` and `-`, starting with a letter (input is
    /// lower-cased).
    Capability,
    |s| parse_slug("capability", s, 48),
    crate::schema::slug(48, "A capability, such as aed or thermal_camera.")
);
text_newtype!(
    /// The agency a unit belongs to, such as `city-fire`: a code like a capability, up to 64
    /// characters.
    Agency,
    |s| parse_slug("agency", s, 64),
    crate::schema::slug(64, "An agency code, such as city-fire.")
);
text_newtype!(
    /// A unit's home station, as a code such as `station-7`, up to 64 characters.
    StationCode,
    |s| parse_slug("station", s, 64),
    crate::schema::slug(64, "A station code, such as station-7.")
);
text_newtype!(
    /// The name a unit answers to on the radio, such as `E7` or `MEDIC 12`: 1 to 16
    /// characters, letters, digits, spaces and `-`, stored in upper case.
    CallSign,
    |s| {
        let t = s.trim().to_ascii_uppercase();
        if t.is_empty() {
            return Err(InvalidValue::new("call sign", "is empty"));
        }
        if t.chars().count() > 16 {
            return Err(InvalidValue::new("call sign", format!("{:?} is longer than 16 characters", shorten(s))));
        }
        if let Some(c) = t.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == ' ' || *c == '-')) {
            return Err(InvalidValue::new(
                "call sign",
                format!("{:?} has {c:?}; only letters, digits, spaces and '-' are allowed", shorten(s)),
            ));
        }
        Ok(t)
    },
    serde_json::json!({"type": "string", "minLength": 1, "maxLength": 16, "pattern": "^[A-Za-z0-9 -]*[A-Za-z0-9-][A-Za-z0-9 -]*$",
        "description": "A radio call sign, such as E7 or MEDIC 12 (stored in upper case)."})
);
text_newtype!(
    /// A free-text note on an incident: 1 to 4000 characters; line breaks and tabs allowed,
    /// other control characters not.
    NoteText,
    |s| {
        let t = s.trim();
        if t.is_empty() {
            return Err(InvalidValue::new("note", "is empty"));
        }
        if t.chars().count() > MAX_NOTE_CHARS {
            return Err(InvalidValue::new("note", "is longer than 4000 characters"));
        }
        if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(InvalidValue::new("note", "contains a control character"));
        }
        Ok(t.to_owned())
    },
    serde_json::json!({"type": "string", "minLength": 1, "maxLength": MAX_NOTE_CHARS,
        "pattern": "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$",
        "description": "Free text, up to 4000 characters; line breaks and tabs allowed, other control characters not."})
);
text_newtype!(
    /// A sensor's measured quantity, such as `temperature_c` or `water_level_m`: a code like a
    /// capability, up to 48 characters.
    MetricName,
    |s| parse_slug("metric", s, 48),
    crate::schema::slug(48, "A measured quantity, such as temperature_c.")
);

text_newtype!(
    /// What kind of sensor, such as `smoke_detector`, `water_level` or `gas`: a code like a
    /// capability, up to 48 characters.
    SensorKind,
    |s| parse_slug("sensor kind", s, 48),
    crate::schema::slug(48, "A sensor kind, such as smoke_detector.")
);

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

// ---------------------------------------------------------------------------------------------
// Idempotency

/// Shortest idempotency key, in characters.
pub const MIN_IDEMPOTENCY_KEY_CHARS: usize = 8;
/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// Namespace of the event ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_4944_454d_504f_5445_4e54);

/// The key a client sends with every command so that a retry is recognised: 8 to 128
/// printable ASCII characters without spaces (a UUID fits).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A deterministic event id for the `index`-th event that the command with this key
    /// appends to `stream`. A retry of the command derives the same ids, and the store, being
    /// idempotent by event id, then writes nothing a second time.
    pub fn event_id(&self, stream: &str, index: u32) -> Uuid {
        let name = format!("{}\u{0}{stream}\u{0}{index}", self.0);
        Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, name.as_bytes())
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let n = value.chars().count();
        if n < MIN_IDEMPOTENCY_KEY_CHARS {
            return Err(InvalidValue::new(
                "idempotency key",
                "is shorter than 8 characters",
            ));
        }
        if n > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(InvalidValue::new(
                "idempotency key",
                "is longer than 128 characters",
            ));
        }
        if !value.chars().all(|c| c.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                "idempotency key",
                "may hold only printable ASCII characters without spaces",
            ));
        }
        Ok(Self(value))
    }
}

impl TryFrom<&str> for IdempotencyKey {
    type Error = InvalidValue;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::try_from(value.to_owned())
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> String {
        k.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

/// A finite number; sensor readings and thresholds are never NaN or infinite.
pub fn finite(what: &'static str, value: f64) -> Result<f64, InvalidValue> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(InvalidValue::new(
            what,
            format!("{value} is not a finite number"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Time claimed by a source

/// How far ahead of the server's clock a source's time (a phone's fix, a sensor's reading)
/// may be, in seconds. Further is a wrong clock, refused with the reason.
pub const MAX_CLOCK_SKEW_S: i64 = 300;

/// How old a source's time may be, in seconds: a report queued on a phone for a day is
/// still taken; one stamped long before that is a wrong clock.
pub const MAX_SOURCE_AGE_S: i64 = 24 * 3600;

/// Checks a time a source claims against the server's clock `now`: refused when it is more
/// than [`MAX_CLOCK_SKEW_S`] ahead or more than [`MAX_SOURCE_AGE_S`] behind. The claim is
/// recorded as the source's; the store's own time is recorded beside it.
pub fn check_source_time(
    claim: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, InvalidValue> {
    let ahead = (claim - now).num_seconds();
    if ahead > MAX_CLOCK_SKEW_S {
        return Err(InvalidValue::new(
            "time",
            format!(
                "is {ahead} s ahead of the server's clock; more than {MAX_CLOCK_SKEW_S} s is a wrong clock"
            ),
        ));
    }
    if -ahead > MAX_SOURCE_AGE_S {
        return Err(InvalidValue::new(
            "time",
            format!(
                "is {} s behind the server's clock; more than {MAX_SOURCE_AGE_S} s is a wrong clock",
                -ahead
            ),
        ));
    }
    Ok(claim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_parses_p1_to_p5_only() {
        assert_eq!(Priority::parse("P1").unwrap(), Priority::P1);
        assert_eq!(Priority::parse(" p5 ").unwrap(), Priority::P5);
        assert!(Priority::P1 < Priority::P5);
        assert_eq!(Priority::P3.to_string(), "P3");
        let table = [
            ("", "empty"),
            ("P0", "below the scale"),
            ("P6", "above the scale"),
            ("3", "no P"),
            ("P", "no digit"),
            ("P1 ", "fine: white space is trimmed"),
            ("P11", "two digits"),
            ("high", "a word, not a priority"),
            ("P-1", "a sign"),
        ];
        for (input, why) in table {
            let result = Priority::parse(input);
            if why.starts_with("fine") {
                assert!(result.is_ok(), "{input:?}: {why}");
            } else {
                assert!(result.is_err(), "{input:?} should be refused: {why}");
            }
        }
    }

    #[test]
    fn phone_numbers_normalize_and_mask() {
        let p = PhoneNumber::parse(" +49 (30) 1234-5678 ").unwrap();
        assert_eq!(p.expose(), "+4930123456 78".replace(' ', ""));
        let debug = format!("{p:?}");
        assert_eq!(debug, "PhoneNumber(***78)");
        assert!(!debug.contains("4930"));
        assert_eq!(PhoneNumber::parse("112").unwrap().expose(), "112");
        let table = [
            ("", "empty"),
            ("12", "two digits is not a number anyone can call back"),
            ("+", "a plus and nothing else"),
            ("1234567890123456", "16 digits, over E.164's 15"),
            ("030 1234 x12", "a letter"),
            ("+49+30123", "a second plus"),
            ("030/123456", "a slash is not a separator we accept"),
            ("0301234567890123456789012345678901", "over 32 characters"),
        ];
        for (input, why) in table {
            let err = PhoneNumber::parse(input).expect_err(why);
            if input.len() >= 4 {
                assert!(
                    !err.to_string().contains(input),
                    "{why}: the error repeats the number"
                );
            }
        }
    }

    #[test]
    fn caller_details_debug_hides_personal_data() {
        let caller = CallerDetails {
            name: Some(PersonName::parse("Erika Mustermann").unwrap()),
            call_back: Some(PhoneNumber::parse("+4915112345678").unwrap()),
            sealed: None,
        };
        let debug = format!("{caller:?}");
        assert!(!debug.contains("Erika"), "{debug}");
        assert!(!debug.contains("151123"), "{debug}");
        let json = serde_json::to_string(&caller).unwrap();
        let back: CallerDetails = serde_json::from_str(&json).unwrap();
        assert_eq!(back, caller);
    }

    #[test]
    fn person_names_refuse_bad_input() {
        let long = "x".repeat(121);
        let table = [
            ("", "empty"),
            ("   ", "only white space"),
            ("Max\u{0}Muster", "a NUL character"),
            (long.as_str(), "121 characters"),
        ];
        for (input, why) in table {
            assert!(PersonName::parse(input).is_err(), "{why}");
        }
    }

    #[test]
    fn codes_parse_and_refuse() {
        assert_eq!(
            IncidentType::parse("Structure_Fire").unwrap(),
            IncidentType::StructureFire
        );
        assert_eq!(
            UnitKind::parse("als_ambulance").unwrap(),
            UnitKind::AlsAmbulance
        );
        assert_eq!(
            IncidentSource::parse("hotline").unwrap(),
            IncidentSource::Hotline
        );
        for t in IncidentType::ALL {
            assert_eq!(IncidentType::parse(t.code()).unwrap(), *t);
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.code()));
        }
        let table = [
            ("", "empty"),
            ("fire", "too vague: which fire?"),
            ("structure fire", "a space instead of '_'"),
            ("structure_fire!", "a trailing '!'"),
        ];
        for (input, why) in table {
            assert!(IncidentType::parse(input).is_err(), "{input:?}: {why}");
        }
        for (input, why) in [
            ("", "empty"),
            ("truck", "not a unit kind we know"),
            ("engine2", "a suffix"),
        ] {
            assert!(UnitKind::parse(input).is_err(), "{input:?}: {why}");
        }
    }

    #[test]
    fn related_types() {
        use IncidentType::*;
        assert!(StructureFire.is_related_to(FireAlarm));
        assert!(TrafficCollision.is_related_to(Medical));
        assert!(VehicleFire.is_related_to(TrafficCollision));
        assert!(Other.is_related_to(Burglary));
        assert!(!StructureFire.is_related_to(Burglary));
        assert!(!Medical.is_related_to(Flooding));
        for a in IncidentType::ALL {
            assert!(a.is_related_to(*a));
            for b in IncidentType::ALL {
                assert_eq!(
                    a.is_related_to(*b),
                    b.is_related_to(*a),
                    "{a} / {b} must be symmetric"
                );
            }
        }
    }

    #[test]
    fn slugs_and_labels_refuse_bad_input() {
        assert_eq!(Capability::parse(" AED ").unwrap().as_str(), "aed");
        let long = "a".repeat(49);
        let table = [
            ("", "empty"),
            ("   ", "only white space"),
            ("thermal camera", "a space"),
            ("9lives", "starts with a digit"),
            ("aed!", "punctuation"),
            ("äed", "not ASCII"),
            (long.as_str(), "49 characters"),
        ];
        for (input, why) in table {
            assert!(Capability::parse(input).is_err(), "{input:?}: {why}");
        }
        assert_eq!(CallSign::parse("medic 12").unwrap().as_str(), "MEDIC 12");
        for (input, why) in [
            ("", "empty"),
            ("E7/1", "a slash"),
            ("ENGINE-COMPANY-SEVEN", "longer than 16"),
            ("E\t7", "a tab"),
        ] {
            assert!(CallSign::parse(input).is_err(), "{input:?}: {why}");
        }
        for (input, why) in [
            ("", "empty"),
            ("  \n ", "only white space"),
            ("beep\u{7}", "a bell character"),
        ] {
            assert!(NoteText::parse(input).is_err(), "{input:?}: {why}");
        }
        assert!(
            NoteText::parse(&"n".repeat(MAX_NOTE_CHARS + 1)).is_err(),
            "over 4000 characters"
        );
        assert!(NoteText::parse("line one\nline two").is_ok());
    }

    #[test]
    fn idempotency_keys() {
        let k = IdempotencyKey::try_from("0b8f6d1e-key".to_owned()).unwrap();
        assert_eq!(k.event_id("incident-1", 0), k.event_id("incident-1", 0));
        assert_ne!(k.event_id("incident-1", 0), k.event_id("incident-1", 1));
        assert_ne!(k.event_id("incident-1", 0), k.event_id("incident-2", 0));
        let other = IdempotencyKey::try_from("0b8f6d1e-kez").unwrap();
        assert_ne!(k.event_id("incident-1", 0), other.event_id("incident-1", 0));
        let long = "k".repeat(129);
        let table = [
            ("", "empty"),
            ("short", "under 8 characters"),
            ("has space in it", "a space"),
            ("tab\tin-the-key", "a control character"),
            ("schlüssel-123", "not ASCII"),
            (long.as_str(), "129 characters"),
        ];
        for (input, why) in table {
            assert!(IdempotencyKey::try_from(input).is_err(), "{input:?}: {why}");
        }
    }

    #[test]
    fn finite_refuses_nan_and_infinity() {
        for (v, why) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "infinity"),
            (f64::NEG_INFINITY, "minus infinity"),
        ] {
            assert!(finite("reading", v).is_err(), "{why}");
        }
        assert_eq!(finite("reading", -3.5).unwrap(), -3.5);
    }
}
