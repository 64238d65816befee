//! The decision spool: a local append-only file that holds access-decision audit entries from
//! the moment a decision is answered until the decision-log writer has committed them to the
//! store.
//!
//! Why: committing one audit transaction per connection attempt puts the store's commit (and
//! every thread hop of the SQLite driver) on the connection path. Appending one line to a file
//! costs one `write(2)` into the page cache, and like SQLite's `synchronous = NORMAL` in WAL
//! mode it survives a crash of the process (not of the machine). Entries are numbered; the
//! writer commits batches together with the highest number it wrote (the `decision_spool`
//! counter), so a restart commits exactly the entries the previous run had not. The file is
//! emptied whenever everything in it is committed; under a load that never lets it drain it is
//! set aside (`.old`) at [`ROTATE_BYTES`] and removed once its entries are committed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{NewAudit, Store, StoreError};

/// One spooled entry: the parts of a decision's [`NewAudit`] that vary.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    n: u64,
    /// Microseconds since the epoch.
    at: i64,
    actor: String,
    subject: String,
    org: Option<Uuid>,
    flow: Option<Uuid>,
    licence: Option<Uuid>,
    allow: bool,
    reason: String,
}

impl Line {
    fn into_audit(self) -> Result<NewAudit, String> {
        Ok(NewAudit {
            at: chrono::DateTime::from_timestamp_micros(self.at)
                .ok_or_else(|| format!("time {} out of range", self.at))?,
            actor: self.actor,
            action: DECIDE_ACTION,
            subject: self.subject,
            org_id: self.org,
            flow_id: self.flow,
            licence_id: self.licence,
            decision: if self.allow { "allow" } else { "deny" },
            reason: self.reason,
        })
    }
}

/// The audit action of access decisions.
pub(crate) const DECIDE_ACTION: &str = "access.decide";

/// Size at which a spool that never drains is set aside for a fresh one.
pub(crate) const ROTATE_BYTES: u64 = 4 << 20;

#[derive(Debug)]
pub(crate) struct Spool {
    file: File,
    path: PathBuf,
    /// The store's counter of how far this spool is committed.
    counter: String,
    /// Held (locked) for the life of the spool: one writer per spool.
    _lock: File,
    /// Bytes in `file`.
    len: u64,
    /// Set the file aside from this size on ([`ROTATE_BYTES`]).
    rotate_at: u64,
    /// The number the next entry gets.
    next: u64,
    /// Every entry up to this number is committed to the store.
    committed: u64,
    /// The highest number in the set-aside file, while there is one.
    retired: Option<u64>,
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

impl Spool {
    /// The spool that belongs to the SQLite file `db`.
    pub fn path_for(db: &Path) -> PathBuf {
        suffixed(db, ".decisions")
    }

    /// Opens the spool at `path`, whose progress the store keeps in `counter`, and takes its
    /// lock; commits what a previous run left behind. `Ok(None)` when another process (or
    /// another control plane in this one) holds it.
    pub async fn open(
        path: PathBuf,
        counter: String,
        store: &Store,
    ) -> Result<Option<Spool>, StoreError> {
        let io_err = |e: io::Error| StoreError::Spool(format!("{}: {e}", path.display()));
        let lock = open_append(&suffixed(&path, ".lock")).map_err(io_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let old = suffixed(&path, ".old");
        let mut text = match std::fs::read_to_string(&old) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(e)),
        };
        // A set-aside file ends with a whole line; start the current one on its own.
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let mut file = open_append(&path).map_err(io_err)?;
        file.read_to_string(&mut text).map_err(io_err)?;
        let committed = store.spool_committed(&counter).await?;
        let mut left = Vec::new();
        let mut last = committed;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, raw) in lines.iter().enumerate() {
            let parsed = serde_json::from_str::<Line>(raw.trim_end())
                .map_err(|e| e.to_string())
                .and_then(|l| Ok((l.n, l.into_audit()?)));
            match parsed {
                Ok((n, entry)) => {
                    last = last.max(n);
                    if n > committed {
                        left.push(entry);
                    }
                }
                // A crash in the middle of the last write leaves half a line: that decision
                // was never answered.
                Err(_) if i + 1 == lines.len() && !raw.ends_with('\n') => {
                    tracing::warn!(spool = %path.display(), "ignoring a partly written last entry");
                }
                Err(e) => {
                    tracing::error!(spool = %path.display(), line = i + 1, error = %e, "unreadable decision spool entry skipped");
                }
            }
        }
        if !left.is_empty() {
            store
                .append_decisions(&left, Some((&counter, last)))
                .await?;
            tracing::info!(spool = %path.display(), entries = left.len(), "committed access decisions left by the previous run");
        }
        file.set_len(0).map_err(io_err)?;
        if let Err(e) = std::fs::remove_file(&old)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(io_err(e));
        }
        Ok(Some(Spool {
            file,
            path,
            counter,
            _lock: lock,
            len: 0,
            rotate_at: ROTATE_BYTES,
            next: last + 1,
            committed: last,
            retired: None,
        }))
    }

    /// Appends one entry (one `write(2)`); returns its number.
    pub fn append(&mut self, entry: &NewAudit) -> Result<u64, StoreError> {
        let line = Line {
            n: self.next,
            at: entry.at.timestamp_micros(),
            actor: entry.actor.clone(),
            subject: entry.subject.clone(),
            org: entry.org_id,
            flow: entry.flow_id,
            licence: entry.licence_id,
            allow: entry.decision == "allow",
            reason: entry.reason.clone(),
        };
        let mut bytes =
            serde_json::to_vec(&line).map_err(|e| StoreError::Spool(format!("encoding: {e}")))?;
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .map_err(|e| StoreError::Spool(format!("{}: {e}", self.path.display())))?;
        self.len += bytes.len() as u64;
        self.next += 1;
        Ok(line.n)
    }

    /// The store's counter of this spool's progress.
    pub fn counter(&self) -> &str {
        &self.counter
    }

    /// The number of the last entry spooled.
    pub fn last(&self) -> u64 {
        self.next - 1
    }

    /// Entries spooled but not yet known to be committed.
    pub fn pending(&self) -> u64 {
        self.next - 1 - self.committed
    }

    /// Notes that everything up to `n` is committed; empties the file when that is all of it,
    /// else sets a large file aside and drops a set-aside one whose entries are all committed.
    pub fn committed_through(&mut self, n: u64) -> io::Result<()> {
        self.committed = self.committed.max(n);
        let old = suffixed(&self.path, ".old");
        if self.retired.is_some_and(|r| r <= self.committed) {
            std::fs::remove_file(&old)?;
            self.retired = None;
        }
        if self.pending() == 0 {
            self.file.set_len(0)?;
            self.len = 0;
        } else if self.retired.is_none() && self.len >= self.rotate_at {
            std::fs::rename(&self.path, &old)?;
            self.file = open_append(&self.path)?;
            self.len = 0;
            self.retired = Some(self.next - 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditFilter;

    const COUNTER: &str = "decision_spool";

    fn entry(i: usize) -> NewAudit {
        NewAudit {
            at: chrono::Utc::now(),
            actor: "test".into(),
            action: DECIDE_ACTION,
            subject: format!("access/rhb/flow-{i}"),
            org_id: None,
            flow_id: None,
            licence_id: None,
            decision: if i.is_multiple_of(2) { "allow" } else { "deny" },
            reason: format!("decision {i}"),
        }
    }

    /// A new SQLite store in a temporary directory and the path of its spool.
    async fn fresh_store() -> (tempfile::TempDir, Store, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let store = Store::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let path = Spool::path_for(&db);
        (dir, store, path)
    }

    async fn reasons(store: &Store) -> Vec<String> {
        let filter = AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        };
        let log = store.audit(&filter).await.unwrap();
        log.into_iter().map(|e| e.reason).collect()
    }

    /// A spool that never drains is set aside and dropped once committed; whatever was not
    /// committed, in the set-aside file or the current one, is committed at the next open,
    /// exactly once.
    #[tokio::test]
    async fn set_aside_spools_are_replayed_and_dropped() {
        let (_dir, store, path) = fresh_store().await;
        let old = suffixed(&path, ".old");
        let mut spool = Spool::open(path.clone(), COUNTER.into(), &store)
            .await
            .unwrap()
            .unwrap();
        assert!(
            Spool::open(path.clone(), COUNTER.into(), &store)
                .await
                .unwrap()
                .is_none(),
            "one holder at a time"
        );
        spool.rotate_at = 1;
        let entries: Vec<NewAudit> = (1..=6).map(entry).collect();
        for e in &entries[..4] {
            spool.append(e).unwrap();
        }
        // 1..=2 committed, 3..=4 pending: the file is set aside.
        store
            .append_decisions(&entries[..2], Some((COUNTER, 2)))
            .await
            .unwrap();
        spool.committed_through(2).unwrap();
        assert!(old.exists());
        assert_eq!(spool.pending(), 2);
        for e in &entries[4..] {
            spool.append(e).unwrap();
        }
        // 3..=4 committed: the set-aside file goes; 5..=6 stay pending in the current one
        // (small enough now not to be set aside in turn).
        spool.rotate_at = ROTATE_BYTES;
        store
            .append_decisions(&entries[2..4], Some((COUNTER, 4)))
            .await
            .unwrap();
        spool.committed_through(4).unwrap();
        assert!(!old.exists());
        // 5 is committed but the crash comes before the spool learns it.
        store
            .append_decisions(&entries[4..5], Some((COUNTER, 5)))
            .await
            .unwrap();
        drop(spool);
        let spool = Spool::open(path.clone(), COUNTER.into(), &store)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(spool.pending(), 0);
        assert_eq!(spool.next, 7);
        let got = reasons(&store).await;
        let want: Vec<String> = (1..=6).map(|i| format!("decision {i}")).collect();
        assert_eq!(got, want);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored() {
        let (_dir, store, path) = fresh_store().await;
        let mut spool = Spool::open(path.clone(), COUNTER.into(), &store)
            .await
            .unwrap()
            .unwrap();
        spool.append(&entry(1)).unwrap();
        drop(spool);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"n":2,"at":17,"act"#).unwrap();
        drop(f);
        Spool::open(path, COUNTER.into(), &store)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reasons(&store).await, vec!["decision 1".to_owned()]);
    }
}
