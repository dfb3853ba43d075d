//! The cluster half of the subscribe barrier: which nodes still owe this
//! shard an acknowledgement of the interest it announced to them.
//!
//! A shard that announces an interest change on its lane to a node follows
//! it with a RouteBarrier naming its interest epoch; the node answers with a
//! RouteBarrierAck once every one of its shards applied what came before
//! (its own local barrier). A client's Pong (or a subscribe's Ok) waits for
//! both halves, local shards and these nodes, so once a client saw it, a
//! publish on any reachable node reaches the subscription.
//!
//! Invariants: a node is outstanding exactly while its last barrier sent is
//! above its last acknowledgement; a lane that closes owes nothing (its node
//! gets the whole interest again when a lane comes back, and messages for it
//! meanwhile are dropped and counted anyway). Epochs are the shard's, which
//! only grow, so acknowledgements on a new lane compare with the old ones.

use super::remote_interest::{NodeMask, CLUSTER_NODES_MAX};

#[derive(Debug)]
pub struct RouteBarriers {
    sent: [u64; CLUSTER_NODES_MAX],
    acknowledged: [u64; CLUSTER_NODES_MAX],
    outstanding: NodeMask,
}

impl Default for RouteBarriers {
    fn default() -> Self {
        RouteBarriers { sent: [0; CLUSTER_NODES_MAX], acknowledged: [0; CLUSTER_NODES_MAX], outstanding: 0 }
    }
}

impl RouteBarriers {
    /// A barrier for `epoch` went to `node`.
    pub fn sent(&mut self, node: usize, epoch: u64) {
        self.sent[node] = self.sent[node].max(epoch);
        if self.acknowledged[node] < self.sent[node] {
            self.outstanding |= 1 << node;
        }
    }

    /// `node` acknowledged every barrier up to `epoch`.
    pub fn acknowledged(&mut self, node: usize, epoch: u64) {
        self.acknowledged[node] = self.acknowledged[node].max(epoch);
        if self.acknowledged[node] >= self.sent[node] {
            self.outstanding &= !(1 << node);
        }
    }

    /// The lane to `node` closed: it owes nothing any more.
    pub fn lane_gone(&mut self, node: usize) {
        self.acknowledged[node] = self.sent[node];
        self.outstanding &= !(1 << node);
    }

    /// The lowest epoch an outstanding node acknowledged; `u64::MAX` when
    /// none is outstanding (the common case: one branch).
    pub fn acknowledged_min(&self) -> u64 {
        if self.outstanding == 0 {
            return u64::MAX;
        }
        let mut mask = self.outstanding;
        let mut lowest = u64::MAX;
        while mask != 0 {
            let node = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            lowest = lowest.min(self.acknowledged[node]);
        }
        lowest
    }
}

#[cfg(test)]
mod tests {
    use super::RouteBarriers;

    #[test]
    fn a_node_holds_the_barrier_until_it_acknowledges_or_its_lane_goes() {
        let mut barriers = RouteBarriers::default();
        assert_eq!(barriers.acknowledged_min(), u64::MAX);
        barriers.sent(2, 5);
        barriers.sent(7, 6);
        assert_eq!(barriers.acknowledged_min(), 0);
        barriers.acknowledged(2, 5);
        assert_eq!(barriers.acknowledged_min(), 0, "node 7 still owes epoch 6");
        barriers.acknowledged(7, 4);
        assert_eq!(barriers.acknowledged_min(), 4);
        barriers.lane_gone(7);
        assert_eq!(barriers.acknowledged_min(), u64::MAX);
        // A later barrier on a new lane is owed again; an old acknowledgement
        // does not cover it.
        barriers.sent(7, 9);
        assert_eq!(barriers.acknowledged_min(), 6);
        barriers.acknowledged(7, 9);
        assert_eq!(barriers.acknowledged_min(), u64::MAX);
    }
}
