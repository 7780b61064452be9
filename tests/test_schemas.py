from pathlib import Path

from click.testing import CliRunner

from gridsync import schemas
from gridsync.cli import cli


def test_committed_schemas_are_current():
    r = CliRunner().invoke(cli, ["schemas", "--check"])
    assert r.exit_code == 0, r.output


def test_check_fails_when_stale(tmp_path: Path):
    runner = CliRunner()
    assert runner.invoke(cli, ["schemas", "--dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(cli, ["schemas", "--check", "--dir", str(tmp_path)]).exit_code == 0
    household = tmp_path / "Household.json"
    household.write_text(household.read_text().replace('"head_name"', '"head"'))
    r = runner.invoke(cli, ["schemas", "--check", "--dir", str(tmp_path)])
    assert r.exit_code == 1 and "Household.json" in r.output
    (tmp_path / "Gone.json").write_text("{}")
    assert "Gone.json" in schemas.stale(tmp_path)


def test_household_schema_has_the_wire_fields():
    import json

    doc = json.loads(schemas.render()["Household.json"])
    assert set(doc["properties"]) == {
        "id",
        "grid_id",
        "building",
        "unit",
        "room",
        "head_name",
        "phone",
        "size",
        "tags",
        "notes",
        "responsible_member_id",
        "status",
    }
