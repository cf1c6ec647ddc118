//! The embedded run's retention: what the bucket's lifecycle rules do on AWS (`template.yaml`,
//! `LogRetentionDays`, `DeletedRetentionDays`), done to a data directory laid out like the
//! bucket. Records and raw responses are the catalog itself and are never pruned.

use chrono::{DateTime, NaiveDateTime, Utc};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Days a session's logs (`logs/{source}/{stamp}/`) and documents
    /// (`sessions/{source}/{stamp}/`) are kept, counted from the session's scheduled time.
    pub log_days: u32,
    /// Days a record or raw response moved under `deleted/` is kept, counted from the move.
    pub deleted_days: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            log_days: 90,
            deleted_days: 365,
        }
    }
}

/// What a prune removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Session folders under `logs/` and `sessions/`.
    pub session_folders: u64,
    /// Files under `deleted/`.
    pub deleted_files: u64,
    pub bytes: u64,
}

pub fn prune(dir: &Path, now: DateTime<Utc>, retention: &Retention) -> std::io::Result<Pruned> {
    let mut pruned = Pruned::default();
    let log_cutoff = now - chrono::Duration::days(i64::from(retention.log_days));
    for area in ["logs", "sessions"] {
        for source in subfolders(&dir.join(area))? {
            for session in subfolders(&source)? {
                let Some(stamp) = session
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| NaiveDateTime::parse_from_str(n, "%Y%m%dT%H%M%SZ").ok())
                else {
                    // Not a session folder Trawl wrote: not ours to remove.
                    continue;
                };
                if stamp.and_utc() < log_cutoff {
                    pruned.bytes += size(&session)?;
                    std::fs::remove_dir_all(&session)?;
                    pruned.session_folders += 1;
                }
            }
        }
    }
    let deleted_cutoff = std::time::SystemTime::from(
        now - chrono::Duration::days(i64::from(retention.deleted_days)),
    );
    prune_files(&dir.join("deleted"), deleted_cutoff, &mut pruned)?;
    Ok(pruned)
}

fn subfolders(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn size(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += size(&entry?.path())?;
    }
    Ok(total)
}

/// Files under `dir` last written before `cutoff` (when a deletion moved them there).
fn prune_files(
    dir: &Path,
    cutoff: std::time::SystemTime,
    pruned: &mut Pruned,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            prune_files(&entry.path(), cutoff, pruned)?;
        } else if meta.modified()? < cutoff {
            pruned.bytes += meta.len();
            std::fs::remove_file(entry.path())?;
            pruned.deleted_files += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"{}").unwrap();
    }

    #[test]
    fn old_sessions_logs_and_deleted_records_go_and_the_catalog_stays() {
        let dir = std::env::temp_dir().join(format!("trawl-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now: DateTime<Utc> = "2026-12-07T00:00:00Z".parse().unwrap();
        for path in [
            "logs/src/20260801T000000Z/a-1.ndjson",
            "sessions/src/20260801T000000Z/summary.json",
            "logs/src/20261201T000000Z/a-2.ndjson",
            "sessions/src/20261201T000000Z/summary.json",
            "sessions/src/not-a-stamp/x.json",
            "records/src/a.json",
            "raw/src/a.json",
            "deleted/records/src/old.json",
        ] {
            write(&dir.join(path));
        }
        // `deleted/` is judged by when a file was moved there: this one just now.
        let retention = Retention {
            log_days: 90,
            deleted_days: 365,
        };
        let pruned = prune(&dir, now, &retention).unwrap();
        assert_eq!((pruned.session_folders, pruned.deleted_files), (2, 0));
        assert!(!dir.join("logs/src/20260801T000000Z").exists());
        assert!(!dir.join("sessions/src/20260801T000000Z").exists());
        for kept in [
            "logs/src/20261201T000000Z/a-2.ndjson",
            "sessions/src/20261201T000000Z/summary.json",
            "sessions/src/not-a-stamp/x.json",
            "records/src/a.json",
            "raw/src/a.json",
            "deleted/records/src/old.json",
        ] {
            assert!(dir.join(kept).exists(), "{kept}");
        }
        // A year and a day later, the moved record goes too.
        let later = chrono::Utc::now() + chrono::Duration::days(366);
        let pruned = prune(&dir, later, &retention).unwrap();
        assert_eq!(pruned.deleted_files, 1);
        assert!(dir.join("records/src/a.json").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
