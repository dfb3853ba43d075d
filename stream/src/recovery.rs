//! Placeholder: filled in by the durable-streams work (issue 11).
