// node check.mjs FILE...: runs each generated script under real MicroPython
// (WebAssembly) with run_script.py's stand-ins and prints what it saw.
import { readFileSync } from "node:fs";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const harness = readFileSync(new URL("./run_script.py", import.meta.url), "utf8");
const out = [];
const mp = await loadMicroPython({ stdout: (line) => out.push(line) });
for (const file of process.argv.slice(2)) {
  out.length = 0;
  mp.globals.set("src", readFileSync(file, "utf8"));
  try {
    mp.runPython(harness);
  } catch (e) {
    console.log(`${file}\tERROR ${String(e).split("\n").filter(Boolean).pop()}`);
    continue;
  }
  console.log(`${file}\t${out.join("|")}`);
}
