//! Query strings of the NATS monitoring endpoints (`/connz`, `/subsz`),
//! parsed as nats-server parses them (server/monitor.go: `decodeInt`,
//! `decodeBool`, `decodeSubs`, the sort names of monitor_sort_opts.go), but
//! defensively: every input is bounded, nothing panics, and a value flit
//! cannot honour is refused (400) rather than silently ignored.
//!
//! Invariants: at most `QUERY_PARAMETERS_MAX` parameters are looked at (more
//! is a 400); `limit` is clamped to `CONNZ_LIMIT_MAX`; a parameter given twice
//! counts once, its first value (Go's `Query().Get`); unknown parameters are
//! ignored, as nats-server does, except those that filter (a filter flit
//! ignored would return wrong rows).
//!
//! Shutdown: nothing to do (pure functions).
#![forbid(unsafe_code)]

/// Parameters read from one query string; more is a 400.
pub const QUERY_PARAMETERS_MAX: usize = 32;
/// Rows (connections or subscriptions) per page when `limit` is absent or not positive (NATS's default).
pub const LIST_LIMIT_DEFAULT: usize = 1024;
/// Most rows one answer carries: each is a few hundred bytes of JSON, built
/// on the metrics thread and written within the request deadline.
pub const CONNZ_LIMIT_MAX: usize = 10_000;

/// A query flit refuses, with the reason sent to the client (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("more than {QUERY_PARAMETERS_MAX} query parameters")]
    TooManyParameters,
    #[error("parameter '{name}': {reason}")]
    BadValue { name: &'static str, reason: String },
    #[error("parameter '{name}' is not supported by flit: {reason}")]
    NotSupported { name: &'static str, reason: &'static str },
}

/// How `/connz` orders its rows. Only `cid` and `start` are ascending, and
/// `uptime` (shortest first); the others list the largest first (as NATS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    ConnectionId,
    Start,
    Subscriptions,
    Pending,
    MessagesTo,
    MessagesFrom,
    BytesTo,
    BytesFrom,
    LastActivity,
    Idle,
    Uptime,
}

impl SortOrder {
    fn from_name(name: &str) -> Result<SortOrder, QueryError> {
        let order = match name {
            "" | "cid" => SortOrder::ConnectionId,
            "start" => SortOrder::Start,
            "subs" => SortOrder::Subscriptions,
            "pending" => SortOrder::Pending,
            "msgs_to" => SortOrder::MessagesTo,
            "msgs_from" => SortOrder::MessagesFrom,
            "bytes_to" => SortOrder::BytesTo,
            "bytes_from" => SortOrder::BytesFrom,
            "last" => SortOrder::LastActivity,
            "idle" => SortOrder::Idle,
            "uptime" => SortOrder::Uptime,
            "stop" | "reason" => {
                let reason = "sorts closed connections, and flit keeps none";
                return Err(QueryError::NotSupported { name: "sort", reason });
            }
            "rtt" => return Err(QueryError::NotSupported { name: "sort", reason: "flit measures no round-trip time" }),
            other => {
                let reason = format!("invalid sorting option: {}", printable(other));
                return Err(QueryError::BadValue { name: "sort", reason });
            }
        };
        Ok(order)
    }
}

/// What `/connz` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnzQuery {
    pub sort: SortOrder,
    pub offset: usize,
    pub limit: usize,
    /// `subs=1` (or `subs=detail`, answered with the plain list).
    pub subjects: bool,
    /// `auth=1`: include `authorized_user`.
    pub auth: bool,
    /// `cid=N`: only that connection.
    pub connection_id: Option<u64>,
}

/// What `/subsz` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubszQuery {
    pub offset: usize,
    pub limit: usize,
}

/// The (name, value) pairs of `query` (the part after `?`), first value of
/// each name; values are taken as they come (none that flit reads needs
/// percent-decoding, and one that has it fails its own parse).
fn parameters(query: &str) -> Result<Vec<(&str, &str)>, QueryError> {
    let mut found: Vec<(&str, &str)> = Vec::new();
    for (index, pair) in query.split('&').filter(|pair| !pair.is_empty()).enumerate() {
        if index >= QUERY_PARAMETERS_MAX {
            return Err(QueryError::TooManyParameters);
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !found.iter().any(|(known, _)| *known == name) {
            found.push((name, value));
        }
    }
    Ok(found)
}

fn value<'a>(parameters: &[(&str, &'a str)], name: &str) -> &'a str {
    parameters.iter().find(|(known, _)| *known == name).map_or("", |(_, value)| value)
}

/// At most 64 characters of a client's value, for an error message.
fn printable(value: &str) -> String {
    value.chars().take(64).map(|character| if character.is_ascii_graphic() { character } else { '?' }).collect()
}

/// Go's `strconv.ParseBool`; empty is false.
fn parse_bool(name: &'static str, text: &str) -> Result<bool, QueryError> {
    match text {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        other => Err(QueryError::BadValue { name, reason: format!("not a boolean: {}", printable(other)) }),
    }
}

/// Go's `strconv.Atoi` on a 64-bit platform; empty is 0.
fn parse_int(name: &'static str, text: &str) -> Result<i64, QueryError> {
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<i64>()
        .map_err(|_| QueryError::BadValue { name, reason: format!("not an integer: {}", printable(text)) })
}

/// `offset` (negative is 0) and `limit` (not positive is the default; above
/// `CONNZ_LIMIT_MAX` is clamped), as nats-server reads them.
fn paging(parameters: &[(&str, &str)]) -> Result<(usize, usize), QueryError> {
    let offset = usize::try_from(parse_int("offset", value(parameters, "offset"))?.max(0)).unwrap_or(usize::MAX);
    let limit = parse_int("limit", value(parameters, "limit"))?;
    let limit = if limit <= 0 { LIST_LIMIT_DEFAULT } else { usize::try_from(limit).unwrap_or(usize::MAX) };
    Ok((offset, limit.min(CONNZ_LIMIT_MAX)))
}

/// Parameters that filter rows in nats-server; flit cannot filter by them, and
/// ignoring one would answer with rows the caller excluded.
const CONNZ_FILTERS_UNSUPPORTED: [(&str, &str); 4] = [
    ("user", "flit has no NATS users (identities are shown with auth=1)"),
    ("acc", "flit has no NATS accounts"),
    ("filter_subject", "flit has no NATS accounts to filter within"),
    ("mqtt_client", "flit speaks no MQTT"),
];

/// `/connz?...`.
pub fn parse_connz(query: &str) -> Result<ConnzQuery, QueryError> {
    let parameters = parameters(query)?;
    for (name, reason) in CONNZ_FILTERS_UNSUPPORTED {
        if !value(&parameters, name).is_empty() {
            return Err(QueryError::NotSupported { name, reason });
        }
    }
    match value(&parameters, "state") {
        // flit keeps no closed connections, so "any" is the open ones.
        "" | "open" | "any" | "all" => {}
        "closed" => return Err(QueryError::NotSupported { name: "state", reason: "flit keeps no closed connections" }),
        other => {
            return Err(QueryError::BadValue {
                name: "state",
                reason: format!("expected open, closed or any: {}", printable(other)),
            })
        }
    }
    let sort = SortOrder::from_name(value(&parameters, "sort"))?;
    let subs = value(&parameters, "subs");
    let subjects = subs.eq_ignore_ascii_case("detail") || parse_bool("subs", subs)?;
    let auth = parse_bool("auth", value(&parameters, "auth"))?;
    let (offset, mut limit) = paging(&parameters)?;
    let connection_id = match value(&parameters, "cid") {
        "" => None,
        text => {
            let parsed = text.parse::<u64>().map_err(|_| QueryError::BadValue {
                name: "cid",
                reason: format!("not an unsigned integer: {}", printable(text)),
            })?;
            // cid=0 is no filter, as in nats-server.
            (parsed > 0).then_some(parsed)
        }
    };
    if connection_id.is_some() {
        limit = 1;
    }
    Ok(ConnzQuery { sort, offset, limit, subjects, auth, connection_id })
}

/// `/subsz?...`: paging only; the subscription list is not offered.
pub fn parse_subsz(query: &str) -> Result<SubszQuery, QueryError> {
    let parameters = parameters(query)?;
    // `subs=1` lists subscriptions and `test=SUBJECT` matches one against them.
    let listed = parse_bool("subs", value(&parameters, "subs"))?;
    if listed || !value(&parameters, "test").is_empty() {
        let name = if listed { "subs" } else { "test" };
        return Err(QueryError::NotSupported { name, reason: "flit lists no subscriptions here (see /connz?subs=1)" });
    }
    if !value(&parameters, "acc").is_empty() {
        return Err(QueryError::NotSupported { name: "acc", reason: "flit has no NATS accounts" });
    }
    let (offset, limit) = paging(&parameters)?;
    Ok(SubszQuery { offset, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connz_defaults_match_nats() {
        let query = parse_connz("").expect("empty query");
        let expected = ConnzQuery {
            sort: SortOrder::ConnectionId,
            offset: 0,
            limit: LIST_LIMIT_DEFAULT,
            subjects: false,
            auth: false,
            connection_id: None,
        };
        assert_eq!(query, expected);
    }

    #[test]
    fn connz_reads_paging_sort_subs_auth_and_cid() {
        let query = parse_connz("sort=msgs_from&offset=2&limit=5&subs=1&auth=true").expect("valid");
        assert_eq!(
            (query.sort, query.offset, query.limit, query.subjects, query.auth),
            (SortOrder::MessagesFrom, 2, 5, true, true)
        );
        assert!(parse_connz("subs=detail").expect("detail").subjects);
        let by_cid = parse_connz("cid=7&limit=50").expect("cid");
        assert_eq!((by_cid.connection_id, by_cid.limit), (Some(7), 1));
        assert_eq!(parse_connz("cid=0").expect("cid 0").connection_id, None);
        for (name, order) in [
            ("start", SortOrder::Start),
            ("subs", SortOrder::Subscriptions),
            ("pending", SortOrder::Pending),
            ("msgs_to", SortOrder::MessagesTo),
            ("bytes_to", SortOrder::BytesTo),
            ("bytes_from", SortOrder::BytesFrom),
            ("last", SortOrder::LastActivity),
            ("idle", SortOrder::Idle),
            ("uptime", SortOrder::Uptime),
        ] {
            assert_eq!(parse_connz(&format!("sort={name}")).expect(name).sort, order);
        }
    }

    #[test]
    fn paging_is_clamped_as_nats_does_and_bounded() {
        let query = parse_connz("offset=-3&limit=0").expect("valid");
        assert_eq!((query.offset, query.limit), (0, LIST_LIMIT_DEFAULT));
        assert_eq!(parse_connz("limit=-1").expect("valid").limit, LIST_LIMIT_DEFAULT);
        assert_eq!(parse_connz("limit=999999999").expect("valid").limit, CONNZ_LIMIT_MAX);
        assert_eq!(parse_connz("offset=9223372036854775807").expect("valid").offset, 9223372036854775807usize);
        // The first of a repeated parameter counts (Go's Query().Get).
        assert_eq!(parse_connz("limit=3&limit=x").expect("valid").limit, 3);
    }

    #[test]
    fn bad_values_are_refused_never_guessed() {
        for bad in [
            "limit=abc",
            "offset=1.5",
            "limit=99999999999999999999",
            "sort=nonsense",
            "subs=maybe",
            "auth=2",
            "cid=-1",
            "cid=x",
            "state=sleeping",
        ] {
            assert!(matches!(parse_connz(bad), Err(QueryError::BadValue { .. })), "{bad}");
        }
        for unsupported in ["sort=rtt", "sort=stop", "sort=reason", "state=closed", "acc=A", "user=u", "mqtt_client=m"]
        {
            assert!(matches!(parse_connz(unsupported), Err(QueryError::NotSupported { .. })), "{unsupported}");
        }
        let many = vec!["a=1"; QUERY_PARAMETERS_MAX + 1].join("&");
        assert_eq!(parse_connz(&many), Err(QueryError::TooManyParameters));
        assert!(parse_connz(&vec!["a=1"; QUERY_PARAMETERS_MAX].join("&")).is_ok());
    }

    #[test]
    fn odd_query_strings_never_panic() {
        let alphabet = ["&", "=", "limit", "sort", "subs", "1", "-", "\u{e9}", "%", ""];
        for first in alphabet {
            for second in alphabet {
                for third in alphabet {
                    let query = format!("{first}{second}{third}");
                    let _ = parse_connz(&query);
                    let _ = parse_subsz(&query);
                }
            }
        }
        let long = "x".repeat(10_000);
        let message = parse_connz(&format!("sort={long}")).expect_err("bad sort").to_string();
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn subsz_pages_and_refuses_the_list() {
        assert_eq!(parse_subsz("offset=1&limit=2"), Ok(SubszQuery { offset: 1, limit: 2 }));
        assert_eq!(parse_subsz(""), Ok(SubszQuery { offset: 0, limit: LIST_LIMIT_DEFAULT }));
        assert_eq!(parse_subsz("subs=0"), Ok(SubszQuery { offset: 0, limit: LIST_LIMIT_DEFAULT }));
        assert!(matches!(parse_subsz("subs=1"), Err(QueryError::NotSupported { .. })));
        assert!(matches!(parse_subsz("limit=x"), Err(QueryError::BadValue { .. })));
    }
}
