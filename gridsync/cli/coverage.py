"""CLI commands of the coverage area: ``coverage`` (roll-up, ``sample``, ``violations``,
``rebalance``, ``policy``, ``check``), ``assign`` and ``export coverage``.

The CLI is the operator at the server: it sees the whole district (or ``--scope``), acts as
an admin in the audit log (device ``cli``), and masks phone numbers unless ``--show-phones``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from gridsync import coverage as cov
from gridsync import exports
from gridsync.audit import Actor, record
from gridsync.cli.base import (
    TIME,
    cli,
    db_option,
    echo_json,
    export_file,
    int_range_of,
    json_option,
    open_store,
    run,
    settings_file_option,
    when,
    zone_footer,
)
from gridsync.clock import SYSTEM_CLOCK
from gridsync.config import ConfigError, Settings, load_settings
from gridsync.db import Store
from gridsync.models import (
    CHECK_OUTCOMES,
    COVERAGE_LEVELS,
    VIOLATION_KINDS,
    Check,
    CheckRequest,
    CheckResult,
    PolicyOverride,
    SuggestionPick,
)
from gridsync.org import Scope
from gridsync.privacy import operator

OPERATOR = Scope("cli", True, frozenset(), frozenset(), 0)  # reads phone numbers masked
OPERATOR_ROLES = frozenset({"admin"})


def _operator(show_phones: bool) -> Scope:
    """The operator's scope, reading phone numbers in full only with ``--show-phones``."""
    return dataclasses.replace(OPERATOR, phones=operator(show_phones))


scope_option = click.option(
    "--scope", "scope_id", default=None, help="Org unit id (default: the whole district)."
)
now_option = click.option(
    "--now",
    "now",
    type=TIME,
    default=None,
    help="Count the cycle back from this time (default: now).",
)
lang_option = click.option(
    "--lang",
    type=click.Choice(["zh", "en"]),
    default="zh",
    show_default=True,
    help="Language of labels and headers.",
)
config_option = settings_file_option("TOML settings file (district coverage defaults, time zone).")
phones_option = click.option(
    "--show-phones", is_flag=True, help="Show full phone numbers (recorded in the audit log)."
)


def _settings(config_path: str | None) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _now_ms(now: int | None) -> int:
    """``--now`` (epoch ms, already checked by its type) or the system clock."""
    return SYSTEM_CLOCK.now_ms() if now is None else now


@contextmanager
def _reports(
    db_path: str, config_path: str | None, now: int | None, scope: Scope
) -> Iterator[tuple[Store, Callable[..., Any]]]:
    """The store, and ``report(fn, scope_id, **kwargs)``: ``fn(db, settings, scope, scope_id,
    now_ms=...)`` read as the operator, with the settings of ``--config`` and the time of
    ``--now`` (both read before the database is opened, so a bad file opens nothing)."""
    settings = _settings(config_path)
    now_ms = _now_ms(now)
    with open_store(db_path) as store:

        def report(fn: Callable[..., Any], scope_id: str | None, **kwargs: Any) -> Any:
            return run(lambda: store.read(fn, settings, scope, scope_id, now_ms=now_ms, **kwargs))

        yield store, report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned for a terminal, CJK characters counted as two cells."""
    widths = [
        max([exports.display_width(h)] + [exports.display_width(r[i]) for r in rows])
        for i, h in enumerate(header)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c + " " * (w - exports.display_width(c)) for c, w in zip(cells, widths)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


REPORT_HEADER = {
    "zh": [
        "层级",
        "编号",
        "名称",
        "户数",
        "已落实",
        "未落实",
        "落实率",
        "已走访",
        "责任党员走访",
        "责任党员走访率",
        "核实率",
        "逾期",
        "重点户逾期",
        "党员",
        "不足",
        "超限",
        "服务类别",
    ],
    "en": [
        "level",
        "id",
        "name",
        "households",
        "assigned",
        "unassigned",
        "assigned%",
        "contacted",
        "by resp.",
        "compliance%",
        "verified%",
        "overdue",
        "prio.overdue",
        "members",
        "under",
        "over",
        "kinds",
    ],
}


@cli.group(invoke_without_command=True)
@db_option
@json_option
@scope_option
@click.option(
    "--level",
    "levels",
    multiple=True,
    type=click.Choice(COVERAGE_LEVELS),
    help="Only this level (repeatable).",
)
@now_option
@lang_option
@config_option
@click.pass_context
def coverage(
    ctx: click.Context,
    db_path: str,
    as_json: bool,
    scope_id: str | None,
    levels: tuple[str, ...],
    now: int | None,
    lang: str,
    config_path: str | None,
) -> None:
    """1-5-N coverage roll-up, member to district (a table; --json for scripts)."""
    if ctx.invoked_subcommand is not None:
        return
    with _reports(db_path, config_path, now, OPERATOR) as (store, read):
        report = read(cov.rollup, scope_id, levels=list(levels) or None)
        store.write(record, Actor.cli(), "read.coverage", scope_id, {"rows": len(report.rows)})
    if as_json:
        echo_json(report)
        return
    rows = [
        [
            cov.label(cov.LEVEL_LABELS, lang, r.level),
            r.unit_id,
            r.name,
            str(r.households),
            str(r.assigned),
            str(r.unassigned),
            _pct(r.assigned_rate),
            str(r.contacted),
            str(r.contacted_by_responsible),
            _pct(r.compliance_rate),
            _pct(r.verified_rate),
            str(r.overdue),
            str(r.priority_overdue),
            str(r.members),
            str(r.members_under_min),
            str(r.members_over_cap),
            f"{len(r.kinds_covered)}/{r.kinds_total}",
        ]
        for r in report.rows
    ]
    click.echo(_table(REPORT_HEADER[lang], rows))
    at = "时间" if lang == "zh" else "as of"
    click.echo(f"{at} {when(report.at)} ({zone_footer()})", err=True)


@coverage.command("sample")
@db_option
@json_option
@click.option("--scope", "scope_id", required=True, help="Org unit id to draw from.")
@click.option("--n", "n", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--seed", required=True, help="The same seed draws the same households.")
@click.option(
    "--visits",
    type=click.IntRange(0, 50),
    default=3,
    show_default=True,
    help="Last visits shown per household.",
)
@phones_option
@lang_option
def coverage_sample(
    db_path: str,
    as_json: bool,
    scope_id: str,
    n: int,
    seed: str,
    visits: int,
    show_phones: bool,
    lang: str,
) -> None:
    """Assessors' sample: N random households of a scope with their last visits."""
    with open_store(db_path) as store:
        result = run(
            lambda: store.read(cov.sample, _operator(show_phones), scope_id, n, seed, visits=visits)
        )
        store.write(
            record,
            Actor.cli(),
            "read.coverage.sample",
            scope_id,
            {
                "seed": seed,
                "n": n,
                "phones": show_phones,
                "households": [i.household.id for i in result.items],
            },
        )
    if as_json:
        echo_json(result)
        return
    for item in result.items:
        h = item.household
        click.echo(
            f"{h.id}\t{h.grid_id}\t{h.building}{h.unit}{h.room}\t{h.head_name}\t"
            f"{h.phone}\t{h.responsible_member_id or '-'}"
        )
        for v in item.last_visits:
            click.echo(
                f"    {when(v.at)}\t{v.member_id}\t{v.channel}\t{','.join(v.kinds)}\t{v.note}"
            )
        if not item.last_visits:
            click.echo("    （无走访记录）" if lang == "zh" else "    (no visits)")
    text = (
        "抽取 {n} 户（共 {total} 户），种子 {seed}"
        if lang == "zh"
        else "{n} of {total} households, seed {seed}"
    )
    click.echo(
        text.format(n=len(result.items), total=result.population, seed=result.seed), err=True
    )


@coverage.command("violations")
@db_option
@json_option
@scope_option
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(VIOLATION_KINDS),
    help="Only this kind (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 10_000_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0, 100_000_000), default=0)
@now_option
@lang_option
@phones_option
@config_option
def coverage_violations(
    db_path: str,
    as_json: bool,
    scope_id: str | None,
    kinds: tuple[str, ...],
    limit: int,
    offset: int,
    now: int | None,
    lang: str,
    show_phones: bool,
    config_path: str | None,
) -> None:
    """Every household or member at fault, and why."""
    with _reports(db_path, config_path, now, _operator(show_phones)) as (store, read):
        page = read(cov.violations, scope_id, kinds=list(kinds) or None, limit=limit, offset=offset)
        store.write(
            record,
            Actor.cli(),
            "read.coverage.violations",
            scope_id,
            {"kinds": list(kinds), "count": len(page.items), "phones": show_phones},
        )
    if as_json:
        echo_json(page)
        return
    header = (
        ["问题", "编号", "姓名", "电话", "网格", "地址", "联系党员", "距上次走访(天)", "联系户数"]
        if lang == "zh"
        else [
            "kind",
            "id",
            "name",
            "phone",
            "grid",
            "address",
            "member",
            "days since visit",
            "households",
        ]
    )
    rows = [
        [
            cov.label(cov.VIOLATION_LABELS, lang, v.kind),
            v.id,
            v.name,
            v.phone,
            v.grid_id or "",
            v.address,
            v.member_id or "",
            "-" if v.days_since_visit is None else str(v.days_since_visit),
            "" if v.households is None else f"{v.households} ({v.limit})",
        ]
        for v in page.items
    ]
    click.echo(_table(header, rows))
    click.echo(
        (
            f"{len(page.items)}/{page.total}："
            if lang == "zh"
            else f"{len(page.items)} of {page.total} "
        )
        + ", ".join(
            f"{cov.label(cov.VIOLATION_LABELS, lang, k)} {n}" for k, n in page.counts.items()
        ),
        err=True,
    )


REBALANCE_TEXTS = {
    "zh": {
        "neighbour": "同楼栋",
        "least_loaded": "负荷最低",
        "load": "负荷",
        "unplaced_item": "（无有余量的党员）",
        "summary": "{n} 条建议，{u} 户无法安排",
        "applied": "；已分配 {a}，被拒 {r}",
        "refused": "被拒",
        "hint": "；确认后加 --apply 再运行一次即分配",
    },
    "en": {
        "neighbour": "neighbour",
        "least_loaded": "least loaded",
        "load": "load",
        "unplaced_item": "(no member with spare capacity)",
        "summary": "{n} suggestions, {u} unplaced",
        "applied": "; applied {a}, refused {r}",
        "refused": "refused",
        "hint": "; run again with --apply to assign them",
    },
}


@coverage.command("rebalance")
@db_option
@json_option
@scope_option
@click.option(
    "--apply", "apply_", is_flag=True, help="Apply every suggestion (the secretary's confirmation)."
)
@lang_option
@config_option
def coverage_rebalance(
    db_path: str,
    as_json: bool,
    scope_id: str | None,
    apply_: bool,
    lang: str,
    config_path: str | None,
) -> None:
    """Suggest members for unassigned households; --apply assigns them."""
    settings = _settings(config_path)
    with open_store(db_path) as store:
        plan = run(
            lambda: store.read(
                cov.rebalance, settings, OPERATOR, scope_id, now_ms=SYSTEM_CLOCK.now_ms()
            )
        )
        result = None
        if apply_ and plan.suggestions:
            picks = [
                SuggestionPick(household_id=s.household_id, member_id=s.member_id)
                for s in plan.suggestions
            ]
            result = run(
                lambda: store.write(
                    cov.apply_suggestions, settings, Actor.cli(), OPERATOR_ROLES, OPERATOR, picks
                )
            )
    if as_json:
        echo_json({"plan": plan, "applied": result})
        return
    t = REBALANCE_TEXTS[lang]
    for s in plan.suggestions:
        click.echo(
            f"{s.household_id}\t-> {s.member_id} {s.member_name}\t{s.grid_id}\t"
            f"{s.building}\t{t[s.reason]}\t{t['load']} {s.member_load}/{s.cap}"
        )
    for hid in plan.unplaced:
        click.echo(f"{hid}\t-> {t['unplaced_item']}")
    summary = t["summary"].format(n=len(plan.suggestions), u=len(plan.unplaced))
    if result is not None:
        summary += t["applied"].format(a=result.applied, r=result.refused)
        for o in result.items:
            if o.status == "refused":
                click.echo(
                    f"{t['refused']} {o.household_id} -> {o.member_id}: {o.code}: {o.message}",
                    err=True,
                )
    elif plan.suggestions:
        summary += t["hint"]
    click.echo(summary, err=True)


# -- recorded checks (抽检) -----------------------------------------------------------------------

OUTCOME_LABELS = {
    "zh": {"confirmed": "属实", "denied": "不属实", "unreachable": "未联系上", None: "待核实"},
    "en": {"confirmed": "confirmed", "denied": "denied", "unreachable": "unreachable", None: "-"},
}


def _echo_check(check: Check, as_json: bool, lang: str) -> None:
    if as_json:
        echo_json(check)
        return
    labels = OUTCOME_LABELS[lang]
    for h in check.households:
        v = h.last_visit
        visit = (
            f"{when(v.at)}\t{v.member_id}\t{v.channel}"
            if v
            else ("（无走访记录）" if lang == "zh" else "(no visits)")
        )
        click.echo(f"{h.household_id}\t{visit}\t{labels[h.outcome]}\t{h.note}")
    text = (
        "抽检 {id}：{scope}，{n} 户，种子 {seed}，{by} 于 {at} 抽取；核实率 {rate}"
        if lang == "zh"
        else "check {id}: {scope}, {n} households, seed {seed}, drawn by {by} at {at}; verified {rate}"
    )
    click.echo(
        text.format(
            id=check.id,
            scope=check.scope,
            n=len(check.households),
            seed=check.seed,
            by=check.drawn_by or "cli",
            at=when(check.drawn_at),
            rate=_pct(check.verified_rate),
        ),
        err=True,
    )


@coverage.group("check")
def coverage_check() -> None:
    """Recorded checks (抽检): draw with a server seed, record outcomes, show the verified rate.

    A check is drawn from above the unit it assesses (the CLI is the operator: an admin), is
    stored with its seed (`coverage sample --seed SEED` shows the same households), and its
    verified rate (confirmed of reached) appears beside the contact rate in `coverage`."""


@coverage_check.command("draw")
@db_option
@json_option
@click.option("--scope", "scope_id", required=True, help="Org unit id to check.")
@click.option(
    "--n",
    "n",
    type=int_range_of(CheckRequest, "n"),
    default=20,
    show_default=True,
    help="Households to draw.",
)
@lang_option
def check_draw(db_path: str, as_json: bool, scope_id: str, n: int, lang: str) -> None:
    """Draw and record a check of N households of a unit (audited)."""
    with open_store(db_path) as store:
        check = run(
            lambda: store.write(cov.draw_check, Actor.cli(), OPERATOR_ROLES, OPERATOR, scope_id, n)
        )
    _echo_check(check, as_json, lang)


@coverage_check.command("show")
@db_option
@json_option
@click.argument("check_id")
@lang_option
def check_show(db_path: str, as_json: bool, check_id: str, lang: str) -> None:
    """A check's households, outcomes and verified rate."""
    with open_store(db_path) as store:
        check = run(lambda: store.read(cov.get_check, None, OPERATOR_ROLES, OPERATOR, check_id))
        store.write(record, Actor.cli(), "read.coverage.check", check_id)
    _echo_check(check, as_json, lang)


@coverage_check.command("record")
@db_option
@json_option
@click.argument("check_id")
@click.argument("household_id")
@click.argument("outcome", type=click.Choice(CHECK_OUTCOMES))
@click.option("--note", default="", help="What the household said (at most 500 characters).")
@lang_option
def check_record(
    db_path: str,
    as_json: bool,
    check_id: str,
    household_id: str,
    outcome: str,
    note: str,
    lang: str,
) -> None:
    """Record the outcome for one household of a check: confirmed (the household confirms the
    contact), denied (it says there was none) or unreachable. Again replaces it (audited)."""
    import msgspec

    try:
        result = msgspec.convert({"outcome": outcome, "note": note}, CheckResult)
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"validation_error: {exc}") from exc
    with open_store(db_path) as store:
        check = run(
            lambda: store.write(
                cov.record_result,
                Actor.cli(),
                OPERATOR_ROLES,
                OPERATOR,
                check_id,
                household_id,
                result,
            )
        )
    _echo_check(check, as_json, lang)


# -- policy -------------------------------------------------------------------------------------


@coverage.group("policy")
def coverage_policy() -> None:
    """A community's coverage policy: show, override, clear."""


@coverage_policy.command("show")
@db_option
@json_option
@click.argument("community_id")
@config_option
def policy_show(db_path: str, as_json: bool, community_id: str, config_path: str | None) -> None:
    """The policy in force for a community."""
    settings = _settings(config_path)
    with open_store(db_path) as store:
        result = run(lambda: store.read(cov.community_policy, settings, community_id))
    if as_json:
        echo_json(result)
        return
    p = result.policy
    for key in (
        "min_households_per_member",
        "max_households_per_member",
        "cycle_days",
        "priority_cycle_days",
        "priority_tags",
        "service_kinds",
        "group_contact_counts_for_priority",
    ):
        value = getattr(p, key)
        mark = " (override)" if key in result.overridden else ""
        click.echo(f"{key}: {','.join(value) if isinstance(value, list) else value}{mark}")


@coverage_policy.command("set")
@db_option
@click.argument("community_id")
@click.option(
    "--min",
    "min_",
    type=int_range_of(PolicyOverride, "min_households_per_member"),
    help="min_households_per_member",
)
@click.option(
    "--max",
    "max_",
    type=int_range_of(PolicyOverride, "max_households_per_member"),
    help="max_households_per_member",
)
@click.option("--cycle-days", type=int_range_of(PolicyOverride, "cycle_days"))
@click.option("--priority-cycle-days", type=int_range_of(PolicyOverride, "priority_cycle_days"))
@click.option(
    "--priority-tag",
    "priority_tags",
    multiple=True,
    help="Repeat for several. A tag the district defines (settings household_tags, "
    "[coverage] priority_tags, or one some household carries); else unknown_tag.",
)
@click.option("--kind", "kinds", multiple=True, help="Service kind; repeat for several.")
@click.option(
    "--group-counts-for-priority/--no-group-counts-for-priority",
    "group_counts",
    default=None,
    help="Whether a group visit (楼栋会) satisfies a priority household's cycle "
    "[district default: no, a priority household needs a visit of its own].",
)
@config_option
def policy_set(
    db_path: str,
    community_id: str,
    min_: int | None,
    max_: int | None,
    cycle_days: int | None,
    priority_cycle_days: int | None,
    priority_tags: tuple[str, ...],
    kinds: tuple[str, ...],
    group_counts: bool | None,
    config_path: str | None,
) -> None:
    """Override a community's policy (the fields given; the rest follow the default)."""
    import msgspec

    settings = _settings(config_path)
    fields = {
        "min_households_per_member": min_,
        "max_households_per_member": max_,
        "cycle_days": cycle_days,
        "priority_cycle_days": priority_cycle_days,
        "priority_tags": list(priority_tags) or None,
        "service_kinds": list(kinds) or None,
        "group_contact_counts_for_priority": group_counts,
    }
    try:
        override = msgspec.convert(
            {k: v for k, v in fields.items() if v is not None}, PolicyOverride
        )
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"validation_error: {exc}") from exc
    with open_store(db_path) as store:
        result = run(
            lambda: store.write(cov.set_policy, settings, Actor.cli(), community_id, override)
        )
    click.echo(f"policy of {community_id} saved (overrides: {', '.join(result.overridden)})")


@coverage_policy.command("clear")
@db_option
@click.argument("community_id")
@config_option
def policy_clear(db_path: str, community_id: str, config_path: str | None) -> None:
    """Drop a community's override: the district default applies again."""
    settings = _settings(config_path)
    with open_store(db_path) as store:
        run(lambda: store.write(cov.clear_policy, settings, Actor.cli(), community_id))
    click.echo(f"policy of {community_id} follows the district default")


# -- assign -------------------------------------------------------------------------------------


@cli.command()
@db_option
@json_option
@click.argument("household_id")
@click.option("--member", "member_id", required=True, help="The responsible party member.")
@click.option(
    "--move", is_flag=True, help="Move a household that already has a responsible member."
)
@click.option("--override-cap", is_flag=True, help="Exceed the member's cap on purpose (logged).")
@click.option("--reason", default="", help="Why (kept in the assignment log).")
@config_option
def assign(
    db_path: str,
    as_json: bool,
    household_id: str,
    member_id: str,
    move: bool,
    override_cap: bool,
    reason: str,
    config_path: str | None,
) -> None:
    """Assign (or with --move, move) a household's responsible member."""
    settings = _settings(config_path)
    with open_store(db_path) as store:
        result = run(
            lambda: store.write(
                cov.assign,
                settings,
                Actor.cli(),
                OPERATOR_ROLES,
                OPERATOR,
                household_id,
                member_id,
                replace=move,
                override_cap=override_cap,
                reason=reason,
            )
        )
    if as_json:
        echo_json(result)
        return
    verb = {"assigned": "assigned to", "moved": "moved to", "unchanged": "already with"}
    note = " (over the cap: override logged)" if result.override_cap else ""
    click.echo(
        f"household {household_id} {verb[result.status]} {member_id}; "
        f"{member_id} now holds {result.load}/{result.cap}{note}"
    )


# -- export -------------------------------------------------------------------------------------


@cli.group()
def export() -> None:
    """Export reports (CSV, XLSX, JSON)."""


@export.command("coverage")
@db_option
@click.option("--format", "fmt", type=click.Choice(exports.FORMATS), required=True)
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write.",
)
@scope_option
@now_option
@lang_option
@phones_option
@config_option
def export_coverage(
    db_path: str,
    fmt: str,
    output: str,
    scope_id: str | None,
    now: int | None,
    lang: str,
    show_phones: bool,
    config_path: str | None,
) -> None:
    """Export the coverage roll-up (every level) and the violations list."""
    with _reports(db_path, config_path, now, _operator(show_phones)) as (store, read):
        data = read(exports.export_data, scope_id)
        export_file(
            output,
            data.total_rows,
            lang,
            lambda progress: exports.render(data, fmt, lang, progress),
        )
        store.write(exports.record_export, Actor.cli(), fmt, data)
    click.echo(f"wrote {output} ({len(data.rows)} rows, {len(data.violations)} violations)")
