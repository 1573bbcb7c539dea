"""Dashboard pages as leaders use them: figures, filters, scope, charts, exports parsed back."""
from __future__ import annotations

import csv
import io

import pytest

from tests.integration.test_metrics import seed
from tests.web.conftest import sign_in


@pytest.fixture
def seeded(app, with_passwords):
    with app.app_context():
        ids = seed(app)
        from app.db import db

        db.session.remove()
    return ids


def page(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.get_data(as_text=True)


def test_overview_in_chinese_with_figures_comparison_and_svg_charts(app, seeded):
    client = app.test_client()
    sign_in(client, "supervisor")
    html = page(client, "/dashboard/?period=2026-03")
    for term in ("立案率", "按期处置率", "结案率", "按期结案率", "就地解决率", "不出街道率", "满意率", "议事参会率"):
        assert term in html, term
    assert 'data-metric="ontime_closing_rate"' in html
    assert "85.7%" in html          # 6 of 7 should-be-closed cases closed on time
    assert "—" in html              # February had nothing to close: no division by zero
    assert html.count("<svg") >= 3 and "<script" not in html.split("<main>")[1]
    assert "2026-02" in html        # the comparison period is named


def test_overview_in_english(app, seeded):
    client = app.test_client()
    sign_in(client, "supervisor")
    client.post("/language", data={"language": "en", "csrf_token": _token(client)})
    html = page(client, "/dashboard/?period=2026-03")
    assert "On-time closing rate" in html and "Governance dashboard" in html


def _token(client):
    from tests.web.conftest import csrf_token

    return csrf_token(client.get("/dashboard/definitions").get_data(as_text=True))


@pytest.mark.parametrize("query", [
    "period=2026-13", "period=yesterday", "period=custom&from=2026-02-30&to=2026-03-01",
    "period=custom&from=2026-03-09&to=2026-03-01", "level=E", "grid=nowhere", "process=nope",
    "period=custom&from=&to=", "department=" + "x" * 200,
])
def test_bad_filter_values_give_an_in_place_message(app, seeded, query):
    client = app.test_client()
    sign_in(client, "supervisor")
    for url in (f"/dashboard/?{query}", f"/dashboard/rankings?{query}", f"/dashboard/grids?{query}"):
        html = page(client, url, status=400)
        assert 'class="error" role="alert"' in html
        assert "db-filters" in html   # the page is still there, with the defaults
    response = client.get(f"/dashboard/export/metrics.csv?{query}")
    assert response.status_code == 400


def test_community_user_sees_only_their_community(app, seeded):
    client = app.test_client()
    sign_in(client, "community")      # community staff at S-C1
    html = page(client, "/dashboard/rankings?period=2026-03")
    assert 'data-code="S-C1"' in html and 'data-code="S-C2"' not in html
    html = page(client, "/dashboard/grids")
    assert 'data-grid="S-C1-G1"' in html and 'data-grid="S-C2-G1"' not in html
    page(client, "/dashboard/?grid=S-C2&period=2026-03", status=400)   # outside the scope: refused in place
    rows = _csv(client, "/dashboard/export/communities.csv?period=2026-03")
    assert [row[2] for row in rows[1:]] == ["S-C1"]


def test_supervisor_sees_both_communities_ranked(app, seeded):
    client = app.test_client()
    sign_in(client, "supervisor")
    html = page(client, "/dashboard/rankings?period=2026-03")
    assert html.index('data-code="S-C2"') < html.index('data-code="S-C1"')   # 100% before 83.3%
    assert 'data-code="urban_management"' in html


def test_roles_without_a_leading_role_are_refused(app, seeded):
    client = app.test_client()
    sign_in(client, "member")
    assert client.get("/dashboard/").status_code == 403
    assert client.get("/dashboard/export/metrics.csv").status_code == 403
    anonymous = app.test_client()
    assert anonymous.get("/dashboard/").status_code in (302, 401)


def _csv(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    text = response.get_data().decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def test_every_table_exports_as_csv_and_xlsx(app, seeded):
    from openpyxl import load_workbook

    client = app.test_client()
    sign_in(client, "supervisor")
    rows = _csv(client, "/dashboard/export/metrics.csv?period=2026-03")
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["立案率"][1:4] == ["85.7", "6", "7"]
    assert by_name["按期结案率"][1:4] == ["85.7", "6", "7"]
    assert by_name["结案率"][4] == ""                 # previous period: no cases due -> empty, not 0
    hours = _csv(client, "/dashboard/export/hours.csv?period=2026-03")
    assert hours[1][:4] == ["A", "2", "0.8", "0.8"] and hours[2][:4] == ["B", "2", "5.0", "9.0"]
    for table in ("metrics", "volume", "hours", "trend", "communities", "departments", "grids"):
        assert len(_csv(client, f"/dashboard/export/{table}.csv?period=2026-03")) >= 1, table
        response = client.get(f"/dashboard/export/{table}.xlsx?period=2026-03")
        assert response.status_code == 200
        sheet = load_workbook(io.BytesIO(response.get_data())).active
        values = [list(row) for row in sheet.iter_rows(values_only=True)]
        assert values[1][0].endswith("2026-03")
        if table == "metrics":
            row = next(r for r in values if r[0] == "按期结案率")
            assert row[1] == pytest.approx(85.7) and row[2] == 6 and row[3] == 7
    assert client.get("/dashboard/export/nope.csv").status_code == 404
    assert client.get("/dashboard/export/metrics.pdf").status_code == 404


def test_grid_tree_and_definitions(app, seeded):
    client = app.test_client()
    sign_in(client, "supervisor")
    html = page(client, "/dashboard/grids")
    assert 'data-grid="S"' in html and "load-" in html
    rows = _csv(client, "/dashboard/export/grids.csv")
    by_code = {row[1]: row for row in rows[1:]}
    assert by_code["S-C1-G1"][3] == "1"     # the escalated case waits for community acceptance
    assert by_code["S"][3] == "1" and by_code["S-C2-G1"][3] == "0"
    html = page(client, "/dashboard/definitions")
    for term in ("应结案", "准确派遣率", "timer_a_deadline", "end_closed_a", "工作日历"):
        assert term in html, term
