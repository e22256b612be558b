"""An in-memory Firestore of the app's client's shape, for the store's rules.

It keeps what the rules depend on: documents with an update time that
every write moves, update() that needs the document and honours an
update-time precondition (google.api_core's NotFound and
FailedPrecondition, by name), nested field paths, and == queries. Hooks
let a test act between the store's read and its write, as a concurrent
writer would. test_emulator.py checks the same rules on the real emulator.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from tests.firestore_rest import Client as _RestClient
from tests.firestore_rest import FailedPrecondition, NotFound


class FakeClient:
    def __init__(self) -> None:
        self.docs: dict = {}  # (collection, id) -> {"data": dict, "update_time": int}
        self.version = 0
        self.updates: list = []  # (collection, id, {rendered path: value}) of every update that landed
        self.before_update: Optional[Callable[["FakeDocument"], None]] = None
        # Called after every read (a get, or a query's results) with the
        # document read or the collection queried.
        self.after_read: Optional[Callable[[Any], None]] = None

    field_path = staticmethod(_RestClient.field_path)
    write_option = staticmethod(_RestClient.write_option)

    def collection(self, name: str) -> "FakeCollection":
        return FakeCollection(self, name)

    def put(self, collection: str, doc_id: str, data: dict) -> None:
        """Writes a whole document, as another writer would."""
        self.version += 1
        self.docs[(collection, doc_id)] = {"data": copy.deepcopy(data), "update_time": self.version}

    def delete(self, collection: str, doc_id: str) -> None:
        self.docs.pop((collection, doc_id), None)

    def data(self, collection: str, doc_id: str) -> Optional[dict]:
        doc = self.docs.get((collection, doc_id))
        return copy.deepcopy(doc["data"]) if doc else None


class FakeCollection:
    def __init__(self, client: FakeClient, name: str) -> None:
        self._client, self.id = client, name

    def document(self, doc_id: str) -> "FakeDocument":
        return FakeDocument(self._client, self.id, doc_id)

    def where(self, field: str, op: str, value: Any) -> "FakeQuery":
        assert op == "=="
        return FakeQuery(self._client, self.id, field, value)


class FakeQuery:
    def __init__(self, client: FakeClient, collection: str, field: str, value: Any) -> None:
        self._client, self._collection, self._field, self._value = client, collection, field, value

    def stream(self):
        found = [FakeSnapshot(doc_id, copy.deepcopy(doc["data"]), doc["update_time"])
                 for (collection, doc_id), doc in sorted(self._client.docs.items())
                 if collection == self._collection and doc["data"].get(self._field) == self._value]
        if self._client.after_read:
            self._client.after_read(self)
        return iter(found)


class FakeSnapshot:
    def __init__(self, doc_id: str, data: Optional[dict], update_time: Optional[int]) -> None:
        self.id, self._data, self.update_time = doc_id, data, update_time
        self.exists = data is not None

    def to_dict(self) -> Optional[dict]:
        return copy.deepcopy(self._data)


class FakeDocument:
    def __init__(self, client: FakeClient, collection: str, doc_id: str) -> None:
        self._client, self.collection, self.id = client, collection, doc_id

    def get(self) -> FakeSnapshot:
        doc = self._client.docs.get((self.collection, self.id))
        snap = FakeSnapshot(self.id, copy.deepcopy(doc["data"]), doc["update_time"]) if doc else \
            FakeSnapshot(self.id, None, None)
        if self._client.after_read:
            self._client.after_read(self)
        return snap

    def update(self, field_updates: dict, option: Any = None) -> None:
        if self._client.before_update:
            self._client.before_update(self)
        doc = self._client.docs.get((self.collection, self.id))
        if doc is None:
            raise NotFound("NOT_FOUND", f"no document {self.id}")
        if option is not None and option.last_update_time != doc["update_time"]:
            raise FailedPrecondition("FAILED_PRECONDITION", "the document changed")
        for path, value in field_updates.items():
            node = doc["data"]
            for seg in path.segments[:-1]:
                node = node.setdefault(seg, {})
            node[path.segments[-1]] = value
        self._client.version += 1
        doc["update_time"] = self._client.version
        self._client.updates.append((self.collection, self.id, {str(p): v for p, v in field_updates.items()}))
