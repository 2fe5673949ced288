"""Runs a generated renew.py under CPython as MicroPython would run it:
`ssl` is mpy_ssl (MicroPython's API only), `ntptime.settime` does nothing
(the host clock is already set), the current directory is the device's
writable file system and `/rom/` is mapped to a folder given as ROM.

    renew_harness.py run DIR ROM          renew.run() against the real service
    renew_harness.py boot DIR ROM         recover(), then pair()
    renew_harness.py crash DIR ROM K MODE J
        renew.run() against the real service, power lost after the K-th
        file creation, half-write, rename or remove (MODE: atomic renames,
        or fat: a rename onto an existing file is a remove then a rename, as
        MicroPython's FAT driver does it); on reboot recover() loses power
        after its J-th step (J is - for never), then recover() runs again.

Prints one JSON line: what happened and the pair pair() names.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpy_ssl  # noqa: E402  (imports CPython's ssl before the stand-in replaces it)


class PowerLoss(BaseException):
    """Not an Exception: the script's `except Exception` cannot catch it."""


class Disk:
    """The file system as renew.py sees it: counts mutating steps and loses
    power after the `limit`-th one."""

    def __init__(self, rom, limit=None, fat=False):
        self.rom, self.limit, self.fat, self.ops = rom, limit, fat, 0

    def path(self, n):
        return os.path.join(self.rom, n[5:]) if n.startswith("/rom/") else n

    def tick(self):
        self.ops += 1
        if self.limit is not None and self.ops >= self.limit:
            raise PowerLoss()

    # os
    def stat(self, n):
        return os.stat(self.path(n))

    def remove(self, n):
        if n.startswith("/rom/"):
            raise OSError(30, "EROFS")
        os.remove(n)
        self.tick()

    def rename(self, a, b):
        if self.fat and os.path.exists(b):
            os.remove(b)
            self.tick()
        os.replace(a, b)
        self.tick()

    # open
    def open(self, n, mode="r"):
        if "w" not in mode:
            return open(self.path(n), mode)
        if n.startswith("/rom/"):
            raise OSError(30, "EROFS")
        f = open(n, mode)
        self.tick()  # the file exists, empty
        return Writer(self, f)


class Writer:
    """Writes in two halves, each a point where power can be lost."""

    def __init__(self, disk, f):
        self.disk, self.f = disk, f

    def write(self, b):
        half = len(b) // 2
        for part in (b[:half], b[half:]):
            self.f.write(part)
            self.f.flush()
            self.disk.tick()
        return len(b)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.f.close()


def load(disk, ssl_module):
    ntptime = type(sys)("ntptime")
    ntptime.settime = lambda: None
    saved = {k: sys.modules.get(k) for k in ("ssl", "ntptime")}
    sys.modules["ssl"], sys.modules["ntptime"] = ssl_module, ntptime
    try:
        mod = type(sys)("renew")
        with open("renew.py", encoding="utf-8") as f:
            src = f.read()
        exec(compile(src, "renew.py", "exec"), mod.__dict__)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    mod.os = disk
    mod.open = disk.open
    return mod


def main():
    mode, d, rom = sys.argv[1:4]
    rom = os.path.abspath(rom)
    os.chdir(d)
    out = {}
    if mode == "run":
        mod = load(Disk(rom), mpy_ssl)
        out["code"] = mod.run()
    elif mode == "boot":
        mod = load(Disk(rom), mpy_ssl)
        mod.recover()
    elif mode == "crash":
        k, fs = int(sys.argv[4]), sys.argv[5]
        j = None if sys.argv[6] == "-" else int(sys.argv[6])
        disk = Disk(rom, k, fs == "fat")
        mod = load(disk, mpy_ssl)
        try:
            out["code"] = mod.run()
            out["crashed"] = False
        except PowerLoss:
            out["crashed"] = True
        out["ops"] = disk.ops
        if j is not None:
            # Reboot: the recovery itself loses power after its J-th step.
            mod = load(Disk(rom, j, fs == "fat"), mpy_ssl)
            try:
                mod.recover()
                out["recover_crashed"] = False
            except PowerLoss:
                out["recover_crashed"] = True
        mod = load(Disk(rom, None, fs == "fat"), mpy_ssl)
        mod.recover()
    else:
        raise SystemExit("unknown mode " + mode)
    out["pair"] = list(mod.pair())
    out["left"] = sorted(os.listdir("."))
    print(json.dumps(out))


main()
