from tests.conftest import bearer


def test_me(client, tiny):
    r = client.get("/api/v1/me", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["person"]["id"] == "m1"
    assert body["grid_ids"] == ["g1"]
    assert body["policy"]["min_households_per_member"] == 5
