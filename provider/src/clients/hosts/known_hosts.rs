//! known_hosts: parsing (patterns, hashed names, markers), judging a presented host key, and
//! the host-key algorithm preference it implies.

use russh::Preferred;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use super::error::HostError;

/// Parsed known_hosts.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<KnownHostEntry>,
}

#[derive(Debug, Clone)]
struct KnownHostEntry {
    line: usize,
    marker: Option<Marker>,
    patterns: Vec<HostPattern>,
    key: PublicKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    CertAuthority,
    Revoked,
}

#[derive(Debug, Clone)]
enum HostPattern {
    /// Lowercased; `*` and `?` wildcards.
    Plain { pattern: String, negated: bool },
    /// `|1|salt|hash`: HMAC-SHA1(salt, name).
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// What known_hosts says about a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// Listed for this host (at this line).
    Trusted { line: usize },
    /// Nothing listed for this host.
    Unknown,
    /// Other keys are listed for this host: "algorithm fingerprint (line N)".
    Mismatch { known: Vec<String> },
    /// The key is `@revoked`.
    Revoked { line: usize },
}

/// The name known_hosts uses for a host: `host` on port 22, else `[host]:port`; lowercased.
pub fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `ssh-ed25519 SHA256:...`.
pub(super) fn describe_key(key: &PublicKey) -> (String, String) {
    (
        key.algorithm().as_str().to_string(),
        key.fingerprint(HashAlg::Sha256).to_string(),
    )
}

fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative glob with single-star backtracking: `*` any run, `?` one byte.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

fn hashed_match(salt: &[u8], hash: &[u8], name: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let Ok(mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok()
}

impl HostPattern {
    fn parse(s: &str) -> Result<HostPattern, String> {
        if let Some(rest) = s.strip_prefix("|1|") {
            use base64::Engine;
            let (salt, hash) = rest
                .split_once('|')
                .ok_or_else(|| format!("malformed hashed host name {s:?}"))?;
            let b64 = base64::engine::general_purpose::STANDARD;
            let salt = b64
                .decode(salt)
                .map_err(|e| format!("hashed host name salt: {e}"))?;
            let hash = b64
                .decode(hash)
                .map_err(|e| format!("hashed host name hash: {e}"))?;
            return Ok(HostPattern::Hashed { salt, hash });
        }
        let (negated, pattern) = match s.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, s),
        };
        if pattern.is_empty() {
            return Err("empty host pattern".to_string());
        }
        Ok(HostPattern::Plain {
            pattern: pattern.to_ascii_lowercase(),
            negated,
        })
    }
}

/// OpenSSH's rule: a matching negated pattern excludes, else any matching pattern includes.
fn patterns_match(patterns: &[HostPattern], name: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        match p {
            HostPattern::Plain { pattern, negated } => {
                if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                    if *negated {
                        return false;
                    }
                    matched = true;
                }
            }
            HostPattern::Hashed { salt, hash } => {
                if hashed_match(salt, hash, name) {
                    matched = true;
                }
            }
        }
    }
    matched
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

impl KnownHosts {
    /// Parses known_hosts text. Blank lines and `#` comments are skipped; any other line that
    /// is not `[@marker] patterns keytype base64 [comment]` is an error naming the line.
    pub fn parse(text: &str) -> Result<KnownHosts, HostError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| HostError::KnownHosts { line, message };
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut fields = l.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let marker = if first.starts_with('@') {
                let m = match first {
                    "@cert-authority" => Marker::CertAuthority,
                    "@revoked" => Marker::Revoked,
                    other => return Err(err(format!("unknown marker {other}"))),
                };
                first = fields
                    .next()
                    .ok_or_else(|| err("missing host patterns".to_string()))?;
                Some(m)
            } else {
                None
            };
            let key_type = fields
                .next()
                .ok_or_else(|| err("missing key type".to_string()))?;
            let key_b64 = fields
                .next()
                .ok_or_else(|| err("missing key".to_string()))?;
            let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}"))
                .map_err(|e| err(format!("cannot parse the {key_type} key: {e}")))?;
            let patterns = first
                .split(',')
                .map(HostPattern::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            entries.push(KnownHostEntry {
                line,
                marker,
                patterns,
                key,
            });
        }
        Ok(KnownHosts { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Judges `key` presented by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let name = known_hosts_name(host, port);
        let mut trusted = None;
        let mut known = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| patterns_match(&e.patterns, &name))
        {
            match e.marker {
                Some(Marker::Revoked) if same_key(&e.key, key) => {
                    return HostKeyStatus::Revoked { line: e.line };
                }
                Some(_) => {}
                None if same_key(&e.key, key) => trusted = trusted.or(Some(e.line)),
                None => {
                    let (alg, fp) = describe_key(&e.key);
                    known.push(format!("{alg} {fp} (line {})", e.line));
                }
            }
        }
        match trusted {
            Some(line) => HostKeyStatus::Trusted { line },
            None if known.is_empty() => HostKeyStatus::Unknown,
            None => HostKeyStatus::Mismatch { known },
        }
    }

    /// The key algorithms listed (unmarked) for a host, in file order.
    pub(super) fn algorithms_for(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = known_hosts_name(host, port);
        self.entries
            .iter()
            .filter(|e| e.marker.is_none() && patterns_match(&e.patterns, &name))
            .map(|e| e.key.algorithm())
            .collect()
    }
}

/// The client's host-key algorithm preference: those known_hosts lists for the host first (as
/// OpenSSH does), so a host with several keys presents one we can verify.
pub(super) fn host_key_preference(known: &[Algorithm]) -> Vec<Algorithm> {
    let same_family = |a: &Algorithm, b: &Algorithm| {
        matches!((a, b), (Algorithm::Rsa { .. }, Algorithm::Rsa { .. })) || a == b
    };
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = Preferred::DEFAULT
        .key
        .iter()
        .cloned()
        .partition(|a| known.iter().any(|k| same_family(k, a)));
    first.extend(rest);
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPQ0iol2Janq3Yi/dCf6i/+I6g3qhSzY79dOjW3QNfpC";
    const K1_FP: &str = "SHA256:cXsb2puYkjK8p9c56o+8NjCpxY1sy85zailLY4dLMs8";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIMKfVOkhK4ScUvlQ8Nhm1vXNd5S3qZmKDyvImlR0lQjs";
    const K3: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKJyTu3a+W+i6JRW9+cMZMhjJMpO2gnz4ZhJQVAbiUnh1wx/mFSDXyi65bSdQjSO4yOwrDK18/fAJNmaKZdVpBQ=";

    fn key(b64: &str) -> PublicKey {
        let kt = if b64 == K3 {
            "ecdsa-sha2-nistp256"
        } else {
            "ssh-ed25519"
        };
        PublicKey::from_openssh(&format!("{kt} {b64}")).expect("test key")
    }

    #[test]
    fn known_hosts_plain_and_bracketed_entries() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n\n[127.0.0.2]:2222 ssh-ed25519 {K1} host-a\n\
             web.example.org,10.0.0.5 ssh-ed25519 {K1}\n"
        ))
        .unwrap();
        assert_eq!(kh.len(), 2);
        assert_eq!(
            kh.check("127.0.0.2", 2222, &key(K1)),
            HostKeyStatus::Trusted { line: 3 }
        );
        // A non-22 port matches only its bracketed form.
        assert_eq!(kh.check("127.0.0.2", 22, &key(K1)), HostKeyStatus::Unknown);
        assert_eq!(
            kh.check("127.0.0.2", 2223, &key(K1)),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            kh.check("WEB.example.org", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 4 }
        );
        assert_eq!(
            kh.check("10.0.0.5", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 4 }
        );
        assert_eq!(kh.check("10.0.0.5", 2222, &key(K1)), HostKeyStatus::Unknown);
    }

    #[test]
    fn known_hosts_mismatch_names_the_known_keys() {
        let kh = KnownHosts::parse(&format!("[127.0.0.2]:2222 ssh-ed25519 {K1}\n")).unwrap();
        match kh.check("127.0.0.2", 2222, &key(K2)) {
            HostKeyStatus::Mismatch { known } => {
                assert_eq!(known, vec![format!("ssh-ed25519 {K1_FP} (line 1)")]);
            }
            other => panic!("{other:?}"),
        }
        // Another algorithm listed for the host: still a mismatch (fail closed).
        assert!(matches!(
            kh.check("127.0.0.2", 2222, &key(K3)),
            HostKeyStatus::Mismatch { .. }
        ));
        assert_eq!(
            kh.algorithms_for("127.0.0.2", 2222),
            vec![key(K1).algorithm()]
        );
    }

    #[test]
    fn known_hosts_hashed_entries() {
        // `ssh-keygen -H` of "[127.0.0.2]:2222 …" and "example.org …".
        let kh = KnownHosts::parse(&format!(
            "|1|vtVQWcU0THjECatdhVllmGmAzKU=|jDo7TxrGfxaGsceGJycNbKQYLok= ssh-ed25519 {K1}\n\
             |1|sdofHY//zgSFYylp86qbjBdIqwo=|sNm602cHXLYRJxCzIvm3Z+Me7kQ= ssh-ed25519 {K1}\n"
        ))
        .unwrap();
        assert_eq!(
            kh.check("127.0.0.2", 2222, &key(K1)),
            HostKeyStatus::Trusted { line: 1 }
        );
        assert_eq!(
            kh.check("example.org", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 2 }
        );
        assert_eq!(
            kh.check("example.com", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn known_hosts_wildcards_negation_and_markers() {
        let kh = KnownHosts::parse(&format!(
            "*.prod.example.org,!bastion.prod.example.org ssh-ed25519 {K1}\n\
             [10.0.1.?]:2200\tssh-ed25519\t{K2}\n\
             @revoked * ssh-ed25519 {K2}\n\
             @cert-authority *.example.com ssh-ed25519 {K1}\n"
        ))
        .unwrap();
        assert_eq!(
            kh.check("api-1.prod.example.org", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 1 }
        );
        assert_eq!(
            kh.check("bastion.prod.example.org", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
        // K2 is @revoked everywhere, which wins over line 2 trusting it.
        assert_eq!(
            kh.check("10.0.1.7", 2200, &key(K2)),
            HostKeyStatus::Revoked { line: 3 }
        );
        assert!(matches!(
            kh.check("10.0.1.7", 2200, &key(K1)),
            HostKeyStatus::Mismatch { .. }
        ));
        assert_eq!(kh.check("10.0.2.7", 2200, &key(K1)), HostKeyStatus::Unknown);
        // An @cert-authority line is not a host key.
        assert_eq!(
            kh.check("x.example.com", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn known_hosts_errors_name_the_line() {
        let e = KnownHosts::parse(&format!("ok ssh-ed25519 {K1}\nbroken-line\n")).unwrap_err();
        assert!(matches!(e, HostError::KnownHosts { line: 2, .. }), "{e}");
        let e = KnownHosts::parse("h ssh-ed25519 AAAA!!notbase64\n").unwrap_err();
        assert!(matches!(e, HostError::KnownHosts { line: 1, .. }), "{e}");
        let e = KnownHosts::parse(&format!("@weird h ssh-ed25519 {K1}\n")).unwrap_err();
        assert!(e.to_string().contains("unknown marker"), "{e}");
        assert!(KnownHosts::parse("").unwrap().is_empty());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*", b"anything"));
        assert!(wildcard_match(b"a*c", b"abbbc"));
        assert!(wildcard_match(b"a*b*c", b"aXbYbZc"));
        assert!(!wildcard_match(b"a*c", b"abcd"));
        assert!(wildcard_match(b"h?st", b"host"));
        assert!(!wildcard_match(b"h?st", b"hst"));
        assert!(wildcard_match(b"", b""));
        assert!(!wildcard_match(b"", b"x"));
    }

    #[test]
    fn preferred_host_keys_put_known_algorithms_first() {
        let order = host_key_preference(&[key(K3).algorithm()]);
        assert_eq!(order[0], key(K3).algorithm());
        assert_eq!(order.len(), Preferred::DEFAULT.key.len());
        let rsa = host_key_preference(&[Algorithm::Rsa { hash: None }]);
        assert!(rsa[..3].iter().all(|a| matches!(a, Algorithm::Rsa { .. })));
    }
}
