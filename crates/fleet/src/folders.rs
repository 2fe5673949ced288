//! The folders `issue` writes device folders through: staging
//! (`.work/TOKEN/new/`), `devices/`, and where replaced folders go
//! (`.work/TOKEN/old/`).
//!
//! On Unix (Linux, macOS) they are opened once per run and every operation
//! names one or two path components relative to an open folder (`openat`,
//! `renameat`, ...) instead of walking the whole fleet path from `/`: path
//! walking was about a tenth of `fleet issue`'s kernel time. Elsewhere
//! (Windows) the same operations take full paths; the guarantees are the
//! same: files created new (never overwriting), a device folder renamed
//! into `devices/` in one step and never onto an existing folder.

use std::path::{Path, PathBuf};

use crate::{names, Error, Fleet};

/// Where a device's folder is moved; see [`Folders::install`].
pub enum Installed {
    /// `devices/ID/` is the staged folder now.
    Done,
    /// `devices/ID/` exists and is not empty: nothing was moved.
    Occupied,
}

/// The open folders of one issuing run.
pub struct Folders {
    /// This process's staging folder, `.work/TOKEN/new/`.
    pub staging_path: PathBuf,
    /// `devices/`.
    pub devices_path: PathBuf,
    /// The CA certificate, copied into every device folder.
    ca_der: Vec<u8>,
    os: imp::Open,
}

impl Folders {
    /// Opens the fleet's folders for a run whose staging is `work`.
    pub fn open(fleet: &Fleet, work: &Path) -> Result<Folders, Error> {
        let devices_path = fleet.dir().join(names::DEVICES);
        let staging_path = work.join("new");
        Ok(Folders {
            os: imp::Open::new(&staging_path, &work.join("old"), &devices_path)?,
            staging_path,
            devices_path,
            ca_der: fleet.ca_der.clone(),
        })
    }

    /// Creates the device's staging folder `ID/`.
    pub fn mkdir(&self, id: &str) -> Result<(), Error> {
        self.os
            .mkdir(id)
            .map_err(|e| Error::io(&self.staging_path.join(id), e))
    }

    /// Creates `ID/NAME` in staging with `bytes` (`mode` on Unix); never
    /// over an existing file. No fsync here: the folder is renamed into
    /// place only once complete, and the batch is made durable before it
    /// is marked active ([`crate::lock::sync_devices`]).
    pub fn write(&self, id: &str, name: &str, bytes: &[u8], mode: u32) -> Result<(), Error> {
        self.os
            .write(id, name, bytes, mode)
            .map_err(|e| Error::io(&self.staging_path.join(id).join(name), e))
    }

    /// Puts a copy of the fleet's `ca.der` into `ID/`. Never a hard link:
    /// a `cp` over a device's `ca.der` would write through the link into
    /// the fleet's own CA certificate (docs/hardening.md).
    pub fn add_ca(&self, id: &str) -> Result<(), Error> {
        self.write(id, names::CA_DER, &self.ca_der, 0o644)
    }

    /// Removes the staged `ID/` (its certificate was refused: made again).
    pub fn discard(&self, id: &str) -> Result<(), Error> {
        let path = self.staging_path.join(id);
        std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))
    }

    /// Renames staged `ID/` to `devices/ID/` in one step; with `replacing`,
    /// a present `devices/ID/` is first moved to `.work/TOKEN/old/ID/`.
    pub fn install(&self, id: &str, replacing: bool) -> Result<Installed, Error> {
        let dest = self.devices_path.join(id);
        if replacing && self.os.installed(id) {
            self.os.retire(id).map_err(|e| Error::io(&dest, e))?;
        }
        match self.os.install(id) {
            Ok(()) => Ok(Installed::Done),
            Err(_) if self.os.installed(id) => Ok(Installed::Occupied),
            Err(e) => Err(Error::io(&dest, e)),
        }
    }
}

#[cfg(unix)]
mod imp {
    use std::io::{self, Write};
    use std::os::fd::OwnedFd;
    use std::path::Path;

    use rustix::fs::{self as rfs, Access, AtFlags, Mode, OFlags};

    use crate::Error;

    pub struct Open {
        staging: OwnedFd,
        old: OwnedFd,
        devices: OwnedFd,
    }

    fn dir(path: &Path) -> Result<OwnedFd, Error> {
        rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(path, e.into()))
    }

    impl Open {
        pub fn new(staging: &Path, old: &Path, devices: &Path) -> Result<Open, Error> {
            Ok(Open {
                staging: dir(staging)?,
                old: dir(old)?,
                devices: dir(devices)?,
            })
        }

        pub fn mkdir(&self, id: &str) -> io::Result<()> {
            Ok(rfs::mkdirat(&self.staging, id, Mode::from_raw_mode(0o755))?)
        }

        pub fn write(&self, id: &str, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
            let fd = rfs::openat(
                &self.staging,
                format!("{id}/{name}").as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                // mode_t is 16 bits on macOS, 32 on Linux; the bits are 0o777.
                Mode::from_raw_mode(mode as rfs::RawMode),
            )?;
            std::fs::File::from(fd).write_all(bytes)
        }

        pub fn installed(&self, id: &str) -> bool {
            rfs::accessat(&self.devices, id, Access::EXISTS, AtFlags::empty()).is_ok()
        }

        pub fn retire(&self, id: &str) -> io::Result<()> {
            Ok(rfs::renameat(&self.devices, id, &self.old, id)?)
        }

        /// rename(2) of a folder onto a non-empty folder fails, so an
        /// unexpected folder is never overwritten.
        pub fn install(&self, id: &str) -> io::Result<()> {
            Ok(rfs::renameat(&self.staging, id, &self.devices, id)?)
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::fs;
    use std::io::{self, Write};
    use std::path::{Path, PathBuf};

    use crate::Error;

    pub struct Open {
        staging: PathBuf,
        old: PathBuf,
        devices: PathBuf,
    }

    impl Open {
        pub fn new(staging: &Path, old: &Path, devices: &Path) -> Result<Open, Error> {
            for folder in [staging, old, devices] {
                fs::metadata(folder).map_err(|e| Error::io(folder, e))?;
            }
            Ok(Open {
                staging: staging.to_path_buf(),
                old: old.to_path_buf(),
                devices: devices.to_path_buf(),
            })
        }

        pub fn mkdir(&self, id: &str) -> io::Result<()> {
            fs::create_dir(self.staging.join(id))
        }

        /// Windows has no mode bits: a private file (mode 0600: the device
        /// key, the ROMFS image holding it) is created with an owner-only
        /// DACL instead (devtls-pki's files module).
        pub fn write(&self, id: &str, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
            let path = self.staging.join(id).join(name);
            let mut file = if mode & 0o077 == 0 {
                devtls_pki::files::create_new_private(&path)?
            } else {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)?
            };
            file.write_all(bytes)
        }

        pub fn installed(&self, id: &str) -> bool {
            self.devices.join(id).exists()
        }

        pub fn retire(&self, id: &str) -> io::Result<()> {
            fs::rename(self.devices.join(id), self.old.join(id))
        }

        /// Never onto an existing folder: checked first, and the rename of
        /// a folder fails on Windows when the target exists anyway.
        pub fn install(&self, id: &str) -> io::Result<()> {
            if self.installed(id) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(self.staging.join(id), self.devices.join(id))
        }
    }
}
