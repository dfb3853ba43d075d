//! The `/metrics` families of a cluster node, one series per other node
//! (label `node`, the node id): whether its routes are up and their last
//! round trip (from the shards' shared cluster view, updated at route changes
//! and pongs), and what this node's routes carried to and from it (the
//! shards' per-node counters, summed over shards). Nothing is written for a
//! node without `[cluster]`.

use flit_shard::metrics::RouteNodeCounters;
use flit_shard::ShardMetrics;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::metrics_http::Observed;

type NodeField = (&'static str, &'static str, MetricType, fn(&RouteNodeCounters) -> u64);

const NODE_FIELDS: [NodeField; 6] = [
    ("flit_route_node_messages_sent", "Messages forwarded to the node.", MetricType::Counter, |c| {
        c.messages_sent.get()
    }),
    ("flit_route_node_bytes_sent", "Route bytes written to the node (frames).", MetricType::Counter, |c| {
        c.bytes_sent.get()
    }),
    ("flit_route_node_messages_received", "Messages the node forwarded here.", MetricType::Counter, |c| {
        c.messages_received.get()
    }),
    ("flit_route_node_bytes_received", "Route message bytes read from the node.", MetricType::Counter, |c| {
        c.bytes_received.get()
    }),
    (
        "flit_route_node_messages_dropped",
        "Messages for the node dropped: its routes down or their queues full (at most once).",
        MetricType::Counter,
        |c| c.dropped.get(),
    ),
    (
        "flit_route_node_queued_bytes",
        "Bytes waiting in this node's routes to the node (sampled every sweep).",
        MetricType::Gauge,
        |c| c.queued_bytes.get(),
    ),
];

pub fn encode_route_nodes(encoder: &mut DescriptorEncoder, observed: &Observed) -> Result<(), std::fmt::Error> {
    if observed.cluster.is_none() {
        return Ok(());
    }
    let view = observed.shared.cluster_view.nodes();
    let mut up = encoder.encode_descriptor(
        "flit_route_node_up",
        "1 while at least one shard of this node has its route to the node up.",
        None,
        MetricType::Gauge,
    )?;
    for (id, lanes_up, _) in &view {
        ConstGauge::new(i64::from(*lanes_up > 0)).encode(up.encode_family(&[("node", id.to_string())])?)?;
    }
    let mut lanes = encoder.encode_descriptor(
        "flit_route_node_routes_up",
        "Routes to the node that are up (one per shard of this node when healthy).",
        None,
        MetricType::Gauge,
    )?;
    for (id, lanes_up, _) in &view {
        ConstGauge::new(i64::from(*lanes_up)).encode(lanes.encode_family(&[("node", id.to_string())])?)?;
    }
    let mut round_trip = encoder.encode_descriptor(
        "flit_route_node_round_trip_seconds",
        "The last route ping's round trip to the node.",
        None,
        MetricType::Gauge,
    )?;
    for (id, _, micros) in &view {
        let seconds = *micros as f64 / 1e6;
        ConstGauge::new(seconds).encode(round_trip.encode_family(&[("node", id.to_string())])?)?;
    }
    let ids = observed.shared.cluster_nodes.ids();
    for (name, help, metric_type, read) in NODE_FIELDS {
        let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
        for (index, id) in ids.iter().enumerate() {
            let total = sum_over_shards(&observed.shards, index, read);
            let labels = [("node", id.to_string())];
            if matches!(metric_type, MetricType::Counter) {
                ConstCounter::new(total).encode(family.encode_family(&labels)?)?;
            } else {
                ConstGauge::new(i64::try_from(total).unwrap_or(i64::MAX)).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

fn sum_over_shards(shards: &[std::sync::Arc<ShardMetrics>], node: usize, read: fn(&RouteNodeCounters) -> u64) -> u64 {
    shards.iter().map(|metrics| read(&metrics.route_nodes[node])).fold(0, u64::wrapping_add)
}
