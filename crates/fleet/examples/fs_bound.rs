//! The file-system bound for `bench/fleet.sh`: per device what `fleet issue`
//! does to the disk and nothing else (a staging folder, three small files of
//! the sizes a device folder holds, a hard link to the CA certificate, a
//! rename into place), on THREADS threads.
//!
//! Usage: fs_bound DIR DEVICES THREADS   (prints devices per second)

use std::fs;
use std::path::Path;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: fs_bound DIR DEVICES THREADS");
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let root = Path::new(&dir);
    let (stage, devices) = (root.join("stage"), root.join("devices"));
    fs::create_dir_all(&stage).unwrap();
    fs::create_dir_all(&devices).unwrap();
    let files: [(&str, usize); 3] = [
        ("client.der", 372),
        ("client.key.der", 138),
        ("boot.py", 550),
    ];
    let ca = root.join("ca.der");
    fs::write(&ca, vec![0u8; 379]).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stage, devices, files, ca) = (&stage, &devices, &files, &ca);
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    let name = format!("dev-{i}");
                    let tmp = stage.join(&name);
                    fs::create_dir(&tmp).unwrap();
                    for (f, len) in files {
                        fs::write(tmp.join(f), vec![0u8; *len]).unwrap();
                    }
                    fs::hard_link(ca, tmp.join("ca.der")).unwrap();
                    fs::rename(&tmp, devices.join(&name)).unwrap();
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!("{:.0}", n as f64 / secs);
}
