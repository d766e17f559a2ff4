"""The images' one-process cloud-init (elements/imgbuild-common): each stage's unit hands its
stage to the one process and exits with the stage's status, and fails instead of hanging when
that process dies. Runs the real scripts, with a stand-in for cloud-init, in a private /run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from shellstubs import private_mounts

SCRIPTS = Path(__file__).parents[2] / "elements/imgbuild-common/static/usr/lib/imgbuild"
DRIVER, STAGE = SCRIPTS / "cloud-init-stages", SCRIPTS / "cloud-init-stage"

pytestmark = private_mounts  # a private /run

FAKE_CLOUD_INIT = """
import os
def main(argv):
    with open(os.environ["STAGE_LOG"], "a") as log:
        log.write(" ".join(argv[1:]) + "\\n")
    if argv[1:] == os.environ.get("DIE_IN", "").split():
        os._exit(9)
    return int(os.environ.get("STATUS_" + argv[1], "0"))
"""

# Start the process, wait for its FIFOs, then run the three units in boot order.
BOOT = f"""
mount -t tmpfs tmpfs /run
python3 {DRIVER} &
echo $! >/run/driver.pid
for _ in $(seq 100); do [ -p /run/imgbuild-cloud-init/final.start ] && break; sleep 0.05; done
{STAGE} local init --local; echo "local $?"
{STAGE} network init; echo "network $?"
{STAGE} final modules --mode=final; echo "final $?"
wait
"""


def boot(tmp_path: Path, **env: str) -> tuple[list[str], list[str]]:
    """(each unit's stage and exit status, the cloud-init calls in order)."""
    package = tmp_path / "cloudinit" / "cmd"
    package.mkdir(parents=True)
    (tmp_path / "cloudinit" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(FAKE_CLOUD_INIT)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `systemctl is-active` of the process, and stock cloud-init for a stage run without it.
    stand_ins = {"systemctl": 'kill -0 "$(cat /run/driver.pid)"', "cloud-init": 'echo "$*" >>"$STAGE_LOG.itself"'}
    for name, body in stand_ins.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "stages.log"
    run_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(tmp_path),
        "STAGE_LOG": str(log),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", BOOT],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines(), log.read_text().splitlines() if log.exists() else []


def test_each_unit_runs_its_stage_in_the_one_process(tmp_path: Path) -> None:
    units, calls = boot(tmp_path)
    assert units == ["local 0", "network 0", "final 0"]
    assert calls == ["init --local", "init", "modules --mode=final"]


def test_a_unit_exits_with_its_stage_status(tmp_path: Path) -> None:
    units, _ = boot(tmp_path, STATUS_modules="2")
    assert units == ["local 0", "network 0", "final 2"]


def test_a_unit_fails_when_the_process_dies_in_its_stage(tmp_path: Path) -> None:
    units, calls = boot(tmp_path, DIE_IN="init")
    assert units[:2] == ["local 0", "network 1"]
    # With the process gone, the next unit runs its stage itself, as stock cloud-init.
    assert units[2] == "final 0" and calls == ["init --local", "init"]
    assert (tmp_path / "stages.log.itself").read_text() == "modules --mode=final\n"
