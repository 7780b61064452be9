"""Coverage policy (SPEC section 4): the numbers 1-5-N is judged by, per community.

The district default is ``[coverage]`` in the settings (:class:`gridsync.config.CoveragePolicy`);
a community's override stores only the fields it sets (row ``coverage_policies``), and the
policy in force is the default with the override on top. Overrides are validated against the
default they override (min <= max, priority cycle <= cycle, kinds non-empty and unique).

Phones receive policies through the pull source ``policy`` (``gridsync/sync/policy.py``, which
reads :func:`changed_policies`); every change of a community's policy (set, clear, a new
district default) gives its row a new change ``seq`` so they do.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlite_utils
from msgspec import UNSET

from gridsync import audit
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms
from gridsync.config import CoveragePolicy, Settings
from gridsync.db import next_seq
from gridsync.errors import Invalid, NotFound
from gridsync.models import CommunityPolicy, Policy, PolicyOverride
from gridsync.org import Scope

_override_decoder = msgspec.json.Decoder(dict[str, Any])
_default_decoder = msgspec.json.Decoder(CoveragePolicy)


def default_policy(settings: Settings) -> Policy:
    return msgspec.convert(msgspec.structs.asdict(settings.coverage), Policy)


def _merge(settings: Settings, override: dict[str, Any] | None) -> Policy:
    """The district default of ``settings`` with a community's stored override on top."""
    data = msgspec.structs.asdict(settings.coverage)
    data.update(override or {})
    return msgspec.convert(data, Policy)


def _validate(policy: Policy) -> None:
    if policy.min_households_per_member > policy.max_households_per_member:
        raise Invalid(
            "min_households_per_member must not exceed max_households_per_member",
            field="min_households_per_member",
        )
    if policy.priority_cycle_days > policy.cycle_days:
        raise Invalid("priority_cycle_days must not exceed cycle_days", field="priority_cycle_days")
    for name in ("service_kinds", "priority_tags"):
        values = getattr(policy, name)
        if len(set(values)) != len(values):
            raise Invalid(f"{name} has duplicates", field=name)
    if not policy.service_kinds:
        raise Invalid("service_kinds must not be empty", field="service_kinds")


def _require_community(db: sqlite_utils.Database, community_id: str) -> None:
    row = db.execute("SELECT kind FROM org_units WHERE id = ?", [community_id]).fetchone()
    if row is None or row[0] != "community":
        raise NotFound(f"no community {community_id}")


def _stored_override(db: sqlite_utils.Database, community_id: str) -> dict[str, Any] | None:
    """A community's override as stored (None when it has none, or it was cleared)."""
    row = db.execute(
        "SELECT override FROM coverage_policies WHERE community_id = ?", [community_id]
    ).fetchone()
    return _override_decoder.decode(row[0]) if row and row[0] else None


def judge_load(load: int, policy: Policy) -> tuple[bool, bool]:
    """(under the minimum, over the cap) of a member responsible for ``load`` active households,
    by their community's policy. (The roll-up from the kept aggregates says the same in SQL
    when one minimum and one cap hold everywhere: ``tallying._judge_homes``.)"""
    return load < policy.min_households_per_member, load > policy.max_households_per_member


def load_overrides(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    return {
        cid: _override_decoder.decode(raw)
        for cid, raw in db.execute(
            "SELECT community_id, override FROM coverage_policies WHERE override IS NOT NULL"
        )
    }


def community_policies(
    db: sqlite_utils.Database, settings: Settings
) -> tuple[Policy, dict[str, Policy]]:
    """The district default, and the policy of every community that overrides it."""
    return default_policy(settings), {
        cid: _merge(settings, override) for cid, override in load_overrides(db).items()
    }


def longest_cycle_days(db: sqlite_utils.Database, settings: Settings, scope: Scope) -> int:
    """The longest visit cycle among the communities of a scope (their own policies, else the
    district default). Phones keep the visits of the current and previous cycle (SPEC 3.2), so a
    pull sends visits of twice this many days."""
    default, by_community = community_policies(db, settings)
    if not by_community:
        return default.cycle_days
    if scope.everything:
        communities = {
            r[0] for r in db.execute("SELECT id FROM org_units WHERE kind = 'community'")
        }
    else:
        communities = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT parent_id FROM org_units WHERE id IN (SELECT value FROM json_each(?))",
                [msgspec.json.encode(sorted(scope.grid_ids)).decode()],
            )
            if r[0]
        }
    return max(
        (by_community.get(c, default).cycle_days for c in communities), default=default.cycle_days
    )


def policy_for(db: sqlite_utils.Database, settings: Settings, community_id: str) -> Policy:
    """The policy in force for a community: the district default with its override on top."""
    _require_community(db, community_id)
    return _merge(settings, _stored_override(db, community_id))


def policy_of_grid(db: sqlite_utils.Database, settings: Settings, grid_id: str) -> Policy:
    """The policy of the community holding a grid; the district default for a grid outside any
    community."""
    row = db.execute(
        "SELECT c.id FROM org_units g JOIN org_units c ON c.id = g.parent_id "
        "WHERE g.id = ? AND c.kind = 'community'",
        [grid_id],
    ).fetchone()
    return policy_for(db, settings, row[0]) if row else default_policy(settings)


def service_kinds_of_grids(
    db: sqlite_utils.Database, settings: Settings, grid_ids: set[str]
) -> dict[str, frozenset[str]]:
    """The service kinds a visit may record, per grid whose community overrides them (other
    grids follow the district default, ``settings.coverage.service_kinds``)."""
    if not grid_ids:
        return {}
    return {
        grid: frozenset(msgspec.json.decode(kinds))
        for grid, kinds in db.execute(
            "SELECT o.id, json_extract(p.override, '$.service_kinds') FROM org_units o "
            "JOIN coverage_policies p ON p.community_id = o.parent_id "
            "WHERE o.id IN (SELECT value FROM json_each(?)) "
            "AND json_extract(p.override, '$.service_kinds') IS NOT NULL",
            [msgspec.json.encode(sorted(grid_ids)).decode()],
        )
    }


def policy_of_scope(db: sqlite_utils.Database, settings: Settings, scope: Scope) -> Policy:
    """The policy a person works under: their community's (the community of their first grid,
    or the first community their scope names); the district default for wider scopes."""
    if not scope.everything:
        grids = sorted(scope.grid_ids)
        row = None
        if grids:
            row = db.execute("SELECT parent_id FROM org_units WHERE id = ?", [grids[0]]).fetchone()
        if row is None:
            row = db.execute(
                "SELECT id FROM org_units WHERE kind = 'community' AND id IN "
                "(SELECT value FROM json_each(?)) ORDER BY id LIMIT 1",
                [msgspec.json.encode(sorted(scope.unit_ids)).decode()],
            ).fetchone()
        if row is not None and row[0]:
            return policy_for(db, settings, row[0])
    return default_policy(settings)


def community_policy(
    db: sqlite_utils.Database, settings: Settings, community_id: str
) -> CommunityPolicy:
    """A community's policy in force, and which of its fields its override sets."""
    _require_community(db, community_id)
    override = _stored_override(db, community_id) or {}
    return CommunityPolicy(
        community_id=community_id, policy=_merge(settings, override), overridden=sorted(override)
    )


def _put_policy_row(
    db: sqlite_utils.Database, community_id: str, override: str | None, actor: Actor, clock: Clock
) -> None:
    db.execute(
        "INSERT INTO coverage_policies (community_id, override, seq, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(community_id) DO UPDATE SET "
        "override = excluded.override, seq = excluded.seq, updated_at = excluded.updated_at, "
        "updated_by = excluded.updated_by",
        [community_id, override, next_seq(db), iso_ms(clock.now_ms()), actor.person_id],
    )


def check_priority_tags(
    db: sqlite_utils.Database, settings: Settings, tags: list[str] | tuple[str, ...]
) -> None:
    """A priority tag must be one the district defines: a tag of the settings'
    ``household_tags`` or of the district's own ``[coverage] priority_tags``, or one some
    household carries (an import's own 自定义标签). Anything else is a typo that would make no
    household a priority one: ``400 unknown_tag``."""
    defined = set(settings.household_tags) | set(settings.coverage.priority_tags)
    unknown = [
        tag
        for tag in tags
        if tag not in defined
        and not db.execute(
            "SELECT EXISTS (SELECT 1 FROM households h, json_each(h.tags) j WHERE j.value = ?)",
            [tag],
        ).fetchone()[0]
    ]
    if unknown:
        raise Invalid(
            f"priority tag {', '.join(unknown)} is not defined in the district (known: "
            f"{', '.join(sorted(defined))}, or a tag some household carries)",
            code="unknown_tag",
            field="priority_tags",
        )


def set_policy(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    community_id: str,
    override: PolicyOverride,
    clock: Clock = SYSTEM_CLOCK,
) -> CommunityPolicy:
    """Replace a community's override (validated against the default it overrides; its
    priority tags must be defined, :func:`check_priority_tags`)."""
    _require_community(db, community_id)
    fields = {k: v for k, v in msgspec.structs.asdict(override).items() if v is not UNSET}
    _validate(_merge(settings, fields))
    if fields.get("priority_tags"):
        check_priority_tags(db, settings, fields["priority_tags"])
    _put_policy_row(db, community_id, msgspec.json.encode(fields).decode(), actor, clock)
    audit.record(db, actor, "coverage.policy.set", target=community_id, detail=fields, clock=clock)
    return community_policy(db, settings, community_id)


def clear_policy(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    community_id: str,
    clock: Clock = SYSTEM_CLOCK,
) -> CommunityPolicy:
    """Drop a community's override: the district default applies again (and is re-sent)."""
    _require_community(db, community_id)
    _put_policy_row(db, community_id, None, actor, clock)
    audit.record(db, actor, "coverage.policy.clear", target=community_id, clock=clock)
    return community_policy(db, settings, community_id)


def republish_policies(db: sqlite_utils.Database, actor: Actor, clock: Clock = SYSTEM_CLOCK) -> int:
    """Give every community's policy a new seq, so phones fetch it again (done by
    :func:`publish_default` when the configured district default changes)."""
    rows = db.execute(
        "SELECT o.id, p.override FROM org_units o LEFT JOIN coverage_policies p "
        "ON p.community_id = o.id WHERE o.kind = 'community'"
    ).fetchall()
    for community_id, override in rows:
        _put_policy_row(db, community_id, override, actor, clock)
    audit.record(
        db, actor, "coverage.policy.republish", detail={"communities": len(rows)}, clock=clock
    )
    return len(rows)


def stored_default(db: sqlite_utils.Database) -> CoveragePolicy:
    """The district default last published into this database (the configured one at startup)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'coverage_default'").fetchone()
    return _default_decoder.decode(row[0]) if row else CoveragePolicy()


def publish_default(
    db: sqlite_utils.Database, policy: CoveragePolicy, actor: Actor, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """Store the configured district default; when it changed, republish every community's
    policy so phones pull it again. Run at startup (``create_app``'s lifespan). Returns whether
    it changed."""
    encoded = msgspec.json.encode(policy).decode()
    row = db.execute("SELECT value FROM meta WHERE key = 'coverage_default'").fetchone()
    if row is not None and row[0] == encoded:
        return False
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('coverage_default', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [encoded],
    )
    if row is not None:
        republish_policies(db, actor, clock)
    return True


def changed_policies(
    db: sqlite_utils.Database, scope: Scope, after_seq: int, upto_seq: int, limit: int
) -> list[tuple[int, str, Policy]]:
    """(seq, community id, effective Policy) of the communities of the scope (those the scope
    names, or whose grids it holds) with ``after_seq < seq <= upto_seq``, by seq, at most
    ``limit``: what the pull source ``policy`` (``gridsync/sync/policy.py``) sends.

    The seq is the larger of the community unit's seq and its override row's seq, so an
    initial sync (after_seq 0) sends every in-scope community's policy, and setting or clearing
    an override (new seq on its row) sends that community's effective policy again.
    """
    if scope.everything:
        cond, params = "1", []
    else:
        units = msgspec.json.encode(sorted(scope.unit_ids)).decode()
        grids = msgspec.json.encode(sorted(scope.grid_ids)).decode()
        cond = (
            "(o.id IN (SELECT value FROM json_each(?)) OR o.id IN (SELECT parent_id FROM "
            "org_units WHERE id IN (SELECT value FROM json_each(?))))"
        )
        params = [units, grids]
    rows = db.execute(
        f"""SELECT * FROM (
              SELECT o.id, max(o.seq, coalesce(p.seq, 0)) AS s, p.override
              FROM org_units o LEFT JOIN coverage_policies p ON p.community_id = o.id
              WHERE o.kind = 'community' AND {cond})
            WHERE s > ? AND s <= ? ORDER BY s LIMIT ?""",
        [*params, after_seq, upto_seq, limit],
    ).fetchall()
    district = Settings(coverage=stored_default(db))
    return [
        (s, cid, _merge(district, _override_decoder.decode(raw) if raw else None))
        for cid, s, raw in rows
    ]
