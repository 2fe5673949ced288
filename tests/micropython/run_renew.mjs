// node run_renew.mjs DEVICE_DIR REPLAY_DIR OUT_DIR: runs DEVICE_DIR's
// renew.py under real MicroPython (WebAssembly) with its files in
// MicroPython's own file system and the connections replayed from
// REPLAY_DIR (0, 1, ...; see replay/ssl.py), then copies the device's files
// to OUT_DIR. Prints what the script printed and `result: CODE`.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const [dev, replay, out] = process.argv.slice(2);
const mp = await loadMicroPython({ stdout: (line) => console.log(line) });
const FS = mp.FS;
for (const d of ["/dev1", "/replay", "/lib"]) FS.mkdir(d);
for (const f of readdirSync(dev)) FS.writeFile(`/dev1/${f}`, readFileSync(join(dev, f)));
for (const f of readdirSync(replay)) FS.writeFile(`/replay/${f}`, readFileSync(join(replay, f)));
const here = new URL("./replay/", import.meta.url);
for (const m of ["ssl.py", "socket.py", "ntptime.py"]) {
  FS.writeFile(`/lib/${m}`, readFileSync(new URL(m, here)));
}
try {
  mp.runPython(`
import os, sys
sys.path.insert(0, "/lib")
sys.path.insert(0, "/dev1")
os.chdir("/dev1")
import renew
print("result:", renew.run())
`);
} catch (e) {
  console.log("ERROR " + String(e).split("\n").filter(Boolean).pop());
  process.exit(1);
}
mkdirSync(out, { recursive: true });
for (const f of FS.readdir("/dev1")) {
  if (f === "." || f === "..") continue;
  writeFileSync(join(out, f), FS.readFile(`/dev1/${f}`));
}
