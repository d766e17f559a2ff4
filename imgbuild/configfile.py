"""Write the cluster description out as a commented TOML file to edit."""

from __future__ import annotations

from importlib import resources

import jinja2

from imgbuild.model import SCHEDULERS, Cluster


def render(cluster: Cluster) -> str:
    template = resources.files("imgbuild").joinpath("templates/cluster.toml.j2").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    return env.from_string(template).render(c=cluster, schedulers=SCHEDULERS)
