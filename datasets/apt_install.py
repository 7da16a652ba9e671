"""Installing the Debian packages a data script needs (shared by datasets/*/build.py)."""

import os
import shutil
import subprocess
import sys


def apt_install(packages, log):
    """apt-get installs `packages` (through sudo when not root), running `apt-get update` and
    trying once more if the first attempt fails. Returns None on success, else the reason."""
    if shutil.which("apt-get") is None:
        return "apt-get not found; install " + " ".join(packages) + " by hand"
    prefix = []
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "not root and no sudo: apt-get install -y " + " ".join(packages)
        prefix = ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + ["apt-get", "install", "-y", "--no-install-recommends"] + list(packages)

    def run(cmd):
        log("$ " + " ".join(cmd))
        return subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, env=env).returncode

    if run(install) != 0:
        run(prefix + ["apt-get", "update"])
        if run(install) != 0:
            return "apt-get install failed: " + " ".join(packages)
    return None
