"""Photos of field inspections: multipart/form-data parsing and storage under the data dir.

The body arrives whole (the route's own size limit applies before it is read); the parser here is a
small, strict multipart/form-data reader (RFC 7578) so no extra dependency is needed. A photo is
accepted only when its bytes are an image of an allowed type (checked from the file's magic
number, not from the name or the declared type) and it is within the size limit. Files are stored
as `<data_dir>/<photos.directory>/<tenant hash>/<task id>/<photo id>.<ext>`; the name the client
sent is kept as metadata only, never as a path.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from ucity.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
_BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?', re.IGNORECASE)
_DISPOSITION = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


def sniff(data: bytes) -> str | None:
    """The image type of some bytes from their signature, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def parse_multipart(content_type: str | None, body: bytes) -> list[Part]:
    """The parts of a multipart/form-data body; BadRequest / UnsupportedMediaType when it is not one."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("사진은 multipart/form-data로 올립니다 / upload photos as multipart/form-data")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise BadRequest("multipart boundary가 없습니다 / the multipart body has no boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise BadRequest("multipart 본문이 닫히지 않았습니다 / the multipart body is not terminated")
    return [_part(chunk) for chunk in chunks[1:-1]]


def _part(chunk: bytes) -> Part:
    if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
        raise BadRequest("multipart 부분 형식 오류 / a multipart part is malformed")
    head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
    if not sep:
        raise BadRequest("multipart 부분에 헤더가 없습니다 / a multipart part has no header block")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        key, _, val = line.partition(":")
        headers[key.strip().lower()] = val.strip()
    disposition = dict(_DISPOSITION.findall(headers.get("content-disposition", "")))
    if "name" not in disposition:
        raise BadRequest("multipart 부분에 name이 없습니다 / a multipart part has no name")
    return Part(disposition["name"], disposition.get("filename"), headers.get("content-type", "text/plain"), data)


@dataclass(frozen=True, slots=True)
class StoredPhoto:
    id: str
    path: Path
    content_type: str
    size: int
    sha256: str


class PhotoStore:
    """Writes and reads photo files; the directory layout is the store's business alone."""

    def __init__(self, root: Path, max_bytes: int, types: list[str]) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.types = [t for t in types if t in EXTENSIONS]

    def check(self, part: Part) -> str:
        """The photo's real type; 413 when too large, 415 when not an allowed image."""
        if len(part.data) > self.max_bytes:
            raise PayloadTooLarge(f"사진 {len(part.data)} 바이트, 한도 {self.max_bytes} / photo of {len(part.data)} "
                                  f"bytes exceeds the limit of {self.max_bytes}")
        kind = sniff(part.data)
        if kind is None or kind not in self.types:
            raise UnsupportedMediaType(f"허용 형식: {', '.join(self.types)} / allowed photo types: "
                                       f"{', '.join(self.types)} (checked from the file's content)")
        return kind

    def _dir(self, tenant: str, task_id: str) -> Path:
        tenant_key = hashlib.sha256(tenant.encode()).hexdigest()[:16]
        if not re.fullmatch(r"[0-9a-f]{32}", task_id):
            raise BadRequest("잘못된 작업 id / invalid task id")
        return self.root / tenant_key / task_id

    def save(self, tenant: str, task_id: str, part: Part) -> StoredPhoto:
        kind = self.check(part)
        photo_id = uuid.uuid4().hex
        folder = self._dir(tenant, task_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{photo_id}.{EXTENSIONS[kind]}"
        tmp = path.with_suffix(".part")
        tmp.write_bytes(part.data)
        tmp.replace(path)  # a reader never sees half a file
        return StoredPhoto(photo_id, path, kind, len(part.data), hashlib.sha256(part.data).hexdigest())

    def read(self, tenant: str, task_id: str, photo_id: str, content_type: str) -> bytes:
        if not re.fullmatch(r"[0-9a-f]{32}", photo_id) or content_type not in EXTENSIONS:
            raise BadRequest("잘못된 사진 id / invalid photo id")
        return (self._dir(tenant, task_id) / f"{photo_id}.{EXTENSIONS[content_type]}").read_bytes()
