"""pytest plugin that hands the running cluster to the checks and records every result."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra

from imgbuild.model import Role
from imgbuild.verify.cluster import RunningCluster

HA_LOG_COMMAND = "journalctl -b --no-pager -o short-monotonic -t heartbeat -t ldirectord -t ipfail -t IPaddr2 -t ResourceManager; cat /var/log/ha-log 2>/dev/null"


class ClusterPlugin:
    def __init__(self, cluster: RunningCluster, ssh_config: Path, report_dir: Path) -> None:
        self.running, self.ssh_config, self.report_dir = cluster, ssh_config, report_dir
        self.measurements: dict[str, Any] = {}
        self.results: list[dict[str, Any]] = []
        self._hosts: dict[str, Any] = {}

    # -- fixtures -----------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        nodes = self.running.model.nodes
        for fixture, role in (("node", None), ("host", None), ("balancer_host", Role.loadbalancer), ("webserver_host", Role.webserver)):
            if fixture in metafunc.fixturenames:
                chosen = [n for n in nodes if role is None or n.role == role]
                metafunc.parametrize("node_name", [n.name for n in chosen], ids=[n.name for n in chosen], scope="session")
                return

    def host_for(self, name: str) -> Any:
        if name not in self._hosts:
            node = self.running.model.node(name)
            self._hosts[name] = testinfra.get_host(f"paramiko://{self.running.model.admin.user}@{node.address}", ssh_config=str(self.ssh_config), sudo=True)
        return self._hosts[name]

    @pytest.fixture(scope="session")
    def cluster(self) -> RunningCluster:
        return self.running

    @pytest.fixture(scope="session")
    def report(self) -> dict[str, Any]:
        return self.measurements

    @pytest.fixture
    def node(self, node_name: str) -> Any:
        return self.running.model.node(node_name)

    @pytest.fixture
    def host(self, node_name: str) -> Any:
        return self.host_for(node_name)

    @pytest.fixture
    def balancer_host(self, node_name: str) -> Any:
        return self.host_for(node_name)

    @pytest.fixture
    def webserver_host(self, node_name: str) -> Any:
        return self.host_for(node_name)

    @pytest.fixture(scope="session")
    def vip_url(self) -> str:
        net, lb = self.running.model.network, self.running.model.balancer
        return f"http://{net.vip}:{lb.port}/"

    @pytest.fixture
    def client_neighbour(self) -> Any:
        def lookup(address: str) -> str | None:
            out = subprocess.run(["ip", "neigh", "show", address], capture_output=True, text=True).stdout
            fields = out.split()
            return fields[fields.index("lladdr") + 1] if "lladdr" in fields else None

        return lookup

    # -- results ------------------------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        rep = outcome.get_result()
        if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
            self.results.append({"check": item.nodeid.split("::", 1)[-1], "outcome": rep.outcome, "seconds": round(rep.duration, 2),
                                 "detail": str(rep.longrepr.reprcrash.message) if rep.failed and hasattr(rep.longrepr, "reprcrash") else ""})  # fmt: skip
            if rep.failed:
                self.collect_ha_logs()

    def collect_ha_logs(self) -> None:
        """On any failure, keep each balancer's HA log (heartbeat, ldirectord, ipfail) in the report."""
        for machine in self.running.role(Role.loadbalancer):
            if not machine.running():
                continue
            try:
                _, log = machine.execute(HA_LOG_COMMAND, timeout=30)
            except Exception as err:  # a dead node must not hide the check's own failure
                log = f"could not read the HA log: {err}"
            (self.report_dir / f"{machine.name}.ha.{int(time.time())}.log").write_text(log)
