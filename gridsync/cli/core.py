"""Core commands: init, serve, units, people, device, schemas."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import get_args

import click
import sqlite_utils

from gridsync import auth, lifecycle, logs, org
from gridsync import db as db_module
from gridsync.audit import Actor, record
from gridsync.backup import DatabaseInUse, ServerLock
from gridsync.cli.base import (
    check_db,
    cli,
    db_option,
    echo_json,
    int_range_of,
    json_option,
    open_store,
    run,
    settings_file_option,
    when,
    zone_footer,
)
from gridsync.config import ConfigError, Settings, load_settings
from gridsync.models import ROLES, Device, OrgUnit, UnitKind


@cli.command()
@db_option
@click.option(
    "--new-epoch",
    is_flag=True,
    help="Give the database a new epoch id (after restoring a backup): every phone's "
    "cursor is then refused and the phones re-sync, keeping unsent changes.",
)
def init(db_path: str, new_epoch: bool) -> None:
    """Create the database (or bring it up to date) and apply all migrations."""
    with open_store(db_path, create=True) as store:
        if new_epoch:
            store.write(db_module.new_epoch)
            store.write(record, Actor.cli(), "db.new_epoch")
        click.echo(f"database {db_path} is ready (epoch {store.read(db_module.epoch)})")


@cli.command()
@db_option
@click.option(
    "--host",
    default=None,
    help="Address to listen on [default: $GRIDSYNC_HOST, else the settings file's host, "
    "else 127.0.0.1].",
)
@click.option(
    "--port",
    default=None,
    type=int_range_of(Settings, "port"),
    help="0 picks a free port [default: $GRIDSYNC_PORT, else the settings file's port, else 8000].",
)
@settings_file_option("TOML settings file (see README).")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="Logs on stderr: text lines, or one JSON object per line (access lines included).",
)
def serve(
    db_path: str, host: str | None, port: int | None, config_path: str | None, log_format: str
) -> None:
    """Serve the HTTP API (and run periodic work) on the embedded SQLite file. Options given
    beat the environment (GRIDSYNC_*), which beats the settings file."""
    import uvicorn

    from gridsync.app import create_app
    from gridsync.notify.routing import check_config

    check_db(db_path)  # refuse a wrong --db before anything is made beside it
    try:  # never while a restore replaces the file (gridsync/backup.py)
        lock = ServerLock(db_path).hold_shared()
    except DatabaseInUse as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        open_store(db_path).close()  # migrate before accepting requests
    finally:
        lock.release()
    try:
        settings = load_settings(config_path, db=db_path, host=host, port=port)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    run(lambda: check_config(settings.notify.apprise_config))  # a bad channel URL: say it now
    host, port = settings.host, settings.port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, ValueError, TypeError) as exc:  # a NUL in --host is a TypeError
        sock.close()
        raise click.ClickException(f"cannot listen on {host!r}:{port}: {exc}") from exc
    bound_port = sock.getsockname()[1]
    click.echo(
        f"gridsync serving http://{host}:{bound_port} (db {settings.db}); "
        f"API docs at http://{host}:{bound_port}/schema",
        err=False,
    )
    sys.stdout.flush()
    logs.configure(log_format)
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop" if sys.platform != "win32" else "auto",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])


# -- org and people ---------------------------------------------------------------------------


@cli.group()
def units() -> None:
    """Org units: district, street, community, grid, branch, department."""


@units.command("add")
@db_option
@click.argument("unit_id")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(get_args(UnitKind)),
)
@click.option("--name", required=True)
@click.option("--parent", "parent_id", help="Parent unit id (required except for a district).")
@click.option("--grid", "grid_id", help="For a branch: the grid it maps to.")
def units_add(
    db_path: str,
    unit_id: str,
    kind: UnitKind,
    name: str,
    parent_id: str | None,
    grid_id: str | None,
) -> None:
    """Add or rename an org unit."""
    with open_store(db_path) as store:
        unit = OrgUnit(
            id=unit_id,
            kind=kind,
            name=name,
            parent_id=parent_id,
            grid_id=grid_id,
        )
        run(lambda: store.write(org.add_units, [unit]))
    click.echo(f"{kind} {unit_id} saved")


@cli.group(invoke_without_command=True)
@db_option
@json_option
@click.option("--role", type=click.Choice(ROLES), help="Only people with this role.")
@click.option("--unit", "unit_id", help="Only people whose scope or branch is this unit.")
@click.pass_context
def people(
    ctx: click.Context, db_path: str, as_json: bool, role: str | None, unit_id: str | None
) -> None:
    """List people (with --json: an array of {id, name, roles, scope, active,
    inactive_reason})."""
    if ctx.invoked_subcommand is not None:
        return
    with open_store(db_path) as store:
        admin = org.Scope("cli", True, frozenset(), frozenset(), 0)
        items, _ = run(
            lambda: store.read(org.list_people, admin, role=role, unit_id=unit_id, limit=1_000_000)
        )
    if as_json:
        echo_json(
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "roles": p.roles,
                    "scope": p.scope,
                    "active": p.active,
                    "inactive_reason": p.inactive_reason,
                }
                for p in items
            ]
        )
        return
    for p in items:
        click.echo(f"{p.id}\t{p.name}\t{','.join(p.roles)}\t{','.join(p.scope)}")
    click.echo(f"{len(items)} people", err=True)


@people.command("add")
@db_option
@click.argument("person_id")
@click.option("--name", required=True)
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="Repeat for several roles.",
)
@click.option("--scope", "scope", multiple=True, help="Org unit id; repeat for several.")
@click.option("--branch", "branch_id", help="Party branch of a member.")
@click.option("--phone", default="")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    help="Apprise URL for this person's notifications; repeat for several.",
)
def people_add(
    db_path: str,
    person_id: str,
    name: str,
    roles: tuple[str, ...],
    scope: tuple[str, ...],
    branch_id: str | None,
    phone: str,
    channels: tuple[str, ...],
) -> None:
    """Add a person or replace their roles and scope. Unlike the API, this may take the admin
    role from the last admin holding an active device (with a warning)."""
    person = org.NewPerson(
        id=person_id,
        name=name,
        roles=list(roles),
        scope=list(scope),
        branch_id=branch_id,
        phone=phone,
        channels=list(channels),
    )

    def save(db: sqlite_utils.Database) -> bool:
        had = org.has_admin_device(db)
        org.add_people(db, [person], Actor.cli(), allow_last_admin=True)
        return had and not org.has_admin_device(db)

    with open_store(db_path) as store:
        locked_out = run(lambda: store.write(save))
    if locked_out:
        click.echo(
            "警告：已没有持有有效设备的管理员，无人能通过 API 管理；"
            "请用 gridsync device enroll --person 管理员ID 登记新设备。",
            err=True,
        )
    click.echo(f"person {person_id} saved")


_REASON_CHOICES = [*lifecycle.REASON_LABELS, *lifecycle.REASON_LABELS.values()]


@people.command("deactivate")
@db_option
@json_option
@click.argument("person_id")
@click.option(
    "--reason",
    required=True,
    type=click.Choice(_REASON_CHOICES),
    help="Why they left: moved_away (迁出), deceased (去世), transferred (转出), other (其他).",
)
@click.option(
    "--drain",
    is_flag=True,
    help="Let each of their phones push its unsent work once before it is wiped "
    "(without it their phones are shut out at once).",
)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="TOML settings file (the member cap recorded in the assignment log).",
)
def people_deactivate(
    db_path: str, as_json: bool, person_id: str, reason: str, drain: bool, config_path: str | None
) -> None:
    """Mark a person as gone (moved away, died, transferred out): every household they were
    responsible for becomes unassigned at once (logged in the assignment log, and suggested by
    'gridsync rebalance'), their devices are revoked (--drain: after one last push), and they
    stop counting as a member and receiving notifications. Their visits and history stay.
    Unlike the API, this may deactivate the last admin holding an active device."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    with open_store(db_path) as store:
        result = run(
            lambda: store.write(
                lifecycle.deactivate,
                settings,
                person_id,
                reason,
                Actor.cli(),
                drain=drain,
                allow_last_admin=True,
            )
        )
    if as_json:
        echo_json(result)
        return
    if result.status == "unchanged":
        click.echo(f"person {person_id} was already inactive ({result.reason})")
        return
    devices = "draining" if drain else "revoked"
    click.echo(
        f"person {person_id} deactivated ({lifecycle.REASON_LABELS[result.reason]}): "
        f"{len(result.unassigned)} households unassigned, {len(result.devices)} devices {devices}"
    )


@people.command("reactivate")
@db_option
@click.argument("person_id")
def people_reactivate(db_path: str, person_id: str) -> None:
    """Mark a person active again (one deactivated by mistake). Their households are not given
    back (assign them again) and their devices stay revoked (enrol a new one)."""
    with open_store(db_path) as store:
        run(lambda: store.write(lifecycle.reactivate, person_id, Actor.cli()))
    click.echo(f"person {person_id} active")


# -- devices ------------------------------------------------------------------------------------


@cli.group()
def device() -> None:
    """Enrol, revoke and list devices (phones, and the admins' and secretaries' clients)."""


@device.command("enroll")
@db_option
@json_option
@click.option("--person", "person_id", required=True, help="The person the device belongs to.")
@click.option("--label", default="", help="A note such as the phone model.")
@click.option("--device-id", default=None, help="Choose the device id (default: generated).")
def device_enroll(
    db_path: str, as_json: bool, person_id: str, label: str, device_id: str | None
) -> None:
    """Enrol a device and print its token. The token is shown this once only."""
    with open_store(db_path) as store:
        enrolled = run(
            lambda: store.write(
                auth.enroll, person_id, Actor.cli(), label=label, device_id=device_id
            )
        )
    if as_json:
        echo_json({"device_id": enrolled.device_id, "token": enrolled.token})
        return
    click.echo(f"device {enrolled.device_id} enrolled for {person_id}")
    click.echo(f"token (shown once, store it now): {enrolled.token}")


@device.command("revoke")
@db_option
@click.argument("device_id")
@click.option("--reason", default="")
@click.option(
    "--drain",
    is_flag=True,
    help="A phone being replaced: let it push its unsent work once, then wipe it "
    "(it can pull nothing meanwhile).",
)
def device_revoke(db_path: str, device_id: str, reason: str, drain: bool) -> None:
    """Revoke a device at once: its next request is refused and told to wipe. With --drain
    its next push is accepted (once) and then it is wiped. Unlike the API, this may revoke
    the last active admin device (with a warning)."""

    def revoke(db: sqlite_utils.Database) -> tuple[Device, bool]:
        last = auth.is_last_admin_device(db, device_id)
        device = auth.revoke(db, device_id, Actor.cli(), reason, drain=drain, allow_last_admin=True)
        return device, last

    with open_store(db_path) as store:
        device, last_admin = run(lambda: store.write(revoke))
    if last_admin:
        click.echo(
            "警告：这是最后一台有效的管理员设备，撤销后无人能通过 API 管理；"
            "请用 gridsync device enroll --person 管理员ID 登记新设备。",
            err=True,
        )
    if device.revoked_at is None and device.draining_since is not None:
        click.echo(f"device {device_id} draining: its next push is its last, then it is wiped")
    else:
        click.echo(f"device {device_id} revoked")


@device.command("list")
@db_option
@json_option
@click.option("--person", "person_id", default=None)
def device_list(db_path: str, as_json: bool, person_id: str | None) -> None:
    """List devices."""
    with open_store(db_path) as store:
        items, _ = store.read(auth.list_devices, person_id=person_id, limit=1_000_000)
    if as_json:
        echo_json(items)
        return
    for d in items:
        state = (
            f"revoked {when(d.revoked_at)}"
            if d.revoked_at
            else f"draining since {when(d.draining_since)}"
            if d.draining_since
            else "active"
        )
        click.echo(f"{d.id}\t{d.person_id}\t{d.label}\t{state}\tlast seen {when(d.last_seen_at)}")
    click.echo(f"{len(items)} devices; {zone_footer()}", err=True)


# -- schemas ------------------------------------------------------------------------------------


@cli.command()
@db_option
@click.option("--check", is_flag=True, help="Exit 1 if schemas/ differs from the Structs.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the schema files live (default: the repository's schemas/).",
)
def schemas(db_path: str, check: bool, directory: str | None) -> None:
    """Generate schemas/*.json (JSON Schema) from the wire Structs. (``--db`` is accepted like
    on every command; the schemas come from the code, not from a database.)"""
    from gridsync import schemas as schema_files

    target = Path(directory) if directory else schema_files.default_dir()
    if check:
        problems = schema_files.stale(target)
        if problems:
            raise click.ClickException(
                f"schemas are stale in {target}: {', '.join(problems)}; run 'gridsync schemas'"
            )
        click.echo(f"schemas in {target} are current")
        return
    written = schema_files.write(target)
    click.echo(f"wrote {len(written)} schema files to {target}")
