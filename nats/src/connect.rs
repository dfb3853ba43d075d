//! The two JSON documents of the handshake: the client's CONNECT and the
//! server's INFO.
//!
//! CONNECT is parsed once per connection, so it may allocate (strings are
//! owned); unknown fields are ignored, as nats-server ignores them, because
//! clients add fields faster than servers learn them. Missing `verbose`,
//! `pedantic` and `echo` default to true, as nats-server's `defaultOpts`
//! does: a client that says nothing gets `+OK`s and its own messages.
//!
//! Invariants: `Debug` of a [`Connect`] never prints `pass` or
//! `auth_token` (connections are logged); [`Connect::check`] holds the two
//! refusals nats-server makes from CONNECT alone, before authentication.

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

fn yes() -> bool {
    true
}

/// The client's CONNECT options. Fields are those the NATS protocol
/// documents for clients; JWT/nkey authentication fields are not read yet.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connect {
    /// Answer every op with `+OK`.
    #[serde(default = "yes")]
    pub verbose: bool,
    /// Check subjects strictly (nats-server: `'Invalid Publish Subject'`).
    #[serde(default = "yes")]
    pub pedantic: bool,
    /// Deliver the connection's own publications to its own subscriptions.
    #[serde(default = "yes")]
    pub echo: bool,
    /// The client understands HMSG.
    #[serde(default)]
    pub headers: bool,
    /// Answer a request nobody subscribes to with a 503 status HMSG.
    #[serde(default)]
    pub no_responders: bool,
    /// The client's name, for monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The client library's language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The client library's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// 0: the original protocol; 1: the client understands INFO updates
    /// (cluster `connect_urls`). Anything else is refused.
    #[serde(default)]
    pub protocol: i64,
    /// Token authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// User/password authentication: the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// User/password authentication: the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// The client requires TLS.
    #[serde(default)]
    pub tls_required: bool,
}

impl Default for Connect {
    /// What a CONNECT of `{}` means.
    fn default() -> Self {
        Self {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            auth_token: None,
            user: None,
            pass: None,
            tls_required: false,
        }
    }
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        formatter
            .debug_struct("Connect")
            .field("verbose", &self.verbose)
            .field("pedantic", &self.pedantic)
            .field("echo", &self.echo)
            .field("headers", &self.headers)
            .field("no_responders", &self.no_responders)
            .field("name", &self.name)
            .field("lang", &self.lang)
            .field("version", &self.version)
            .field("protocol", &self.protocol)
            .field("auth_token", &redacted(&self.auth_token))
            .field("user", &self.user)
            .field("pass", &redacted(&self.pass))
            .field("tls_required", &self.tls_required)
            .finish()
    }
}

impl Connect {
    /// Parses CONNECT's argument. Anything but one JSON object of the right
    /// field types is [`ProtocolError::InvalidConnect`].
    pub fn from_json(json: &[u8]) -> Result<Self, ProtocolError> {
        // serde's derived struct visitor also takes a JSON array (fields by
        // position); Go's decoder, and so nats-server, does not.
        if json.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ProtocolError::InvalidConnect("not a JSON object".to_owned()));
        }
        serde_json::from_slice(json).map_err(|error| ProtocolError::InvalidConnect(error.to_string()))
    }

    /// Writes the options as CONNECT's JSON argument (one line: serde_json
    /// escapes CR and LF inside strings).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings, integers and booleans always serialises")
    }

    /// The refusals nats-server makes from CONNECT alone: an unknown
    /// `protocol`, and `no_responders` without `headers` (the 503 status
    /// needs HMSG).
    pub fn check(&self) -> Result<(), ProtocolError> {
        if !(0..=1).contains(&self.protocol) {
            return Err(ProtocolError::BadClientProtocol);
        }
        if self.no_responders && !self.headers {
            return Err(ProtocolError::NoRespondersRequiresHeaders);
        }
        Ok(())
    }
}

/// The server's INFO, sent first on every connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// A unique id of this server process.
    pub server_id: String,
    /// A name for people.
    pub server_name: String,
    /// The server's version. NATS clients compare it with semver rules to
    /// enable features, so a flit version reads as a NATS version here.
    pub version: String,
    /// 1: the server may send INFO updates.
    pub proto: i64,
    /// The server understands HPUB and sends HMSG.
    pub headers: bool,
    /// The largest payload (headers included) a PUB/HPUB may announce.
    pub max_payload: u64,
    /// The connection's id.
    pub client_id: u64,
    /// The client's address as the server sees it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    /// CONNECT must carry credentials.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// The client must start TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// Other servers a client may reconnect to (clustering).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_fields_parse_and_unknown_fields_are_ignored() {
        let json = br#"{"verbose":false,"pedantic":false,"echo":false,"headers":true,"no_responders":true,
            "name":"svc","lang":"go","version":"1.37.0","protocol":1,"auth_token":"t","user":"u","pass":"p",
            "tls_required":false,"jwt":"ignored","sig":"ignored"}"#;
        let connect = Connect::from_json(json).unwrap();
        assert!(!connect.verbose && !connect.pedantic && !connect.echo);
        assert!(connect.headers && connect.no_responders);
        assert_eq!(connect.name.as_deref(), Some("svc"));
        assert_eq!(connect.user.as_deref(), Some("u"));
        assert_eq!(connect.pass.as_deref(), Some("p"));
        assert_eq!(connect.protocol, 1);
        assert_eq!(connect.check(), Ok(()));
        assert_eq!(Connect::from_json(&connect.to_json()).unwrap(), connect);
    }

    #[test]
    fn an_empty_connect_gets_nats_server_defaults() {
        let connect = Connect::from_json(b"{}").unwrap();
        assert_eq!(connect, Connect::default());
        assert!(connect.verbose && connect.pedantic && connect.echo && !connect.headers);
    }

    #[test]
    fn bad_json_and_wrong_types_are_refused() {
        for json in [&b"{"[..], b"[]", b"[true]", b"null", b"{\"verbose\":\"yes\"}", b"{} {}", b""] {
            assert!(matches!(Connect::from_json(json), Err(ProtocolError::InvalidConnect(_))), "{json:?}");
        }
    }

    #[test]
    fn check_refuses_what_nats_server_refuses() {
        let future = Connect { protocol: 2, ..Connect::default() };
        assert_eq!(future.check(), Err(ProtocolError::BadClientProtocol));
        let no_headers = Connect { no_responders: true, ..Connect::default() };
        assert_eq!(no_headers.check(), Err(ProtocolError::NoRespondersRequiresHeaders));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let connect = Connect { auth_token: Some("s3cret".into()), pass: Some("hunter2".into()), ..Connect::default() };
        let printed = format!("{connect:?}");
        assert!(!printed.contains("s3cret") && !printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn info_omits_what_does_not_apply() {
        let info = ServerInfo { proto: 1, headers: true, max_payload: 1 << 20, ..ServerInfo::default() };
        let json = serde_json::to_string(&info).unwrap();
        assert!(!json.contains("auth_required") && !json.contains("connect_urls"), "{json}");
        assert_eq!(serde_json::from_str::<ServerInfo>(&json).unwrap(), info);
    }
}
