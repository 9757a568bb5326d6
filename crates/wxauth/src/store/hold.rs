//! Who holds a SQLite database: every process that opens it to write
//! (`serve`, `dev`, the operator's commands) holds a shared lock on a lock
//! file beside it (`wxauth.db.lock`) for as long as its store lives;
//! `wxauth restore` takes the lock exclusively, so it refuses while anyone
//! holds the database, and a process starting meanwhile is refused until
//! the restore is done. (The lock is on a file of its own, not on the
//! database: SQLite's POSIX locks on the database file are dropped when
//! any descriptor of it in the process is closed.)

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file of the database at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn open_lock_file(db: &Path) -> std::io::Result<File> {
    let path = lock_path(db);
    match crate::private_files::create_new(&path) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::OpenOptions::new().read(true).open(&path)
        }
        Err(e) => Err(e),
    }
}

/// A shared hold on a database, released when dropped.
#[derive(Debug)]
pub struct SharedHold {
    _file: File,
}

/// An exclusive hold, released when dropped.
#[derive(Debug)]
pub struct ExclusiveHold {
    _file: File,
}

/// Opens the lock file of `db` and tries `lock` on it; `busy` says why a
/// lock held elsewhere refuses.
fn hold(
    db: &Path,
    lock: fn(&File) -> Result<(), TryLockError>,
    busy: impl FnOnce() -> String,
) -> Result<File> {
    let file = open_lock_file(db)
        .map_err(|e| Error::internal_from(format!("cannot open {}", lock_path(db).display()), e))?;
    match lock(&file) {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::InvalidRequest(busy())),
        Err(TryLockError::Error(e)) => Err(Error::internal_from(
            format!("cannot lock {}", lock_path(db).display()),
            e,
        )),
    }
}

/// Takes a shared hold on the database at `db`, or says that a restore
/// holds it.
pub fn share(db: &Path) -> Result<SharedHold> {
    let file = hold(db, File::try_lock_shared, || {
        format!(
            "{} is being restored (`wxauth restore` holds {}); start again when it is done",
            db.display(),
            lock_path(db).display()
        )
    })?;
    Ok(SharedHold { _file: file })
}

/// Takes the database at `db` for oneself: refused while any process
/// holds it.
pub fn take(db: &Path) -> Result<ExclusiveHold> {
    let file = hold(db, File::try_lock, || {
        format!(
            "{} is in use: a wxauth process (serve, dev or an operator command) has it open; stop it first",
            db.display()
        )
    })?;
    Ok(ExclusiveHold { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_hold_keeps_the_exclusive_one_out_and_back() {
        let dir = std::env::temp_dir().join(format!("wxauth-hold-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let db = dir.join("x.db");
        let a = share(&db).unwrap_or_else(|e| panic!("{e}"));
        let b = share(&db).unwrap_or_else(|e| panic!("{e}"));
        assert!(take(&db).is_err());
        drop(a);
        assert!(take(&db).is_err());
        drop(b);
        let only = take(&db).unwrap_or_else(|e| panic!("{e}"));
        assert!(share(&db).is_err());
        drop(only);
        assert!(share(&db).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
