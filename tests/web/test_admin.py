"""Administration pages: grids, people and roles, departments, tokens, CSV import.
Signed in through the real form, with CSRF tokens taken from the pages."""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.integration.helpers import start_case
from tests.web.conftest import PASSWORD, csrf_token, sign_in

CSV = Path(__file__).resolve().parents[1] / "fixtures" / "csv"


# -- helpers ---------------------------------------------------------------------------
def admin_client(client):
    assert sign_in(client, "admin").status_code == 302
    return client


def page(client, url: str) -> tuple[str, str]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    html = response.get_data(as_text=True)
    return html, csrf_token(html)


def post(client, url: str, data: dict, *, prefix: str = "", from_url: str | None = None, **kwargs):
    """Post a form as a browser would: with the CSRF token of the page it is on."""
    _html, token = page(client, from_url or url)
    return client.post(url, data={f"{prefix}csrf_token": token, **data}, **kwargs)


def text(response) -> str:
    return response.get_data(as_text=True)


def field_errors(html: str) -> list[str]:
    return [m.strip() for m in re.findall(r'class="field-error"[^>]*>([^<]*)<', html)]


def basic(username: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def user_id(app, username: str) -> int:
    from app.db import db
    from app.people.models import User

    with app.app_context():
        value = db.session.scalar(select(User.id).where(User.username == username))
        db.session.remove()
        return value


def snapshot(app) -> dict:
    """Everything the admin pages may change, to show that a refused request changed nothing."""
    from app.db import db
    from app.people.models import ApiToken, Department, GridNode, RoleAssignment, User

    with app.app_context():
        state = {
            "grids": sorted(db.session.execute(select(GridNode.code, GridNode.name, GridNode.level, GridNode.parent_id)).all()),
            "users": sorted(db.session.execute(select(User.username, User.display_name, User.phone, User.is_active, User.is_admin,
                                                      User.password_hash, User.department_id)).all()),
            "roles": sorted(db.session.execute(select(RoleAssignment.user_id, RoleAssignment.role, RoleAssignment.grid_node_id)).all()),
            "tokens": sorted(db.session.execute(select(ApiToken.id, ApiToken.revoked_at.is_(None))).all()),
            "departments": sorted(db.session.execute(select(Department.code, Department.name, Department.level)).all()),
        }
        db.session.remove()
        return state


def count(app, model) -> int:
    from app.db import db

    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(model))
        db.session.remove()
        return value


def queue(client, username: str, password: str) -> list[dict]:
    response = client.get("/api/work-items", headers=basic(username, password))
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


@pytest.fixture
def ids(app, with_passwords):
    """Ids for every admin URL: a department, a role assignment and a token of `member`."""
    from app.db import commit, db
    from app.people import service as people
    from app.people.models import ApiToken, RoleAssignment

    with app.app_context():
        department = people.add_department("CG", "城管科", "street", people.grid_by_code("S"))
        member = people.user_by_username("member")
        values = {
            "user_id": member.id,
            "node_id": people.grid_by_code("S-C1").id,
            "department_id": department.id,
            "assignment_id": db.session.scalar(select(RoleAssignment.id).where(RoleAssignment.user_id == member.id)),
            "token_id": db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == member.id)),
            "job_id": "no-such-job",
        }
        commit()
        db.session.remove()
    return values


# -- who may come in -------------------------------------------------------------------------
def test_non_admins_get_403_on_every_admin_url_and_nothing_changes(app, client, ids):
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("admin.")]
    assert len(rules) >= 15, [r.rule for r in rules]
    before = snapshot(app)

    assert sign_in(client, "community").status_code == 302
    token = csrf_token(text(client.get("/no-such-page")))
    form = {"csrf_token": token, "code": "X1", "name": "改名", "level": "grid", "parent": "S-C1", "username": "intruder",
            "display_name": "入侵者", "password": "long-enough-password", "active": "0", "is_admin": "y"}
    for prefix in ("profile-", "password-", "role-", "token-"):
        form.update({f"{prefix}csrf_token": token, f"{prefix}display_name": "入侵者", f"{prefix}is_admin": "y",
                     f"{prefix}password": "long-enough-password", f"{prefix}role": "supervisor", f"{prefix}grid": "S",
                     f"{prefix}name": "stolen"})
    checked = 0
    for rule in rules:
        url = rule.build({name: ids[name] for name in rule.arguments}, append_unknown=False)[1]
        for method in sorted({"GET", "POST"} & rule.methods):
            response = client.open(url, method=method, data=form if method == "POST" else None)
            assert response.status_code == 403, (method, url, response.status_code)
            checked += 1
    assert checked >= 20
    assert snapshot(app) == before

    # Anonymous visitors are sent to the sign-in page.
    client.post("/logout", data={"csrf_token": token})
    anonymous = client.get("/admin/users")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert client.post("/admin/grids", data=form).status_code == 302
    assert snapshot(app) == before


def test_the_navigation_shows_administration_to_admins_only(client, with_passwords):
    sign_in(client, "community")
    assert "系统管理" not in text(client.get("/no-such-page"))
    client.post("/logout", data={"csrf_token": csrf_token(text(client.get("/no-such-page")))})
    admin_client(client)
    assert 'href="/admin/grids"' in text(client.get("/no-such-page"))


# -- grids -----------------------------------------------------------------------------------
def test_the_grid_tree_lists_levels_codes_and_people(client, with_passwords):
    html, _ = page(admin_client(client), "/admin/grids")
    assert "网格管理" in html
    codes = re.findall(r'<tr data-code="([^"]+)" data-depth="(\d)"', html)
    assert codes == [("S", "0"), ("S-C1", "1"), ("S-C1-G1", "2"), ("S-C2", "1"), ("S-C2-G1", "2")]
    row = re.search(r'<tr data-code="S-C1".*?</tr>', html, re.S).group(0)
    assert "社区" in row and 'class="users-here">4<' in row and 'class="optional users-below">6<' in row
    street = re.search(r'<tr data-code="S".*?</tr>', html, re.S).group(0)
    assert "街道" in street and 'class="optional users-below">14<' in street


def test_creating_a_grid_checks_the_level_in_place(app, client, with_passwords):
    from app.people.models import GridNode

    admin_client(client)
    before = count(app, GridNode)
    wrong = post(client, "/admin/grids", {"parent": "S-C1", "level": "street", "code": "S-C1-X", "name": "错层级"})
    assert wrong.status_code == 422
    html = text(wrong)
    assert "街道不能设在社区之下" in "".join(field_errors(html))
    assert 'value="S-C1-X"' in html  # what was typed is kept
    assert post(client, "/admin/grids", {"parent": "", "level": "grid", "code": "TOP", "name": "孤立网格"}).status_code == 422
    duplicate = post(client, "/admin/grids", {"parent": "S-C1", "level": "grid", "code": "S-C1-G1", "name": "重复"})
    assert duplicate.status_code == 422 and "编码 S-C1-G1 已被使用" in text(duplicate)
    assert post(client, "/admin/grids", {"parent": "S-C1", "level": "grid", "code": "", "name": ""}).status_code == 422
    assert count(app, GridNode) == before

    created = post(client, "/admin/grids", {"parent": "S-C1-G1", "level": "building", "code": "S-C1-G1-B7", "name": "7号楼"})
    assert created.status_code == 302
    html = text(client.get(created.headers["Location"]))
    assert "已创建网格 S-C1-G1-B7（7号楼）" in html
    assert '<tr data-code="S-C1-G1-B7" data-depth="3">' in html
    block = post(client, "/admin/grids", {"parent": "S-C2", "level": "block", "code": "S-C2-K1", "name": "东街区"})
    assert block.status_code == 302
    assert count(app, GridNode) == before + 2


def test_renaming_a_grid(app, client, ids):
    admin_client(client)
    url = f"/admin/grids/{ids['node_id']}"
    assert post(client, url, {"name": ""}).status_code == 422
    renamed = post(client, url, {"name": "桂花社区"})
    assert renamed.status_code == 302
    assert "网格 S-C1 已改名为 桂花社区" in text(client.get("/admin/grids"))


# -- people ----------------------------------------------------------------------------------
def create_user(client, username="xiaowang", password="xiaowang-secret", phone="13800000000", **extra):
    return post(client, "/admin/users/new", {"username": username, "display_name": "小王", "phone": phone,
                                             "password": password, **extra})


def test_creating_a_person_then_granting_and_revoking_a_role_changes_their_queue(app, client, world, with_passwords):
    admin_client(client)
    created = create_user(client)
    assert created.status_code == 302
    detail_url = created.headers["Location"]
    assert "已创建用户 xiaowang" in text(client.get(detail_url))

    case = start_case(client, world, grid="S-C1-G1")
    assert queue(client, "xiaowang", "xiaowang-secret") == []  # no role yet

    granted = post(client, f"{detail_url}/roles", {"role-role": "grid_member", "role-grid": "S-C1"}, prefix="role-", from_url=detail_url)
    assert granted.status_code == 302
    html = text(client.get(detail_url))
    assert "已授予 xiaowang 在C1社区的网格员角色" in html
    items = queue(client, "xiaowang", "xiaowang-secret")
    assert [(i["case"]["reference"], i["task"]) for i in items] == [(case["reference"], "register")]

    # Granting the same role again is refused in place.
    again = post(client, f"{detail_url}/roles", {"role-role": "grid_member", "role-grid": "S-C1"}, prefix="role-", from_url=detail_url)
    assert again.status_code == 422 and "已在 S-C1 担任网格员" in text(again)
    unknown = post(client, f"{detail_url}/roles", {"role-role": "mayor", "role-grid": "S-C1"}, prefix="role-", from_url=detail_url)
    assert unknown.status_code == 422 and "未知的角色 mayor" in text(unknown)

    revoke_url = re.search(r'action="(/admin/users/\d+/roles/\d+/revoke)"', html).group(1)
    revoked = post(client, revoke_url, {}, from_url=detail_url)
    assert revoked.status_code == 302
    assert "已撤销 xiaowang 在C1社区的网格员角色" in text(client.get(detail_url))
    assert queue(client, "xiaowang", "xiaowang-secret") == []


def test_the_people_list_masks_phones_searches_and_pages(app, client, with_passwords):
    admin_client(client)
    assert create_user(client, phone="13800000000").status_code == 302
    html, _ = page(client, "/admin/users")
    assert "138****0000" in html and "13800000000" not in html
    assert "人员管理" in html and "网格员@S-C1-G1" in html

    found, _ = page(client, "/admin/users?q=xiao")
    assert re.findall(r'data-username="([^"]+)"', found) == ["xiaowang"]
    by_phone, _ = page(client, "/admin/users?q=1380000")
    assert re.findall(r'data-username="([^"]+)"', by_phone) == ["xiaowang"]

    app.config["PAGE_SIZE_DEFAULT"], size = 5, app.config["PAGE_SIZE_DEFAULT"]
    try:
        first, _ = page(client, "/admin/users")
        last, _ = page(client, "/admin/users?page=4")
    finally:
        app.config["PAGE_SIZE_DEFAULT"] = size
    assert len(re.findall(r"data-username=", first)) == 5 and "第 1 / 4 页" in first  # 16 people
    assert len(re.findall(r"data-username=", last)) == 1 and "第 4 / 4 页" in last


def test_creating_a_person_refuses_bad_input_in_place(app, client, with_passwords):
    from app.people.models import User

    admin_client(client)
    before = count(app, User)
    taken = create_user(client, username="member")
    assert taken.status_code == 422 and "用户名 member 已被使用" in text(taken)
    short = create_user(client, password="short")
    assert short.status_code == 422 and "至少 8 个字符" in text(short)
    phone = create_user(client, phone="call me")
    assert phone.status_code == 422 and "不是有效的电话号码" in text(phone)
    assert count(app, User) == before

    generated = create_user(client, username="xiaoli", password="")
    assert generated.status_code == 200
    secret = re.search(r'<code class="secret" id="secret">([^<]+)</code>', text(generated)).group(1)
    assert "只显示这一次" in text(generated)
    assert queue(client, "xiaoli", secret) == []  # the shown password works


def test_deactivate_reactivate_and_reset_password(app, client, with_passwords):
    admin_client(client)
    detail = f"/admin/users/{user_id(app, 'member')}"
    assert queue(client, "member", PASSWORD) is not None

    assert post(client, f"{detail}/active", {"active": "0"}, from_url=detail).status_code == 302
    assert "已停用" in text(client.get(detail))
    assert client.get("/api/work-items", headers=basic("member", PASSWORD)).status_code == 401
    assert post(client, f"{detail}/active", {"active": "1"}, from_url=detail).status_code == 302
    assert client.get("/api/work-items", headers=basic("member", PASSWORD)).status_code == 200

    short = post(client, f"{detail}/password", {"password-password": "short"}, prefix="password-", from_url=detail)
    assert short.status_code == 422 and "至少 8 个字符" in text(short)
    reset = post(client, f"{detail}/password", {"password-password": "a-new-password"}, prefix="password-", from_url=detail)
    assert reset.status_code == 302
    assert client.get("/api/work-items", headers=basic("member", PASSWORD)).status_code == 401
    assert client.get("/api/work-items", headers=basic("member", "a-new-password")).status_code == 200

    # Administrators cannot lock themselves out.
    own = f"/admin/users/{user_id(app, 'admin')}"
    refused = post(client, f"{own}/active", {"active": "0"}, from_url=own)
    assert refused.status_code == 422 and "不能停用自己的账号" in text(refused)
    demote = post(client, own, {"profile-display_name": "admin"}, prefix="profile-", from_url=own)
    assert demote.status_code == 422 and "不能取消自己的管理员权限" in text(demote)


def test_profile_and_department(app, client, ids):
    admin_client(client)
    created = post(client, "/admin/departments", {"code": "ZJ", "name": "住建科", "level": "street", "grid": "S"})
    assert created.status_code == 302 and "已创建部门 住建科" in text(client.get("/admin/departments"))
    bad = post(client, "/admin/departments", {"code": "ZJ", "name": "重复", "level": "district", "grid": "S-C1"})
    assert bad.status_code == 422
    assert "编码 ZJ 已被使用" in text(bad) and "部门只能隶属于街道或区" in text(bad)
    edited = post(client, f"/admin/departments/{ids['department_id']}", {"name": "城市管理科", "level": "street", "grid": "S"})
    assert edited.status_code == 302

    detail = f"/admin/users/{ids['user_id']}"
    saved = post(client, detail, {"profile-display_name": "李网格", "profile-phone": "13911112222",
                                  "profile-department": str(ids["department_id"])}, prefix="profile-", from_url=detail)
    assert saved.status_code == 302
    html = text(client.get(detail))
    assert "李网格" in html and "139****2222" in html and "城市管理科" in html
    listing, _ = page(client, "/admin/departments")
    row = re.search(r'<tr data-code="CG".*?</tr>', listing, re.S).group(0)
    assert "城市管理科" in row and "<td>1</td>" in row


def test_api_tokens_are_shown_once_and_can_be_revoked(app, client, ids):
    admin_client(client)
    detail = f"/admin/users/{ids['user_id']}"
    issued = post(client, f"{detail}/tokens", {"token-name": "12345 平台"}, prefix="token-", from_url=detail)
    assert issued.status_code == 200
    token = re.search(r'<code class="secret" id="secret">(gc_[^<]+)</code>', text(issued)).group(1)
    assert client.get("/api/work-items", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    html = text(client.get(detail))
    assert token not in html and "12345 平台" in html

    revoke_url = re.findall(r'action="(/admin/users/\d+/tokens/\d+/revoke)"', html)[-1]
    assert post(client, revoke_url, {}, from_url=detail).status_code == 302
    assert client.get("/api/work-items", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# -- CSV import --------------------------------------------------------------------------------
def upload(client, url: str, path_or_bytes, filename: str = "data.csv", **fields):
    """Upload a file with the form's CSRF token (the body is encoded in memory: no temp files)."""
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    _html, token = page(client, url)
    boundary, body = encode_multipart({"csrf_token": token, **fields,
                                       "file": FileStorage(io.BytesIO(data), filename=filename, content_type="text/csv")})
    return client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def test_importing_grids_then_again_changes_nothing(app, client, with_passwords):
    from app.people.models import GridNode

    admin_client(client)
    before = count(app, GridNode)
    first = upload(client, "/admin/grids/import", CSV / "grids.csv")
    assert first.status_code == 302
    html = text(client.get(first.headers["Location"]))
    assert "导入完成：新建 5 条，更新 1 条，未变 0 条。" in html
    assert count(app, GridNode) == before + 5
    depths = dict(re.findall(r'<tr data-code="([^"]+)" data-depth="(\d)"', html))
    assert depths["S-C3"] == "1" and depths["S-C3-K1-G2"] == "3" and depths["S-C3-G1-B1"] == "3"
    assert "第一社区" in html

    again = upload(client, "/admin/grids/import", CSV / "grids.csv")
    assert again.status_code == 302
    assert "新建 0 条，更新 0 条，未变 6 条。" in text(client.get(again.headers["Location"]))
    assert count(app, GridNode) == before + 5


def test_an_import_with_errors_reports_rows_and_columns_and_imports_nothing(app, client, with_passwords):
    from app.people.models import GridNode

    admin_client(client)
    before = snapshot(app)
    response = upload(client, "/admin/grids/import", CSV / "grids_errors.csv")
    assert response.status_code == 422
    html = text(response)
    assert "未导入任何数据：共 7 处问题" in html
    rows = re.findall(r'<tr><td class="row-number">(\d+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>', html)
    assert [(row, column) for row, column, _ in rows] == [
        ("2", "level"), ("3", "parent_code"), ("4", "parent_code"), ("5", "parent_code"), ("6", "level"), ("7", "code"), ("8", "name"),
    ]
    messages = dict(((row, column), message) for row, column, message in rows)
    assert "未知的层级 town" in messages[("2", "level")]
    assert "上级网格 NOPE 不存在" in messages[("3", "parent_code")]
    assert "LOOP-A → LOOP-B → LOOP-A" in messages[("4", "parent_code")]
    assert "社区不能设在网格之下" in messages[("6", "level")]
    assert "已在第 6 行出现" in messages[("7", "code")]
    assert snapshot(app) == before
    assert count(app, GridNode) == 5


def test_a_bom_is_fine_and_dry_run_imports_nothing(app, client, with_passwords):
    from app.people.models import GridNode

    admin_client(client)
    checked = upload(client, "/admin/grids/import", CSV / "grids_bom.csv", dry_run="y")
    assert checked.status_code == 200 and "文件检查无误" in text(checked)
    assert count(app, GridNode) == 5
    imported = upload(client, "/admin/grids/import", CSV / "grids_bom.csv")
    assert imported.status_code == 302
    assert count(app, GridNode) == 7
    html = text(client.get("/admin/grids"))
    assert '<tr data-code="S-C4" data-depth="1">' in html


def test_files_that_are_not_csv_or_too_large_are_refused_clearly(app, client, with_passwords):
    admin_client(client)
    workbook = upload(client, "/admin/grids/import", b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), filename="grids.xlsx")
    assert workbook.status_code == 422 and "这不是 CSV 文本文件" in text(workbook)
    gbk = upload(client, "/admin/grids/import", "code,name,level,parent_code\nS-C9,第九社区,community,S\n".encode("gbk"))
    assert gbk.status_code == 422 and "不是 UTF-8 编码" in text(gbk)
    wrong_header = upload(client, "/admin/grids/import", b"id,title\n1,2\n")
    assert wrong_header.status_code == 422 and "缺少此列" in text(wrong_header)
    semicolons = upload(client, "/admin/grids/import", b"code;name;level;parent_code\nX;Y;grid;S\n")
    assert semicolons.status_code == 422 and "各列须以逗号分隔" in text(semicolons)
    huge = upload(client, "/admin/grids/import", b"code,name,level,parent_code\n" + b"x" * (3 * 1024 * 1024))
    assert huge.status_code == 413 and "文件超过 2 MB" in text(huge)
    just_over = upload(client, "/admin/grids/import", b"code,name,level,parent_code\n" + b"x" * (2 * 1024 * 1024))
    assert just_over.status_code == 422 and "文件超过 2 MB" in text(just_over)
    missing = post(client, "/admin/grids/import", {}, content_type="multipart/form-data")
    assert missing.status_code == 422 and "请选择文件" in text(missing)
    assert count_grids(app) == 5


def count_grids(app) -> int:
    from app.people.models import GridNode

    return count(app, GridNode)


def test_importing_people_shows_generated_passwords_once_and_is_idempotent(app, client, world, with_passwords):
    from app.people.models import RoleAssignment, User

    admin_client(client)
    users, roles = count(app, User), count(app, RoleAssignment)
    first = upload(client, "/admin/users/import", CSV / "users.csv")
    assert first.status_code == 200
    html = text(first)
    assert "新建 2 条，更新 1 条，未变 0 条。" in html
    generated = dict(re.findall(r'<tr><td>([^<]+)</td><td><code class="secret">([^<]+)</code></td></tr>', html))
    assert list(generated) == ["lisi"]
    assert count(app, User) == users + 2 and count(app, RoleAssignment) == roles + 4

    assert queue(client, "zhangsan", "zhangsan-secret") is not None
    case = start_case(client, world, grid="S-C1-G1")
    assert [i["task"] for i in queue(client, "zhangsan", "zhangsan-secret")] == ["register"]
    assert queue(client, "lisi", generated["lisi"]) is not None
    listing = text(client.get("/admin/users?q=member"))
    assert "测试网格员" in listing and "139****1111" in listing
    assert case["reference"]

    again = upload(client, "/admin/users/import", CSV / "users.csv")
    assert again.status_code == 302
    assert "新建 0 条，更新 0 条，未变 3 条。" in text(client.get(again.headers["Location"]))
    assert count(app, User) == users + 2 and count(app, RoleAssignment) == roles + 4
    assert queue(client, "lisi", generated["lisi"]) is not None  # the password was not changed


def test_a_people_import_with_errors_imports_nobody(app, client, with_passwords):
    admin_client(client)
    before = snapshot(app)
    response = upload(client, "/admin/users/import", CSV / "users_errors.csv")
    assert response.status_code == 422
    rows = re.findall(r'<tr><td class="row-number">(\d+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>', text(response))
    assert [(row, column) for row, column, _ in rows] == [
        ("2", "phone"), ("3", "password"), ("3", "roles"), ("4", "username"), ("5", "display_name"), ("5", "roles"), ("5", "roles"),
    ]
    assert "网格 NOPE 不存在" in rows[2][2] and "未知的角色 mayor" in rows[5][2]
    assert snapshot(app) == before


def test_pages_speak_english_too(client, with_passwords):
    admin_client(client)
    html = text(client.get("/admin/grids"))
    client.post("/language", data={"language": "en", "next": "/admin/grids", "csrf_token": csrf_token(html)})
    english = text(client.get("/admin/grids"))
    assert "Grids" in english and "New grid" in english and "Community" in english
    wrong = post(client, "/admin/grids", {"parent": "S-C1", "level": "street", "code": "S-C1-X", "name": "x"})
    assert wrong.status_code == 422 and "Street cannot be placed under Community" in text(wrong)
