"""Numbered schema migrations (sqlite-utils' Migrations). Never edit an applied migration:
add the next number. Each area owns the migrations that create its tables.

Migrations are frozen: each one holds its own SQL (a backfill included) and calls no code of
the application, and this module imports nothing of gridsync. A migration that called live
code (``visits.recount_kinds``, a shared expression) would do something else on a database
created after that code changed than it did on the databases upgraded before: the store
(``gridsync/db.py``, which applies them) sits below every other layer. Where a live function
keeps the same tables (``visits.recount_kinds``, ``visits.recount``), a test compares the two on the same data
(``tests/test_migrations_frozen.py``, ``tests/test_honest_figures.py``), so they cannot drift apart unnoticed while both exist.
"""

from __future__ import annotations

import json
import uuid

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("gridsync")


@migrations(name="0001_foundation")
def m0001_foundation(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- Administrative tree (district > street > community > grid), party branches
        -- (branch belongs to a community, usually maps to one grid) and departments.
        CREATE TABLE org_units (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN
                ('district', 'street', 'community', 'grid', 'branch', 'department')),
            name TEXT NOT NULL,
            parent_id TEXT REFERENCES org_units(id),
            grid_id TEXT REFERENCES org_units(id),
            seq INTEGER NOT NULL
        );
        CREATE INDEX org_units_parent ON org_units(parent_id);
        CREATE INDEX org_units_seq ON org_units(seq);

        CREATE TABLE people (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            phone TEXT NOT NULL DEFAULT '',
            roles TEXT NOT NULL DEFAULT '[]',           -- JSON array of role names
            branch_id TEXT REFERENCES org_units(id),    -- party branch of a member
            active INTEGER NOT NULL DEFAULT 1,
            channels TEXT NOT NULL DEFAULT '[]',        -- JSON array of Apprise URLs (secret)
            locale TEXT NOT NULL DEFAULT 'zh-CN',
            scope_version INTEGER NOT NULL DEFAULT 1,
            seq INTEGER NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX people_branch ON people(branch_id);
        CREATE INDEX people_seq ON people(seq);

        CREATE TABLE person_scope (
            person_id TEXT NOT NULL REFERENCES people(id),
            unit_id TEXT NOT NULL REFERENCES org_units(id),
            PRIMARY KEY (person_id, unit_id)
        ) WITHOUT ROWID;
        CREATE INDEX person_scope_unit ON person_scope(unit_id);

        CREATE TABLE households (
            id TEXT PRIMARY KEY,
            external_id TEXT UNIQUE,
            grid_id TEXT NOT NULL REFERENCES org_units(id),
            building TEXT NOT NULL DEFAULT '',
            unit TEXT NOT NULL DEFAULT '',
            room TEXT NOT NULL DEFAULT '',
            head_name TEXT NOT NULL DEFAULT '',
            phone TEXT NOT NULL DEFAULT '',
            size INTEGER NOT NULL DEFAULT 1,
            tags TEXT NOT NULL DEFAULT '[]',            -- JSON array, sorted
            notes TEXT NOT NULL DEFAULT '',
            responsible_member_id TEXT REFERENCES people(id),
            status TEXT NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'moved_out', 'archived')),
            last_visit_ms INTEGER,                      -- newest non-voided visit, for coverage
            field_hlc TEXT NOT NULL DEFAULT '{}',       -- JSON: field -> HLC of its value
            seq INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX households_grid_seq ON households(grid_id, seq);
        CREATE INDEX households_seq ON households(seq);
        CREATE INDEX households_member ON households(responsible_member_id);

        CREATE TABLE visits (
            id TEXT PRIMARY KEY,
            household_id TEXT NOT NULL,
            grid_id TEXT NOT NULL,
            member_id TEXT NOT NULL,
            device_id TEXT,
            at TEXT NOT NULL,                           -- device clock, ISO 8601 with offset
            at_ms INTEGER NOT NULL,                     -- the same instant, UTC epoch ms
            channel TEXT NOT NULL,
            kinds TEXT NOT NULL DEFAULT '[]',
            note TEXT NOT NULL DEFAULT '',
            geo TEXT,
            voided INTEGER NOT NULL DEFAULT 0,
            seq INTEGER NOT NULL,
            received_at TEXT NOT NULL
        );
        CREATE INDEX visits_grid_seq ON visits(grid_id, seq);
        CREATE INDEX visits_household ON visits(household_id, at_ms);

        CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            person_id TEXT NOT NULL REFERENCES people(id),
            token_hash TEXT NOT NULL UNIQUE,            -- sha256 of the token; never the token
            label TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            last_seen_at TEXT,
            last_seq INTEGER NOT NULL DEFAULT 0         -- highest push seq applied
        );
        CREATE INDEX devices_person ON devices(person_id);

        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            person_id TEXT,
            device_id TEXT,
            action TEXT NOT NULL,
            target TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_log_person ON audit_log(person_id, at);
        """
    )
    db.execute("INSERT INTO meta (key, value) VALUES ('change_seq', '0')")
    db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", [uuid.uuid4().hex])


# -- sync (issue: offline sync v1) ----------------------------------------------------------


@migrations(name="0002_sync")
def m0002_sync(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- Every pushed mutation, applied or rejected: exactly-once by mid (and devices.last_seq).
        CREATE TABLE sync_mutations (
            mid TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            op TEXT NOT NULL,
            target_id TEXT NOT NULL,
            status TEXT NOT NULL,                       -- applied, merged, rejected, duplicate
            code TEXT,
            message TEXT,
            received_ms INTEGER NOT NULL
        ) WITHOUT ROWID;

        -- Values that lost a merge, with both sides (SPEC 3.1); secretaries restore them.
        CREATE TABLE sync_conflicts (
            id INTEGER PRIMARY KEY,
            household_id TEXT NOT NULL,
            grid_id TEXT NOT NULL,
            field TEXT NOT NULL,                        -- a household field, or tags:<tag>
            value TEXT NOT NULL,                        -- JSON: the losing value
            winner TEXT NOT NULL,                       -- JSON: the value that won
            lost_hlc TEXT NOT NULL,
            lost_person_id TEXT,
            lost_device_id TEXT,
            winner_hlc TEXT,
            winner_person_id TEXT,
            winner_device_id TEXT,
            mid TEXT,
            created_ms INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'restored', 'dismissed')),
            resolved_ms INTEGER,
            resolved_by TEXT
        );
        CREATE INDEX sync_conflicts_grid ON sync_conflicts(grid_id, status);
        CREATE INDEX sync_conflicts_household ON sync_conflicts(household_id);

        -- Households changing grid: pulls turn these into put/remove, and push uses them to
        -- accept edits made before the move. Kept by a trigger so every writer is covered
        -- (moves are rare; the visit path has no trigger).
        CREATE TABLE household_moves (
            id INTEGER PRIMARY KEY,
            household_id TEXT NOT NULL,
            from_grid TEXT NOT NULL,
            to_grid TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL
        );
        CREATE INDEX household_moves_seq ON household_moves(seq);
        CREATE INDEX household_moves_household ON household_moves(household_id, at_ms);
        CREATE TRIGGER households_grid_moved AFTER UPDATE OF grid_id ON households
        WHEN OLD.grid_id IS NOT NEW.grid_id
        BEGIN
            INSERT INTO household_moves (household_id, from_grid, to_grid, seq, at_ms)
            VALUES (NEW.id, OLD.grid_id, NEW.grid_id, NEW.seq,
                    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
        END;

        -- When a person's scope version changed (kept by a trigger: org.set_scope and
        -- org.add_people bump people.scope_version).
        CREATE TABLE scope_changes (
            id INTEGER PRIMARY KEY,
            person_id TEXT NOT NULL,
            old_version INTEGER NOT NULL,
            new_version INTEGER NOT NULL,
            at_ms INTEGER NOT NULL
        );
        CREATE INDEX scope_changes_person ON scope_changes(person_id, at_ms);
        CREATE TRIGGER people_scope_changed AFTER UPDATE OF scope_version ON people
        WHEN OLD.scope_version IS NOT NEW.scope_version
        BEGIN
            INSERT INTO scope_changes (person_id, old_version, new_version, at_ms)
            VALUES (NEW.id, OLD.scope_version, NEW.scope_version,
                    CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
        END;

        -- The grids of each scope version a device synced under (recorded on push and pull),
        -- so that a scope change becomes put/remove for the grids that entered/left it.
        CREATE TABLE scope_versions (
            person_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            everything INTEGER NOT NULL DEFAULT 0,
            grid_ids TEXT NOT NULL,                     -- JSON array, sorted
            PRIMARY KEY (person_id, version)
        ) WITHOUT ROWID;
        """
    )
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('sync_horizon_seq', '0')")


# -- coverage (issue: 1-5-N coverage) -------------------------------------------------------


@migrations(name="0003_coverage")
def m0003_coverage(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- A community's override of the district coverage policy (Settings.coverage). Only the
        -- fields the admin set are stored (JSON object), so the rest follows the district
        -- default. Clearing keeps the row with override NULL and a new seq, so phones are sent
        -- the community's effective (default) policy again.
        CREATE TABLE coverage_policies (
            community_id TEXT PRIMARY KEY REFERENCES org_units(id),
            override TEXT,
            seq INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by TEXT
        );
        CREATE INDEX coverage_policies_seq ON coverage_policies(seq);

        -- Every assignment or move of a household's responsible member.
        CREATE TABLE assignment_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            household_id TEXT NOT NULL,
            previous_member_id TEXT,
            member_id TEXT NOT NULL,
            person_id TEXT,
            device_id TEXT,
            override_cap INTEGER NOT NULL DEFAULT 0,
            load_after INTEGER NOT NULL,
            cap INTEGER NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX assignment_log_household ON assignment_log(household_id, id);

        -- Roll-ups scan active households once, grouped by (grid, member): covering, partial.
        CREATE INDEX households_coverage
            ON households(grid_id, responsible_member_id, last_visit_ms, tags)
            WHERE status = 'active';
        -- Service kinds of a grid's recent visits: a probe per (grid, kind) stops at the first
        -- match. Inserts land at the end of their grid's range (940 warm tails, not random).
        CREATE INDEX visits_grid_cycle ON visits(grid_id, at_ms, member_id, kinds)
            WHERE voided = 0;
        """
    )


# -- whistle and notify (issue: whistle cases and notifications) ----------------------------


@migrations(name="0004_whistle")
def m0004_whistle(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- A whistle case (吹哨报到). Deadlines count from the case's arrival at its current level
        -- (server clock); raised_at is the device's clock, kept as sent.
        CREATE TABLE whistle_cases (
            id TEXT PRIMARY KEY,                        -- client UUID
            household_id TEXT,
            grid_id TEXT NOT NULL REFERENCES org_units(id),
            location TEXT NOT NULL DEFAULT '',
            category TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            raised_by TEXT NOT NULL,
            raised_device TEXT,
            raised_at TEXT NOT NULL,                    -- device clock, ISO 8601 as sent
            raised_ms INTEGER NOT NULL,
            received_ms INTEGER NOT NULL,               -- server receipt
            level TEXT NOT NULL,
            unit_id TEXT NOT NULL,                      -- the org unit responsible now
            department_id TEXT,                         -- the department it was dispatched to
            state TEXT NOT NULL CHECK (state IN
                ('raised', 'accepted', 'on_site', 'resolved', 'closed', 'reopened')),
            accepted_by TEXT,
            satisfaction INTEGER CHECK (satisfaction BETWEEN 1 AND 5),
            closed_ms INTEGER,
            stint_id INTEGER,                           -- current row of whistle_stints
            seq INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        );
        CREATE INDEX whistle_cases_seq ON whistle_cases(seq);
        CREATE INDEX whistle_cases_grid ON whistle_cases(grid_id, state);
        CREATE INDEX whistle_cases_open ON whistle_cases(state) WHERE state NOT IN ('closed');

        -- One row per stay of a case at a level: its deadlines and how they were met.
        CREATE TABLE whistle_stints (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES whistle_cases(id),
            level TEXT NOT NULL,
            unit_id TEXT NOT NULL,
            started_ms INTEGER NOT NULL,
            accept_due_ms INTEGER NOT NULL,
            arrive_due_ms INTEGER NOT NULL,
            resolve_due_ms INTEGER NOT NULL,
            accepted_ms INTEGER,
            arrived_ms INTEGER,
            resolved_ms INTEGER,
            ended_ms INTEGER,
            end_reason TEXT,                            -- escalated, missed, returned, reopened
            missed TEXT NOT NULL DEFAULT '[]',          -- deadlines missed: accept/arrive/resolve
            warned TEXT NOT NULL DEFAULT '[]',          -- "deadline near" alerts already queued
            satisfaction INTEGER
        );
        CREATE INDEX whistle_stints_case ON whistle_stints(case_id);
        CREATE INDEX whistle_stints_open ON whistle_stints(ended_ms) WHERE ended_ms IS NULL;

        CREATE TABLE whistle_history (
            case_id TEXT NOT NULL REFERENCES whistle_cases(id),
            n INTEGER NOT NULL,
            action TEXT NOT NULL,
            by TEXT,                                    -- person id; NULL for the system
            device_id TEXT,
            at_ms INTEGER NOT NULL,                     -- server clock
            device_at TEXT,                             -- device clock when the phone sent one
            level TEXT NOT NULL,
            state TEXT NOT NULL,                        -- state after the action
            note TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (case_id, n)
        ) WITHOUT ROWID;

        -- Notifications: written in the transaction of their cause, delivered later.
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            dedup_key TEXT NOT NULL UNIQUE,             -- event + recipient: a retried cause
                                                        -- never queues twice
            kind TEXT NOT NULL,
            recipient TEXT NOT NULL,                    -- routing key: member:ID or an org tag
            person_id TEXT,
            locale TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            cause TEXT,                                 -- e.g. the case id
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER NOT NULL,
            delivered TEXT NOT NULL DEFAULT '[]',       -- hashes of URLs already delivered to
            last_error TEXT,
            created_ms INTEGER NOT NULL,
            sent_ms INTEGER
        );
        CREATE INDEX outbox_due ON outbox(state, next_attempt_ms);

        -- Periodic jobs already done (daily and weekly digests), so a sweep runs each once.
        CREATE TABLE notify_runs (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
        """
    )


# -- coverage aggregates (issue 6: coverage at district scale) -------------------------------


@migrations(name="0005_coverage_aggregates")
def m0005_coverage_aggregates(db: sqlite_utils.Database) -> None:
    """Time-independent coverage figures kept by triggers, so that every writer (assignment,
    push, import, demo, people edits, and any later one) keeps them exactly right and a district
    roll-up reads a few thousand rows instead of recounting 300,000 households. Time-dependent
    figures (contacted, overdue) still come from ``last_visit_ms`` at read time.

    Triggers fire per row, but only on household and people writes that change the columns
    counted (``UPDATE OF ... WHEN``); the visit hot path touches neither table's counted
    columns (it sets ``last_visit_ms``)."""
    # who counts as a member, as of this migration (frozen: a later change of the rule is a
    # later migration that replaces the triggers)
    member = "({p}.active = 1 AND instr({p}.roles, '\"member\"') > 0)"
    new_member, old_member = member.format(p="new"), member.format(p="old")
    db.executescript(
        f"""
        -- Every person who is a member (active, role member) or is responsible for a household:
        -- their branch and their load (active households they are responsible for).
        CREATE TABLE coverage_members (
            person_id TEXT PRIMARY KEY,
            branch_id TEXT,
            is_member INTEGER NOT NULL DEFAULT 0,
            households INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE INDEX coverage_members_load ON coverage_members(branch_id, households)
            WHERE is_member = 1;

        -- Active households per (grid, tags, assigned or not): priority counts follow any
        -- policy's priority tags by reading the few distinct tag lists of a grid.
        CREATE TABLE coverage_grid_counts (
            grid_id TEXT NOT NULL,
            tags TEXT NOT NULL,
            assigned INTEGER NOT NULL,
            households INTEGER NOT NULL,
            PRIMARY KEY (grid_id, tags, assigned)
        ) WITHOUT ROWID;

        -- Members per (branch, load): under-minimum and over-cap counts for any policy without
        -- reading one row per member. Kept from coverage_members by its own triggers.
        CREATE TABLE coverage_load_histogram (
            branch_id TEXT NOT NULL,
            households INTEGER NOT NULL,
            members INTEGER NOT NULL,
            PRIMARY KEY (branch_id, households)
        ) WITHOUT ROWID;

        CREATE TRIGGER coverage_members_insert AFTER INSERT ON coverage_members
        WHEN new.is_member = 1 AND new.branch_id IS NOT NULL BEGIN
            INSERT INTO coverage_load_histogram (branch_id, households, members)
            VALUES (new.branch_id, new.households, 1)
            ON CONFLICT (branch_id, households) DO UPDATE SET members = members + 1;
        END;
        CREATE TRIGGER coverage_members_update AFTER UPDATE ON coverage_members
        WHEN old.is_member IS NOT new.is_member OR old.branch_id IS NOT new.branch_id
          OR old.households IS NOT new.households BEGIN
            UPDATE coverage_load_histogram SET members = members - 1
            WHERE old.is_member = 1 AND branch_id = old.branch_id
              AND households = old.households;
            INSERT INTO coverage_load_histogram (branch_id, households, members)
            SELECT new.branch_id, new.households, 1
            WHERE new.is_member = 1 AND new.branch_id IS NOT NULL
            ON CONFLICT (branch_id, households) DO UPDATE SET members = members + 1;
        END;
        CREATE TRIGGER coverage_members_delete AFTER DELETE ON coverage_members
        WHEN old.is_member = 1 AND old.branch_id IS NOT NULL BEGIN
            UPDATE coverage_load_histogram SET members = members - 1
            WHERE branch_id = old.branch_id AND households = old.households;
        END;

        CREATE TRIGGER coverage_people_insert AFTER INSERT ON people BEGIN
            INSERT INTO coverage_members (person_id, branch_id, is_member)
            VALUES (new.id, new.branch_id, {new_member})
            ON CONFLICT (person_id) DO UPDATE SET branch_id = excluded.branch_id,
                is_member = excluded.is_member;
        END;
        CREATE TRIGGER coverage_people_update AFTER UPDATE OF active, roles, branch_id ON people
        WHEN old.branch_id IS NOT new.branch_id OR {old_member} IS NOT {new_member}
          OR old.id IS NOT new.id BEGIN
            UPDATE coverage_members SET is_member = 0 WHERE person_id = old.id;
            INSERT INTO coverage_members (person_id, branch_id, is_member)
            VALUES (new.id, new.branch_id, {new_member})
            ON CONFLICT (person_id) DO UPDATE SET branch_id = excluded.branch_id,
                is_member = excluded.is_member;
        END;
        CREATE TRIGGER coverage_people_delete AFTER DELETE ON people BEGIN
            UPDATE coverage_members SET is_member = 0 WHERE person_id = old.id;
        END;

        CREATE TRIGGER coverage_households_insert AFTER INSERT ON households
        WHEN new.status = 'active' BEGIN
            INSERT INTO coverage_members (person_id, households)
            SELECT new.responsible_member_id, 1 WHERE new.responsible_member_id IS NOT NULL
            ON CONFLICT (person_id) DO UPDATE SET households = households + 1;
            INSERT INTO coverage_grid_counts (grid_id, tags, assigned, households)
            VALUES (new.grid_id, new.tags, new.responsible_member_id IS NOT NULL, 1)
            ON CONFLICT (grid_id, tags, assigned) DO UPDATE SET households = households + 1;
        END;
        CREATE TRIGGER coverage_households_delete AFTER DELETE ON households
        WHEN old.status = 'active' BEGIN
            UPDATE coverage_members SET households = households - 1
            WHERE person_id = old.responsible_member_id;
            UPDATE coverage_grid_counts SET households = households - 1
            WHERE grid_id = old.grid_id AND tags = old.tags
              AND assigned = (old.responsible_member_id IS NOT NULL);
        END;
        CREATE TRIGGER coverage_households_update
        AFTER UPDATE OF status, responsible_member_id, grid_id, tags ON households
        WHEN old.status IS NOT new.status
          OR old.responsible_member_id IS NOT new.responsible_member_id
          OR old.grid_id IS NOT new.grid_id OR old.tags IS NOT new.tags BEGIN
            UPDATE coverage_members SET households = households - 1
            WHERE person_id = old.responsible_member_id AND old.status = 'active';
            UPDATE coverage_grid_counts SET households = households - 1
            WHERE old.status = 'active' AND grid_id = old.grid_id AND tags = old.tags
              AND assigned = (old.responsible_member_id IS NOT NULL);
            INSERT INTO coverage_members (person_id, households)
            SELECT new.responsible_member_id, 1
            WHERE new.status = 'active' AND new.responsible_member_id IS NOT NULL
            ON CONFLICT (person_id) DO UPDATE SET households = households + 1;
            INSERT INTO coverage_grid_counts (grid_id, tags, assigned, households)
            SELECT new.grid_id, new.tags, new.responsible_member_id IS NOT NULL, 1
            WHERE new.status = 'active'
            ON CONFLICT (grid_id, tags, assigned) DO UPDATE SET households = households + 1;
        END;
        """
    )
    backfill_0005(db)


def backfill_0005(db: sqlite_utils.Database) -> None:
    """Migration 0005's backfill, frozen: the trigger-kept coverage tables recounted from
    people and households as that migration defined them (also the recount that
    ``tests/test_coverage_aggregates.py`` compares the kept values with)."""
    for sql in (
        "DELETE FROM coverage_members",
        "DELETE FROM coverage_grid_counts",
        "DELETE FROM coverage_load_histogram",
        (
            "INSERT INTO coverage_members (person_id, branch_id, is_member) "
            "SELECT p.id, p.branch_id, (p.active = 1 AND instr(p.roles, '\"member\"') > 0) "
            "FROM people p"
        ),
        (
            "INSERT INTO coverage_members (person_id, households) "
            "SELECT responsible_member_id, count(*) FROM households "
            "WHERE status = 'active' AND responsible_member_id IS NOT NULL GROUP BY 1 "
            "ON CONFLICT (person_id) DO UPDATE SET households = excluded.households"
        ),
        (
            "INSERT INTO coverage_grid_counts (grid_id, tags, assigned, households) "
            "SELECT grid_id, tags, responsible_member_id IS NOT NULL, count(*) FROM households "
            "WHERE status = 'active' GROUP BY 1, 2, 3"
        ),
        # the inserts above fired the histogram's triggers; recount it outright all the same
        "DELETE FROM coverage_load_histogram",
        (
            "INSERT INTO coverage_load_histogram (branch_id, households, members) "
            "SELECT branch_id, households, count(*) FROM coverage_members "
            "WHERE is_member = 1 AND branch_id IS NOT NULL GROUP BY 1, 2"
        ),
    ):
        db.execute(sql)


@migrations(name="0006_device_clock_floor")
def m0006_device_clock_floor(db: sqlite_utils.Database) -> None:
    # The newest HLC wall time (ms) among a device's pushed mutations. HLCs of one device never
    # go back, so a mutation cannot claim to be older than this when the scope check asks
    # whether its household was in scope "at the time of the edit" (sync/push.py).
    db.execute("ALTER TABLE devices ADD COLUMN hlc_high_ms INTEGER NOT NULL DEFAULT 0")


@migrations(name="0007_coverage_kinds")
def m0007_coverage_kinds(db: sqlite_utils.Database) -> None:
    """Service kinds covered, as the newest non-voided visit per (grid, kind) and per (grid,
    member, kind): kept by the writers of visits (``gridsync/visits.py`` says which, and
    why not by triggers)."""
    db.executescript(
        """
        CREATE TABLE coverage_grid_kinds (
            grid_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            last_ms INTEGER NOT NULL,
            PRIMARY KEY (grid_id, kind)
        ) WITHOUT ROWID;
        CREATE TABLE coverage_member_kinds (
            grid_id TEXT NOT NULL,
            member_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            last_ms INTEGER NOT NULL,
            PRIMARY KEY (grid_id, member_id, kind)
        ) WITHOUT ROWID;
        -- read only by the kinds queries these tables replace; one index fewer per visit
        DROP INDEX IF EXISTS visits_grid_cycle;
        """
    )
    backfill_0007(db)


def backfill_0007(db: sqlite_utils.Database) -> None:
    """Migration 0007's backfill, frozen: the kept kinds recounted from every non-voided visit
    (what ``service_kinds.recount()``, now ``visits.recount_kinds``, computed when the
    migration was written, in SQL: ``tests/test_migrations_frozen.py`` compares the two). Visits are grouped by (grid, member,
    kinds JSON) first: a kinds list has few distinct values, so each is split once per member
    rather than once per visit."""
    for sql in (
        "DELETE FROM coverage_member_kinds",
        "DELETE FROM coverage_grid_kinds",
        """INSERT INTO coverage_member_kinds (grid_id, member_id, kind, last_ms)
           SELECT g.grid_id, g.member_id, k.value, max(g.last_ms)
           FROM (SELECT grid_id, member_id, kinds, max(at_ms) AS last_ms FROM visits
                 WHERE voided = 0 AND kinds <> '[]' GROUP BY grid_id, member_id, kinds) g,
                json_each(g.kinds) k
           GROUP BY g.grid_id, g.member_id, k.value""",
        """INSERT INTO coverage_grid_kinds (grid_id, kind, last_ms)
           SELECT grid_id, kind, max(last_ms) FROM coverage_member_kinds
           GROUP BY grid_id, kind""",
    ):
        db.execute(sql)


@migrations(name="0008_households_tagged")
def m0008_households_tagged(db: sqlite_utils.Database) -> None:
    """Priority overdue counts only households with tags (a quarter of them in the demo
    district): with this index the roll-up's "now" pass reads the tagged ones here and filters
    the rest on ``households_coverage`` as the floor does, instead of counting every household
    not visited within the short priority cycle (27 -> 22 ms on the district demo)."""
    db.executescript(
        """
        CREATE INDEX households_tagged
            ON households(grid_id, last_visit_ms, responsible_member_id, tags)
            WHERE status = 'active' AND tags <> '[]';
        """
    )


@migrations(name="0009_field_hlc_shape")
def m0009_field_hlc_shape(db: sqlite_utils.Database) -> None:
    """Rewrite ``households.field_hlc`` into the merge's shape (``gridsync/sync/merge.py``): a
    field -> ``[hlc, seq, device_id, person_id]``, ``tags``/``tags_removed`` -> ``{tag:
    stamp}``. The household import before this migration stored bare HLC strings, the tag set's
    HLC as one string under ``tags`` (every phone edit of such a household then answered 500),
    and other tools may have left worse. Frozen logic, on purpose not the live merge code:

    - a bare HLC or a short list becomes a full stamp; the seq it lacks is the row's seq (the
      value was written at or before it), device and person unknown (null);
    - any other value (a number, an object) becomes ``["", seq, null, null]``: no HLC known;
    - ``tags`` that is not an object becomes one stamp per tag the row holds, from its HLC;
    - ``tags_removed`` that is not an object is dropped (which tags were removed is unknown);
    - text that is not a JSON object becomes ``{}`` (every field pinned at the row's seq).

    Rows already in the shape are not written; no row takes a new change seq (``field_hlc``
    is not sent to phones)."""

    def stamp(raw: object, seq: int) -> list:
        if isinstance(raw, str):
            return [raw, seq, None, None]
        if isinstance(raw, list) and raw:
            rest = [*raw[1:4], *[None] * 3][:3]
            tail = [v if isinstance(v, str) else None for v in rest[1:]]
            own = rest[0] if isinstance(rest[0], int) and len(raw) > 1 else seq
            return [str(raw[0]), own, *tail]
        return ["", seq, None, None]

    def tag_stamps(raw: object, seq: int) -> dict:
        return {str(k): stamp(v, seq) for k, v in raw.items()} if isinstance(raw, dict) else {}

    updates = []
    rows = db.execute("SELECT id, field_hlc, seq, tags FROM households WHERE field_hlc <> '{}'")
    for household_id, text, seq, tags_text in rows.fetchall():
        try:
            raw = json.loads(text)
        except (TypeError, ValueError):
            raw = None
        fixed: dict = {}
        if isinstance(raw, dict):
            for name, value in raw.items():
                if name == "tags":
                    if isinstance(value, dict):
                        fixed[name] = tag_stamps(value, seq)
                    else:
                        try:
                            tags = json.loads(tags_text or "[]")
                        except ValueError:
                            tags = []
                        tags = tags if isinstance(tags, list) else []
                        fixed[name] = {
                            str(t): stamp(value, seq) for t in sorted(set(map(str, tags)))
                        }
                elif name == "tags_removed":
                    fixed[name] = tag_stamps(value, seq)
                else:
                    fixed[name] = stamp(value, seq)
            fixed = {k: v for k, v in fixed.items() if v or k not in ("tags", "tags_removed")}
        if fixed != raw:
            updates.append(
                (json.dumps(fixed, ensure_ascii=False, separators=(",", ":")), household_id)
            )
    db.conn.executemany("UPDATE households SET field_hlc = ? WHERE id = ?", updates)


@migrations(name="0010_device_drain")
def m0010_device_drain(db: sqlite_utils.Database) -> None:
    """A device revoked with ``--drain`` may push what it holds once before it is wiped: from
    ``draining_since`` until that push sets ``revoked_at`` it can push (and read its sync
    status) and nothing else (``gridsync/auth.py``)."""
    db.execute("ALTER TABLE devices ADD COLUMN draining_since TEXT")


# -- personal data (issue 12: one rule for phone numbers, every surface) ----------------------


@migrations(name="0011_phone_privacy")
def m0011_phone_privacy(db: sqlite_utils.Database) -> None:
    """Phones now receive a household's number masked unless their person may read it
    (gridsync/privacy.py), so two things change for sync:

    - ``scope_versions.phone_grids``: the grids where a scope version read every number in full
      (JSON array, sorted; NULL for versions recorded before this migration: unknown). When a
      person's scope version changes, pull re-sends the grids whose masking changed, as it
      sends the grids that entered the scope.
    - Every phone synced before this migration holds full numbers it may no longer read. The
      pull horizon is raised past every existing cursor (one new change seq), so each phone's
      next pull answers ``reset: true`` and the phone re-syncs (keeping its unsent edits). A
      database without any change yet has nothing to take back and is left alone."""
    db.execute("ALTER TABLE scope_versions ADD COLUMN phone_grids TEXT")
    if int(db.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()[0]) > 0:
        seq = db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'change_seq' "
            "RETURNING CAST(value AS INTEGER)"
        ).fetchone()[0]
        db.execute(
            "UPDATE meta SET value = max(CAST(value AS INTEGER), ?) WHERE key = 'sync_horizon_seq'",
            [seq],
        )


# -- whistle cases: their bound, their clocks (issue 12, review round 2) ---------------------


@migrations(name="0015_whistle_case_bounds")
def m0015_whistle_case_bounds(db: sqlite_utils.Database) -> None:
    """A case's history is bounded (``gridsync/whistle.py``, ``MAX_CASE_COMMENTS``,
    ``MAX_CASE_NOTE_BYTES``): each case keeps its ``comments`` and the bytes its people's notes
    take in its JSON (``note_bytes``: UTF-8 with JSON's escapes, as ``json_quote`` writes them;
    the system's events do not count), counted here from the history it holds. A case already past the bound keeps its history; it takes no more comments.

    ``raised_ms`` (what the report counts a case's offline delay by) is the phone's time no
    earlier than its device's enrolment and no later than the server's receipt; the phone's
    ``raised_at`` is kept as sent. Cases raised before this migration are brought into line.

    The phone path limits the cases a device raises an hour: an index for that count."""
    db.executescript(
        """
        ALTER TABLE whistle_cases ADD COLUMN comments INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE whistle_cases ADD COLUMN note_bytes INTEGER NOT NULL DEFAULT 0;
        UPDATE whistle_cases SET
            comments = (SELECT count(*) FROM whistle_history h
                        WHERE h.case_id = whistle_cases.id AND h.action = 'comment'
                        AND h.by IS NOT NULL),
            note_bytes = (SELECT coalesce(sum(length(CAST(json_quote(h.note) AS BLOB)) - 2), 0)
                          FROM whistle_history h
                          WHERE h.case_id = whistle_cases.id AND h.by IS NOT NULL);
        UPDATE whistle_cases SET raised_ms = min(received_ms, max(raised_ms, coalesce(
            (SELECT CAST(round((julianday(d.created_at) - 2440587.5) * 86400000) AS INTEGER)
             FROM devices d WHERE d.id = whistle_cases.raised_device), raised_ms)));
        CREATE INDEX whistle_cases_raised_device ON whistle_cases(raised_device, received_ms);
        """
    )


# -- contact by the responsible member (issue 14) --------------------------------------------


@migrations(name="0016_contacted_by_responsible")
def m0016_contacted_by_responsible(db: sqlite_utils.Database) -> None:
    """1-5-N asks that *the* member keeps in touch with *their* households, so coverage counts
    a household *contacted by its responsible member* apart from *contacted* (by anyone):

    - ``households.last_responsible_visit_ms``: the newest non-voided visit made by the
      household's current responsible member (NULL: none, or no responsible member). Kept by
      the writer of visits (``gridsync/visits.py``) when visits are inserted, voided or moved;
      recounted from the household's visits by the trigger below whenever the responsible
      member changes (an assignment, a move, the import, a phone's edit: every writer).
    - ``households_coverage``, the covering index of the roll-ups, holds the new column too, so
      the per-member count still reads the index alone.

    The backfill is this migration's own SQL (``backfill_0016``), frozen."""
    db.executescript(
        """
        ALTER TABLE households ADD COLUMN last_responsible_visit_ms INTEGER;
        DROP INDEX IF EXISTS households_coverage;
        CREATE INDEX households_coverage
            ON households(grid_id, responsible_member_id, last_visit_ms, tags,
                          last_responsible_visit_ms)
            WHERE status = 'active';
        CREATE TRIGGER households_responsible_contact
        AFTER UPDATE OF responsible_member_id ON households
        WHEN old.responsible_member_id IS NOT new.responsible_member_id BEGIN
            UPDATE households SET last_responsible_visit_ms =
                (SELECT max(v.at_ms) FROM visits v WHERE v.household_id = new.id
                 AND v.voided = 0 AND v.member_id = new.responsible_member_id)
            WHERE id = new.id;
        END;
        """
    )
    backfill_0016(db)


def backfill_0016(db: sqlite_utils.Database) -> None:
    """Migration 0016's backfill, frozen: every household's newest non-voided visit by its
    responsible member (``tests/test_honest_figures.py`` compares it with
    ``visits.recount``)."""
    db.execute(
        "UPDATE households SET last_responsible_visit_ms = (SELECT max(v.at_ms) FROM visits v "
        "WHERE v.household_id = households.id AND v.voided = 0 "
        "AND v.member_id = households.responsible_member_id)"
    )


# -- recorded checks (issue 14: checks nobody can game, 随机抽检) ------------------------------


@migrations(name="0018_coverage_checks")
def m0018_coverage_checks(db: sqlite_utils.Database) -> None:
    """A recorded check (``gridsync/coverage/checks.py``): drawn by a role above the assessed
    unit with a seed the server made, its households with the last visit each had when drawn
    (frozen: a visit voided or logged later does not change what was checked), and the
    checker's outcome per household."""
    db.executescript(
        """
        CREATE TABLE coverage_checks (
            id TEXT PRIMARY KEY,                        -- UUIDv7
            scope_id TEXT NOT NULL REFERENCES org_units(id),
            n INTEGER NOT NULL,                         -- households asked for
            seed TEXT NOT NULL,                         -- made by the server (secrets)
            population INTEGER NOT NULL,                -- active households drawn from
            drawn_by TEXT,                              -- person id; NULL: the operator (CLI)
            drawn_device TEXT,
            drawn_ms INTEGER NOT NULL
        );
        CREATE INDEX coverage_checks_scope ON coverage_checks(scope_id, drawn_ms);

        CREATE TABLE coverage_check_households (
            check_id TEXT NOT NULL REFERENCES coverage_checks(id),
            household_id TEXT NOT NULL,
            position INTEGER NOT NULL,                  -- the order of the draw
            last_visit TEXT,                            -- JSON {id, at, member_id, channel,
                                                        -- kinds} when drawn; NULL: never visited
            outcome TEXT CHECK (outcome IN ('confirmed', 'denied', 'unreachable')),
            note TEXT NOT NULL DEFAULT '',
            recorded_by TEXT,
            recorded_ms INTEGER,
            PRIMARY KEY (check_id, household_id)
        ) WITHOUT ROWID;
        """
    )


# -- the burden report (issue 14: what the system costs the people who use it) ---------------


@migrations(name="0019_burden_indexes")
def m0019_burden_indexes(db: sqlite_utils.Database) -> None:
    """The burden report (``gridsync/burden.py``) reads one week of pushes (the audit log's
    ``sync.push`` entries) and of notifications (the outbox by ``created_ms``); without these
    each report would scan both tables whole, and the audit log is never pruned. Both keys only
    grow, so each insert appends at the end of its index."""
    db.executescript(
        """
        CREATE INDEX audit_log_action_at ON audit_log(action, at);
        CREATE INDEX outbox_created ON outbox(created_ms);
        """
    )


# -- the console: one-time sign-in links and browser sessions (issue 16) ----------------------


@migrations(name="0020_console_sessions")
def m0020_console_sessions(db: sqlite_utils.Database) -> None:
    """The web console signs people in by a one-time link (``gridsync/signin.py``): a link is
    used once and lives 15 minutes; opening it starts a server-side session held by an HttpOnly
    cookie. As with device tokens, only SHA-256 hashes of the secrets are kept. A session is
    revocable like a phone (``revoked_at``) and ends on its own at ``expires_ms``."""
    db.executescript(
        """
        CREATE TABLE console_links (
            token_hash TEXT PRIMARY KEY,
            person_id TEXT NOT NULL REFERENCES people(id),
            created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            used_ms INTEGER,
            next_path TEXT NOT NULL DEFAULT '',
            created_by TEXT
        );
        CREATE INDEX console_links_expiry ON console_links(expires_ms);
        CREATE TABLE console_sessions (
            id TEXT PRIMARY KEY,
            person_id TEXT NOT NULL REFERENCES people(id),
            token_hash TEXT NOT NULL UNIQUE,
            created_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            last_seen_ms INTEGER NOT NULL,
            revoked_ms INTEGER,
            user_agent TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX console_sessions_person ON console_sessions(person_id);
        """
    )


# -- hotline orders (issue 17: 12345, 接诉即办) ------------------------------------------------


@migrations(name="0021_hotline_orders")
def m0021_hotline_orders(db: sqlite_utils.Database) -> None:
    """A hotline order is a whistle case with ``source = 'hotline'`` (cases raised by phones
    keep ``'whistle'``) and a row of ``hotline_orders``: the city's order number (unique: the
    same number is the same case), its type, the caller (personal data, masked on reading by
    ``gridsync/privacy.py``), the address, and where it was first dispatched. An order not at a
    grid keeps in ``whistle_cases.grid_id`` the unit it was dispatched to (the column is NOT
    NULL and references org_units; the wire says so in ``order.dispatched_unit_id``).

    ``hotline_callbacks``: the callbacks (回访) of an order, by someone other than its
    handlers; the rates count each order's latest callback."""
    db.executescript(
        """
        ALTER TABLE whistle_cases ADD COLUMN source TEXT NOT NULL DEFAULT 'whistle';
        CREATE TABLE hotline_orders (
            case_id TEXT PRIMARY KEY REFERENCES whistle_cases(id),
            order_no TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,                 -- consult, help, complaint, report, suggestion
            caller_name TEXT NOT NULL DEFAULT '',
            caller_phone TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',
            dispatched_level TEXT NOT NULL,
            dispatched_unit TEXT NOT NULL REFERENCES org_units(id),
            community_id TEXT,                  -- the community it lies in, when known
            received_ms INTEGER NOT NULL        -- the city platform's receipt (received_at)
        );
        CREATE TABLE hotline_callbacks (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES whistle_cases(id),
            by TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            reached INTEGER NOT NULL,
            contacted INTEGER,
            resolved INTEGER,
            satisfied INTEGER,
            note TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX hotline_callbacks_case ON hotline_callbacks(case_id, id);
        CREATE INDEX whistle_cases_source ON whistle_cases(source, received_ms);
        """
    )


@migrations(name="0022_supervision")
def m0022_supervision(db: sqlite_utils.Database) -> None:
    """Supervision (督办): a supervisor marks a case (an order or a whistle case) supervised
    with a note and a new due time; the case's latest row is its supervision, met when the
    case is resolved by ``due_ms``."""
    db.executescript(
        """
        CREATE TABLE supervisions (
            id INTEGER PRIMARY KEY,
            case_id TEXT NOT NULL REFERENCES whistle_cases(id),
            by TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            due_ms INTEGER NOT NULL,
            level TEXT NOT NULL,                -- the level and unit holding the case then
            unit_id TEXT NOT NULL
        );
        CREATE INDEX supervisions_case ON supervisions(case_id, id);
        """
    )


# -- the inbox (issue 17: an inbox on every phone) -------------------------------------------


@migrations(name="0023_notices")
def m0023_notices(db: sqlite_utils.Database) -> None:
    """Every notification to a person is also a ``notices`` row, written by the outbox in the
    transaction of its cause whether or not the person has a channel (``gridsync/notify/
    outbox.py``), and pulled by their phones as the change type ``notice`` (``gridsync/sync/
    notices.py``). ``dedup_key`` is the outbox's (event + ``member:ID``): a cause re-run never
    writes a second notice. ``seq`` is the change seq of the insert and of the ``notice.read``
    that sets ``read_ms``, so every phone of the person learns it was read."""
    db.executescript(
        """
        CREATE TABLE notices (
            id INTEGER PRIMARY KEY,
            person_id TEXT NOT NULL,
            dedup_key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            link TEXT,                                  -- relative path, e.g. /console/cases/ID
            cause TEXT,                                 -- e.g. the case id
            created_ms INTEGER NOT NULL,
            read_ms INTEGER,
            seq INTEGER NOT NULL
        );
        CREATE INDEX notices_person_seq ON notices(person_id, seq);
        CREATE INDEX notices_created ON notices(created_ms);
        """
    )


# -- people, group visits and instructors (issue 18, part 2) ---------------------------------


@migrations(name="0025_member_lifecycle")
def m0025_member_lifecycle(db: sqlite_utils.Database) -> None:
    """A person leaves (``gridsync/lifecycle.py``): ``people.active`` goes to 0 with the reason
    (``moved_away`` 迁出, ``deceased`` 去世, ``transferred`` 转出, ``other`` 其他) and the time.
    Their households are unassigned through the assignment function, whose log line then names
    no member: ``assignment_log.member_id`` becomes nullable (the table is rebuilt, rows and ids
    kept)."""
    db.executescript(
        """
        ALTER TABLE people ADD COLUMN inactive_reason TEXT;
        ALTER TABLE people ADD COLUMN inactive_since TEXT;
        CREATE TABLE assignment_log_new (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            household_id TEXT NOT NULL,
            previous_member_id TEXT,
            member_id TEXT,                              -- NULL: the household was unassigned
            person_id TEXT,
            device_id TEXT,
            override_cap INTEGER NOT NULL DEFAULT 0,
            load_after INTEGER NOT NULL,
            cap INTEGER NOT NULL,
            reason TEXT NOT NULL DEFAULT ''
        );
        INSERT INTO assignment_log_new SELECT id, at, household_id, previous_member_id,
            member_id, person_id, device_id, override_cap, load_after, cap, reason
            FROM assignment_log;
        DROP TABLE assignment_log;
        ALTER TABLE assignment_log_new RENAME TO assignment_log;
        CREATE INDEX assignment_log_household ON assignment_log(household_id, id);
        """
    )


@migrations(name="0026_group_visits")
def m0026_group_visits(db: sqlite_utils.Database) -> None:
    """A group visit (楼栋会, ``visit.create`` with ``household_ids``) is ONE ``visits`` row
    (``household_id``: the first household, ``group_size``: how many) and one
    ``visit_households`` row for each of its households, the first included; only
    ``gridsync/visits.py`` writes them. It is a contact of each household:

    - ``households.last_visit_ms`` and ``last_responsible_visit_ms`` count it for each;
    - ``households.last_single_visit_ms``: the newest non-voided visit of the household alone
      (``group_size = 1``). A priority household's cycle is judged by it unless the policy's
      ``group_contact_counts_for_priority`` says a group contact satisfies it
      (``gridsync/coverage/tallying.py``). Before this migration every visit was single: the
      backfill copies ``last_visit_ms``.

    The covering indexes of the roll-ups hold the new column; the trigger of migration 0016
    recounts a new responsible member's contacts with the group visits too. A link's
    ``grid_id`` (the household's grid, following its moves) lets the pull send a group visit to
    the phones of every grid it names (``visit_households_grid``)."""
    db.executescript(
        """
        ALTER TABLE visits ADD COLUMN group_size INTEGER NOT NULL DEFAULT 1;
        CREATE TABLE visit_households (
            visit_id TEXT NOT NULL,
            household_id TEXT NOT NULL,
            grid_id TEXT NOT NULL,
            PRIMARY KEY (visit_id, household_id)
        ) WITHOUT ROWID;
        CREATE INDEX visit_households_household ON visit_households(household_id, visit_id);
        CREATE INDEX visit_households_grid ON visit_households(grid_id, visit_id);
        ALTER TABLE households ADD COLUMN last_single_visit_ms INTEGER;
        UPDATE households SET last_single_visit_ms = last_visit_ms;
        DROP INDEX IF EXISTS households_coverage;
        CREATE INDEX households_coverage
            ON households(grid_id, responsible_member_id, last_visit_ms, tags,
                          last_responsible_visit_ms, last_single_visit_ms)
            WHERE status = 'active';
        DROP INDEX IF EXISTS households_tagged;
        CREATE INDEX households_tagged
            ON households(grid_id, last_visit_ms, responsible_member_id, tags,
                          last_single_visit_ms)
            WHERE status = 'active' AND tags <> '[]';
        -- the households whose newest contact was a group visit (few): the roll-ups' count of
        -- households contacted this cycle by a group contact only reads them here
        CREATE INDEX households_group_contact
            ON households(grid_id, responsible_member_id, last_visit_ms, last_single_visit_ms)
            WHERE status = 'active' AND last_visit_ms > coalesce(last_single_visit_ms, 0);
        DROP TRIGGER IF EXISTS households_responsible_contact;
        CREATE TRIGGER households_responsible_contact
        AFTER UPDATE OF responsible_member_id ON households
        WHEN old.responsible_member_id IS NOT new.responsible_member_id BEGIN
            UPDATE households SET last_responsible_visit_ms = nullif(max(
                coalesce((SELECT max(v.at_ms) FROM visits v WHERE v.household_id = new.id
                          AND v.voided = 0 AND v.member_id = new.responsible_member_id), -1),
                coalesce((SELECT max(v.at_ms) FROM visit_households l
                          JOIN visits v ON v.id = l.visit_id
                          WHERE l.household_id = new.id AND v.voided = 0
                          AND v.member_id = new.responsible_member_id), -1)), -1)
            WHERE id = new.id;
        END;
        """
    )


# -- the member's digest judges priority households as the roll-up does (issues 14/18) --------


@migrations(name="0027_responsible_single_visit")
def m0027_responsible_single_visit(db: sqlite_utils.Database) -> None:
    """The daily digest asks the coverage engine whether a household is due for its member
    (``coverage.member_contact``), and a priority household's cycle counts a group visit only
    when the policy's ``group_contact_counts_for_priority`` says so, so the digest needs the
    member's own newest visit *alone*:

    - ``households.last_responsible_single_visit_ms``: the newest non-voided single visit
      (``group_size = 1``) made by the household's current responsible member. Kept by the
      writer of visits (``gridsync/visits.py``); recounted with ``last_responsible_visit_ms``
      by the trigger below whenever the responsible member changes.

    The backfill is this migration's own SQL (``backfill_0027``), frozen."""
    db.executescript(
        """
        ALTER TABLE households ADD COLUMN last_responsible_single_visit_ms INTEGER;
        DROP TRIGGER IF EXISTS households_responsible_contact;
        CREATE TRIGGER households_responsible_contact
        AFTER UPDATE OF responsible_member_id ON households
        WHEN old.responsible_member_id IS NOT new.responsible_member_id BEGIN
            UPDATE households SET last_responsible_visit_ms = nullif(max(
                coalesce((SELECT max(v.at_ms) FROM visits v WHERE v.household_id = new.id
                          AND v.voided = 0 AND v.member_id = new.responsible_member_id), -1),
                coalesce((SELECT max(v.at_ms) FROM visit_households l
                          JOIN visits v ON v.id = l.visit_id
                          WHERE l.household_id = new.id AND v.voided = 0
                          AND v.member_id = new.responsible_member_id), -1)), -1),
                last_responsible_single_visit_ms =
                (SELECT max(v.at_ms) FROM visits v WHERE v.household_id = new.id
                 AND v.voided = 0 AND v.group_size = 1
                 AND v.member_id = new.responsible_member_id)
            WHERE id = new.id;
        END;
        """
    )
    backfill_0027(db)


def backfill_0027(db: sqlite_utils.Database) -> None:
    """Migration 0027's backfill, frozen: every household's newest non-voided single visit by
    its responsible member (``tests/test_honest_figures.py`` compares it with
    ``visits.recount``)."""
    db.execute(
        "UPDATE households SET last_responsible_single_visit_ms = (SELECT max(v.at_ms) "
        "FROM visits v WHERE v.household_id = households.id AND v.voided = 0 "
        "AND v.group_size = 1 AND v.member_id = households.responsible_member_id)"
    )
