"""The case state machine against an independent model (hypothesis, bounded): any sequence of
actions, by any of three people, leaves the case where the model says, refuses exactly what the
model refuses, and every accepted change moves the case's change sequence number forward. The
model also says when the case is 随手办 (raised and resolved by one person alone), and the
report must count its stays apart (``self_handled``) and in none of the rates."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gridsync import auth, org
from gridsync.auth import authenticate
from gridsync.clock import FixedClock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import GridsyncError
from gridsync.models import CaseAction, WhistleRaise
from gridsync.whistle import act, get_case, raise_case, whistle_report
from tests.conftest import CLI, build_tiny_org

UP = {"grid": "community", "community": "street", "street": "department", "department": "district"}
OPEN = {"raised", "accepted", "on_site", "reopened"}


HANDLING = {"accept", "arrive", "resolve", "escalate", "return"}
# Who may act for which level: both admins everywhere, the community secretary (scope c1) for
# the grid g1 and the community c1 only. Everyone here can see the case (comment, close, reopen).
RESPONSIBLE = {
    "admin": set(UP) | {"district"},
    "admin2": set(UP) | {"district"},
    "sec": {"grid", "community"},
}


def expected(
    state: str, levels: list[str], action: str, who: str = "admin", resolver: str | None = None
) -> tuple[str | None, str | None]:
    """(new state, error code) by the rules of SPEC 5, written independently of the code.
    ``resolver`` is the person who resolved the case last (they may not close it)."""
    level = levels[-1]
    if action in HANDLING and level not in RESPONSIBLE[who]:
        return None, "not_responsible"
    if action == "accept":
        if state in ("accepted", "on_site"):
            return None, "already_accepted"
        return (
            ("accepted", None) if state in ("raised", "reopened") else (None, "illegal_transition")
        )
    if action == "arrive":
        return ("on_site", None) if state == "accepted" else (None, "illegal_transition")
    if action == "resolve":
        return (
            ("resolved", None) if state in ("accepted", "on_site") else (None, "illegal_transition")
        )
    if action == "comment":
        return state, None
    if action == "close":
        if state != "resolved":
            return None, "illegal_transition"
        return (None, "self_review") if who == resolver else ("closed", None)
    if action == "reopen":
        return (
            ("reopened", None) if state in ("resolved", "closed") else (None, "illegal_transition")
        )
    if action == "escalate":
        return ("raised", None) if state in OPEN and level in UP else (None, "illegal_transition")
    if action == "return":
        lower = [lv for lv in levels if lv != level]
        ok = state in OPEN and level != "grid" and bool(lower)
        return ("raised", None) if ok else (None, "illegal_transition")
    raise AssertionError(action)


class CaseMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.store = Store(Path(self.tmp.name) / "g.db", synchronous="OFF")
        tiny = build_tiny_org(self.store)
        admin2 = org.NewPerson(id="admin2", name="区值班员", roles=["admin"], scope=["d1"])
        self.store.write(org.add_people, [admin2], CLI)
        tiny.tokens["admin2"] = self.store.write(auth.enroll, "admin2", CLI).token
        self.people = {who: self.store.read(authenticate, tiny.tokens[who]) for who in RESPONSIBLE}
        self.admin = self.people["admin"]
        self.settings = Settings(db=str(Path(self.tmp.name) / "g.db"))
        self.clock = FixedClock(1_800_000_000_000)
        raise_case_result = self.store.write(
            raise_case,
            self.admin,
            "case",
            WhistleRaise(category="c", grid_id="g1"),
            received_ms=self.clock.now_ms(),
            settings=self.settings,
        )
        self.state = raise_case_result.state
        self.levels = ["grid"]
        self.returns = 0
        self.resolver: str | None = None  # the latest resolver
        self.handlers: set[str] = set()  # who took a step of the handling path
        self.stays = 1  # stints: one more per escalate, return and reopen
        self.closes = 0  # each close scores its own stay
        self.seq = self.store.read(
            lambda db: db.execute("SELECT seq FROM whistle_cases").fetchone()[0]
        )

    @rule(
        action=st.sampled_from(
            ["accept", "arrive", "resolve", "comment", "close", "reopen", "escalate", "return"]
        ),
        satisfaction=st.integers(1, 5),
        who=st.sampled_from(sorted(RESPONSIBLE)),
    )
    def do(self, action, satisfaction, who):
        self.clock.advance(seconds=1)
        new_state, code = expected(self.state, self.levels, action, who, self.resolver)
        data = CaseAction(action=action, satisfaction=satisfaction if action == "close" else None)
        try:
            case = self.store.write(
                act,
                self.people[who],
                "case",
                data,
                now_ms=self.clock.now_ms(),
                settings=self.settings,
            )
        except GridsyncError as exc:
            assert code is not None, f"{who} {action} from {self.state} refused: {exc.code}"
            assert exc.code == code
            assert exc.status == (403 if code == "not_responsible" else 409)
            return
        assert code is None, f"{who} {action} from {self.state} at {self.levels[-1]} was allowed"
        assert case.state == new_state
        if action in HANDLING:
            self.handlers.add(who)
        if action == "resolve":
            self.resolver = who
        if action in ("escalate", "return", "reopen"):
            self.stays += 1
        if action == "close":
            self.closes += 1
        if action == "escalate":
            self.levels.append(UP[self.levels[-1]])
        elif action == "return":
            self.returns += 1
            current = self.levels[-1]
            self.levels.append(next(lv for lv in reversed(self.levels) if lv != current))
        assert case.level == self.levels[-1]
        self.state = new_state
        seq = self.store.read(lambda db: db.execute("SELECT seq FROM whistle_cases").fetchone()[0])
        assert seq > self.seq
        self.seq = seq

    @invariant()
    def consistent(self):
        case = self.store.read(get_case, "case")
        assert case.state == self.state
        assert (case.accepted_by is not None) == (self.state in ("accepted", "on_site")) or (
            self.state in ("resolved", "closed")
        )
        assert (case.satisfaction is not None) == (self.state == "closed")
        assert case.backflow == self.returns
        assert case.level == self.levels[-1]

    @invariant()
    def self_handled_counted_apart(self):
        alone = self.state in ("resolved", "closed") and self.handlers <= {"admin"}  # the raiser
        report = self.store.read(whistle_report, self.admin.scope, now_ms=self.clock.now_ms())
        total = next(r for r in report.rows if r.level == "all")
        assert total.cases + total.self_handled == self.stays
        if alone:
            assert (total.self_handled, total.cases, total.satisfaction_n) == (self.stays, 0, 0)
            assert total.response_rate is None and total.satisfaction is None
        else:
            assert total.self_handled == 0
            assert total.satisfaction_n == self.closes

    def teardown(self):
        self.store.close()
        self.tmp.cleanup()


CaseMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
)
test_case_state_machine = CaseMachine.TestCase
