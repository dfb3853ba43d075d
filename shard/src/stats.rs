//! Per-shard counters as plain numbers: a snapshot of [`crate::metrics::ShardMetrics`],
//! returned when a shard stops (and printed by the binary at exit).

use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub connections_closed: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub deliveries: u64,
    pub bytes_out: u64,
    pub mesh_messages_sent: u64,
    pub mesh_messages_received: u64,
    pub mesh_queue_full_events: u64,
    pub no_responders: u64,
    pub queue_group_misses: u64,
    pub slow_consumer_evictions: u64,
    pub protocol_errors: u64,
    pub accept_errors: u64,
    pub mesh_messages_to_dead_shards: u64,
}

impl fmt::Display for ShardStats {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "connections_accepted={} connections_refused={} connections_closed={} messages_in={} bytes_in={} \
             deliveries={} bytes_out={} mesh_messages_sent={} mesh_messages_received={} mesh_queue_full_events={} \
             no_responders={} queue_group_misses={} slow_consumer_evictions={} protocol_errors={} accept_errors={} mesh_messages_to_dead_shards={}",
            self.connections_accepted,
            self.connections_refused,
            self.connections_closed,
            self.messages_in,
            self.bytes_in,
            self.deliveries,
            self.bytes_out,
            self.mesh_messages_sent,
            self.mesh_messages_received,
            self.mesh_queue_full_events,
            self.no_responders,
            self.queue_group_misses,
            self.slow_consumer_evictions,
            self.protocol_errors,
            self.accept_errors,
            self.mesh_messages_to_dead_shards
        )
    }
}
