"""``gridsync report ...``: reports across areas that are not one area's own listing.

``report unreachable``: the people no alert reaches but the inbox (issue 17)."""

from __future__ import annotations

import click

from gridsync.cli.base import cli, db_option, echo_json, json_option, open_store
from gridsync.cli.whistle import _settings, config_option
from gridsync.notify.routing import router_for, unreachable


def _report_group() -> click.Group:
    """The one ``gridsync report`` group: another area's module may have made it already
    (the hotline's ``report hotline``); a second ``@cli.group("report")`` would replace it
    and silently drop that module's reports."""
    existing = cli.commands.get("report")
    if isinstance(existing, click.Group):
        return existing

    @cli.group("report")
    def report_group() -> None:
        """Reports for operators (each takes --json)."""

    return report_group


report_group = _report_group()


@report_group.command("unreachable")
@db_option
@json_option
@config_option
def report_unreachable(db_path: str, as_json: bool, config_path: str | None) -> None:
    """People who would get alerts but whom nothing reaches.

    \b
    Listed: active people with a role that receives whistle alerts or digests (grid workers,
    members, branch and community secretaries, street, department, admin) who have no channel
    of their own, none routed to them by the Apprise config file (--config's
    notify.apprise_config), and no active device (enrolled, not revoked). Their notices wait in
    their inbox: give them a channel or enrol a phone. With --json: an array of
    {"id", "name", "roles", "scope", "devices_revoked"}."""
    settings = _settings(config_path, db_path)
    router = router_for(settings.notify.apprise_config, settings.notify.locale)
    with open_store(db_path) as store:
        people = store.read(unreachable, router)
    if as_json:
        echo_json(people)
        return
    for p in people:
        revoked = f"\t{p.devices_revoked} 台设备已吊销" if p.devices_revoked else ""
        click.echo(f"{p.id}\t{p.name}\t{','.join(p.roles)}\t{','.join(p.scope)}{revoked}")
    click.echo(
        f"{len(people)} 人收不到提醒（无通知渠道、无在用设备） "
        f"({len(people)} people no channel or device reaches)",
        err=True,
    )
