"""Run diskimage-builder for one role, logging everything and reporting its phases."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from imgbuild.builder.elements import elements_dir, role_elements
from imgbuild.builder.mirror import Mirrors
from imgbuild.builder.preflight import tool_path
from imgbuild.model import Build, Role
from imgbuild.run import failure, start
from imgbuild.run import run as run_command

# dib-run-parts announces each hook as "Running /…/install.d/01-package-installs".
_HOOK = re.compile(r"Running (?:\S*/)?(?P<phase>[a-z-]+)\.d/(?P<hook>[\w.-]+)")


def dib_version() -> str:
    return version("diskimage-builder")


def command(role: Role, build: Build, out_stem: Path) -> list[str]:
    # Only raw: builder.rootfs makes the root filesystems imgbuild ships from it.
    cmd = ["disk-image-create", "-a", "amd64", "-o", str(out_stem), "-t", "raw"]
    if build.image_size_gb:
        cmd += ["--image-size", f"{build.image_size_gb}"]
    return cmd + role_elements(role)


def environment(build: Build, mirrors: Mirrors, cache_dir: Path, tmp_dir: Path, epoch: int) -> dict[str, str]:
    """dib's environment; its chroot, tmpfs mounts and loop devices live below tmp_dir (see `release`).
    SOURCE_DATE_EPOCH reaches the chroot too (dib runs hooks with `sudo -E`): update-initramfs,
    shadow's tools and py_compile take their timestamps from it."""
    env = dict(os.environ)
    env.update(
        PATH=tool_path(),
        TMP_DIR=str(tmp_dir),
        ELEMENTS_PATH=str(elements_dir()),
        DIB_RELEASE=build.release,
        DIB_DISTRIBUTION_MIRROR=mirrors.main,
        DIB_DEBIAN_SECURITY_MIRROR=mirrors.security,
        DIB_IMAGE_CACHE=str(cache_dir),
        # Reuse the debootstrap tarball; DIB_IMAGE_CACHE is keyed by mirror and release.
        DIB_DEBOOTSTRAP_CACHE="1",
        DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE="1",
        IMGBUILD_KERNEL=build.kernel,
        SOURCE_DATE_EPOCH=str(epoch),
    )
    return env


_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()


def stop_all() -> None:
    """Stop every running disk-image-create (interrupt from the main thread); their traps unmount and detach."""
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)


def release(root: Path) -> None:
    """Unmount and detach whatever a killed dib left below root: its EXIT trap does not run on SIGTERM."""
    prefix = f"{root}/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run_command(["umount", "--lazy", mount], check=False)
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        if backing.read_text().strip().startswith(prefix):
            run_command(["losetup", "--detach", f"/dev/{backing.parent.parent.name}"], check=False)


def run(cmd: list[str], env: dict[str, str], log_path: Path, on_phase: Callable[[str], None]) -> None:
    """Run disk-image-create in env's TMP_DIR; the full output is appended to log_path, its phases go to on_phase."""
    tail: deque[str] = deque(maxlen=25)
    with log_path.open("a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = start(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        with _running_lock:
            _running.add(proc)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if m := _HOOK.search(line):
                    on_phase(f"{m['phase']}: {m['hook']}")
            proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with _running_lock:
                _running.discard(proc)
            release(Path(env["TMP_DIR"]))
    if proc.returncode != 0:
        raise failure(cmd, proc.returncode, "\n".join(tail), log_path=log_path)
