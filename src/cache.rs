//! A content-addressed result cache on disk, shared by processes, with an LRU size bound.
//!
//! Layout of a cache folder:
//! - `entries/<key>`: one result, `KCACHE1\n`, then named blobs (`u32` name length, name,
//!   `u64` data length, data, little-endian), then the SHA-256 of everything before it. The
//!   key is the hex SHA-256 of what determines the result ([`key`]): the input's pixels, the
//!   model file's hash, the command and its options.
//! - `tmp/`: entries being written. An entry is written there whole and renamed into
//!   `entries/` (atomic on one filesystem), so a reader never sees half of one; two writers of
//!   one key write the same bytes, and the last rename wins (on Windows, which refuses to replace
//!   an open file, the first one stays and a reader refused the file has a miss). A checksum
//!   that does not match (a disk error, a hand edit) is a miss, and the entry is removed.
//! - `counts`: one byte appended per lookup, `h` for a hit and `m` for a miss (appends of one
//!   byte do not interleave), for [`Cache::stats`].
//!
//! A hit sets the entry's modification time to now; after each store the oldest entries go
//! until the folder's entries fit the size bound.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"KCACHE1\n";

/// The cache key of `parts` (each length-prefixed, so no two lists of parts collide).
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`Cache::stats`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

/// A cache folder and its size bound.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
}

impl Cache {
    /// Opens (creating) the cache at `dir`, bounded to `max_bytes` of entries; an unwritable
    /// folder is an error now, not at the first store.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Cache> {
        let c = Cache { dir: dir.to_path_buf(), max_bytes };
        for d in [c.entries(), c.tmp()] {
            fs::create_dir_all(&d).map_err(|e| Error::Argument(format!("--cache {}: cannot create the cache folder ({e})", dir.display())))?;
        }
        let probe = c.tmp().join(format!("probe-{}", std::process::id()));
        fs::write(&probe, b"ok").map_err(|e| Error::Argument(format!("--cache {}: the cache folder is not writable ({e})", dir.display())))?;
        let _ = fs::remove_file(&probe);
        Ok(c)
    }

    fn entries(&self) -> PathBuf {
        self.dir.join("entries")
    }

    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn count(&self, hit: bool) {
        // Counting is best effort: a failed append never fails the command.
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(self.dir.join("counts")) {
            let _ = f.write_all(if hit { b"h" } else { b"m" });
        }
    }

    /// The blobs stored under `key`, or `None` (a miss). Counts the lookup.
    pub fn get(&self, key: &str) -> Result<Option<Vec<(String, Vec<u8>)>>> {
        check_key(key)?;
        let path = self.entries().join(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || replaced_elsewhere(&e) => {
                self.count(false);
                return Ok(None);
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        match decode(&bytes) {
            Some(blobs) => {
                if let Ok(f) = File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
                self.count(true);
                Ok(Some(blobs))
            }
            None => {
                let _ = fs::remove_file(&path);
                self.count(false);
                Ok(None)
            }
        }
    }

    /// Stores `blobs` under `key` (atomically), then evicts the least recently used entries
    /// past the size bound.
    pub fn put(&self, key: &str, blobs: &[(&str, &[u8])]) -> Result<()> {
        check_key(key)?;
        let bytes = encode(blobs);
        let tmp = self.tmp().join(format!("{key}.{}.{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        write().map_err(|e| Error::io(&tmp, e))?;
        let dst = self.entries().join(key);
        match fs::rename(&tmp, &dst) {
            Ok(()) => {}
            // Another process holds the same entry open: it stored the same bytes (the key is
            // their hash's), so this copy is not needed.
            Err(e) if replaced_elsewhere(&e) && dst.exists() => {
                let _ = fs::remove_file(&tmp);
            }
            Err(e) => return Err(Error::io(&dst, e)),
        }
        self.evict()
    }

    /// Removes the oldest entries (by modification time) until the rest fit the bound.
    fn evict(&self) -> Result<()> {
        let mut all = self.list()?;
        let mut total: u64 = all.iter().map(|e| e.1).sum();
        if total <= self.max_bytes {
            return Ok(());
        }
        all.sort_by_key(|e| e.2);
        for (path, size, _) in all {
            if total <= self.max_bytes {
                break;
            }
            // Another process may have removed it first.
            if fs::remove_file(&path).is_ok() || !path.exists() {
                total = total.saturating_sub(size);
            }
        }
        Ok(())
    }

    /// `(path, bytes, modified)` of every entry.
    fn list(&self) -> Result<Vec<(PathBuf, u64, SystemTime)>> {
        let dir = self.entries();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let Ok(e) = e else { continue };
            // An entry evicted meanwhile by another process is skipped.
            let Ok(m) = e.metadata() else { continue };
            if m.is_file() {
                out.push((e.path(), m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
        Ok(out)
    }

    /// Entries, bytes, hits and misses.
    pub fn stats(&self) -> Result<Stats> {
        let all = self.list()?;
        let counts = fs::read(self.dir.join("counts")).unwrap_or_default();
        Ok(Stats {
            entries: all.len(),
            bytes: all.iter().map(|e| e.1).sum(),
            hits: counts.iter().filter(|&&b| b == b'h').count() as u64,
            misses: counts.iter().filter(|&&b| b == b'm').count() as u64,
        })
    }

    /// Removes every entry and the counts.
    pub fn clear(&self) -> Result<()> {
        for (path, _, _) in self.list()? {
            let _ = fs::remove_file(path);
        }
        let counts = self.dir.join("counts");
        if counts.exists() {
            fs::remove_file(&counts).map_err(|e| Error::io(&counts, e))?;
        }
        Ok(())
    }
}

/// Whether `e` is Windows refusing an entry that another process has open or is replacing or
/// removing ("Access denied": Windows does not replace or delete a file that is open): a miss
/// on reading, nothing to do on storing. POSIX systems replace and delete open files, so there
/// the error is a real one.
fn replaced_elsewhere(e: &std::io::Error) -> bool {
    cfg!(windows) && e.kind() == std::io::ErrorKind::PermissionDenied
}

fn check_key(key: &str) -> Result<()> {
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::Internal(format!("cache key {key:?} is not a SHA-256")))
    }
}

fn encode(blobs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (name, data) in blobs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The blobs of an entry, or `None` when it is not a whole, intact entry.
fn decode(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, sum) = bytes.split_at(body_len);
    if body.get(..MAGIC.len())? != MAGIC || Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut at = MAGIC.len();
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let mut out = Vec::new();
    loop {
        let Some(len) = take(4) else { break };
        let n = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let name = String::from_utf8(take(n)?.to_vec()).ok()?;
        let d = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let data = take(usize::try_from(d).ok()?)?.to_vec();
        out.push((name, data));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_a_miss() {
        let blobs: [(&str, &[u8]); 2] = [("a.png", b"\x89PNG..."), ("line", b"class 3")];
        let e = encode(&blobs);
        let back = decode(&e).unwrap();
        assert_eq!(back, vec![("a.png".to_string(), b"\x89PNG...".to_vec()), ("line".to_string(), b"class 3".to_vec())]);
        for cut in [0, 5, e.len() / 2, e.len() - 1] {
            assert!(decode(&e[..cut]).is_none(), "cut at {cut}");
        }
        let mut flipped = e.clone();
        flipped[12] ^= 1;
        assert!(decode(&flipped).is_none());
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
    }
}
