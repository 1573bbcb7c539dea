"""CSV import of grids and people (all or nothing, idempotent, every error with its row and
column) through the service and the `gridcase admin` commands, on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "tests" / "fixtures" / "csv"
HEADER = b"code,name,level,parent_code\n"


@pytest.fixture
def ctx(app, world):
    """An app context over the test world (S, S-C1, S-C1-G1, S-C2, S-C2-G1 and their people),
    messages in English."""
    from flask_babel import force_locale

    from app.db import db

    with app.app_context(), force_locale("en"):
        yield
        db.session.rollback()
        db.session.remove()


def grids_snapshot():
    from app.db import db
    from app.people.models import GridNode

    return sorted(db.session.execute(select(GridNode.code, GridNode.name, GridNode.level, GridNode.path)).all())


def issues(report) -> list[tuple[int | None, str | None]]:
    return [(issue.row, issue.column) for issue in report.issues]


# -- grids through the service ---------------------------------------------------------
def test_parents_may_come_later_and_paths_follow_the_tree(ctx):
    from app.admin.service import import_grids
    from app.db import commit
    from app.people.service import grid_by_code

    report = import_grids((CSV / "grids.csv").read_bytes())
    assert report.ok, report.issues
    assert sorted(report.created) == ["S-C3", "S-C3-G1", "S-C3-G1-B1", "S-C3-K1", "S-C3-K1-G2"]
    assert report.updated == ["S-C1"] and report.unchanged == []
    commit()
    street, community, building = grid_by_code("S"), grid_by_code("S-C3"), grid_by_code("S-C3-G1-B1")
    assert community.parent_id == street.id and building.path.startswith(community.path)
    assert building.path == f"{grid_by_code('S-C3-G1').path}{building.id}/"
    assert grid_by_code("S-C1").name == "第一社区"

    again = import_grids((CSV / "grids.csv").read_bytes())
    assert (again.created, again.updated, len(again.unchanged)) == ([], [], 6)


def test_every_problem_is_reported_with_row_and_column_and_nothing_changes(ctx):
    from app.admin.service import import_grids

    before = grids_snapshot()
    report = import_grids((CSV / "grids_errors.csv").read_bytes())
    assert issues(report) == [(2, "level"), (3, "parent_code"), (4, "parent_code"), (5, "parent_code"),
                              (6, "level"), (7, "code"), (8, "name")]
    assert "LOOP-A → LOOP-B → LOOP-A" in report.issues[2].message
    assert "LOOP-B → LOOP-A → LOOP-B" in report.issues[3].message
    assert str(report.issues[1]).startswith("row 3, column parent_code: Unknown parent grid NOPE")
    assert grids_snapshot() == before


@pytest.mark.parametrize("rows, expected", [
    # a top-level node must be a street or district
    (b"X1,x,community,\n", [(2, "level")]),
    # a level must be strictly below its parent's (an existing parent here)
    (b"X1,x,street,S\n", [(2, "level")]),
    (b"X1,x,grid,S-C1-G1\n", [(2, "level")]),
    # existing nodes are never moved to another parent
    (b"S-C1-G1,x,grid,S-C2\n", [(2, "parent_code")]),
    (b"S-C1,x,community,\n", [(2, "parent_code")]),
    # nor given a level that no longer holds their existing children
    (b"S-C1,x,grid,S\n", [(2, "level")]),
    # a node cannot be its own parent; bad codes are refused
    (b"X1,x,community,X1\n", [(2, "parent_code")]),
    (b"bad code,x,community,S\n", [(2, "code")]),
    # a three-node cycle, reported on every row in it; the fine row is not imported either
    (b"A,a,community,C\nB,b,community,A\nC,c,community,B\nOK,ok,community,S\n",
     [(2, "parent_code"), (3, "parent_code"), (4, "parent_code")]),
])
def test_tree_rules(ctx, rows, expected):
    from app.admin.service import import_grids

    before = grids_snapshot()
    report = import_grids(HEADER + rows)
    assert issues(report) == expected, report.issues
    assert grids_snapshot() == before


def test_the_file_itself(ctx):
    from app.admin.service import MAX_IMPORT_BYTES, import_grids

    bom_crlf_quotes = "\ufeffCode, Name ,LEVEL,parent_code\r\n\r\n\"S-C9\",\"第九社区, 新建\",community,S\r\n,,,\r\n".encode("utf-8")
    before = grids_snapshot()
    report = import_grids(bom_crlf_quotes, dry_run=True)
    assert report.ok and report.created == ["S-C9"], report.issues
    assert grids_snapshot() == before  # a dry run adds nothing
    assert import_grids(bom_crlf_quotes).created == ["S-C9"]

    for data, fragment in [
        (b"", "empty"),
        (HEADER, "no rows"),
        (b"code,name\nX,Y\n", "Missing column"),
        (HEADER.rstrip(b"\n") + b",colour\nX,Y,grid,S-C1,red\n", "Unknown column"),
        (HEADER + b"X,Y,grid,S-C1,surplus\n", "has 5 values"),
        ("code,name,level,parent_code\nX,九,grid,S-C1\n".encode("gb18030"), "not UTF-8"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "not a CSV text file"),
        (HEADER + b'X,"unterminated,grid,S\n', "not valid CSV"),
        (HEADER + b"x" * MAX_IMPORT_BYTES, "larger than 2 MB"),
    ]:
        found = import_grids(data)
        assert not found.ok and fragment in " ".join(i.message for i in found.issues), (data[:40], found.issues)


# -- people through the service ----------------------------------------------------------
def test_people_import_creates_updates_and_reports_generated_passwords_once(ctx):
    from app.admin.service import import_users
    from app.db import commit
    from app.people import service as people

    report = import_users((CSV / "users.csv").read_bytes())
    assert report.ok, report.issues
    assert (report.created, report.updated) == (["zhangsan", "lisi"], ["member"])
    assert list(report.passwords) == ["lisi"]
    commit()
    assert people.check_password("zhangsan", "zhangsan-secret") is not None
    assert people.check_password("lisi", report.passwords["lisi"]) is not None
    lisi = people.user_by_username("lisi")
    assert sorted((a.role, a.grid_node.code) for a in lisi.roles) == [("community_staff", "S-C1"), ("grid_leader", "S-C1")]
    member = people.user_by_username("member")
    assert member.display_name == "测试网格员" and member.phone == "13900001111"
    assert sorted((a.role, a.grid_node.code) for a in member.roles) == [("grid_member", "S-C1-G1"), ("grid_member", "S-C2-G1")]

    again = import_users((CSV / "users.csv").read_bytes())
    assert (again.created, again.updated, again.unchanged, again.passwords) == ([], [], ["zhangsan", "lisi", "member"], {})
    commit()
    assert people.check_password("lisi", report.passwords["lisi"]) is not None  # kept


def test_people_import_errors(ctx):
    from app.admin.service import import_users
    from app.db import db
    from app.people.models import RoleAssignment, User

    def counts():
        return db.session.scalar(select(func.count()).select_from(User)), db.session.scalar(select(func.count()).select_from(RoleAssignment))

    before = counts()
    report = import_users((CSV / "users_errors.csv").read_bytes())
    assert issues(report) == [(2, "phone"), (3, "password"), (3, "roles"), (4, "username"), (5, "display_name"),
                              (5, "roles"), (5, "roles")]
    assert counts() == before
    minimal = import_users(b"username,display_name\nsolo,\xe7\x8b\xac\xe8\xa1\x8c\n")
    assert minimal.ok and minimal.created == ["solo"] and list(minimal.passwords) == ["solo"]


def test_masking_phones():
    from app.admin.service import mask_phone

    assert mask_phone("13800000000") == "138****0000"
    assert mask_phone("+86 138 0000 1234") == "+86****1234"
    assert mask_phone("12345") == "***45"
    assert mask_phone(None) == "" and mask_phone("") == ""


# -- the commands -------------------------------------------------------------------------
def gridcase(app, tmp_path, *args) -> subprocess.CompletedProcess:
    """`flask --app app …` in a subprocess against the test database (like `gridcase …`)."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], GRIDCASE_INSTANCE_PATH=str(tmp_path / "cli-instance"))
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def grid_count(app) -> int:
    from app.db import db
    from app.people.models import GridNode

    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(GridNode))
        db.session.remove()
        return value


def test_cli_imports_grids_idempotently(app, world, tmp_path):
    result = gridcase(app, tmp_path, "admin", "import-grids", str(CSV / "grids.csv"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 created, 1 updated, 0 unchanged." in result.stdout
    assert grid_count(app) == 10

    again = gridcase(app, tmp_path, "admin", "import-grids", str(CSV / "grids.csv"))
    assert again.returncode == 0 and "0 created, 0 updated, 6 unchanged." in again.stdout
    assert grid_count(app) == 10

    tree = gridcase(app, tmp_path, "admin", "grids")
    assert "      S-C3-K1-G2\tgrid\t东街区第二网格\t0/0" in tree.stdout.splitlines(), tree.stdout


def test_cli_reports_every_error_and_imports_nothing(app, world, tmp_path):
    result = gridcase(app, tmp_path, "admin", "import-grids", str(CSV / "grids_errors.csv"))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if " WARNING " not in line]  # start-up logging aside
    assert lines[1] == "grids_errors.csv: row 3, column parent_code: Unknown parent grid NOPE (not in the file nor in the system)."
    assert len(lines) == 8 and lines[-1] == "Nothing was imported: 7 problem(s).", result.stderr
    assert grid_count(app) == 5

    chinese = gridcase(app, tmp_path, "admin", "import-grids", "--language", "zh_CN", str(CSV / "grids_errors.csv"))
    assert chinese.returncode == 1
    assert "第 3 行 parent_code 列：上级网格 NOPE 不存在" in chinese.stderr and "未导入任何数据：共 7 处问题。" in chinese.stderr
    assert gridcase(app, tmp_path, "admin", "import-grids", "--dry-run", str(CSV / "grids_bom.csv")).returncode == 0
    assert grid_count(app) == 5


def test_cli_imports_people_and_prints_generated_passwords_once(app, world, tmp_path):
    from app.db import db
    from app.people import service as people

    result = gridcase(app, tmp_path, "admin", "import-users", str(CSV / "users.csv"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "2 created, 1 updated, 0 unchanged."
    (password_line,) = [line for line in lines if line.startswith("lisi\t")]
    with app.app_context():
        assert people.check_password("lisi", password_line.split("\t")[1]) is not None
        db.session.remove()
    again = gridcase(app, tmp_path, "admin", "import-users", str(CSV / "users.csv"))
    assert again.stdout.splitlines() == ["0 created, 0 updated, 3 unchanged."]


def test_cli_manages_grids_people_and_roles(app, world, tmp_path):
    from app.db import db
    from app.people import service as people

    steps = [
        (["add-grid", "S-C1-G1-B1", "1号楼", "building", "--parent", "S-C1-G1"], 0),
        (["add-grid", "S-C1-X", "错层级", "street", "--parent", "S-C1"], 1),
        (["add-user", "laozhao", "老赵", "--password", "laozhao-secret", "--phone", "13700000000"], 0),
        (["grant", "laozhao", "网格长", "S-C1"], 0),
        (["grant", "laozhao", "grid_leader", "S-C1"], 1),
        (["add-department", "CG", "城管科", "--grid", "S"], 0),
        (["set-department", "laozhao", "CG"], 0),
        (["deactivate", "laozhao"], 0),
    ]
    for args, code in steps:
        result = gridcase(app, tmp_path, "admin", *args)
        assert result.returncode == code, (args, result.stdout + result.stderr)
    with app.app_context():
        user = people.user_by_username("laozhao")
        assert [(a.role, a.grid_node.code) for a in user.roles] == [("grid_leader", "S-C1")]
        assert user.department_id == people.department_by_code("CG").id and not user.is_active
        assert people.grid_by_code("S-C1-G1-B1").level == "building"
        db.session.remove()
