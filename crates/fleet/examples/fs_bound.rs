//! The file-system bound for `bench/fleet.sh`: per device what `fleet issue`
//! does to the disk and nothing else (a staging folder, four small files of
//! the sizes a device folder holds (one a copy of the CA certificate), a
//! rename into place), through open folders as `fleet issue` does, on
//! THREADS threads.
//!
//! Usage: fs_bound DIR DEVICES THREADS   (prints devices per second)

// The *at calls are rustix's, on Unix (where `fleet issue` uses them too).
#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {
    eprintln!("fs_bound: Unix only (it measures through the *at calls fleet issue uses there)");
    std::process::exit(2);
}

#[cfg(unix)]
mod unix {
    use std::fs;
    use std::io::Write;
    use std::path::Path;
    use std::time::Instant;

    use rustix::fs::{self as rfs, Mode, OFlags, CWD};

    pub fn main() {
        let mut args = std::env::args().skip(1);
        let dir = args.next().expect("usage: fs_bound DIR DEVICES THREADS");
        let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
        let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
        let root = Path::new(&dir);
        let (stage, devices) = (root.join("stage"), root.join("devices"));
        fs::create_dir_all(&stage).unwrap();
        fs::create_dir_all(&devices).unwrap();
        let files: [(&str, usize); 4] = [
            ("client.der", 372),
            ("client.key.der", 138),
            ("boot.py", 550),
            ("ca.der", 379),
        ];
        let open_dir = |path: &Path| {
            rfs::openat(
                CWD,
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap()
        };
        let (stage_fd, devices_fd) = (open_dir(&stage), open_dir(&devices));
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let (files, stage_fd, devices_fd) = (&files, &stage_fd, &devices_fd);
                s.spawn(move || {
                    for i in (t..n).step_by(threads) {
                        let name = format!("dev-{i}");
                        rfs::mkdirat(stage_fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
                        for (file, len) in files {
                            let fd = rfs::openat(
                                stage_fd,
                                format!("{name}/{file}").as_str(),
                                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                                Mode::from_raw_mode(0o644),
                            )
                            .unwrap();
                            fs::File::from(fd).write_all(&vec![0u8; *len]).unwrap();
                        }
                        rfs::renameat(stage_fd, name.as_str(), devices_fd, name.as_str()).unwrap();
                    }
                });
            }
        });
        let secs = start.elapsed().as_secs_f64();
        println!("{:.0}", n as f64 / secs);
    }
}
