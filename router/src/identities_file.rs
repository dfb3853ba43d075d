//! The identities file (`[auth] identities_file`): who may connect, with
//! which token, and what each may publish and subscribe to. Loaded at start
//! and again on SIGHUP; a file that fails to load on SIGHUP leaves the
//! identities in force unchanged (and says why in the log).
//!
//! ```toml
//! [[identity]]
//! name = "orders"
//! token_sha256 = "<64 hex digits: `flit auth hash-token` prints them>"
//! publish = { allow = ["orders.>", "_INBOX.>"], deny = ["orders.audit.>"] }
//! subscribe = { allow = ["orders.>", "_INBOX.>"] }
//! ```
//!
//! Only the token's SHA-256 is stored. A rule without `allow` allows every
//! subject its `deny` does not match; a missing rule allows everything.

use std::path::Path;

use flit_shard::auth::{Identities, Identity, Pattern, Permissions, Rule};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitiesFile {
    identity: Vec<IdentityEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityEntry {
    name: String,
    /// At least one of the two proves the identity.
    token_sha256: Option<String>,
    /// With mutual TLS: the SHA-256 of the client certificate (DER), as
    /// `openssl x509 -in client.crt -outform der | sha256sum` prints it.
    certificate_sha256: Option<String>,
    /// For NATS clients (CONNECT `user` = this name, `pass`): the password's
    /// SHA-256, as `flit auth hash-token` prints it.
    password_sha256: Option<String>,
    #[serde(default)]
    publish: RuleEntry,
    #[serde(default)]
    subscribe: RuleEntry,
    /// May add and remove streams.
    #[serde(default)]
    streams_admin: bool,
    /// Publish rate limit for all of the identity's connections together.
    #[serde(default)]
    rate: crate::rate_limit_settings::RateLimitSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

fn compile_rule(entry: &RuleEntry, identity: &str, direction: &str) -> Result<Rule, String> {
    let compile = |patterns: &[String]| -> Result<Vec<Pattern>, String> {
        patterns
            .iter()
            .map(|text| Pattern::parse(text).map_err(|error| format!("identity {identity}, {direction}: {error}")))
            .collect()
    };
    Ok(Rule { allow: entry.allow.as_deref().map(compile).transpose()?, deny: compile(&entry.deny)? })
}

fn parse_hash(text: &str, identity: &str, key: &str) -> Result<[u8; 32], String> {
    let invalid = || format!("identity {identity}: {key} must be 64 hex digits (see `flit auth hash-token`)");
    if text.len() != 64 {
        return Err(invalid());
    }
    let mut hash = [0u8; 32];
    for (index, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).map_err(|_| invalid())?;
    }
    Ok(hash)
}

/// Parses and checks an identities file's text.
pub fn parse(text: &str, path: &str) -> Result<Identities, String> {
    let file: IdentitiesFile = toml::from_str(text).map_err(|error| {
        let (location, message) = crate::settings::toml_error_parts(text, &error);
        format!("identities file {path}{location}: {message}")
    })?;
    if file.identity.is_empty() {
        return Err(format!("identities file {path}: no [[identity]]: nobody could connect"));
    }
    let mut identities = Vec::new();
    for entry in &file.identity {
        let token = entry.token_sha256.as_deref().map(|text| parse_hash(text, &entry.name, "token_sha256")).transpose();
        let certificate = entry
            .certificate_sha256
            .as_deref()
            .map(|text| parse_hash(text, &entry.name, "certificate_sha256"))
            .transpose();
        let password =
            entry.password_sha256.as_deref().map(|text| parse_hash(text, &entry.name, "password_sha256")).transpose();
        let (token, certificate) =
            (token.map_err(|e| format!("{path}: {e}"))?, certificate.map_err(|e| format!("{path}: {e}"))?);
        let password = password.map_err(|e| format!("{path}: {e}"))?;
        if token.is_none() && certificate.is_none() && password.is_none() {
            return Err(format!(
                "identities file {path}: identity {} needs token_sha256, certificate_sha256 or password_sha256",
                entry.name
            ));
        }
        if file.identity.iter().filter(|other| other.name == entry.name).count() > 1 {
            return Err(format!("identities file {path}: identity name {} appears twice", entry.name));
        }
        let same_token = |other: &IdentityEntry| matches!((&other.token_sha256, &entry.token_sha256), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
        if file.identity.iter().filter(|other| same_token(other)).count() > 1 {
            return Err(format!("identities file {path}: identity {} shares its token with another", entry.name));
        }
        let permissions = Permissions {
            publish: compile_rule(&entry.publish, &entry.name, "publish")
                .map_err(|error| format!("{path}: {error}"))?,
            subscribe: compile_rule(&entry.subscribe, &entry.name, "subscribe")
                .map_err(|error| format!("{path}: {error}"))?,
            streams_admin: entry.streams_admin,
        };
        let mut identity = Identity::new(entry.name.clone(), token.unwrap_or_default(), permissions)
            .with_rate_limits(entry.rate.limits());
        if token.is_none() {
            identity = identity.without_token();
        }
        if let Some(certificate) = certificate {
            identity = identity.with_certificate(certificate);
        }
        if let Some(password) = password {
            identity = identity.with_password(password);
        }
        identities.push(identity);
    }
    Ok(Identities::required(identities))
}

pub fn load(path: &Path) -> Result<Identities, String> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("cannot read identities file {shown}: {error}"))?;
    parse(&text, &shown)
}

/// `flit auth hash-token`: the hex SHA-256 of a token read from stdin.
pub fn hash_token_from_stdin() -> anyhow::Result<()> {
    let mut token = String::new();
    std::io::stdin().read_line(&mut token)?;
    let token = token.trim_end_matches(['\r', '\n']);
    if token.len() < 16 {
        anyhow::bail!("the token must be at least 16 characters (use e.g. `openssl rand -hex 32`)");
    }
    let hash = flit_shard::auth::token_sha256(token);
    println!("{}", hash.iter().map(|byte| format!("{byte:02x}")).collect::<String>());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(token: &str) -> String {
        flit_shard::auth::token_sha256(token).iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn a_valid_file_authenticates_by_token() {
        let text = format!(
            "[[identity]]\nname = \"orders\"\ntoken_sha256 = \"{}\"\npublish = {{ allow = [\"orders.>\"] }}\n",
            hex("orders-token-0123456789")
        );
        let identities = parse(&text, "ids.toml").expect("parses");
        let identity = identities.authenticate(Some("orders-token-0123456789")).unwrap().unwrap();
        assert_eq!(identity.name, "orders");
        assert!(identity.permissions.publish.permits(b"orders.new"));
        assert!(!identity.permissions.publish.permits(b"billing.new"));
        assert!(identity.permissions.subscribe.is_open());
    }

    #[test]
    fn the_example_file_loads_and_its_tokens_authenticate() {
        let text = include_str!("../../deploy/identities.example.toml");
        let identities = parse(text, "identities.example.toml").expect("the example parses");
        assert_eq!(identities.len(), 3);
        let orders = identities.authenticate(Some("example-orders-token-do-not-use")).unwrap().unwrap();
        assert_eq!(orders.name, "orders");
        assert!(orders.rate.is_some());
        let billing = identities.authenticate(Some("example-billing-token-do-not-use")).unwrap().unwrap();
        assert!(billing.permissions.publish.permits(b"_INBOX.abc.1"));
        assert!(identities.by_name("audit").is_some_and(|audit| !audit.permissions.publish.permits(b"orders.x")));
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        let token = hex("t-0123456789abcdef");
        let cases = [
            ("[[identity]]\nname = \"a\"\ntoken_sha256 = \"xyz\"\n".to_string(), "64 hex digits"),
            (format!("[[identity]]\nname = \"a\"\ntoken_sha256 = \"{token}\"\npublish = {{ allow = [\"a..b\"] }}\n"), "invalid pattern"),
            (format!("[[identity]]\nname = \"a\"\ntoken_sha256 = \"{token}\"\nrole = \"x\"\n"), "unknown field `role`"),
            (format!("[[identity]]\nname = \"a\"\ntoken_sha256 = \"{token}\"\n[[identity]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n", hex("other-0123456789ab")), "appears twice"),
            (format!("[[identity]]\nname = \"a\"\ntoken_sha256 = \"{token}\"\n[[identity]]\nname = \"b\"\ntoken_sha256 = \"{token}\"\n"), "shares its token"),
        ];
        for (text, expected) in cases {
            let error = parse(&text, "ids.toml").expect_err(expected);
            assert!(error.contains(expected) && !error.contains('\n'), "{expected}: {error}");
        }
    }
}
