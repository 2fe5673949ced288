//! Something built from files and rebuilt when they change: the
//! certificate a route shows, the device's anchor and the gateway's client
//! certificate (the device side), the client CA and CRL of an outbound
//! route. Files are compared by modification time and length (symbolic
//! links followed, as certbot's `live/` folder uses them). A rebuild that
//! fails leaves the value in use untouched, so a bad new file is refused and
//! the old one kept; connections hold their own `Arc` of what they started
//! with, so a swap drops none.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

type Loader<T, E> = Box<dyn Fn() -> Result<Arc<T>, E> + Send + Sync>;

/// A value read from `files`, swapped atomically when they change.
pub struct Watched<T, E> {
    files: Vec<PathBuf>,
    load: Loader<T, E>,
    current: RwLock<Arc<T>>,
    seen: Mutex<Vec<Stamp>>,
}

impl<T, E> fmt::Debug for Watched<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watched")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl<T, E> Watched<T, E> {
    /// Builds the value now with `load` (an error here is the caller's:
    /// there is nothing to keep yet); `files` are the ones `load` reads.
    pub fn new(
        files: Vec<PathBuf>,
        load: impl Fn() -> Result<Arc<T>, E> + Send + Sync + 'static,
    ) -> Result<Self, E> {
        let seen = files.iter().map(|p| stamp(p)).collect();
        let value = load()?;
        Ok(Watched {
            files,
            load: Box::new(load),
            current: RwLock::new(value),
            seen: Mutex::new(seen),
        })
    }

    /// The value in use.
    pub fn current(&self) -> Arc<T> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds if a file changed since last looked at: `Some(Ok(new))`
    /// when the new value is in use, `Some(Err(why))` when it was refused
    /// (the old one stays). A change is reported once: a refused file is not
    /// retried until it changes again.
    pub fn poll(&self) -> Option<Result<Arc<T>, E>> {
        let now: Vec<Stamp> = self.files.iter().map(|p| stamp(p)).collect();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return None;
            }
            *seen = now;
        }
        Some((self.load)().inspect(|value| match self.current.write() {
            Ok(mut c) => *c = value.clone(),
            Err(poisoned) => *poisoned.into_inner() = value.clone(),
        }))
    }

    /// The files watched.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_reloaded_and_a_bad_one_refused_keeping_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.txt");
        std::fs::write(&path, "1").unwrap();
        let p = path.clone();
        let w = Watched::new(vec![path.clone()], move || {
            let text = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
            text.trim()
                .parse::<u32>()
                .map(Arc::new)
                .map_err(|e| format!("{text}: {e}"))
        })
        .unwrap();
        assert_eq!(*w.current(), 1);
        assert!(w.poll().is_none(), "nothing changed");
        std::fs::write(&path, "22").unwrap();
        assert_eq!(*w.poll().unwrap().unwrap(), 22);
        assert_eq!(*w.current(), 22);
        std::fs::write(&path, "not a number").unwrap();
        assert!(w.poll().unwrap().is_err());
        assert_eq!(*w.current(), 22, "the old value stays");
        assert!(w.poll().is_none(), "a refusal is reported once");
    }
}
