"""Group commit in the Store: writes queued while the writer is busy share one transaction, each
in its own savepoint, so a failing write rolls back alone and callers hear back after COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gridsync.db import GROUP_MAX, GroupRolledBack, Store, next_seq


def _hold_the_writer(store: Store) -> tuple[threading.Event, object]:
    """Occupy the writer thread until the returned event is set (so writes queue up)."""
    started, gate = threading.Event(), threading.Event()

    def hold(db):
        started.set()
        gate.wait()
        return "held"

    future = store.submit(hold)
    started.wait()
    return gate, future


def _put(db, key: str, fail: bool = False) -> int:
    seq = next_seq(db)
    db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [key, str(seq)])
    if fail:
        raise ValueError(f"{key} fails after writing")
    return seq


def _keys(store: Store) -> dict[str, str]:
    return dict(
        store.read(
            lambda db: db.execute("SELECT key, value FROM meta WHERE key LIKE 'k%'").fetchall()
        )
    )


def test_queued_writes_commit_together_and_a_failing_one_rolls_back_alone(store, db_path):
    gate, held = _hold_the_writer(store)
    futures = [store.submit(_put, f"k{i}", fail=(i == 3)) for i in range(6)]
    commits = store.commits
    gate.set()
    assert held.result() == "held"
    results = []
    for i, future in enumerate(futures):
        if i == 3:
            with pytest.raises(ValueError, match="k3 fails"):
                future.result()
        else:
            results.append(future.result())
    assert store.commits == commits + 2  # the held write, then the five others at once
    # in queue order, each seeing the ones before it; the failed one's seq is rolled back too
    assert results == [1, 2, 3, 4, 5]
    assert _keys(store) == {"k0": "1", "k1": "2", "k2": "3", "k4": "4", "k5": "5"}
    # committed: another connection sees it
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("SELECT count(*) FROM meta WHERE key LIKE 'k%'").fetchone()[0] == 5
    finally:
        other.close()


def test_a_group_is_at_most_group_max_writes(store):
    gate, held = _hold_the_writer(store)
    futures = [store.submit(_put, f"k{i}") for i in range(GROUP_MAX + 3)]
    commits = store.commits
    gate.set()
    held.result()
    assert [f.result() for f in futures] == list(range(1, GROUP_MAX + 4))
    assert store.commits == commits + 3  # held, GROUP_MAX, then the last 3


def test_a_write_that_breaks_the_transaction_fails_its_whole_group(store):
    """If a write ends the transaction itself (here: a ROLLBACK of its own; in life an error
    that rolls back everything, such as disk full), the whole group is lost: the culprit gets
    its error, the others a retryable one, and the writer goes on with later writes."""
    gate, held = _hold_the_writer(store)

    def rogue(db):
        db.execute("INSERT INTO meta (key, value) VALUES ('k-rogue', '1')")
        db.conn.execute("ROLLBACK")
        raise RuntimeError("rolled back everything")

    before = store.submit(_put, "k-before")
    bad = store.submit(rogue)
    after = store.submit(_put, "k-after")
    gate.set()
    held.result()
    with pytest.raises(RuntimeError, match="rolled back everything"):
        bad.result()
    for future in (before, after):  # innocent: told to retry, not handed the culprit's error
        with pytest.raises(GroupRolledBack, match="retry") as caught:
            future.result()
        # the API answers it as a retryable 503, not as an internal error (a 500 "bug")
        assert (caught.value.status, caught.value.body()["code"]) == (503, "retry")
    assert _keys(store) == {}
    assert store.write(_put, "k-later") == 1
    assert _keys(store) == {"k-later": "1"}


def test_awrite_callers_share_a_commit_and_see_their_own_errors(store):
    async def storm() -> list:
        gate, _held = _hold_the_writer(store)
        tasks = [
            asyncio.ensure_future(store.awrite(_put, f"k{i}", fail=(i % 4 == 1))) for i in range(8)
        ]
        await asyncio.sleep(0)  # one turn of the loop: every task runs up to its first await
        assert len(store._queue) == 8  # all queued behind the held write
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    commits = store.commits
    outcomes = asyncio.run(storm())
    assert store.commits == commits + 2
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, ValueError)]
    assert failed == [1, 5]
    assert sorted(_keys(store)) == sorted(f"k{i}" for i in range(8) if i not in failed)
