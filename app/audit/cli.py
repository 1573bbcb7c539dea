"""``gridcase case …``: verify case histories and export them as bundles.

    gridcase case verify REF            one case: OK, or the first broken/divergent event and why
    gridcase case verify --all          every case: one line per failure, then totals
    gridcase case verify --bundle FILE  an exported bundle, offline (no database needed or touched)
    gridcase case export REF -o FILE    the case's bundle (events, hashes, process files, state)

Exit status: 0 all verified, 1 a verification failed, 2 the input could not be used.
Verification only reads the database.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext


@click.group("case", help="Verify case histories (hash chain + deterministic replay) and export bundles.")
def case_group():
    pass


@case_group.command("verify")
@click.argument("reference", required=False)
@click.option("--all", "all_cases", is_flag=True, help="Verify every case.")
@click.option("--bundle", "bundle", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify an exported bundle file offline.")
def verify_command(reference, all_cases, bundle):
    """Verify one case (REF), every case (--all) or a bundle (--bundle FILE)."""
    chosen = sum(bool(x) for x in (reference, all_cases, bundle))
    if chosen != 1:
        raise click.UsageError("give exactly one of REF, --all or --bundle FILE")
    if bundle is not None:
        sys.exit(_verify_bundle(bundle))
    sys.exit(_verify_database(reference, all_cases))


def _verify_bundle(path: Path) -> int:
    # Offline on purpose: no app context, no database session (app/audit/bundle.py reads nothing else).
    from app.audit.bundle import BundleError, read_bundle, verify_bundle

    try:
        document = read_bundle(path.read_bytes())
        check = verify_bundle(document)
    except OSError as exc:
        click.echo(f"cannot read {path}: {exc.strerror or exc}", err=True)
        return 2
    except BundleError as exc:
        click.echo(f"{path}: {exc}", err=True)
        return 2
    click.echo(check.verdict.line())
    if check.head_hash:
        click.echo(f"chain head: event {document['case'].get('head_seq')} {check.head_hash} "
                   "(compare with the head shown by the system or on the printed history)")
    return 0 if check.verdict.ok else 1


@with_appcontext
def _verify_database(reference: str | None, all_cases: bool) -> int:
    from app.audit import service
    from app.cases.models import Case
    from app.db import db, rollback
    from app.runtime import runtime
    from sqlalchemy import select

    rt = runtime()
    try:
        if reference:
            case = db.session.scalar(select(Case).where(Case.reference == reference.strip().upper()))
            if case is None:
                click.echo(f"no case {reference}", err=True)
                return 2
            verdict = service.verify_case(case, rt)
            click.echo(verdict.line())
            return 0 if verdict.ok else 1
        total = failed = events = 0
        for verdict in service.verify_all(rt):
            total += 1
            events += verdict.events
            if not verdict.ok:
                failed += 1
                click.echo(verdict.line())
        click.echo(f"verified {total} case(s), {events} event(s): {total - failed} OK, {failed} failed")
        return 1 if failed else 0
    finally:
        rollback()  # read only: nothing to keep


@case_group.command("export")
@click.argument("reference")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the bundle (JSON); '-' for standard output.")
@with_appcontext
def export_command(reference, output):
    """Write case REF's history bundle (verify it later with `gridcase case verify --bundle FILE`)."""
    from app.audit import service
    from app.cases.models import Case
    from app.db import db, rollback
    from app.runtime import runtime
    from sqlalchemy import select

    try:
        case = db.session.scalar(select(Case).where(Case.reference == reference.strip().upper()))
        if case is None:
            click.echo(f"no case {reference}", err=True)
            sys.exit(2)
        document = service.export_bundle(case, runtime(), exported_by="cli")
    finally:
        rollback()
    text = json.dumps(document, ensure_ascii=False, indent=1)
    if str(output) == "-":
        click.echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}: {len(document['events'])} events, head {document['case']['head_hash']}")


commands = [case_group]
