"""Operations commands: ``gridsync backup``, ``gridsync restore``, ``gridsync replicate``.
Thin: the work is in gridsync/backup.py (README "Operations")."""

from __future__ import annotations

import click

from gridsync import backup as ops
from gridsync.cli.base import Bars, check_db, cli, db_option, echo_json, json_option


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB"


@cli.command("backup")
@db_option
@json_option
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The copy to write (refused if it exists, unless --force).",
)
@click.option("--force", is_flag=True, help="Replace an existing file of that name.")
def backup_cmd(db_path: str, as_json: bool, out: str, force: bool) -> None:
    """Copy the database consistently, also while the server serves and writes, and check the
    copy (PRAGMA integrity_check). On a terminal a progress bar shows the copy, then the check
    (a district's database takes tens of seconds)."""
    check_db(db_path)
    try:
        with Bars(enabled=not as_json) as bars:
            report = ops.backup(db_path, out, force=force, steps=bars)
    except (FileExistsError, ops.BackupError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(report)
        return
    click.echo(
        f"备份完成 {report.path}：{_mb(report.bytes)}，用时 {report.seconds:.2f} 秒"
        f"（复制 {report.copy_seconds:.2f} 秒，校验 {report.check_seconds:.2f} 秒），"
        f"完整性检查 {report.integrity}"
    )


@cli.command("restore")
@db_option
@json_option
@click.argument("source", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--from",
    "replica",
    default=None,
    help="Restore the latest state from a Litestream replica (a directory or s3://...) "
    "instead of a backup file.",
)
def restore_cmd(db_path: str, as_json: bool, source: str | None, replica: str | None) -> None:
    """Put a backup in place of the database, with the server stopped. The database gets a new
    epoch: phones re-sync (keeping their unsent edits). The replaced file is kept aside as
    DB.before-restore-TIME. A missing DB is created; a file that is not a gridsync database is
    refused (move it away first)."""
    check_db(db_path, create=True)
    if (source is None) == (replica is None):
        raise click.UsageError("give a backup FILE or --from REPLICA (one of them)")
    try:
        if replica is not None:
            report = ops.restore_from_replica(replica, db_path)
        else:
            assert source is not None
            with Bars(enabled=not as_json) as bars:
                report = ops.restore(source, db_path, steps=bars)
    except (ops.DatabaseInUse, ops.BackupError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(report)
        return
    click.echo(f"已恢复 {report.path}（来自 {report.source}），用时 {report.seconds:.2f} 秒")
    click.echo(f"新纪元 {report.epoch}：手机下次同步将重新下载（未上传的修改会保留）")
    if report.kept_aside:
        click.echo(f"原数据库已保留为 {report.kept_aside}")


@cli.command("replicate")
@db_option
@click.option(
    "--to",
    "to",
    required=True,
    help="Where to replicate: a directory, or a Litestream replica URL such as s3://bucket/path.",
)
@click.option(
    "--sync-interval",
    default="1s",
    show_default=True,
    help="How often Litestream ships new writes (the most that a lost disk can lose).",
)
@click.option(
    "--config-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the Litestream configuration (default: DB.litestream.yml).",
)
def replicate_cmd(db_path: str, to: str, sync_interval: str, config_out: str | None) -> None:
    """Replicate the database continuously with Litestream, in the foreground (run it beside
    'gridsync serve', e.g. as its own systemd unit). Serve with wal_autocheckpoint = 0 while
    replicating: Litestream takes the checkpoints."""
    check_db(db_path)
    try:
        config = ops.litestream_config(db_path, to, sync_interval=sync_interval)
        binary = ops.litestream_binary()
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    path = ops.write_litestream_config(config_out or f"{db_path}.litestream.yml", config)
    click.echo(f"replicating {db_path} to {to} every {sync_interval} (config {path})", err=True)
    ops.exec_foreground([binary, "replicate", "-config", str(path)])
