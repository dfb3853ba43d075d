//! A stream's definition: its name, the subjects it captures, its
//! durability policy and limits; how it is checked, stored and compared.
//!
//! Stored as `<data-dir>/streams/<name>/definition`, a few `key=value`
//! lines, written to a temporary file, fsynced, renamed over the old one and
//! the directory fsynced: a crash leaves the old definition or the new one,
//! never half of either.
//!
//! Invariants: a definition that passed [`StreamDefinition::validate`] has a
//! valid name (1..=64 of `[A-Za-z0-9_-]`), 1..=[`SUBJECTS_PER_STREAM_MAX`]
//! valid, pairwise non-overlapping patterns, and limits its log accepts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flit_stream::log::{Durability, LogConfig};
use flit_stream::retention::{Discard, Retention};

/// Subject patterns one stream may capture.
pub const SUBJECTS_PER_STREAM_MAX: usize = 64;
/// Longest stream name, in bytes.
pub const STREAM_NAME_BYTES_MAX: usize = 64;
/// Longest definition file read back.
const DEFINITION_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Why a definition is unusable (shown to the operator or the client).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DefinitionError(pub String);

fn problem(text: impl Into<String>) -> DefinitionError {
    DefinitionError(text.into())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDefinition {
    pub name: String,
    pub subjects: Vec<String>,
    pub durability: Durability,
    /// 0: no limit, for each of the four.
    pub bytes_max: u64,
    pub age_max: Duration,
    pub messages_max: u64,
    pub message_bytes_max: u32,
    pub discard: Discard,
    /// Zero: no deduplication by message id.
    pub dedup_window: Duration,
}

impl StreamDefinition {
    /// A definition with the defaults: `always`, no limits, discard old.
    pub fn new(name: &str, subjects: &[&str]) -> StreamDefinition {
        StreamDefinition {
            name: name.to_string(),
            subjects: subjects.iter().map(|subject| subject.to_string()).collect(),
            durability: Durability::Always,
            bytes_max: 0,
            age_max: Duration::ZERO,
            messages_max: 0,
            message_bytes_max: 0,
            discard: Discard::Old,
            dedup_window: Duration::ZERO,
        }
    }

    pub fn validate(&self) -> Result<(), DefinitionError> {
        validate_stream_name(&self.name)?;
        if self.subjects.is_empty() {
            return Err(problem("a stream needs at least one subject"));
        }
        if self.subjects.len() > SUBJECTS_PER_STREAM_MAX {
            return Err(problem(format!("more than {SUBJECTS_PER_STREAM_MAX} subjects")));
        }
        for subject in &self.subjects {
            flit_wire::subject::validate_pattern(subject.as_bytes())
                .map_err(|error| problem(format!("subject {subject:?}: {error}")))?;
        }
        for (index, first) in self.subjects.iter().enumerate() {
            for second in &self.subjects[index + 1..] {
                if patterns_overlap(first.as_bytes(), second.as_bytes()) {
                    return Err(problem(format!("subjects {first:?} and {second:?} overlap")));
                }
            }
        }
        if let Durability::Interval(interval) = self.durability {
            if interval.is_zero() {
                return Err(problem("durability interval=0: use always"));
            }
        }
        Ok(())
    }

    /// Whether any subject of `self` could also be captured by `other`.
    pub fn overlaps(&self, other: &StreamDefinition) -> Option<(String, String)> {
        for mine in &self.subjects {
            for theirs in &other.subjects {
                if patterns_overlap(mine.as_bytes(), theirs.as_bytes()) {
                    return Some((mine.clone(), theirs.clone()));
                }
            }
        }
        None
    }

    /// The log settings for this stream, in `directory`.
    pub fn log_config(&self, directory: PathBuf) -> LogConfig {
        let mut config = LogConfig::new(directory);
        config.durability = self.durability;
        config.retention = Retention {
            bytes_max: (self.bytes_max > 0).then_some(self.bytes_max),
            messages_max: (self.messages_max > 0).then_some(self.messages_max),
            age_max: (!self.age_max.is_zero()).then_some(self.age_max),
            message_bytes_max: (self.message_bytes_max > 0).then_some(self.message_bytes_max as usize),
            discard: self.discard,
        };
        config
    }

    /// The definition file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "name={}", self.name);
        for subject in &self.subjects {
            let _ = writeln!(text, "subjects={subject}");
        }
        let _ = writeln!(text, "durability={}", durability_text(self.durability));
        let _ = writeln!(text, "max_bytes={}", self.bytes_max);
        let _ = writeln!(text, "max_age_ms={}", self.age_max.as_millis());
        let _ = writeln!(text, "max_msgs={}", self.messages_max);
        let _ = writeln!(text, "max_msg_size={}", self.message_bytes_max);
        let _ = writeln!(text, "discard={}", if self.discard == Discard::New { "new" } else { "old" });
        let _ = writeln!(text, "dedup_window_ms={}", self.dedup_window.as_millis());
        text
    }

    /// Parses a definition file's text (unknown keys are refused: a typo
    /// must not silently drop a limit).
    pub fn from_text(text: &str) -> Result<StreamDefinition, DefinitionError> {
        let mut definition = StreamDefinition::new("", &[]);
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let (key, value) = line.split_once('=').ok_or_else(|| problem(format!("not key=value: {line:?}")))?;
            let number = || value.parse::<u64>().map_err(|_| problem(format!("{key}: not a number: {value:?}")));
            match key {
                "name" => definition.name = value.to_string(),
                "subjects" => definition.subjects.push(value.to_string()),
                "durability" => definition.durability = parse_durability(value)?,
                "max_bytes" => definition.bytes_max = number()?,
                "max_age_ms" => definition.age_max = Duration::from_millis(number()?),
                "max_msgs" => definition.messages_max = number()?,
                "max_msg_size" => {
                    definition.message_bytes_max =
                        u32::try_from(number()?).map_err(|_| problem("max_msg_size above 4 GiB"))?
                }
                "discard" => definition.discard = parse_discard(value)?,
                "dedup_window_ms" => definition.dedup_window = Duration::from_millis(number()?),
                _ => return Err(problem(format!("unknown key {key:?}"))),
            }
        }
        definition.validate()?;
        Ok(definition)
    }

    /// Writes the definition file durably (temporary file, fsync, rename,
    /// directory fsync), creating the stream's directory.
    pub fn store(&self, stream_directory: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(stream_directory)?;
        let temporary = stream_directory.join("definition.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(self.to_text().as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, stream_directory.join("definition"))?;
        std::fs::File::open(stream_directory)?.sync_all()?;
        if let Some(parent) = stream_directory.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    }

    /// Reads `<stream_directory>/definition`.
    pub fn load(stream_directory: &Path) -> Result<StreamDefinition, DefinitionError> {
        let path = stream_directory.join("definition");
        let describe = |error: std::io::Error| problem(format!("{}: {error}", path.display()));
        let length = std::fs::metadata(&path).map_err(describe)?.len();
        if length > DEFINITION_FILE_BYTES_MAX {
            return Err(problem(format!("{}: larger than {DEFINITION_FILE_BYTES_MAX} bytes", path.display())));
        }
        let text = std::fs::read_to_string(&path).map_err(describe)?;
        StreamDefinition::from_text(&text).map_err(|error| problem(format!("{}: {error}", path.display())))
    }
}

/// `always`, `interval=10ms`, `memory`.
pub fn durability_text(durability: Durability) -> String {
    match durability {
        Durability::Always => "always".to_string(),
        Durability::Interval(interval) => format!("interval={}ms", interval.as_millis()),
        Durability::Memory => "memory".to_string(),
    }
}

/// Parses `always`, `memory`, or `interval=N` with a unit (`ms`, `s`).
pub fn parse_durability(text: &str) -> Result<Durability, DefinitionError> {
    match text {
        "always" => Ok(Durability::Always),
        "memory" => Ok(Durability::Memory),
        _ => {
            let interval = text
                .strip_prefix("interval=")
                .ok_or_else(|| problem(format!("durability: always, interval=10ms or memory, not {text:?}")))?;
            let interval = parse_duration(interval)?;
            if interval.is_zero() {
                return Err(problem("durability interval=0: use always"));
            }
            Ok(Durability::Interval(interval))
        }
    }
}

/// `old` or `new`.
pub fn parse_discard(text: &str) -> Result<Discard, DefinitionError> {
    match text {
        "old" => Ok(Discard::Old),
        "new" => Ok(Discard::New),
        _ => Err(problem(format!("discard: old or new, not {text:?}"))),
    }
}

/// `250ms`, `10s`, `5m`, `2h`, `7d`; a bare number is milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, DefinitionError> {
    let digits_end = text.find(|character: char| !character.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let value: u64 = digits.parse().map_err(|_| problem(format!("not a duration: {text:?}")))?;
    let milliseconds_per_unit: u64 = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(problem(format!("duration unit must be ms, s, m, h or d: {text:?}"))),
    };
    let milliseconds =
        value.checked_mul(milliseconds_per_unit).ok_or_else(|| problem(format!("duration too long: {text:?}")))?;
    Ok(Duration::from_millis(milliseconds))
}

/// `10GiB`, `512MiB`, `4KiB`, `1000`, `2GB`.
pub fn parse_bytes(text: &str) -> Result<u64, DefinitionError> {
    let digits_end = text.find(|character: char| !character.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let value: u64 = digits.parse().map_err(|_| problem(format!("not a size: {text:?}")))?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(problem(format!("size unit must be B, KiB, MiB, GiB, TiB, KB, MB, GB or TB: {text:?}"))),
    };
    value.checked_mul(multiplier).ok_or_else(|| problem(format!("size too large: {text:?}")))
}

/// 1..=64 bytes of `[A-Za-z0-9_-]`: safe as a directory name.
pub fn validate_stream_name(name: &str) -> Result<(), DefinitionError> {
    let valid = !name.is_empty()
        && name.len() <= STREAM_NAME_BYTES_MAX
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(problem(format!("stream name {name:?}: 1 to {STREAM_NAME_BYTES_MAX} of A-Z a-z 0-9 _ -")))
    }
}

/// Whether some subject matches both valid patterns.
pub fn patterns_overlap(first: &[u8], second: &[u8]) -> bool {
    let mut first_tokens = first.split(|byte| *byte == b'.');
    let mut second_tokens = second.split(|byte| *byte == b'.');
    loop {
        match (first_tokens.next(), second_tokens.next()) {
            (None, None) => return true,
            // `>` needs at least one token, which the other has here.
            (Some(b">"), Some(_)) | (Some(_), Some(b">")) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some(left), Some(right)) => {
                if left != b"*" && right != b"*" && left != right {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_agrees_with_matching_on_examples() {
        let cases: &[(&str, &str, bool)] = &[
            ("orders.>", "orders.new", true),
            ("orders.>", "orders", false),
            ("orders.*", "orders.*.x", false),
            ("orders.*", "*.new", true),
            ("a.b", "a.c", false),
            (">", "x.y.z", true),
            ("a.*.c", "a.b.*", true),
            ("a.*.c", "a.b.d", false),
        ];
        for (first, second, expected) in cases {
            assert_eq!(patterns_overlap(first.as_bytes(), second.as_bytes()), *expected, "{first} / {second}");
            assert_eq!(patterns_overlap(second.as_bytes(), first.as_bytes()), *expected, "{second} / {first}");
        }
    }

    #[test]
    fn text_round_trips_and_unknown_keys_are_refused() {
        let mut definition = StreamDefinition::new("ORDERS", &["orders.>", "billing.*"]);
        definition.durability = Durability::Interval(Duration::from_millis(10));
        definition.bytes_max = 10 << 30;
        definition.age_max = Duration::from_secs(7 * 86_400);
        definition.messages_max = 1_000_000;
        definition.message_bytes_max = 1 << 20;
        definition.discard = Discard::New;
        definition.dedup_window = Duration::from_secs(120);
        assert_eq!(StreamDefinition::from_text(&definition.to_text()), Ok(definition.clone()));
        let typo = definition.to_text().replace("max_bytes", "max_byte");
        assert!(StreamDefinition::from_text(&typo).is_err());
    }

    #[test]
    fn overlapping_subjects_and_bad_names_are_refused() {
        assert!(StreamDefinition::new("A", &["x.>", "x.y"]).validate().is_err());
        assert!(StreamDefinition::new("bad name", &["x"]).validate().is_err());
        assert!(StreamDefinition::new("../etc", &["x"]).validate().is_err());
        assert!(StreamDefinition::new("A", &[]).validate().is_err());
        assert!(StreamDefinition::new("A", &["x.*", "y.>"]).validate().is_ok());
    }

    #[test]
    fn sizes_durations_and_policies_parse() {
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert!(parse_bytes("1XB").is_err());
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_durability("interval=10ms"), Ok(Durability::Interval(Duration::from_millis(10))));
        assert!(parse_durability("interval=0ms").is_err());
        assert!(parse_durability("sometimes").is_err());
    }
}
