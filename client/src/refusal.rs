//! Refusals that keep the connection open (`permission_denied` 401,
//! `rate_limited` 307): one as it arrived, and the ones the dispatcher holds
//! for `check_refusals` (see the `dispatch` module header for who gets which).

use crate::error::ClientError;

/// One refusal that kept the connection open.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    pub(crate) code: u16,
    pub(crate) message: String,
    pub(crate) retry_after_ms: u32,
}

impl Refusal {
    pub(crate) fn into_error(self) -> ClientError {
        ClientError::Server { code: self.code, message: self.message, retry_after_ms: self.retry_after_ms }
    }
}

/// Refusals not yet reported: how many, and the first one.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    count: u64,
    first: Option<Refusal>,
}

impl Refusals {
    pub(crate) fn add(&mut self, refusal: Refusal) {
        self.count += 1;
        self.first.get_or_insert(refusal);
    }

    pub(crate) fn into_error(self) -> Option<ClientError> {
        let first = self.first?;
        Some(ClientError::Refused {
            count: self.count,
            code: first.code,
            message: first.message,
            retry_after_ms: first.retry_after_ms,
        })
    }
}
