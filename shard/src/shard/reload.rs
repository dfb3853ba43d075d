//! Applying reloaded identities (SIGHUP) without dropping connections that
//! are still entitled to what they hold.
//!
//! For each open connection with an identity: if no identity of that name
//! exists any more or its token changed, or if one of its subscriptions is
//! refused by the new permissions, the connection is closed with
//! `authentication_failed` (the client reconnects and is judged afresh);
//! otherwise it keeps running under the new permissions, and each of its
//! subscriptions takes the delivery filter the new permissions give it (its
//! interest moves to the new filter on every shard).

use std::sync::PoisonError;

use flit_wire::ErrorCode;

use super::dispatch::subscribe_decision;
use super::Shard;
use crate::connection::ConnectionState;

impl Shard {
    pub(super) fn apply_reloaded_identities(&mut self) {
        self.identities = self.shared.identities.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut revoked = Vec::new();
        let mut kept = Vec::new();
        for connection in self.connections.iter() {
            let Some(current) = connection.identity.as_ref() else { continue };
            if connection.state != ConnectionState::Open {
                continue;
            }
            let Some(renewed) = self.identities.by_name(&current.name).filter(|new| new.same_credentials(current))
            else {
                revoked.push((connection.key, format!("credentials of {} revoked by a reload", current.name)));
                continue;
            };
            let mut filters = Vec::new();
            let mut refused = None;
            for (subscription_id, slot) in &connection.subscriptions {
                let Some(subscription) = self.subscriptions.get(*slot) else { continue };
                if renewed.permissions.subscribe.is_open() {
                    filters.push((*slot, None));
                    continue;
                }
                match subscribe_decision(renewed, connection, &subscription.pattern) {
                    Ok(filter) => filters.push((*slot, filter)),
                    Err(_) => refused = Some(*subscription_id),
                }
            }
            match refused {
                Some(id) => {
                    revoked.push((connection.key, format!("subscription {id} no longer permitted after a reload")))
                }
                None => kept.push((connection.key, renewed.clone(), filters)),
            }
        }
        for (key, identity, filters) in kept {
            for (slot, filter) in filters {
                self.refilter_subscription(slot, filter);
            }
            if let Some(connection) = self.connections.get_mut(key) {
                connection.identity = Some(identity);
                connection.publish_permitted_subject.clear();
            }
        }
        for (key, message) in revoked {
            self.begin_close(key, Some((ErrorCode::AuthenticationFailed, &message)));
        }
    }
}
