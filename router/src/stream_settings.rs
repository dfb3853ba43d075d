//! `[[stream]]` tables of the configuration file: streams created (or
//! updated) when the router starts.
//!
//! ```toml
//! [[stream]]
//! name = "ORDERS"
//! subjects = ["orders.>"]
//! durability = "always"        # or "interval=10ms", "memory"
//! max_bytes = "10GiB"
//! max_age = "7d"
//! max_msgs = 1000000
//! max_msg_size = "1MiB"
//! discard = "old"              # or "new"
//! dedup_window = "2m"
//! ```

use flit_shard::streams::definition::{parse_bytes, parse_discard, parse_durability, parse_duration, StreamDefinition};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTable {
    pub name: String,
    pub subjects: Vec<String>,
    pub durability: Option<String>,
    pub max_bytes: Option<String>,
    pub max_age: Option<String>,
    pub max_msgs: Option<u64>,
    pub max_msg_size: Option<String>,
    pub discard: Option<String>,
    pub dedup_window: Option<String>,
}

impl StreamTable {
    /// The definition this table describes, checked.
    pub fn definition(&self) -> Result<StreamDefinition, String> {
        let context =
            |error: flit_shard::streams::definition::DefinitionError| format!("[[stream]] {}: {error}", self.name);
        let subjects: Vec<&str> = self.subjects.iter().map(String::as_str).collect();
        let mut definition = StreamDefinition::new(&self.name, &subjects);
        if let Some(durability) = &self.durability {
            definition.durability = parse_durability(durability).map_err(context)?;
        }
        if let Some(bytes) = &self.max_bytes {
            definition.bytes_max = parse_bytes(bytes).map_err(context)?;
        }
        if let Some(age) = &self.max_age {
            definition.age_max = parse_duration(age).map_err(context)?;
        }
        definition.messages_max = self.max_msgs.unwrap_or(0);
        if let Some(size) = &self.max_msg_size {
            let bytes = parse_bytes(size).map_err(context)?;
            definition.message_bytes_max =
                u32::try_from(bytes).map_err(|_| format!("[[stream]] {}: max_msg_size above 4 GiB", self.name))?;
        }
        if let Some(discard) = &self.discard {
            definition.discard = parse_discard(discard).map_err(context)?;
        }
        if let Some(window) = &self.dedup_window {
            definition.dedup_window = parse_duration(window).map_err(context)?;
        }
        definition.validate().map_err(context)?;
        Ok(definition)
    }
}
