//! OpenWrt's usign format (the same as OpenBSD's signify): Ed25519 public keys, secret keys and
//! detached signatures, each a file of an `untrusted comment:` line and one base64 line.
//!
//! Decoded, a public key is `"Ed"` + 8-byte key number + 32-byte key (42 bytes), a signature
//! `"Ed"` + key number + 64-byte signature (74 bytes), a secret key `"Ed"` + `"BK"` + 4-byte
//! KDF rounds (big-endian) + 16-byte salt + 8-byte checksum (the first bytes of SHA-512 of the
//! 64-byte secret key) + key number + 64-byte secret key (seed, then public key): 104 bytes.
//! Only unencrypted secret keys (0 KDF rounds: `usign -G`, `signify -G -n`) are read.
//!
//! A signature file may hold several signatures, one after another (each a comment line and a
//! base64 line): `signify -V` and `usign -V` read the first; [`count_valid`] reads them all.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha512};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ALG: &[u8; 2] = b"Ed";
const KDF: &[u8; 2] = b"BK";
const COMMENT: &str = "untrusted comment: ";

/// An 8-byte key number, shown as 16 lowercase hex digits (the file name under keys.d).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyNum(pub [u8; 8]);

impl std::fmt::Display for KeyNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no `untrusted comment:` line")]
    NoComment,
    #[error("the line after the comment is not base64")]
    Base64,
    #[error("{what}: {len} bytes, not {want}")]
    Length {
        what: &'static str,
        len: usize,
        want: usize,
    },
    #[error("algorithm {0:?} is not \"Ed\" (Ed25519)")]
    Algorithm([u8; 2]),
    #[error("the secret key is encrypted with a passphrase ({0} KDF rounds): make one with `signify -G -n` or `snapshot bundle keygen`")]
    Encrypted(u32),
    #[error("the secret key's checksum does not match (damaged file)")]
    Checksum,
    #[error("not an Ed25519 public key")]
    BadPoint,
}

/// The comment and the decoded bytes of one comment + base64 pair from `text`, and the rest.
fn parse_block(text: &str) -> Result<(String, Vec<u8>, &str), KeyError> {
    let text = text.trim_start_matches(['\n', '\r']);
    let rest = text.strip_prefix(COMMENT).ok_or(KeyError::NoComment)?;
    let (comment, rest) = rest.split_once('\n').ok_or(KeyError::Base64)?;
    let (line, rest) = rest.split_once('\n').unwrap_or((rest, ""));
    let bytes = B64.decode(line.trim_end()).map_err(|_| KeyError::Base64)?;
    Ok((comment.trim_end().to_string(), bytes, rest))
}

fn check_alg(b: &[u8]) -> Result<(), KeyError> {
    let alg = [b[0], b[1]];
    if &alg != ALG {
        return Err(KeyError::Algorithm(alg));
    }
    Ok(())
}

fn len_is(what: &'static str, b: &[u8], want: usize) -> Result<(), KeyError> {
    if b.len() != want {
        return Err(KeyError::Length {
            what,
            len: b.len(),
            want,
        });
    }
    Ok(())
}

fn keynum(b: &[u8]) -> KeyNum {
    let mut n = [0u8; 8];
    n.copy_from_slice(&b[..8]);
    KeyNum(n)
}

fn block(comment: &str, bytes: &[u8]) -> String {
    format!("{COMMENT}{comment}\n{}\n", B64.encode(bytes))
}

/// A public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub num: KeyNum,
    pub key: VerifyingKey,
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (_, b, _) = parse_block(text)?;
        len_is("public key", &b, 42)?;
        check_alg(&b)?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&b[10..42]);
        Ok(PublicKey {
            num: keynum(&b[2..]),
            key: VerifyingKey::from_bytes(&k).map_err(|_| KeyError::BadPoint)?,
        })
    }

    pub fn to_file(&self, comment: &str) -> String {
        let mut b = Vec::with_capacity(42);
        b.extend_from_slice(ALG);
        b.extend_from_slice(&self.num.0);
        b.extend_from_slice(self.key.as_bytes());
        block(comment, &b)
    }
}

/// An unencrypted secret key.
pub struct SecretKey {
    pub num: KeyNum,
    key: SigningKey,
}

impl SecretKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (_, b, _) = parse_block(text)?;
        len_is("secret key", &b, 104)?;
        check_alg(&b)?;
        if &b[2..4] != KDF {
            return Err(KeyError::Algorithm([b[2], b[3]]));
        }
        let rounds = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        if rounds != 0 {
            return Err(KeyError::Encrypted(rounds));
        }
        let sec = &b[40..104];
        if Sha512::digest(sec)[..8] != b[24..32] {
            return Err(KeyError::Checksum);
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&sec[..32]);
        Ok(SecretKey {
            num: keynum(&b[32..]),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A key from 32 random bytes and an 8-byte random key number.
    pub fn from_seed(seed: [u8; 32], num: [u8; 8]) -> Self {
        SecretKey {
            num: KeyNum(num),
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            num: self.num,
            key: self.key.verifying_key(),
        }
    }

    /// The secret key file (salt: zeros; unused with 0 rounds).
    pub fn to_file(&self, comment: &str) -> String {
        let mut sec = [0u8; 64];
        sec[..32].copy_from_slice(&self.key.to_bytes());
        sec[32..].copy_from_slice(self.key.verifying_key().as_bytes());
        let mut b = Vec::with_capacity(104);
        b.extend_from_slice(ALG);
        b.extend_from_slice(KDF);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(&Sha512::digest(sec)[..8]);
        b.extend_from_slice(&self.num.0);
        b.extend_from_slice(&sec);
        block(comment, &b)
    }

    /// One signature block over `msg`, as a `.sig` file holds it.
    pub fn sign(&self, msg: &[u8]) -> String {
        let sig = self.key.sign(msg);
        let mut b = Vec::with_capacity(74);
        b.extend_from_slice(ALG);
        b.extend_from_slice(&self.num.0);
        b.extend_from_slice(&sig.to_bytes());
        block(&format!("signed by key {}", self.num), &b)
    }
}

/// One signature from a `.sig` file.
#[derive(Debug, Clone)]
pub struct Sig {
    pub num: KeyNum,
    sig: Signature,
}

/// Every signature in a `.sig` file's text (one or more blocks).
pub fn parse_sigs(text: &str) -> Result<Vec<Sig>, KeyError> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.trim().is_empty() {
        let (_, b, r) = parse_block(rest)?;
        len_is("signature", &b, 74)?;
        check_alg(&b)?;
        let mut s = [0u8; 64];
        s.copy_from_slice(&b[10..74]);
        out.push(Sig {
            num: keynum(&b[2..]),
            sig: Signature::from_bytes(&s),
        });
        rest = r;
    }
    Ok(out)
}

/// The trusted keys: the files of a keys.d directory, each named by its key number.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub keys: Vec<PublicKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {err}")]
    Key { path: PathBuf, err: KeyError },
    #[error("{path}: the file is named {name:?} but holds key {num} (opkg-key names each key file by its key number)")]
    Misnamed {
        path: PathBuf,
        name: String,
        num: KeyNum,
    },
}

impl Keyring {
    /// Reads every file of `dir` (as `opkg-key add` leaves them: named by key number).
    pub fn load(dir: &Path) -> Result<Self, KeyringError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyringError::Io { path, source }
        };
        let mut keys = Vec::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let key = PublicKey::parse(&text).map_err(|err| KeyringError::Key {
                path: path.clone(),
                err,
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name != key.num.to_string() {
                return Err(KeyringError::Misnamed {
                    path,
                    name,
                    num: key.num,
                });
            }
            keys.push(key);
        }
        Ok(Keyring { keys })
    }

    /// The distinct trusted keys whose signature over `msg` is among `sigs` and verifies.
    ///
    /// Distinct by the Ed25519 key itself, not by key number: a key number is a label its
    /// owner picks at random, so the same key may sit in keys.d under two numbers (and its
    /// signature be presented under each); it counts once, under the first number that verifies.
    pub fn count_valid(&self, msg: &[u8], sigs: &[Sig]) -> BTreeSet<KeyNum> {
        let mut good = BTreeSet::new();
        let mut counted = BTreeSet::new();
        for s in sigs {
            for k in self.keys.iter().filter(|k| k.num == s.num) {
                if k.key.verify(msg, &s.sig).is_ok() && counted.insert(*k.key.as_bytes()) {
                    good.insert(k.num);
                }
            }
        }
        good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let sk = SecretKey::from_seed([7; 32], [1, 2, 3, 4, 5, 6, 7, 8]);
        let sk2 = SecretKey::parse(&sk.to_file("test")).expect("parse own secret key");
        assert_eq!(sk2.num, sk.num);
        let pk = PublicKey::parse(&sk.public().to_file("pub")).expect("parse public key");
        let ring = Keyring { keys: vec![pk] };
        let sig = sk2.sign(b"hello");
        let sigs = parse_sigs(&sig).expect("parse sig");
        assert_eq!(ring.count_valid(b"hello", &sigs).len(), 1);
        assert_eq!(ring.count_valid(b"hellO", &sigs).len(), 0);
        // The same key twice counts once.
        let twice = parse_sigs(&format!("{sig}{sig}")).expect("two sigs");
        assert_eq!(twice.len(), 2);
        assert_eq!(ring.count_valid(b"hello", &twice).len(), 1);
        // The same key under a second key number, and its signature relabelled: still one.
        let mut alias = sk2.public();
        alias.num = KeyNum([9; 8]);
        let ring = Keyring {
            keys: vec![sk2.public(), alias],
        };
        let mut relabelled = SecretKey::parse(&sk.to_file("test")).expect("parse");
        relabelled.num = KeyNum([9; 8]);
        let both = parse_sigs(&format!("{sig}{}", relabelled.sign(b"hello"))).expect("sigs");
        assert_eq!(both.len(), 2);
        assert_eq!(ring.count_valid(b"hello", &both).len(), 1);
    }

    #[test]
    fn rejects_damaged_files() {
        let sk = SecretKey::from_seed([9; 32], [0; 8]);
        let mut f = sk.to_file("x");
        f = f.replace("untrusted comment: ", "comment: ");
        assert_eq!(SecretKey::parse(&f).err(), Some(KeyError::NoComment));
        assert!(matches!(
            parse_sigs("untrusted comment: x\nRWQ=\n"),
            Err(KeyError::Length { .. })
        ));
    }
}
