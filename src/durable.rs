//! Durable file writes: a file is either wholly its old content or wholly its new content,
//! whatever crashes in between; a change that spans several files is all or nothing.
//!
//! This module owns the temp-file, fsync, rename, fsync-the-folder sequence every writer of
//! the daemon must use, and the modes files and folders get: always set explicitly, never
//! left to the umask. Temp files are dot-files (`.name.tmp-PID-N`, and `.name.tmp-PID-N.old`
//! for the old content kept while a change is applied), which no loader takes for data and
//! start-up removes. It must not decide what to write.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Folders holding secrets: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Files holding secrets: owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Zone and association folders: readable by all, written by the owner.
pub const PUBLIC_DIR_MODE: u32 = 0o755;
/// Zone and association files.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Writes `bytes` to `path` atomically and durably, with permission bits `mode` (unix).
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    commit(&[FileChange::write(path, bytes.to_vec(), mode)]).map_err(|e| e.source)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes the temp files a crash may have left in `dir`; returns how many.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_temp_name(name) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether a file name is one of our temp files (never data).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Creates `dir` and any missing parent with exactly `mode`, whatever the umask. An existing
/// folder is left as it is (callers that need it private check it).
pub fn create_dir_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir_with_mode(parent, mode)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer made it in between: fine.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    set_mode(dir, mode)
}

/// Creates a folder (and missing parents) readable by its owner only, whatever the umask.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    create_dir_with_mode(dir, PRIVATE_DIR_MODE)
}

/// Sets permission bits explicitly (the umask only applies at creation).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Refuses an existing secret (folder or file) that group or others may read or enter,
/// saying it is `what` and giving the `chmod` that fixes it (700 for a folder, 600 for a
/// file); a missing one is fine (the caller creates it private). The error is the reason.
pub fn check_private(path: &Path, folder: bool, what: &str) -> Result<(), String> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let mode = mode_of(&meta);
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let fix = if folder { "700" } else { "600" };
    Err(format!(
        "mode {mode:03o} lets group or others read {what}; it must be {fix}: run chmod {fix} {}",
        path.display()
    ))
}

/// The permission bits of an existing path.
pub fn mode_of(meta: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    return meta.permissions().mode() & 0o777;
    #[cfg(not(unix))]
    {
        let _ = meta;
        0o600
    }
}

/// One file of a change: its new content (mode) or its removal.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: PathBuf,
    pub content: Option<Vec<u8>>,
    pub mode: u32,
}

impl FileChange {
    pub fn write(path: &Path, content: Vec<u8>, mode: u32) -> Self {
        Self {
            path: path.to_path_buf(),
            content: Some(content),
            mode,
        }
    }

    pub fn remove(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            content: None,
            mode: 0,
        }
    }
}

/// A change that failed, and the file it failed on. Nothing of the change is in place.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", file.display())]
pub struct CommitError {
    pub file: PathBuf,
    pub source: io::Error,
}

/// Applies every change, in order, or none.
///
/// First every new content is written to a temp file and fsynced, every existing target is
/// kept under a second name (a hard link), and every folder is opened: any failure there
/// (folder missing or not writable, target a folder, disk full) leaves every target as it
/// was. Then the targets are renamed into place in order and the folders fsynced; should a
/// rename or fsync still fail, the targets already replaced get their old content back. A
/// crash in the middle leaves each file wholly old or wholly new (callers order the files so
/// that a reconcile at start completes the change) and temp files that start-up removes.
pub fn commit(changes: &[FileChange]) -> Result<(), CommitError> {
    commit_failing_at(changes, None)
}

struct Step<'a> {
    change: &'a FileChange,
    tmp: Option<PathBuf>,
    old: Option<PathBuf>,
    done: bool,
}

fn temp_name(target: &Path, suffix: &str) -> io::Result<PathBuf> {
    let dir = parent_of(target);
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    Ok(dir.join(format!(
        ".{name}.tmp-{}-{}{suffix}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn write_temp(tmp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(mode);
    let mut file = options.open(tmp)?;
    // The umask may have taken bits away (or the caller wants fewer): set them exactly.
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `fail_at`: tests make the rename of that step fail, to exercise the roll-back.
fn commit_failing_at(changes: &[FileChange], fail_at: Option<usize>) -> Result<(), CommitError> {
    let mut steps: Vec<Step> = changes
        .iter()
        .map(|change| Step {
            change,
            tmp: None,
            old: None,
            done: false,
        })
        .collect();
    let mut dirs: BTreeMap<PathBuf, File> = BTreeMap::new();
    if let Err(e) = prepare(&mut steps, &mut dirs) {
        discard(&steps);
        return Err(e);
    }
    for i in 0..steps.len() {
        let step = &steps[i];
        let target = &step.change.path;
        let applied = if fail_at == Some(i) {
            Err(io::Error::other("injected failure"))
        } else {
            match (&step.tmp, &step.old) {
                (Some(tmp), _) => fs::rename(tmp, target),
                (None, Some(_)) => fs::remove_file(target),
                (None, None) => Ok(()),
            }
        };
        if let Err(source) = applied {
            roll_back(&mut steps, &dirs);
            return Err(CommitError {
                file: target.clone(),
                source,
            });
        }
        steps[i].done = true;
    }
    for (dir, handle) in &dirs {
        if let Err(source) = handle.sync_all() {
            roll_back(&mut steps, &dirs);
            return Err(CommitError {
                file: dir.clone(),
                source,
            });
        }
    }
    // The old contents are no longer needed; a crash before this only leaves temp files.
    for step in &steps {
        if let Some(old) = &step.old {
            let _ = fs::remove_file(old);
        }
    }
    Ok(())
}

fn prepare(steps: &mut [Step], dirs: &mut BTreeMap<PathBuf, File>) -> Result<(), CommitError> {
    for step in steps.iter_mut() {
        let target = step.change.path.clone();
        let fail = |source: io::Error| CommitError {
            file: target.clone(),
            source,
        };
        let dir = parent_of(&target).to_path_buf();
        if !dirs.contains_key(&dir) {
            let handle = File::open(&dir).map_err(|source| CommitError {
                file: dir.clone(),
                source,
            })?;
            if !handle.metadata().map_err(&fail)?.is_dir() {
                return Err(CommitError {
                    file: dir.clone(),
                    source: io::Error::other("not a folder"),
                });
            }
            dirs.insert(dir.clone(), handle);
        }
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => {
                return Err(fail(io::Error::other("a folder is in the way of the file")));
            }
            Ok(_) => {
                let old = temp_name(&target, ".old").map_err(&fail)?;
                fs::hard_link(&target, &old).map_err(&fail)?;
                step.old = Some(old);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        if let Some(bytes) = &step.change.content {
            let tmp = temp_name(&target, "").map_err(&fail)?;
            // Recorded before writing so that a failed write is cleaned up too.
            step.tmp = Some(tmp.clone());
            write_temp(&tmp, bytes, step.change.mode).map_err(&fail)?;
        }
    }
    Ok(())
}

/// Puts back the old content of every target already replaced, newest first.
fn roll_back(steps: &mut [Step], dirs: &BTreeMap<PathBuf, File>) {
    for step in steps.iter_mut().rev().filter(|s| s.done) {
        let target = &step.change.path;
        let restored = match step.old.take() {
            Some(old) => fs::rename(&old, target),
            None => fs::remove_file(target),
        };
        if let Err(e) = restored {
            tracing::error!(file = %target.display(), error = %e, "cannot restore a file after a failed change");
        }
        step.done = false;
    }
    for handle in dirs.values() {
        let _ = handle.sync_all();
    }
    discard(steps);
}

fn discard(steps: &[Step]) {
    for step in steps {
        for path in [&step.tmp, &step.old].into_iter().flatten() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> Option<String> {
        fs::read_to_string(p).ok()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_temp_name(n))
            .collect()
    }

    #[test]
    fn a_failed_rename_puts_back_every_file_already_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        fs::write(&a, "old a").unwrap();
        fs::write(&b, "old b").unwrap();
        let changes = [
            FileChange::write(&a, b"new a".to_vec(), 0o644),
            FileChange::remove(&b),
            FileChange::write(&c, b"new c".to_vec(), 0o644),
        ];
        let e = commit_failing_at(&changes, Some(2)).unwrap_err();
        assert_eq!(e.file, c);
        assert_eq!(read(&a).as_deref(), Some("old a"));
        assert_eq!(read(&b).as_deref(), Some("old b"));
        assert_eq!(read(&c), None);
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );

        commit(&changes).unwrap();
        assert_eq!(read(&a).as_deref(), Some("new a"));
        assert_eq!(read(&b), None);
        assert_eq!(read(&c).as_deref(), Some("new c"));
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_folder_in_the_way_stops_the_change_before_any_file_moves() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::write(&a, "old a").unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let blocked = sub.join("x");
        fs::create_dir(&blocked).unwrap();
        let e = commit(&[
            FileChange::write(&a, b"new a".to_vec(), 0o644),
            FileChange::write(&blocked, b"x".to_vec(), 0o644),
        ])
        .unwrap_err();
        assert_eq!(e.file, blocked);
        assert_eq!(read(&a).as_deref(), Some("old a"));
        assert!(leftovers(dir.path()).is_empty());
        assert!(leftovers(&sub).is_empty());
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("p/q");
        create_dir_with_mode(&nested, 0o700).unwrap();
        for d in [dir.path().join("p"), nested.clone()] {
            assert_eq!(mode_of(&fs::metadata(&d).unwrap()), 0o700);
        }
        let f = nested.join("f");
        write_atomically(&f, b"x", 0o640).unwrap();
        assert_eq!(mode_of(&fs::metadata(&f).unwrap()), 0o640);
    }
}
