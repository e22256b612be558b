"""A Firestore client of the app's shape, over the emulator's REST API.

google-cloud-firestore cannot be installed here (no PyPI), so the tests
read and write the real Firestore emulator through its REST API with the
standard library, behind the part of google-cloud-firestore's API that
plaid_token_vault.store uses: Client.collection / field_path / write_option,
CollectionReference.document / where, Query.stream, DocumentReference.get /
update / set / create, DocumentSnapshot.exists / id / to_dict / update_time,
and exceptions named as google.api_core's (NotFound, FailedPrecondition).
Test support only: the app passes its real client.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional


class FirestoreRestError(Exception):
    """A Firestore error answer: ``status`` is its gRPC status name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class NotFound(FirestoreRestError):
    """As google.api_core.exceptions.NotFound."""


class FailedPrecondition(FirestoreRestError):
    """As google.api_core.exceptions.FailedPrecondition."""


class Aborted(FirestoreRestError):
    """As google.api_core.exceptions.Aborted."""


_ERRORS = {"NOT_FOUND": NotFound, "FAILED_PRECONDITION": FailedPrecondition, "ABORTED": Aborted}


class FieldPath(str):
    """A rendered field path (google-cloud-firestore's syntax) that keeps its
    segments, so an update can nest its value."""

    segments: tuple


class Timestamp(_dt.datetime):
    """A timestamp read from Firestore, keeping the server's exact text:
    an update-time precondition must name the nanoseconds, which datetime
    cannot hold (google-cloud-firestore's DatetimeWithNanoseconds does the
    same)."""

    raw: str


class LastUpdateOption:
    def __init__(self, last_update_time: Timestamp) -> None:
        self.last_update_time = last_update_time


_SIMPLE = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


class Client:
    """The emulator's databases/{database}/documents of ``project``."""

    def __init__(self, project: str, database: str = "(default)", host: Optional[str] = None) -> None:
        host = host or os.environ["FIRESTORE_EMULATOR_HOST"]
        self._name = f"projects/{project}/databases/{database}/documents"
        self._root = (f"http://{host}/v1/projects/{urllib.parse.quote(project, safe='')}"
                      f"/databases/{urllib.parse.quote(database, safe='()')}/documents")
        self.requests = 0  # HTTP requests made, for tests that count reads and writes

    def collection(self, name: str) -> "CollectionReference":
        return CollectionReference(self, name)

    @staticmethod
    def field_path(*names: str) -> FieldPath:
        parts = []
        for name in names:
            if _SIMPLE.fullmatch(name):
                parts.append(name)
            else:
                parts.append("`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`")
        path = FieldPath(".".join(parts))
        path.segments = tuple(names)
        return path

    @staticmethod
    def write_option(**kwargs: Any) -> LastUpdateOption:
        if set(kwargs) != {"last_update_time"}:
            raise TypeError("only last_update_time is supported")
        return LastUpdateOption(kwargs["last_update_time"])

    def _call(self, method: str, url: str, body: Optional[dict] = None) -> Any:
        self.requests += 1
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Content-Type": "application/json",
            # The emulator's administrator: security rules do not apply.
            "Authorization": "Bearer owner",
        })
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            payload = err.read()
            try:
                error = json.loads(payload)["error"]
                status, message = error.get("status", str(err.code)), error.get("message", "")
            except (ValueError, KeyError, TypeError):
                status, message = str(err.code), payload.decode(errors="replace")
            raise _ERRORS.get(status, FirestoreRestError)(status, message) from None


class CollectionReference:
    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.id = name

    def document(self, doc_id: str) -> "DocumentReference":
        return DocumentReference(self._client, self.id, doc_id)

    def where(self, field_path: str, op: str, value: Any) -> "Query":
        if op != "==":
            raise ValueError("only == is supported")
        return Query(self._client, self.id, field_path, value)

    def stream(self):
        return Query(self._client, self.id, None, None).stream()


class Query:
    def __init__(self, client: Client, collection: str, field_path: Optional[str], value: Any) -> None:
        self._client, self._collection, self._field, self._value = client, collection, field_path, value

    def stream(self):
        query: dict = {"from": [{"collectionId": self._collection}]}
        if self._field is not None:
            query["where"] = {"fieldFilter": {"field": {"fieldPath": self._field}, "op": "EQUAL",
                                              "value": encode_value(self._value)}}
        answer = self._client._call("POST", self._client._root + ":runQuery", {"structuredQuery": query})
        for entry in answer or []:
            if "document" in entry:
                doc = entry["document"]
                yield DocumentSnapshot(doc["name"].rsplit("/", 1)[1], doc)


class DocumentReference:
    def __init__(self, client: Client, collection: str, doc_id: str) -> None:
        self._client, self._collection, self.id = client, collection, doc_id
        self._url = f"{client._root}/{urllib.parse.quote(collection, safe='')}/{urllib.parse.quote(doc_id, safe='')}"
        self._name = f"{client._name}/{collection}/{doc_id}"

    def get(self) -> "DocumentSnapshot":
        try:
            return DocumentSnapshot(self.id, self._client._call("GET", self._url))
        except NotFound:
            return DocumentSnapshot(self.id, None)

    def update(self, field_updates: dict, option: Optional[LastUpdateOption] = None) -> None:
        """Sets the given field paths (and nothing else); the document must
        exist, and with ``option`` must not have changed since then."""
        fields: dict = {}
        for path, value in field_updates.items():
            segments = getattr(path, "segments", None) or tuple(path.split("."))
            node = fields
            for seg in segments[:-1]:
                node = node.setdefault(seg, {})
            node[segments[-1]] = value
        precondition = ({"updateTime": option.last_update_time.raw} if option is not None else {"exists": True})
        self._commit(fields, [str(p) for p in field_updates], precondition)

    def set(self, data: dict) -> None:
        """Replaces the whole document."""
        self._commit(data, None, None)

    def create(self, data: dict) -> None:
        """Creates the document; fails (FailedPrecondition) if it exists."""
        self._commit(data, None, {"exists": False})

    def _commit(self, data: dict, mask: Optional[list], precondition: Optional[dict]) -> None:
        # One write through :commit, as the client libraries send it (the
        # emulator ignores a PATCH's currentDocument.updateTime parameter).
        write: dict = {"update": {"name": self._name, "fields": encode_value(data)["mapValue"]["fields"]}}
        if mask is not None:
            write["updateMask"] = {"fieldPaths": mask}
        if precondition is not None:
            write["currentDocument"] = precondition
        self._client._call("POST", self._client._root + ":commit", {"writes": [write]})


class DocumentSnapshot:
    def __init__(self, doc_id: str, doc: Optional[dict]) -> None:
        self.id = doc_id
        self._doc = doc
        self.exists = doc is not None
        self.update_time = parse_timestamp(doc["updateTime"]) if doc else None

    def to_dict(self) -> Optional[dict]:
        if self._doc is None:
            return None
        return {k: decode_value(v) for k, v in self._doc.get("fields", {}).items()}


def parse_timestamp(s: str) -> Timestamp:
    m = _TIMESTAMP.fullmatch(s)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {s!r}")
    base = _dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    micros = int((m.group(2) or "0").ljust(9, "0")[:6])
    ts = Timestamp(base.year, base.month, base.day, base.hour, base.minute, base.second, micros,
                   tzinfo=_dt.timezone.utc)
    ts.raw = s
    return ts


def format_timestamp(t: _dt.datetime) -> str:
    if t.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_value(v: Any) -> dict:
    if v is None:
        return {"nullValue": None}
    if isinstance(v, bool):
        return {"booleanValue": v}
    if isinstance(v, int):
        return {"integerValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, _dt.datetime):
        return {"timestampValue": format_timestamp(v)}
    if isinstance(v, bytes):
        return {"bytesValue": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {"mapValue": {"fields": {k: encode_value(x) for k, x in v.items()}}}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [encode_value(x) for x in v]}}
    raise TypeError(f"cannot store a {type(v).__name__} in Firestore")


def decode_value(v: dict) -> Any:
    (kind, x), = v.items()
    if kind == "nullValue":
        return None
    if kind in ("booleanValue", "stringValue", "referenceValue"):
        return x
    if kind == "integerValue":
        return int(x)
    if kind == "doubleValue":
        return float(x)
    if kind == "timestampValue":
        return parse_timestamp(x)
    if kind == "bytesValue":
        return base64.b64decode(x)
    if kind == "mapValue":
        return {k: decode_value(y) for k, y in x.get("fields", {}).items()}
    if kind == "arrayValue":
        return [decode_value(y) for y in x.get("values", [])]
    if kind == "geoPointValue":
        return (x.get("latitude", 0.0), x.get("longitude", 0.0))
    raise ValueError(f"unknown Firestore value kind {kind}")
