"""Attachments: checked by content and size, stored by hash with a thumbnail, and recorded."""
from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from app.errors import InvalidInput
from tests.integration.helpers import call, start_case


def png_bytes(size=(800, 600)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def _locked_case(reference):
    from app.cases import service as cases

    return cases.lock_case(cases.get_case(reference).id)


def test_a_photo_is_stored_once_with_a_thumbnail_and_recorded(app, client, world):
    from app.cases import attachments
    from app.db import commit

    reference = start_case(client, world)["reference"]
    photo = png_bytes()
    with app.app_context():
        first = attachments.add(_locked_case(reference), photo, "现场.png", uploaded_by=None)
        second = attachments.add(_locked_case(reference), photo, "再传一次.png", uploaded_by=None)
        commit()
        assert first.sha256 == second.sha256 == hashlib.sha256(photo).hexdigest()
        assert first.content_type == "image/png"
        thumb, kind = attachments.content_of(first, thumbnail=True)
        assert kind == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumb)).size) == attachments.THUMBNAIL_PIXELS
    events = call(client, world, "GET", f"/api/cases/{reference}/events").get_json()["items"]
    added = [e for e in events if e["kind"] == "attachment_added"]
    assert [e["payload"]["filename"] for e in added] == ["现场.png", "再传一次.png"]
    assert added[0]["payload"]["sha256"] == hashlib.sha256(photo).hexdigest()


@pytest.mark.parametrize(
    "content, code",
    [
        (b"<script>alert(1)</script>", "upload_type"),          # an HTML file named .jpg
        (b"GIF89a" + b"\x00" * 100, "upload_type"),             # a type we do not accept
        (png_bytes()[:200], "upload_type"),                     # a truncated image
        (b"", "upload_empty"),
    ],
)
def test_uploads_are_checked_by_content(app, client, world, content, code):
    from app.cases import attachments

    reference = start_case(client, world)["reference"]
    with app.app_context():
        with pytest.raises(InvalidInput) as refused:
            attachments.add(_locked_case(reference), content, "photo.jpg", uploaded_by=None, field="photo_ref")
        assert refused.value.code == code
        assert "photo_ref" in refused.value.fields


def test_uploads_over_the_limit_are_refused(app, client, world, monkeypatch):
    from app.cases import attachments

    monkeypatch.setitem(app.config, "ATTACHMENT_MAX_BYTES", 1000)
    reference = start_case(client, world)["reference"]
    with app.app_context():
        with pytest.raises(InvalidInput) as refused:
            attachments.add(_locked_case(reference), png_bytes(), "big.png", uploaded_by=None)
        assert refused.value.code == "upload_too_large"


def test_a_pdf_is_accepted_without_a_thumbnail(app, client, world):
    from app.cases import attachments
    from app.db import commit

    reference = start_case(client, world)["reference"]
    with app.app_context():
        pdf = attachments.add(_locked_case(reference), b"%PDF-1.4\n%%EOF\n", "会议纪要.pdf", uploaded_by=None)
        commit()
        assert pdf.content_type == "application/pdf"
        assert attachments.content_of(pdf, thumbnail=True) == (b"%PDF-1.4\n%%EOF\n", "application/pdf")
