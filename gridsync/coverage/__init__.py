"""The 1-5-N contact coverage rule (SPEC section 4, DOMAIN.md): policy, assignments, roll-ups,
violations, rebalancing suggestions, the assessors' sample and recorded checks.

Where each rule lives:

- ``labels.py``: the Chinese (and English) labels of levels, service kinds and violations.
- ``policy.py``: the district default and community overrides, validation, set/clear/publish,
  the policy in force for a community, grid or person, the member load rule
  (:func:`judge_load`), and which communities' policies changed (what the pull source
  ``policy`` in ``gridsync/sync/policy.py`` sends).
- ``members.py``: who is a member, and who may serve a grid (the one eligibility rule).
- ``org_index.py``: the org tree as reports read it (cached per version), and which units and
  grids a report covers within the reader's scope.
- ``tallying.py``: what counts (contacted, overdue, priority overdue, a member and their home)
  and :func:`tally`, the one engine that counts it, per member or from the kept aggregates.
- ``rows.py``: the roll-up rows at every level, their sums and rates.
- ``violations_list.py``: the households and members at fault, paged, with counts.
- ``assignments.py``: assignments (checks, log), rebalancing suggestions and applying them.
- ``sampling.py``: the assessors' reproducible sample (:func:`draw`, the one draw).
- ``verified.py``: what a recorded check verified (confirmed of reached), each unit's latest.
- ``checks.py``: recorded checks (抽检): who may draw, record and read them
  (:func:`require_checker`), the draw with a server seed, outcomes.

Import the public names from the package (``from gridsync import coverage``;
``coverage.rollup``). No module is named like a function it holds, so ``coverage.tally`` is
the engine and ``gridsync.coverage.tallying`` its module: one meaning per name.
"""

from __future__ import annotations

from gridsync.audit import Actor
from gridsync.coverage.assignments import (
    ASSIGNER_ROLES,
    apply_suggestions,
    assign,
    assignment_log,
    rebalance,
    unassign_member,
)
from gridsync.coverage.checks import (
    draw_check,
    get_check,
    recent_checks,
    record_result,
    require_checker,
)
from gridsync.coverage.labels import KIND_LABELS, LEVEL_LABELS, VIOLATION_LABELS, label
from gridsync.coverage.members import RESPONSIBLE_ROLE, Standing, member_sql, standing
from gridsync.coverage.org_index import OrgIndex, ReportUnits, report_units
from gridsync.coverage.policy import (
    changed_policies,
    clear_policy,
    community_policies,
    community_policy,
    default_policy,
    judge_load,
    load_overrides,
    longest_cycle_days,
    policy_for,
    policy_of_grid,
    policy_of_scope,
    publish_default,
    republish_policies,
    service_kinds_of_grids,
    set_policy,
    stored_default,
)
from gridsync.coverage.rows import UNIT_LEVELS, default_levels, rollup, rows_of, with_verified
from gridsync.coverage.rows import rate as _rate
from gridsync.coverage.sampling import sample
from gridsync.coverage.tallying import (
    MEMBER_CONTACT_COLUMNS,
    Member,
    Tally,
    due_ms,
    grid_filter,
    is_priority,
    member_contact,
    member_phone,
    tally,
)
from gridsync.coverage.violations_list import HOUSEHOLD_VIOLATIONS, MEMBER_VIOLATIONS, violations
from gridsync.models import VIOLATION_KINDS, CoverageRow, PolicyOverride

__all__ = [
    "ASSIGNER_ROLES",
    "HOUSEHOLD_VIOLATIONS",
    "KIND_LABELS",
    "LEVEL_LABELS",
    "MEMBER_CONTACT_COLUMNS",
    "MEMBER_VIOLATIONS",
    "RESPONSIBLE_ROLE",
    "UNIT_LEVELS",
    "VIOLATION_KINDS",
    "VIOLATION_LABELS",
    "Actor",
    "CoverageRow",
    "Member",
    "OrgIndex",
    "PolicyOverride",
    "ReportUnits",
    "Standing",
    "Tally",
    "_rate",
    "apply_suggestions",
    "assign",
    "assignment_log",
    "changed_policies",
    "clear_policy",
    "community_policies",
    "community_policy",
    "default_levels",
    "default_policy",
    "draw_check",
    "due_ms",
    "get_check",
    "grid_filter",
    "is_priority",
    "judge_load",
    "label",
    "load_overrides",
    "longest_cycle_days",
    "member_contact",
    "member_phone",
    "member_sql",
    "policy_for",
    "policy_of_grid",
    "policy_of_scope",
    "publish_default",
    "rebalance",
    "recent_checks",
    "record_result",
    "report_units",
    "republish_policies",
    "require_checker",
    "rollup",
    "rows_of",
    "sample",
    "service_kinds_of_grids",
    "set_policy",
    "standing",
    "stored_default",
    "tally",
    "unassign_member",
    "violations",
    "with_verified",
]
