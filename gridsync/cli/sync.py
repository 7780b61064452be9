"""CLI commands of the sync area: ``gridsync simulate``."""

from __future__ import annotations

import secrets
from dataclasses import asdict
from functools import partial
from typing import Any

import click
import httpx

from gridsync import auth, org
from gridsync.audit import Actor
from gridsync.cli.base import check_db, cli, echo_json, open_store, run, stderr_bar

PHONE_ROLES = ("member", "branch_secretary", "community_secretary")


def choose_people(people: list[dict[str, Any]], n: int) -> list[str]:
    """N person ids for N phones, chosen so that phones share households: members grouped by
    grid (at most three per grid, largest groups first), a secretary whose scope covers them now
    and then; people get a second phone when there are fewer people than phones."""
    members = [p for p in people if "member" in p["roles"]]
    secretaries = [
        p for p in people if {"community_secretary", "branch_secretary"} & set(p["roles"])
    ]
    groups: dict[tuple[str, ...], list[str]] = {}
    for p in members:
        groups.setdefault(tuple(p["scope"]), []).append(p["id"])
    ordered = sorted(groups.values(), key=lambda ids: (-len(ids), ids))
    n_secretaries = min(len(secretaries), max(1 if n >= 3 else 0, n // 4))
    chosen = [pid for ids in ordered for pid in ids[:3]][: n - n_secretaries]
    chosen += [p["id"] for p in secretaries[:n_secretaries]]
    pool = chosen or [p["id"] for p in people]
    if not pool:
        return []
    i = 0
    while len(chosen) < n:  # second phones for the same people
        chosen.append(pool[i % len(pool)])
        i += 1
    return chosen


def _phones_from_db(db_path: str, n: int, tag: str) -> list[Any]:
    from gridsync.sync.simulate import Phone

    with open_store(db_path) as store:
        everyone = org.Scope("cli", True, frozenset(), frozenset(), 0)
        people: list[dict[str, Any]] = []
        for role in PHONE_ROLES:
            items, _ = run(
                partial(store.read, org.list_people, everyone, role=role, limit=1_000_000)
            )
            people += [
                {"id": p.id, "roles": p.roles, "scope": p.scope}
                for p in items
                if p.active and p.id not in {q["id"] for q in people}
            ]
        phones = []
        for i, person_id in enumerate(choose_people(people, n)):
            enrolled = run(
                partial(
                    store.write,
                    auth.enroll,
                    person_id,
                    Actor.cli(),
                    label="gridsync simulate",
                    device_id=f"sim-{tag}-{i:03d}",
                )
            )
            phones.append(Phone(person_id, enrolled.device_id, enrolled.token))
    return phones


def _phones_from_api(http: httpx.Client, admin_token: str, n: int, tag: str) -> list[Any]:
    from gridsync.sync.simulate import Phone

    headers = {"Authorization": f"Bearer {admin_token}"}
    people: list[dict[str, Any]] = []
    for role in PHONE_ROLES:
        offset = 0
        while True:
            r = http.get(
                "/api/v1/people",
                params={"role": role, "limit": 500, "offset": offset},
                headers=headers,
            )
            if r.status_code != 200:
                raise click.ClickException(f"listing people failed: {r.status_code} {r.text}")
            page = r.json()
            people += [
                p
                for p in page["items"]
                if p.get("active", True) and p["id"] not in {q["id"] for q in people}
            ]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
    phones = []
    for i, person_id in enumerate(choose_people(people, n)):
        r = http.post(
            "/api/v1/devices",
            headers=headers,
            json={
                "person_id": person_id,
                "label": "gridsync simulate",
                "device_id": f"sim-{tag}-{i:03d}",
            },
        )
        if r.status_code not in (200, 201):
            raise click.ClickException(f"enrolling a device failed: {r.status_code} {r.text}")
        body = r.json()
        phones.append(Phone(person_id, body["device_id"], body["token"]))
    return phones


@cli.command()
@click.option("--url", required=True, help="The server, e.g. http://127.0.0.1:8000")
@click.option(
    "--devices",
    "n_devices",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many phones to simulate.",
)
@click.option(
    "--days",
    default=3,
    show_default=True,
    type=click.IntRange(1, 365),
    help="Simulated days of offline work.",
)
@click.option(
    "--seed",
    default=None,
    type=click.IntRange(-(2**63), 2**63 - 1),
    help="Random seed (default: random).",
)
@click.option(
    "--admin-token", default=None, help="Enrol the phones through the API with this admin token."
)
@click.option(
    "--db",
    "db_path",
    default=None,
    type=click.Path(),
    help="Or enrol the phones directly in the server's database file.",
)
@click.option(
    "--encoding", type=click.Choice(["json", "msgpack"]), default="json", show_default=True
)
@click.option("--gzip/--no-gzip", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def simulate(
    url: str,
    n_devices: int,
    days: int,
    seed: int | None,
    admin_token: str | None,
    db_path: str | None,
    encoding: str,
    gzip: bool,
    as_json: bool,
) -> None:
    """Drive N simulated phones doing offline work against a server, then check convergence.

    Phones are enrolled for members (and a secretary) of the server's data, either through the
    admin API (--admin-token) or directly in the server's database file (--db). Exits 1 when
    any phone does not end equal to the server or a visit went missing.
    """
    from gridsync.sync.simulate import Simulation

    if (admin_token is None) == (db_path is None):
        raise click.UsageError("give exactly one of --admin-token or --db to enrol the phones")
    if db_path is not None:
        check_db(db_path)  # a wrong --db is told before the server is asked anything
    seed = seed if seed is not None else secrets.randbelow(2**31)
    tag = f"{seed}-{secrets.token_hex(3)}"
    with httpx.Client(base_url=url.rstrip("/"), timeout=60.0) as http:
        try:
            http.get("/healthz").raise_for_status()
        except httpx.HTTPError as exc:
            raise click.ClickException(f"no gridsync server at {url}: {exc}") from exc
        if db_path is not None:
            phones = _phones_from_db(db_path, n_devices, tag)
        else:
            assert admin_token is not None
            phones = _phones_from_api(http, admin_token, n_devices, tag)
        if not phones:
            raise click.ClickException(
                "no members or secretaries to give phones to: load data first (gridsync demo)"
            )
        with stderr_bar(length=days, label="simulating days") as bar:
            sim = Simulation(
                http,
                phones,
                days=days,
                seed=seed,
                encoding=encoding,
                gzip=gzip,
                progress=bar.update,
            )
            try:
                result = sim.run()
            finally:
                sim.close()
    doc = {**asdict(result), "ok": result.ok}
    if as_json:
        echo_json(doc)
    else:
        click.echo(f"{result.devices} phones, {result.days} days, seed {result.seed}")
        click.echo(
            f"mutations pushed {result.mutations_pushed}: applied {result.applied}, "
            f"merged {result.merged} ({result.lost_values} values lost to the conflict "
            f"log), rejected {result.rejected}; duplicates answered {result.duplicate}"
        )
        click.echo(
            f"visits: {result.visits_created} logged, {result.visits_on_server} on the "
            f"server, {result.visits_voided} voided, {result.visits_rejected} rejected; "
            f"household edits {result.household_edits}"
        )
        click.echo(
            f"{result.syncs} syncs, quiet after {result.rounds_to_quiescence} final "
            f"rounds; bytes up {result.bytes_up}, down {result.bytes_down}"
        )
        click.echo(
            f"converged: {result.converged_devices}/{result.devices} phones equal to the server"
        )
        for d in result.diverged:
            click.echo(f"DIVERGED {d['device_id']}: {'; '.join(d['problems'])}")
        for e in result.errors:
            click.echo(f"ERROR {e}")
    if not result.ok:
        raise SystemExit(1)
