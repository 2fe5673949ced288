"""`python -m devtls ARGS`: runs the bundled devtls binary with ARGS."""

import os
import subprocess
import sys

from devtls import find_devtls_bin


def main() -> None:
    devtls = find_devtls_bin()
    if sys.platform == "win32":
        # Windows has no exec: run it and pass its exit status on.
        sys.exit(subprocess.call([devtls, *sys.argv[1:]]))
    os.execv(devtls, [devtls, *sys.argv[1:]])


if __name__ == "__main__":
    main()
