"""The PXE HTTP server: no listings, each node's seed only to that node's address (on loopback)."""

from __future__ import annotations

import functools
import http.client
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from imgbuild import model, pxeserve

CLUSTER = model.parse(
    {
        "nodes": [
            {"name": "loadb1", "role": "loadbalancer", "address": "192.168.0.103"},
            {"name": "loadb2", "role": "loadbalancer", "address": "192.168.0.104"},
            {"name": "webserver1", "role": "webserver", "address": "192.168.0.101"},
        ]
    }
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "boot.ipxe").write_text("#!ipxe\n")
    for node in ("loadb1", "webserver1"):
        (tmp_path / "seeds" / node).mkdir(parents=True)
        (tmp_path / "seeds" / node / "user-data").write_text(f"#cloud-config {node}\n")
    handler = pxeserve.handler_for(CLUSTER)
    # the loopback stands in for the segment: 127.0.0.2 plays loadb1's address
    handler.seed_owners = {"loadb1": "127.0.0.2", "webserver1": "127.0.0.3"}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def get(port: int, path: str, source: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


def test_boot_script_to_anyone(server: int) -> None:
    assert get(server, "/boot.ipxe", "127.0.0.9") == 200


def test_seed_only_to_its_own_node(server: int) -> None:
    assert get(server, "/seeds/loadb1/user-data", "127.0.0.2") == 200
    assert get(server, "/seeds/loadb1/user-data", "127.0.0.3") == 403
    assert get(server, "/seeds/loadb1/user-data", "127.0.0.9") == 403
    assert get(server, "/seeds/webserver1/user-data", "127.0.0.3") == 200
    assert get(server, "/seeds/nosuch/user-data", "127.0.0.2") == 403
    for trick in (
        "/seeds/./loadb1/user-data",
        "//seeds/loadb1/user-data",
        "/%73eeds/loadb1/user-data",
        "/x/../seeds/loadb1/user-data",
        "/seeds/loadb1/user-data?x",
        "/seeds//loadb1/user-data",
    ):
        assert get(server, trick, "127.0.0.9") == 403, trick


def test_no_directory_listings(server: int) -> None:
    for path in ("/", "/seeds/", "/seeds/loadb1/"):
        assert get(server, path, "127.0.0.2") in (403, 404), path


def test_seed_owners_come_from_the_model() -> None:
    assert pxeserve.handler_for(CLUSTER).seed_owners == {
        "loadb1": "192.168.0.103",
        "loadb2": "192.168.0.104",
        "webserver1": "192.168.0.101",
    }
