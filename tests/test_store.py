"""The single writer path: atomic writes, no interleaving, a change sequence, an epoch."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from gridsync.db import Store, current_seq, epoch, next_seq


def test_write_is_atomic(store):
    def half_then_fail(db):
        next_seq(db, 5)
        db.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        store.write(half_then_fail)
    assert store.read(current_seq) == 0
    assert (
        store.read(lambda db: db.execute("SELECT count(*) FROM meta WHERE key='x'").fetchone()[0])
        == 0
    )


def test_concurrent_writers_never_interleave(store):
    """Each write reads a counter, then writes it back incremented: lost updates would show."""
    store.write(lambda db: db.execute("INSERT INTO meta (key, value) VALUES ('n', '0')"))

    def bump(db):
        n = int(db.execute("SELECT value FROM meta WHERE key='n'").fetchone()[0])
        seq = next_seq(db)
        db.execute("UPDATE meta SET value = ? WHERE key='n'", [str(n + 1)])
        return seq

    seqs: list[int] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            s = store.write(bump)
            with lock:
                seqs.append(s)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (
        store.read(lambda db: db.execute("SELECT value FROM meta WHERE key='n'").fetchone()[0])
        == "200"
    )
    assert sorted(seqs) == list(range(1, 201))


def test_a_second_process_store_waits_for_the_lock(db_path, store):
    other = Store(db_path)
    try:
        first = store.write(next_seq, 3)
        second = other.write(next_seq, 2)
        assert (first, second) == (1, 4)
    finally:
        other.close()


def test_epoch_is_per_database(tmp_path):
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        assert a.read(epoch) != b.read(epoch)
        assert len(a.read(epoch)) == 32
    with Store(tmp_path / "a.db") as again:
        assert again.read(epoch) == again.read(epoch)


def test_read_sees_one_snapshot(store):
    store.write(lambda db: db.execute("INSERT INTO meta (key, value) VALUES ('n', '0')"))

    def read_twice(db):
        first = db.execute("SELECT value FROM meta WHERE key='n'").fetchone()[0]
        store.write(lambda w: w.execute("UPDATE meta SET value='1' WHERE key='n'"))
        second = db.execute("SELECT value FROM meta WHERE key='n'").fetchone()[0]
        return first, second

    assert store.read(read_twice) == ("0", "0")
    assert (
        store.read(lambda db: db.execute("SELECT value FROM meta WHERE key='n'").fetchone()[0])
        == "1"
    )


def test_nested_write_is_refused(store):
    with pytest.raises(RuntimeError):
        store.write(lambda db: store.write(next_seq))


def test_close_waits_for_reads_in_flight(db_path):
    """A read running on another thread (a pull page read ahead) finishes before close() closes
    its connection: closing it under the read crashed the whole process (a segfault in SQLite),
    seen once in three full runs of the suite."""
    store = Store(db_path)
    reading, release, order = threading.Event(), threading.Event(), []

    def slow_read(db):
        reading.set()
        release.wait()
        value = db.execute("SELECT count(*) FROM meta").fetchone()[0]
        order.append("read done")
        return value

    reader = concurrent.futures.ThreadPoolExecutor(1).submit(store.read, slow_read)
    assert reading.wait(5)
    closer = threading.Thread(target=lambda: (store.close(), order.append("closed")))
    closer.start()
    while not store._closed:  # close() has begun: it now refuses new reads
        time.sleep(0.001)
    with pytest.raises(RuntimeError, match="closed"):
        store.read(lambda db: 1)
    release.set()
    closer.join(5)
    assert reader.result(5) >= 1
    assert order == ["read done", "closed"]
