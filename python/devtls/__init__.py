"""devtls: the binary ships in this wheel's scripts folder; see find_devtls_bin."""

import os
import sys
import sysconfig


def find_devtls_bin() -> str:
    """The devtls executable installed with this package."""
    exe = "devtls" + (sysconfig.get_config_var("EXE") or "")
    folders = [sysconfig.get_path("scripts")]
    # pip install --user puts scripts in the user scheme's folder.
    user_scheme = {"nt": "nt_user", "posix": "posix_user"}.get(os.name)
    if sys.platform == "darwin" and sys._framework:  # type: ignore[attr-defined]
        user_scheme = "osx_framework_user"
    if user_scheme in sysconfig.get_scheme_names():
        folders.append(sysconfig.get_path("scripts", scheme=user_scheme))
    # pip install --target DIR: DIR/bin beside DIR/devtls.
    folders.append(os.path.join(os.path.dirname(os.path.dirname(__file__)), "bin"))
    for folder in folders:
        path = os.path.join(folder, exe)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{exe} is not in {', '.join(folders)}: reinstall with `pip install --force-reinstall devtls`"
    )
