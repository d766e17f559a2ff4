"""The imgbuild command line: every command maps config → model → artefacts → report."""

from __future__ import annotations

import enum
import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgbuild import configfile, model, paths, ui
from imgbuild.errors import UsageError, UserError

if TYPE_CHECKING:
    from imgbuild.builder import reproducible
    from imgbuild.builder.build import Manifest
    from imgbuild.builder.mirror import Mirrors

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="cluster description (TOML); the reference cluster when omitted"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="directory of the role images")]
DEFAULT_OUTPUT = Path("images")
# An Enum, so that typer offers and checks the choices.
Release = enum.Enum("Release", {r: r for r in model.RELEASES}, type=str)  # type: ignore[misc]
ReleaseOpt = Annotated[
    Release | None, typer.Option("--release", help="Debian release; the cluster file's build.release when omitted")
]


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into its detail, one 'error:' line and a non-zero exit, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if exc.detail:
                ui.err.print(exc.detail, highlight=False)
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from None

    return wrapper


@app.command()
@user_errors
def init(
    path: Annotated[Path, typer.Argument(help="file to write")] = Path("cluster.toml"),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write the reference cluster as a commented description to edit."""
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    path.write_text(configfile.render(model.Cluster()))
    ui.err.print(f"wrote {path}; edit it and pass it with --config {path}")


@app.command()
@user_errors
def build(
    role: Annotated[
        list[str] | None,
        typer.Option("--role", "-r", help="loadbalancer or webserver (repeatable); both when omitted"),
    ] = None,
    config: ConfigOpt = None,
    output: OutputOpt = DEFAULT_OUTPUT,
    mirror: Annotated[str | None, typer.Option(help="Debian mirror URL (env IMGBUILD_MIRROR)")] = None,
    security_mirror: Annotated[
        str | None, typer.Option(help="Debian security mirror URL (env IMGBUILD_SECURITY_MIRROR)")
    ] = None,
    release: ReleaseOpt = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when nothing changed")] = False,
    check_reproducible: Annotated[
        bool,
        typer.Option(
            "--check-reproducible",
            help="then rebuild each role elsewhere from the same inputs and compare the two builds",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build the role images with diskimage-builder (cached by their inputs)."""
    from imgbuild.builder import build as builder
    from imgbuild.builder import mirror as mirrors_mod

    cluster = with_release(model.load(config), release)
    roles = parse_roles(role)
    b = cluster.build
    mirrors = mirrors_mod.resolve(b.release, mirror or b.mirror, security_mirror or b.security_mirror)
    results = builder.build_with_progress(roles, cluster, mirrors, output, force)
    for r, result in results.items():
        how = (
            "unchanged, cached" if result.cached else f"built in {result.manifest['build_seconds']} s, log {result.log}"
        )
        ui.ok(f"{r.value}: {paths.role_dir(paths.release_dir(output, b.release), r)}/ ({how})")
    out: dict[str, Any] = {r.value: dict(result.manifest) for r, result in results.items()}
    if check_reproducible:
        reports = _check_reproducible(
            roles, {r: result.manifest for r, result in results.items()}, cluster, mirrors, output
        )
        for r, report in reports.items():
            out[r.value]["reproducibility"] = report
    if json_out:
        ui.emit_json(out)
    if check_reproducible and not all(report["tree_identical"] for report in reports.values()):
        raise typer.Exit(1)


def _check_reproducible(
    roles: list[model.Role],
    published: dict[model.Role, Manifest],
    cluster: model.Cluster,
    mirrors: Mirrors,
    output: Path,
) -> dict[model.Role, reproducible.Report]:
    """Rebuild and compare (builder.reproducible); one line per role and artefact."""
    from imgbuild.builder import reproducible

    images = paths.release_dir(output, cluster.build.release)
    with ui.progress([f"{r.value} rebuild" for r in roles]) as update:
        reports = reproducible.check(
            roles,
            published,
            cluster.build,
            mirrors,
            images,
            cluster.openstack,
            lambda r, status: update(f"{r.value} rebuild", status),
        )
    for r, report in reports.items():
        where = images / f"{r.value}.{paths.REPRODUCIBILITY_SUFFIX}"
        if report["tree_identical"]:
            ui.ok(f"{r.value}: rebuilt in {report['rebuild_seconds']} s, same {report['files']} files ({where})")
        else:
            count = report["tree_differences_count"]
            ui.error(f"{r.value}: the rebuilt root filesystem differs in {count} paths; see {where}")
        for kind, result in report["artefacts"].items():
            if result["identical"]:
                ui.ok(f"  {kind}: identical")
            else:
                ui.warn(f"  {kind}: differs: {result['why']}")
    return reports


SeedsOpt = Annotated[Path, typer.Option("--seeds", help="directory of the per-node seeds")]
DEFAULT_SEEDS = Path("seeds")


@app.command()
@user_errors
def seed(
    node: Annotated[
        list[str] | None, typer.Option("--node", "-n", help="node name (repeatable); all nodes when omitted")
    ] = None,
    config: ConfigOpt = None,
    seeds: SeedsOpt = DEFAULT_SEEDS,
    json_out: JsonOpt = False,
) -> None:
    """Render each node's cloud-init seed: NoCloud ISO, config drive, plain files."""
    from imgbuild.cloudinit import credentials
    from imgbuild.cloudinit import seeds as seeds_mod

    cluster = model.load(config)
    nodes = [cluster.node(n) for n in node] if node else cluster.nodes
    for warning in credentials.warnings(cluster):
        ui.warn(warning)
    written = {}
    for name, path in seeds_mod.write_seeds(cluster, seeds, nodes).items():
        written[name] = {"dir": str(path), "files": sorted(p.name for p in path.iterdir())}
        ui.ok(f"{name}: {path}/")
    if json_out:
        ui.emit_json(written)


@app.command()
@user_errors
def render(
    node: Annotated[str, typer.Option("--node", "-n", help="node name")],
    config: ConfigOpt = None,
    part: Annotated[str, typer.Option(help="user-data, meta-data or network-config")] = "user-data",
    json_out: JsonOpt = False,
) -> None:
    """Print a node's cloud-init data for review, secrets masked."""
    from imgbuild.cloudinit import credentials
    from imgbuild.cloudinit import render as render_mod

    cluster = model.load(config)
    secrets = credentials.for_cluster(cluster)
    data = render_mod.render_node(cluster, cluster.node(node), secrets)
    parts = {"user-data": data.user_data, "meta-data": data.meta_data, "network-config": data.network_config}
    if part not in parts:
        raise UsageError(f"unknown part {part!r}; choose one of {', '.join(parts)}")
    if json_out:
        ui.emit_json({k: render_mod.masked(v, secrets) for k, v in parts.items()})
    else:
        print(render_mod.masked(parts[part], secrets), end="")


@app.command()
@user_errors
def pxe(
    config: ConfigOpt = None,
    output: OutputOpt = DEFAULT_OUTPUT,
    seeds: SeedsOpt = DEFAULT_SEEDS,
    tree: Annotated[Path, typer.Option("--tree", help="where the PXE tree is written")] = Path("pxe"),
    release: ReleaseOpt = None,
    serve: Annotated[bool, typer.Option("--serve", help="then serve it over HTTP until Ctrl-C")] = False,
    interface: Annotated[
        str | None, typer.Option(help="with --serve: also answer DHCP and TFTP on this interface (dnsmasq)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the PXE tree (kernels, initrds, squashfs roots, iPXE and pxelinux configs, network seeds)."""
    from imgbuild.builder import pxe as pxe_mod
    from imgbuild.cloudinit import seeds as seeds_mod

    cluster = with_release(model.load(config), release)
    seeds_mod.write_seeds(cluster, seeds)
    written = pxe_mod.write_tree(cluster, output, seeds, tree)
    ui.ok(f"PXE tree {tree}/ for {written['url']}/boot.ipxe")
    if json_out:
        ui.emit_json(written)
    if serve:
        from imgbuild import pxeserve

        with pxeserve.serving(cluster, tree, interface) as url:
            dhcp = f", DHCP and TFTP on {interface} to the cluster's MACs only" if interface else ""
            ui.err.print(
                f"serving {tree}/ at {url}/ to anyone on the segment, seeds/<node>/ only to that node's "
                f"address{dhcp}; Ctrl-C stops"
            )
            signal.pause()


@app.command("openstack-args")
@user_errors
def openstack_args(
    role: Annotated[str, typer.Option("--role", "-r", help="loadbalancer or webserver")],
    config: ConfigOpt = None,
    output: OutputOpt = DEFAULT_OUTPUT,
    release: ReleaseOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the `openstack image create` command for a role's whole-disk image."""
    from imgbuild.builder import build as builder
    from imgbuild.builder import openstack

    (r,) = parse_roles([role])
    chosen = with_release(model.load(config), release).build.release
    images = paths.release_dir(output, chosen)
    manifest = builder.read_manifest(images, r)
    if manifest is None or "openstack" not in manifest:
        raise UserError(
            f"no {chosen} whole-disk image for {r.value} in {output}; run `imgbuild build --role {r.value} --release "
            f"{chosen} --output {output}`"
        )
    glance = manifest["openstack"]
    file = str(paths.role_dir(images, r) / glance["file"])
    if json_out:
        ui.emit_json({"args": openstack.image_create_args(glance["name"], file, glance), **glance})
    else:
        print(openstack.image_create_line(glance["name"], file, glance))


@app.command()
@user_errors
def verify(
    config: ConfigOpt = None,
    output: OutputOpt = DEFAULT_OUTPUT,
    seeds: SeedsOpt = DEFAULT_SEEDS,
    reports: Annotated[Path, typer.Option(help="where each run's report directory is made")] = Path("reports"),
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg")] = "auto",
    memory: Annotated[int, typer.Option(help="MiB of memory per node")] = 384,
    cpus: Annotated[int, typer.Option(help="vCPUs per node")] = 1,
    ready_timeout: Annotated[int, typer.Option(help="seconds a node may take to be ready")] = 600,
    keyword: Annotated[
        str | None, typer.Option("-k", help="only checks matching this pytest keyword expression")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="leave the cluster running afterwards")] = False,
    faults: Annotated[
        bool,
        typer.Option(
            "--faults", help="also run the full fault matrix (partition, second failover, hung server, sync loss)"
        ),
    ] = False,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds", min=1, max=20, help="with --faults: run the matrix this many times on the one cluster"
        ),
    ] = 1,
    release: ReleaseOpt = None,
    down: Annotated[bool, typer.Option("--down", help="remove a cluster left by --keep, and nothing else")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Boot the four nodes in QEMU on a private network and prove the cluster works, failover included."""
    from imgbuild.verify import verify as verify_mod

    if rounds > 1 and not faults:
        raise UsageError("--rounds repeats the fault matrix; add --faults")
    cluster = with_release(model.load(config), release)
    if down:
        removed = verify_mod.down(cluster)
        ui.err.print(f"removed: {removed}" if removed else "no kept cluster to remove")
        if json_out:
            ui.emit_json({"removed": removed})
        return
    report = verify_mod.verify(
        cluster,
        images=output,
        seeds=seeds,
        reports=reports,
        accel=accel,
        memory_mb=memory,
        cpus=cpus,
        ready_timeout=ready_timeout,
        keyword=keyword,
        keep=keep,
        faults=faults,
        rounds=rounds,
    )
    if json_out:
        ui.emit_json(report)
    if report["exit_code"] != 0:
        raise typer.Exit(1)


def with_release(cluster: model.Cluster, release: Release | None) -> model.Cluster:
    """The cluster with --release in place of its file's build.release."""
    if release is None:
        return cluster
    return cluster.for_release(release.value)


def parse_roles(names: list[str] | None) -> list[model.Role]:
    if not names:
        return list(model.Role)
    roles = []
    for name in names:
        try:
            roles.append(model.Role(name))
        except ValueError:
            raise UsageError(f"unknown role {name!r}; choose loadbalancer or webserver") from None
    return roles


def main() -> None:
    # A TERM (CI timeout, kill) or HUP (closed terminal) unwinds like Ctrl-C, so no VM, namespace,
    # mount or orphaned diskimage-builder is left behind.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        # A bad option or argument (click's usage errors): one line, as for every other user error,
        # instead of a usage block and a framed message.
        message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if not (callable(message) and isinstance(exit_code, int)):
            raise
        command = getattr(getattr(exc, "ctx", None), "command_path", "imgbuild")
        ui.error(f"{str(message()).rstrip('.')}; see `{command} --help`")
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)
