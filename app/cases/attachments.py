"""Files attached to cases: checked by content (not by name), stored by SHA-256,
photos given a thumbnail, and every addition recorded in the case history."""
from __future__ import annotations

import hashlib
import io
from datetime import datetime
from typing import Iterable

from flask import current_app
from PIL import Image, UnidentifiedImageError
from sqlalchemy import select

from app.cases import service as cases
from app.cases.models import Attachment, AttachmentBlob, Case
from app.db import db
from app.errors import InvalidInput, NotFound
from app.people.models import User
from app.timeutil import utcnow

THUMBNAIL_PIXELS = 320
_IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def sniff(content: bytes) -> str | None:
    """The real content type of an upload, or None when it is not one we accept in any case."""
    if content.startswith(b"%PDF-"):
        return "application/pdf"
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.verify()  # a truncated or forged image fails here
            return _IMAGE_TYPES.get(image.format or "")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def check_upload(content: bytes, *, field: str = "file") -> str:
    """The content type of an acceptable upload; otherwise InvalidInput naming the field."""
    limit = current_app.config["ATTACHMENT_MAX_BYTES"]
    if not content:
        raise InvalidInput("the file is empty", code="upload_empty", fields={field: ["the file is empty"]})
    if len(content) > limit:
        message = f"the file is larger than {limit // (1024 * 1024)} MB"
        raise InvalidInput(message, code="upload_too_large", fields={field: [message]})
    content_type = sniff(content)
    if content_type not in current_app.config["ATTACHMENT_TYPES"]:
        message = "only JPEG, PNG or WebP photos and PDF documents can be attached"
        raise InvalidInput(message, code="upload_type", fields={field: [message]})
    return content_type


def add(
    case: Case, content: bytes, filename: str, *, uploaded_by: User | None, task_id: str | None = None,
    public: bool = False, at: datetime | None = None, field: str = "file",
) -> Attachment:
    """Attach a file to a case the caller holds locked; records an ``attachment_added`` event."""
    at = at or utcnow()
    content_type = check_upload(content, field=field)
    digest = hashlib.sha256(content).hexdigest()
    if db.session.get(AttachmentBlob, digest) is None:
        db.session.add(AttachmentBlob(sha256=digest, content=content, size=len(content), thumbnail=_thumbnail(content, content_type)))
    attachment = Attachment(
        case=case, sha256=digest, filename=_clean_name(filename), content_type=content_type, size=len(content),
        uploaded_at=at, uploaded_by_id=uploaded_by.id if uploaded_by else None, task_id=task_id, public=public,
    )
    db.session.add(attachment)
    db.session.flush()
    cases.record(
        case, "attachment_added",
        {"attachment": attachment.id, "filename": attachment.filename, "sha256": digest,
         "size": attachment.size, "content_type": content_type, "task_id": task_id, "public": public},
        actor=uploaded_by, role=None, at=at,
    )
    return attachment


def of_case(case: Case, *, public_only: bool = False) -> list[Attachment]:
    query = select(Attachment).where(Attachment.case_id == case.id).order_by(Attachment.uploaded_at, Attachment.id)
    if public_only:
        query = query.where(Attachment.public.is_(True))
    return list(db.session.scalars(query))


def get(attachment_id: int, case: Case) -> Attachment:
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.case_id != case.id:
        raise NotFound("no such attachment on this case")
    return attachment


def content_of(attachment: Attachment, *, thumbnail: bool = False) -> tuple[bytes, str]:
    blob = attachment.blob
    if thumbnail and blob.thumbnail:
        return blob.thumbnail, "image/jpeg"
    return blob.content, attachment.content_type


def reference(attachment: Attachment) -> str:
    """How a form field refers to an uploaded file in case data."""
    return f"attachment:{attachment.id}"


def referenced_ids(values: Iterable[object]) -> list[int]:
    ids = []
    for value in values:
        if isinstance(value, str) and value.startswith("attachment:") and value[11:].isdigit():
            ids.append(int(value[11:]))
    return ids


def _thumbnail(content: bytes, content_type: str) -> bytes | None:
    if not content_type.startswith("image/"):
        return None
    with Image.open(io.BytesIO(content)) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=80)
        return out.getvalue()


def _clean_name(filename: str) -> str:
    name = (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1].strip() or "upload"
    return "".join(ch for ch in name if ch.isprintable())[:200]
