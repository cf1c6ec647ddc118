//! An object store on the local file system: the embedded run keeps records, raw responses,
//! logs and summaries as plain files under one directory, laid out exactly like the bucket.

use crate::ports::{ObjectStore, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};

pub struct FileObjects {
    root: PathBuf,
}

impl FileObjects {
    pub fn new(root: impl Into<PathBuf>) -> FileObjects {
        FileObjects { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keys are built from escaped segments (`keys::key_segment`), so none climbs out of the
    /// root; a key that would is refused rather than trusted.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(StoreError::permanent(format!("not an object key: {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl ObjectStore for FileObjects {
    /// A new object is written in place; one that exists is replaced by writing a temporary
    /// file and renaming it over, so a reader never sees half of it, as with S3's whole-object
    /// puts. (A crash while writing a new object leaves a short file that no state names
    /// yet: its resource was not counted, so it is written again.) Done with blocking calls:
    /// a put is a few KiB into the page cache, cheaper than the thread-pool hand-offs of
    /// `tokio::fs`; profiled, those hand-offs, a `mkdir` per put and a rename per new file
    /// were most of the embedded run's time. Directories are made when a write finds none.
    async fn put(&self, key: &str, body: Bytes, _content_type: &str) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.path(key)?;
        let error = |p: &Path, e: std::io::Error| io_error(p, e);
        let create_new = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
        };
        let file = match create_new(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = path.parent().expect("keys have a parent");
                std::fs::create_dir_all(parent).map_err(|e| error(parent, e))?;
                create_new(&path)
            }
            other => other,
        };
        match file {
            Ok(mut file) => file.write_all(&body).map_err(|e| error(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let tmp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
                std::fs::write(&tmp, &body).map_err(|e| error(&tmp, e))?;
                std::fs::rename(&tmp, &path).map_err(|e| error(&path, e))
            }
            Err(e) => Err(error(&path, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(body) => Ok(Some(Bytes::from(body))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// A seek and one read of the range; blocking, as `put` is, for the same reason.
    async fn get_range(
        &self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path(key)?;
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let size = file.metadata().map_err(|e| io_error(&path, e))?.len();
        if offset.checked_add(length).is_none_or(|end| end > size) {
            return Err(StoreError::permanent(format!(
                "{key} holds {size} bytes, not bytes {offset}+{length}"
            )));
        }
        let mut body = vec![0; length as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut body))
            .map_err(|e| io_error(&path, e))?;
        Ok(Some(Bytes::from(body)))
    }

    async fn folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut folders = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(&dir, e))? {
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                folders.push(format!("{prefix}{}/", entry.file_name().to_string_lossy()));
            }
        }
        folders.sort();
        Ok(folders)
    }

    async fn files(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, e)),
        };
        let mut files = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(&dir, e))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            // A put's temporary file, renamed over its object in a moment, is not an object.
            if entry.file_type().await.is_ok_and(|t| t.is_file()) && !is_temporary(&name) {
                files.push(format!("{prefix}{name}"));
            }
        }
        files.sort();
        Ok(files)
    }

    /// The prefix's directory removed whole, so no empty folder is left to be listed (a
    /// purged source's old sessions would otherwise still show as folders).
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let mut count = 0u64;
        let mut pending = vec![dir.clone()];
        while let Some(at) = pending.pop() {
            let entries = match std::fs::read_dir(&at) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&at, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error(&at, e))?;
                match entry.file_type() {
                    Ok(t) if t.is_dir() => pending.push(entry.path()),
                    _ => count += 1,
                }
            }
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(count),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error(&dir, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path, e)),
        }
    }
}

/// Whether `name` is a put's temporary file (`x.tmp` and 16 hex digits, see `put`).
fn is_temporary(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| {
        ext.len() == 19 && ext.starts_with("tmp") && ext[3..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A file system error, classified: a name the file system refuses (too long, invalid) or a
/// permission it denies fails the same way every time; the rest may pass on another try.
fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    use std::io::ErrorKind;
    let message = format!("{}: {e}", path.display());
    match e.kind() {
        ErrorKind::InvalidFilename
        | ErrorKind::InvalidInput
        | ErrorKind::PermissionDenied
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory => StoreError::permanent(message),
        _ => StoreError::new(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_round_trip_as_files_and_keys_cannot_escape_the_root() {
        let root = std::env::temp_dir().join(format!("trawl-files-{:x}", rand::random::<u64>()));
        let store = FileObjects::new(&root);
        store
            .put(
                "records/s/a%2Fb.json",
                Bytes::from_static(b"{}"),
                "application/json",
            )
            .await
            .unwrap();
        assert!(root.join("records/s/a%2Fb.json").is_file());
        store
            .put(
                "records/t/x.json",
                Bytes::from_static(b"{}"),
                "application/json",
            )
            .await
            .unwrap();
        assert_eq!(
            store.folders("records/").await.unwrap(),
            ["records/s/", "records/t/"]
        );
        assert!(store.folders("nothing/").await.unwrap().is_empty());
        assert_eq!(
            store.get("records/s/a%2Fb.json").await.unwrap().as_deref(),
            Some(&b"{}"[..])
        );
        store.delete("records/s/a%2Fb.json").await.unwrap();
        assert_eq!(store.get("records/s/a%2Fb.json").await.unwrap(), None);
        store.delete("records/s/a%2Fb.json").await.unwrap();
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(store.get(bad).await.is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
