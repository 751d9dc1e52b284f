//! Join and client tokens: `CUBE-1-<CA digest>-<secret>`, one secret per role, kept in
//! `<data-dir>/tls/tokens` (0600), compared in constant time.
//!
//! As in Swarm's `SWMTKN-1-<digest>-<secret>`, the digest is the SHA-256 of the cluster CA's
//! certificate (DER), so whoever holds a token can verify the manager without a copy of
//! `ca.pem`; the secret says what the holder may do. Rotating a role's token writes a new
//! secret, and the running manager reads the file again when it changes.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use rand::RngCore;
use subtle::ConstantTimeEq;

use super::files;

/// What a token, or a certificate, lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads: Get, List, Watch, Explain, nodes, events and logs.
    Reader,
    /// Joins the cluster (gets a node certificate), nothing else.
    Worker,
}

impl Role {
    /// Every role, in the order the tokens file lists them.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Reader, Role::Worker];

    /// The role's name, as `cube-manager token ROLE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::Worker => "worker",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("{s:?} is not a role (admin, reader or worker)"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every token starts so: the format's version is the `1`.
pub const PREFIX: &str = "CUBE-1-";

/// The bytes of randomness in a secret: 256 bits, beyond guessing.
const SECRET_BYTES: usize = 32;

/// A token taken apart: the CA digest it pins and its secret. Debug shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// SHA-256 of the CA certificate's DER.
    pub ca_digest: [u8; 32],
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", &hex::encode(self.ca_digest)[..12])
    }
}

impl Token {
    /// Parses `CUBE-1-<64 hex>-<secret>`; the error names the part that is wrong, never the
    /// secret.
    pub fn parse(text: &str) -> Result<Token, String> {
        let rest = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("a Cube token starts with {PREFIX}"))?;
        let (digest, secret) = rest
            .split_once('-')
            .ok_or("a Cube token is CUBE-1-<CA digest>-<secret>")?;
        let mut ca_digest = [0u8; 32];
        hex::decode_to_slice(digest, &mut ca_digest)
            .map_err(|_| "the token's CA digest is not 64 hex digits".to_string())?;
        if secret.is_empty() {
            return Err("the token has no secret".into());
        }
        Ok(Token {
            ca_digest,
            secret: secret.to_string(),
        })
    }

    /// The token as a user copies it.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}-{}", hex::encode(self.ca_digest), self.secret)
    }
}

/// A fresh random secret, lower-case hex.
fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The role whose secret is `secret` among `secrets`, compared in constant time: every
/// role's secret is compared, so the time taken says nothing about which one came close.
fn role_of(secrets: &[(Role, String)], secret: &str) -> Option<Role> {
    let mut found = None;
    for (role, known) in secrets {
        if bool::from(known.as_bytes().ct_eq(secret.as_bytes())) {
            found = Some(*role);
        }
    }
    found
}

/// The tokens file: `ROLE SECRET` lines.
fn parse_file(text: &str) -> Vec<(Role, String)> {
    text.lines()
        .filter_map(|line| {
            let (role, secret) = line.split_once(' ')?;
            Some((role.parse().ok()?, secret.trim().to_string()))
        })
        .collect()
}

fn render_file(secrets: &[(Role, String)]) -> String {
    secrets
        .iter()
        .map(|(role, secret)| format!("{role} {secret}\n"))
        .collect()
}

/// The secrets as last read, with the file's modification time then.
type Cached = (Option<SystemTime>, Vec<(Role, String)>);

/// The tokens of one manager: read from its tokens file, which is read again when it changes
/// (a `token rotate` by another process). Clones share the cache.
#[derive(Clone)]
pub struct Tokens {
    path: PathBuf,
    ca_digest: [u8; 32],
    cache: Arc<Mutex<Cached>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens").field("path", &self.path).finish()
    }
}

impl Tokens {
    /// The tokens in `tls_dir`, with a secret made for every role that has none yet.
    pub fn open(tls_dir: &Path, ca_digest: [u8; 32]) -> std::io::Result<Tokens> {
        let path = tls_dir.join(files::TOKENS);
        let mut secrets = match std::fs::read_to_string(&path) {
            Ok(text) => parse_file(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let missing: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| !secrets.iter().any(|(known, _)| known == r))
            .collect();
        if !missing.is_empty() {
            secrets.extend(missing.into_iter().map(|r| (r, new_secret())));
            files::write_private(&path, render_file(&secrets).as_bytes())?;
        }
        Ok(Tokens {
            path,
            ca_digest,
            cache: Arc::new(Mutex::new((None, Vec::new()))),
        })
    }

    /// The current token of `role`.
    pub fn token(&self, role: Role) -> std::io::Result<Token> {
        let secret = self
            .secrets()?
            .into_iter()
            .find(|(r, _)| *r == role)
            .map(|(_, s)| s)
            .ok_or_else(|| std::io::Error::other(format!("no {role} token in the tokens file")))?;
        Ok(Token {
            ca_digest: self.ca_digest,
            secret,
        })
    }

    /// Replaces `role`'s secret: tokens given out before stop working at once. The new token.
    pub fn rotate(&self, role: Role) -> std::io::Result<Token> {
        let mut secrets = self.secrets()?;
        secrets.retain(|(r, _)| *r != role);
        secrets.push((role, new_secret()));
        files::write_private(&self.path, render_file(&secrets).as_bytes())?;
        self.token(role)
    }

    /// The role a presented token grants, if it is one of this cluster's current tokens.
    pub fn role(&self, presented: &str) -> Option<Role> {
        let token = Token::parse(presented).ok()?;
        let secrets = self.secrets().ok()?;
        let role = role_of(&secrets, &token.secret)?;
        bool::from(token.ca_digest.ct_eq(&self.ca_digest)).then_some(role)
    }

    /// The secrets, from the cache unless the file changed since it was read.
    fn secrets(&self) -> std::io::Result<Vec<(Role, String)>> {
        let modified = std::fs::metadata(&self.path)?.modified().ok();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0.is_none() || cache.0 != modified {
            let text = std::fs::read_to_string(&self.path)?;
            *cache = (modified, parse_file(&text));
        }
        Ok(cache.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_hides_its_secret() {
        let token = Token {
            ca_digest: [7; 32],
            secret: "s3cr3t".into(),
        };
        let text = token.to_text();
        assert!(text.starts_with("CUBE-1-0707"));
        assert_eq!(Token::parse(&text).unwrap(), token);
        assert!(!format!("{token:?}").contains("s3cr3t"));
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        assert!(Token::parse("SWMTKN-1-x-y")
            .unwrap_err()
            .contains("CUBE-1-"));
        assert!(Token::parse("CUBE-1-abc-y").unwrap_err().contains("64 hex"));
        let no_secret = format!("CUBE-1-{}-", "a".repeat(64));
        assert!(Token::parse(&no_secret).unwrap_err().contains("no secret"));
    }

    #[test]
    fn a_rotated_token_stops_working() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::open(dir.path(), [1; 32]).unwrap();
        let old = tokens.token(Role::Worker).unwrap().to_text();
        let admin = tokens.token(Role::Admin).unwrap().to_text();
        assert_eq!(tokens.role(&old), Some(Role::Worker));
        assert_eq!(tokens.role(&admin), Some(Role::Admin));
        // Another process (cube-manager token rotate) rewrites the file.
        let other = Tokens::open(dir.path(), [1; 32]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let new = other.rotate(Role::Worker).unwrap().to_text();
        assert_ne!(old, new);
        assert_eq!(tokens.role(&old), None);
        assert_eq!(tokens.role(&new), Some(Role::Worker));
        assert_eq!(tokens.role(&admin), Some(Role::Admin));
        // The right secret under another CA's digest is not this cluster's token.
        let foreign = Token {
            ca_digest: [2; 32],
            secret: Token::parse(&admin).unwrap().secret,
        };
        assert_eq!(tokens.role(&foreign.to_text()), None);
    }
}
