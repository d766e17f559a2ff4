"""pytest plugin that hands the running cluster to the checks and records every result.

Fixtures are module-level (loaded with `-p imgbuild.verify.plugin`); the ClusterPlugin
instance carries the cluster, found by the fixtures in the config stash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from pluggy import Result
from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.host import Host

from imgbuild.model import Node, Role
from imgbuild.qemu.machine import Machine
from imgbuild.qemu.steplog import StepLog
from imgbuild.run import run
from imgbuild.verify.client import DOWNLOAD, DOWNLOAD_SIZE
from imgbuild.verify.cluster import RunningCluster

# Either stack's HA log: both log to local0.
HA_LOG_COMMAND = "journalctl -b --no-pager -o short-monotonic SYSLOG_FACILITY=16; cat /var/log/ha-log 2>/dev/null"
_PLUGIN = pytest.StashKey["ClusterPlugin"]()
_DRILLS_BEFORE = pytest.StashKey[int]()  # how many drills were recorded when a check started
# fixture -> role of the nodes it is parametrized over (None: every node)
_NODE_FIXTURES = {"node": None, "host": None, "balancer_host": Role.loadbalancer, "webserver_host": Role.webserver}


class MachineBackend(BaseBackend):  # type: ignore[misc]  # testinfra has no type information: BaseBackend is Any
    """testinfra over the node's root shell (Machine.run): the checks' commands cost a fork in the
    node instead of an SSH channel, a login shell and sudo each."""

    NAME = "imgbuild"

    def __init__(self, machine: Machine) -> None:
        super().__init__(machine.name)
        self.machine = machine

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        command = self.get_command(command, *args)
        status, stdout, stderr = self.machine.run(command)
        return self.result(status, self.encode(command), stdout, stderr)


class ClusterPlugin:
    """faults: also run the drills marked `faults` (the whole fault matrix), rounds times over."""

    def __init__(
        self,
        cluster: RunningCluster,
        report_dir: Path,
        faults: bool = False,
        rounds: int = 1,
        steps: StepLog | None = None,
    ) -> None:
        self.running, self.report_dir = cluster, report_dir
        self.faults, self.rounds = faults, rounds
        self.steps = steps
        self.measurements: dict[str, Any] = {}
        self.drills: list[dict[str, Any]] = []  # each drill's figures and timeline (imgbuild.verify.drill)
        self.results: list[dict[str, Any]] = []
        self._hosts: dict[str, Host] = {}

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[_PLUGIN] = self
        config.addinivalue_line("markers", "faults: a drill of the full fault matrix (imgbuild verify --faults)")
        config.addinivalue_line(
            "markers",
            "stack(name): a check of one HA stack (heartbeat or keepalived), swapped for its counterpart on the other",
        )

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        stack = self.running.model.ha.stack

        def wanted(item: pytest.Item) -> bool:
            marker = item.get_closest_marker("stack")
            return (self.faults or not item.get_closest_marker("faults")) and (
                marker is None or marker.args[0] == stack
            )

        deselected = [i for i in items if not wanted(i)]
        items[:] = [i for i in items if wanted(i)]
        config.hook.pytest_deselected(items=deselected)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "fault_round" in metafunc.fixturenames:
            # module scope: pytest runs the matrix round after round, each in the runbook's order
            ids = [f"round{i + 1}" for i in range(self.rounds)]
            metafunc.parametrize("fault_round", range(1, self.rounds + 1), ids=ids, scope="module")
        for fixture, role in _NODE_FIXTURES.items():
            if fixture in metafunc.fixturenames:
                chosen = [n for n in self.running.model.nodes if role is None or n.role == role]
                metafunc.parametrize("node_name", [n.name for n in chosen], ids=[n.name for n in chosen], indirect=True)
                return

    def host_for(self, name: str) -> Host:
        if name not in self._hosts:
            backend = MachineBackend(self.running.machine(name))
            self._hosts[name] = Host(backend)
            backend.set_host(self._hosts[name])
        return self._hosts[name]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.steps is not None:  # the commands from here on are this check's (fixtures too)
            self.steps.check = item.nodeid.split("::", 1)[-1]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        item.stash[_DRILLS_BEFORE] = len(self.drills)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Result[pytest.TestReport], None]:
        outcome = yield
        rep = outcome.get_result()
        if rep.when == "call":  # each drill of this check: its bound and figures as JUnit properties
            for drill in self.drills[item.stash.get(_DRILLS_BEFORE, len(self.drills)) :]:
                drill["passed"] = drill["passed"] and rep.passed  # its bound held, and so did the rest of the check
                rep.user_properties += [
                    (f"{drill['name']}.passed", drill["passed"]),
                    (f"{drill['name']}.bound_s", drill["bound_s"]),
                ]
                rep.user_properties += [
                    (f"{drill['name']}.{k}", v) for k, v in drill["figures"].items() if v is not None
                ]
        if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
            # hasattr checks reprcrash; mypy's hasattr narrowing still keeps None and tuple in longrepr's union
            detail = rep.longrepr.reprcrash.message if rep.failed and hasattr(rep.longrepr, "reprcrash") else ""  # type: ignore[union-attr]
            check = item.nodeid.split("::", 1)[-1]
            self.results.append(
                {
                    "check": check,
                    "outcome": rep.outcome,
                    "seconds": round(rep.duration, 2),
                    "detail": str(detail),
                    "commands": self.steps.per_check[check] if self.steps else None,
                }
            )  # in the step log
            if rep.failed:
                self.collect_ha_logs()

    def collect_ha_logs(self) -> None:
        """On any failure, keep each balancer's HA log (heartbeat, ldirectord, ipfail) in the report."""
        for machine in self.running.role(Role.loadbalancer):
            if not machine.running():
                continue
            try:
                _, log = machine.execute(HA_LOG_COMMAND, timeout=30)
            except Exception as err:  # noqa: BLE001  # whatever the dead node raised must not hide the check's failure
                log = f"could not read the HA log: {err}"
            (self.report_dir / f"{machine.name}.ha.{int(time.time())}.log").write_text(log)


def _plugin(request: pytest.FixtureRequest) -> ClusterPlugin:
    return request.config.stash[_PLUGIN]


@pytest.fixture
def node_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param  # one of the names pytest_generate_tests parametrizes
    return name


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> RunningCluster:
    return _plugin(request).running


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _plugin(request).measurements


@pytest.fixture(scope="session")
def drills(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The drills' records; every web server serves the long download from here on (sparse: no
    time spent writing zeros), also when `-k` picks a single drill."""
    plugin = _plugin(request)
    for web in plugin.running.role(Role.webserver):
        web.succeed(f"truncate -s {DOWNLOAD_SIZE} /var/www/html{DOWNLOAD}")
    return plugin.drills


@pytest.fixture
def node(request: pytest.FixtureRequest, node_name: str) -> Node:
    return _plugin(request).running.model.node(node_name)


@pytest.fixture
def host(request: pytest.FixtureRequest, node_name: str) -> Host:
    return _plugin(request).host_for(node_name)


@pytest.fixture
def balancer_host(request: pytest.FixtureRequest, node_name: str) -> Host:
    return _plugin(request).host_for(node_name)


@pytest.fixture
def webserver_host(request: pytest.FixtureRequest, node_name: str) -> Host:
    return _plugin(request).host_for(node_name)


@pytest.fixture(scope="session")
def vip_url(cluster: RunningCluster) -> str:
    return f"http://{cluster.model.network.vip}:{cluster.model.balancer.port}/"


@pytest.fixture
def client_neighbour() -> Callable[[str], str | None]:
    def lookup(address: str) -> str | None:
        fields = run(["ip", "neigh", "show", address], check=False, text=True).stdout.split()
        return fields[fields.index("lladdr") + 1] if "lladdr" in fields else None

    return lookup
