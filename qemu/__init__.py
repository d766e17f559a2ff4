"""Running nodes: QEMU machines on a private network namespace, driven over QMP and SSH."""

# This folder is installed as `imgbuild.qemu`. With the checkout's root on sys.path (`python -m`
# from the root), it is also found as the top-level package `qemu`, ahead of the qemu.qmp library's
# `qemu` namespace package. Imported under that name, it stands in for the namespace: its path is
# the library's portions only, so `qemu.qmp` resolves to the library and `qemu.machine` and the
# like do not exist at the top level (one copy of each module, under `imgbuild.qemu`).
if __name__ == "qemu":
    import os as _os
    import pkgutil as _pkgutil

    _here = _os.path.realpath(_os.path.dirname(__file__))
    __path__ = [p for p in _pkgutil.extend_path(__path__, __name__) if _os.path.realpath(p) != _here]
    del _os, _pkgutil, _here
