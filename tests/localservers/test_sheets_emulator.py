"""The emulator behaves like Sheets where the project depends on it (checked over plain HTTP)."""

from __future__ import annotations

import requests

from tests.sheets.helpers import HEADER


def api(emulator, method, path, **kwargs):
    return requests.request(method, f"{emulator.url}/v4/spreadsheets/{path}", timeout=10, **kwargs)


def test_user_entered_parses_like_the_ui_and_raw_stores_as_given(emulator, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    values = [["0812", '=HYPERLINK("http://x","label")', "TRUE", "2024-05-01", "+6281234567890", "'0812"]]
    for row, option in ((2, "USER_ENTERED"), (3, "RAW")):
        answer = api(
            emulator,
            "PUT",
            f"{spreadsheet_id}/values/Sheet1%21A{row}",
            params={"valueInputOption": option},
            json={"values": values},
        )
        assert answer.ok, answer.text

    user_entered, raw = emulator.cells(spreadsheet_id, "Sheet1", "A2:F3")
    assert [c["type"] for c in user_entered] == ["number", "formula", "bool", "date", "number", "text"]
    assert user_entered[0]["value"] == 812  # a number never keeps a leading zero
    assert user_entered[1]["formula"].startswith("=HYPERLINK")
    assert user_entered[1]["value"] == "label"
    assert user_entered[4]["formatted"] == "6.28123E+12"
    assert user_entered[5]["value"] == "0812"
    assert [c["type"] for c in raw] == ["text"] * 6
    assert [c["value"] for c in raw] == values[0]


def test_render_options_differ_as_in_sheets(emulator, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [["phone", "date", "f"], ["6281234567890", "2024-05-01", '=HYPERLINK("u")']],
                "scientific": ["phone"],
            }
        ],
    )

    def get(**params):
        answer = api(emulator, "GET", f"{spreadsheet_id}/values/Sheet1%21A2%3AC2", params=params)
        return answer.json()["values"][0]

    assert get() == ["6.28123E+12", "2024-05-01", "u"]
    assert get(valueRenderOption="UNFORMATTED_VALUE") == [6281234567890, 45413, "u"]
    assert get(valueRenderOption="UNFORMATTED_VALUE", dateTimeRenderOption="FORMATTED_STRING")[1] == "2024-05-01"
    assert get(valueRenderOption="FORMULA")[2] == '=HYPERLINK("u")'


def test_quota_answers_429_like_google_and_counts_by_kind(emulator, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    emulator.configure(read_per_user=2, window_seconds=30)
    emulator.reset_counts()

    answers = [api(emulator, "GET", spreadsheet_id) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    error = answers[2].json()["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert "Read requests per minute per user" in error["message"]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 30
    counts = emulator.counts()
    assert (counts["read"], counts["write"], counts["throttled_read"]) == (3, 0, 1)
    assert counts["busiest_window"] == 2, "a refused request uses no quota"


def test_the_busiest_window_slides_over_bucket_edges() -> None:
    from localservers.sheets.quota import Stats

    stats = Stats(window_seconds=60)
    stats.per_second.update({100: 3, 130: 4, 159: 2, 160: 5, 200: 1})
    assert stats.busiest_window() == 11  # seconds 101..160; second 100 falls out as 160 comes in


def test_writes_outside_the_grid_fail_and_a_batch_is_all_or_nothing(emulator, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [["a", "b"]], "col_count": 2, "row_count": 5}])
    body = {
        "valueInputOption": "RAW",
        "data": [
            {"range": "Sheet1!A2", "values": [["written?"]]},
            {"range": "Sheet1!C2", "values": [["outside"]]},
        ],
    }

    answer = api(emulator, "POST", f"{spreadsheet_id}/values:batchUpdate", json=body)

    assert answer.status_code == 400
    assert "exceeds grid limits" in answer.json()["error"]["message"]
    assert emulator.cells(spreadsheet_id, "Sheet1") == [
        [{"type": "text", "value": "a", "formatted": "a"}, {"type": "text", "value": "b", "formatted": "b"}]
    ]


def test_seeding_from_csv_on_the_command_line(tmp_path):
    from localservers.process import ServerProcess

    csv_path = tmp_path / "patients.csv"
    csv_path.write_text("identifier,phone_number\n3302011234567890,6281234567890\n'0012,'0812\n", encoding="utf-8")
    args = ["--seed", f"demo:Pasien={csv_path}", "--scientific", "demo:Pasien=phone_number", "--token", "t0k=demo@x"]
    with ServerProcess("localservers.sheets", args, health_path="/_emulator/health") as server:
        headers = {"Authorization": "Bearer t0k"}
        url = f"{server.url}/v4/spreadsheets/demo/values/Pasien%21A2%3AB3"
        formatted = requests.get(url, headers=headers, timeout=10).json()["values"]
        raw = requests.get(url, params={"valueRenderOption": "UNFORMATTED_VALUE"}, headers=headers, timeout=10)
        anonymous = requests.get(url, timeout=10)

    assert formatted == [["3.30201E+15", "6.28123E+12"], ["0012", "0812"]]
    assert raw.json()["values"] == [[3302011234567890, 6281234567890], ["0012", "0812"]]
    assert anonymous.status_code == 401


def test_state_file_survives_a_restart(tmp_path):
    from localservers.process import ServerProcess

    state = tmp_path / "sheets.json"
    args = ["--allow-anonymous", "--state", str(state)]
    with ServerProcess("localservers.sheets", args, health_path="/_emulator/health") as server:
        spec = {
            "spreadsheet_id": "kept",
            "sheets": [{"title": "S", "rows": [["'0812", "6281234567890"]], "scientific": ["B"]}],
        }
        assert requests.post(f"{server.url}/_emulator/spreadsheets", json=spec, timeout=10).ok
    with ServerProcess("localservers.sheets", args, health_path="/_emulator/health") as server:
        values = requests.get(f"{server.url}/v4/spreadsheets/kept/values/S%21A1%3AB1", timeout=10).json()["values"]

    assert values == [["0812", "6.28123E+12"]]


def test_a_watch_timeline_shows_the_changes_and_the_last_count() -> None:
    from localservers.watch import Watch

    watch = Watch(started=0.0, seen=[(0.1, 0), (1.0, 0), (2.2, 100), (3.1, 100), (4.0, 250), (9.6, 900)])
    assert watch.timeline() == "0 s: 0 · 2 s: 100 · 4 s: 250 · 10 s: 900"
    assert watch.first_seen() == 2.2
    assert Watch(started=0.0, seen=[(i, i) for i in range(20)]).timeline(points=3) == "0 s: 0 · 10 s: 10 · 19 s: 19"
