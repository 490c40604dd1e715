//! The output directory of every subcommand: its exclusive lock for the whole run
//! ([`lock_output_dir`]), the guard against overwriting another run's outputs
//! ([`check_output_files`]), creating it, and writing files into it (whole, through a temporary
//! sibling; the record `config.toml` last, [`write_record`]); the `power.txt` table of
//! `simulate` ([`power_txt`]); its Gadget HDF5 snapshots ([`gadget`]).

use pm_core::{Error, Result};
use std::path::{Path, PathBuf};

pub mod gadget;
pub mod power_txt;

pub use power_txt::{read_power_txt, write_power_txt, PowerTable};

/// Refuses to overwrite the outputs of a different run: if `dir` holds any of `files` (the names
/// of everything this run would write) and its `config.toml` is not identical to `resolved`
/// (same config → bit-identical outputs), it is an error unless `force` or the directory holds an
/// interrupted run (no `config.toml`, only names in `files`), which this run completes. A run that may go on
/// first removes the temporary files (`.NAME.partial-PID.EXT`) an interrupted run left in `dir`.
pub fn check_output_files<S: AsRef<str>>(dir: &Path, files: &[S], resolved: &str, force: bool) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(Error::file(dir, "exists and is not a directory; choose another --out"));
    }
    let existing: Vec<String> = files
        .iter()
        .map(|f| f.as_ref().to_string())
        .filter(|f| dir.join(f).exists())
        .collect();
    let same = || {
        std::fs::read_to_string(dir.join("config.toml"))
            .map(|s| s == resolved)
            .unwrap_or(false)
    };
    if existing.is_empty() || force || same() || interrupted(dir, files)? {
        // Temporaries an interrupted earlier run left behind go before this run writes.
        pm_core::io::remove_partial_files(dir)?;
        return Ok(());
    }
    Err(Error::file(
        dir,
        format!(
            "already holds the outputs of a different run ({}); pass --force to overwrite them or choose another --out",
            existing.join(", ")
        ),
    ))
}

/// Whether `dir` holds an interrupted run of this command: no `config.toml` (the record a run
/// writes last, [`write_record`]) and nothing but names in `files` (temporaries aside).
fn interrupted<S: AsRef<str>>(dir: &Path, files: &[S]) -> Result<bool> {
    if dir.join("config.toml").exists() {
        return Ok(false);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list the output directory: {e}")))?;
    for entry in entries {
        let name = entry
            .map_err(|e| Error::file(dir, format!("cannot list the output directory: {e}")))?
            .file_name();
        let name = name.to_string_lossy();
        if name != LOCK_FILE && !pm_core::io::is_partial_name(&name) && !files.iter().any(|f| f.as_ref() == name) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Creates the output directory `dir`.
pub fn create_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create the output directory: {e}")))
}

/// Writes the run's record, the resolved configuration, into `dir/config.toml`: last, after every
/// data file is in place (synced with the directory before and after), so that a directory
/// without it is recognisably an interrupted run ([`check_output_files`] lets a rerun complete
/// it).
pub fn write_record(dir: &Path, resolved: &str) -> Result<()> {
    sync_dir(dir)?;
    write_text(&dir.join("config.toml"), resolved)?;
    sync_dir(dir)
}

/// Makes the renames into `dir` durable (Unix; elsewhere nothing to do).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::file(dir, format!("cannot sync the output directory: {e}")))?;
    Ok(())
}

/// Writes a text file whole ([`write_atomic`]); a failure names it.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes())
}

/// Writes bytes to a temporary sibling file, syncs it, then renames it over `path`
/// ([`pm_core::io::write_atomic`], shared with the `.npy` writers).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    pm_core::io::write_atomic(path, |w| w.write_all(bytes))
}

/// `dir/.name.partial-PID.ext` beside `path` (the extension tells the encoder the format)
/// ([`pm_core::io::partial_path`]).
pub(crate) fn temp_sibling(path: &Path, ext: &str) -> PathBuf {
    pm_core::io::partial_path(path, ext)
}

/// The lock file inside an output directory ([`lock_output_dir`]).
pub const LOCK_FILE: &str = ".cosmograd.lock";

/// An exclusive lock on an output directory, held for the whole run ([`lock_output_dir`]);
/// dropping it (at the end of the run, also on an error) removes the lock file, and the
/// directory again if the lock created it and nothing was written.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    file: Option<std::fs::File>,
    created: Option<PathBuf>,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Removed while still locked, so a run that opened it meanwhile sees a stale file and retries.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
        if let Some(dir) = &self.created {
            let _ = std::fs::remove_dir(dir); // only if empty
        }
    }
}

/// Takes the exclusive lock of the output directory `dir` (creating it): an operating-system
/// advisory lock (`flock` on Unix) on `dir/.cosmograd.lock`, which holds the pid of the run.
/// A second run into the same directory meanwhile is refused with one line naming the lock
/// file and the pid (`--force` does not override a live lock). The operating system releases
/// the lock when the process ends however it ends, so a lock file left behind by a killed run
/// is stale and simply taken over; no `--force` is needed.
pub fn lock_output_dir(dir: &Path) -> Result<DirLock> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::file(dir, "exists and is not a directory; choose another --out"));
    }
    if !dir.exists() {
        if let Ok(target) = std::fs::read_link(dir) {
            return Err(Error::file(
                dir,
                format!(
                    "is a symbolic link to {}, which does not exist; create that directory or choose another --out",
                    target.display()
                ),
            ));
        }
    }
    let created = (!dir.exists()).then(|| dir.to_path_buf());
    create_output_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let io = |e: std::io::Error| Error::file(&path, format!("cannot lock the output directory: {e}"));
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = pid.trim();
                let pid = if pid.is_empty() { "unknown" } else { pid };
                return Err(Error::file(
                    &path,
                    format!("another cosmograd run (pid {pid}) is writing into this directory; wait for it to end or choose another --out"),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // The run that held it may have removed the file between our open and our lock: then we
        // hold a lock on a file no longer in the directory, and start again.
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ours = file.metadata().map_err(io)?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
                _ => continue,
            }
        }
        let mut lock = DirLock {
            path: path.clone(),
            file: Some(file),
            created: created.clone(),
        };
        let f = lock.file.as_mut().expect("just set");
        use std::io::Write;
        f.set_len(0)
            .and_then(|_| f.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(io)?;
        return Ok(lock);
    }
}
