"""Seeds on a real node: the config-drive path, and every user-data against the image's own cloud-init schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imgbuild import model, state
from imgbuild.paths import CONFIG_DRIVE_ISO, seed_dir
from imgbuild.qemu import netns
from imgbuild.qemu.accel import choose
from imgbuild.verify.cluster import boot_spec, node_machine
from imgbuild.verify.readiness import wait_until_ready

pytestmark = pytest.mark.slow


def test_config_drive_boot_and_schema(
    images: Path, seeds: Path, test_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """webserver1 boots from its OpenStack config drive; inside it, `cloud-init schema` accepts every
    node's user-data."""
    monkeypatch.setenv("IMGBUILD_STATE", test_env["IMGBUILD_STATE"])
    cluster = model.Cluster()
    node = cluster.node("webserver1")
    key, _ = state.admin_key(cluster.name)
    spec = boot_spec(node, images, seeds, CONFIG_DRIVE_ISO)
    with (
        netns.segment(f"{netns.PREFIX}cd-{tmp_path.name[-6:]}", cluster.network.subnet, cluster.free_address()) as seg,
        netns.entered(seg.name),
    ):
        machine = node_machine(cluster, node, spec, tmp_path, choose("auto")[0], seg, "tap0", key)
        machine.start()
        try:
            wait_until_ready(machine, timeout=400)
            assert machine.succeed("hostname").strip() == "webserver1"
            assert "ConfigDrive" in machine.succeed("cloud-init query platform; cat /run/cloud-init/result.json")
            assert "192.168.0.105/32" in machine.succeed("ip -4 -o addr show dev lo")
            assert "served by webserver1" in machine.succeed("cat /var/www/html/index.html")
            # The image's SBOM lists exactly what dpkg has installed on the running node.
            bill = json.loads((images / "webserver" / "webserver.spdx.json").read_text())
            assert len(machine.succeed("dpkg-query -W").splitlines()) == len(bill["packages"]) - 1  # less the image
            for other in cluster.nodes:
                user_data = (seed_dir(seeds, other) / "user-data").read_text()
                machine.succeed(f"cat > /tmp/{other.name}.yaml <<'IMGBUILD_EOF'\n{user_data}IMGBUILD_EOF")
                out = machine.succeed(f"cloud-init schema --config-file /tmp/{other.name}.yaml")
                assert re.match(r"Valid (cloud-config|schema)", out), out  # 22.4 says the first, 25.1 the second
        finally:
            machine.cleanup()


def test_images_hold_no_secret(
    images: Path, seeds: Path, test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The authkeys secret and the admin key pair appear in no built artefact (host keys: test_build)."""
    monkeypatch.setenv("IMGBUILD_STATE", test_env["IMGBUILD_STATE"])
    cluster = model.Cluster()
    key_path, public = state.admin_key(cluster.name)
    private_body = next(line for line in key_path.read_text().splitlines() if "PRIVATE KEY" not in line)
    needles = [state.authkeys_secret(cluster.name).encode(), public.split()[1].encode(), private_body.encode()]
    for role in ("loadbalancer", "webserver"):
        for path in (images / role).iterdir():
            if path.suffix in (".raw", ".initrd", ".vmlinuz"):  # the squashfs and disks are made from the raw tree
                tail = b""
                with path.open("rb") as f:
                    while chunk := f.read(16 << 20):
                        window = tail + chunk
                        for needle in needles:
                            assert needle not in window, f"{needle[:12]!r}… found in {path}"
                        tail = chunk[-256:]
