//! Files and folders that hold secrets or personal data (databases,
//! backups, exports, configuration with inline keys, the development data
//! folder): created readable by their owner only from the first byte.
//!
//! Creating a file with the umask's mode and `chmod`-ing it afterwards
//! leaves a window in which another local user can open it (and keep the
//! descriptor), so the mode is given to `open(2)` / `mkdir(2)` itself.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Mode of a private file: read and write for the owner only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a private folder.
pub const DIR_MODE: u32 = 0o700;

/// Creates `path` (truncating an existing file) with mode 0600 when it is
/// new. An existing file keeps its mode: callers that need it private
/// create a new file beside it and rename.
pub fn create(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    set_file_mode(&mut options);
    options.open(path)
}

/// Creates `path`, which must not exist yet, with mode 0600.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    set_file_mode(&mut options);
    options.open(path)
}

/// Writes `bytes` into a new 0600 file at `path` (which must not exist).
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates `path` and any missing parents with mode 0700 (folders that
/// already exist keep theirs).
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(path)
}

fn set_file_mode(options: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    #[cfg(not(unix))]
    let _ = options;
}

/// The permission bits of `path` (Unix; `None` elsewhere or when it cannot
/// be read).
pub fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_are_private_whatever_the_umask() {
        let base = std::env::temp_dir().join(format!("wxauth-private-{}", std::process::id()));
        let dir = base.join("a/b");
        create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode_of(&base), Some(DIR_MODE));
        assert_eq!(mode_of(&dir), Some(DIR_MODE));
        let file = dir.join("f");
        write_new(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode_of(&file), Some(FILE_MODE));
        assert!(
            write_new(&file, b"y").is_err(),
            "create_new refuses an existing file"
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
