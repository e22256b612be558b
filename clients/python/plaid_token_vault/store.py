"""Reading plaid_tokens as the app does, over the app's own Firestore client.

The functions here take a google-cloud-firestore ``Client`` (or anything of
the same shape: the package does not depend on google-cloud-firestore, and
imports only its FieldFilter, when it is installed) and use only this much
of it:

    client.collection(name).document(id).get()   -> snapshot
    client.collection(name).where(filter=FieldFilter(field, "==", value)).stream()
        (where(field, "==", value) when FieldFilter cannot be imported)
    snapshot.exists, snapshot.id, snapshot.to_dict(), snapshot.update_time
    document.update({field_path: value}, option=client.write_option(last_update_time=...))
    client.field_path(*names)
    google.api_core.exceptions.NotFound / FailedPrecondition (matched by name)

Both layouts are read, so the app keeps working before, during and after
``manage-tokens migrate-legacy``: one document per Item (id = item_id, with
a ``status``: this service's layout) and the old service's per-user
documents (id = user_id, no ``status``, an ``items`` map), which the
migration moves one user at a time, each in one transaction.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from .errors import ItemNotFoundError, TokenUnusableError
from .legacy import LegacyDecrypter, open_token
from .vault import Vault

TOKENS_COLLECTION = "plaid_tokens"

_log = logging.getLogger(__name__)

# USAGE_WRITE_EVERY is the least time between two last_used_at writes of a
# token (DESIGN §7): Firestore sustains about one write a second per
# document, and staleness is counted in days. lifecycle/intake.go has the
# same constant.
USAGE_WRITE_EVERY = _dt.timedelta(hours=1)

# LEGACY_ERROR_CODE is the error_code migrate-legacy gives items the old
# service had in status `error`: they are migrated as active, and the next
# validation decides. The reader shows them that way before the migration
# too, so the app sees one Item the same on both sides of it.
LEGACY_ERROR_CODE = "LEGACY_ERROR"

_STATUSES = ("active", "expired", "revoked")
_USE_ATTEMPTS = 3  # reads and conditional writes of one use, as lifecycle's intakeAttempts
_MAX_ID_LENGTH = 256  # lifecycle.MaxItemIDLength


@dataclass(frozen=True)
class Item:
    """One Plaid Item of a user, as the app sees it. Never holds the token.

    ``status`` is ``active``, ``expired`` or ``revoked``; an item the old
    service left in status ``error`` (or one it did not know) reads as
    ``active`` with error_code ``LEGACY_ERROR``, exactly as migrate-legacy
    writes it. ``fields`` is every stored field but ``access_token`` as it
    is in Firestore (``transactions``, ``metadata``, timestamps...).
    ``legacy`` says the item is still in its user's old per-user document.
    """

    item_id: str
    user_id: str
    status: str
    error_code: Optional[str]
    institution_id: Optional[str]
    institution_name: Optional[str]
    environment: Optional[str]
    legacy: bool
    fields: Mapping[str, Any] = field(repr=False)


class TokenStore:
    """The app's reader of plaid_tokens: its users' Items and their tokens.

    ``client`` is the app's google-cloud-firestore Client, ``vault`` the
    Vault of TOKEN_ENCRYPTION_KEY(_PREVIOUS), ``legacy`` the decrypter of
    LEGACY_TOKEN_ENCRYPTION_KEY while Fernet tokens remain. ``clock``
    returns the current time (timezone-aware); tests pin it.
    """

    def __init__(self, client: Any, vault: Vault, legacy: Optional[LegacyDecrypter] = None, *,
                 collection: str = TOKENS_COLLECTION,
                 clock: Optional[Callable[[], _dt.datetime]] = None) -> None:
        self._client = client
        self._vault = vault
        self._legacy = legacy
        self._collection = collection
        self._clock = clock or (lambda: _dt.datetime.now(_dt.timezone.utc))

    def items(self, user_id: str) -> list[Item]:
        """Every Item of ``user_id``, in both layouts, sorted by item id.

        The user's old per-user document is read first, then the user's item
        documents: a migration that lands between the two reads moves items
        from the first to the second, so every item is seen at least once,
        and an item seen in both is the item document's.
        """
        if not _valid_id(user_id):
            return []
        col = self._client.collection(self._collection)
        found: dict[str, Item] = {}
        legacy_doc = col.document(user_id).get()
        for item in _legacy_items(user_id, legacy_doc):
            found[item.item_id] = item
        for snap in _where(col, "user_id", user_id).stream():
            item = _item_from(snap)
            if item is not None and item.user_id == user_id:
                found[item.item_id] = item
        return [found[k] for k in sorted(found)]

    def access_token(self, user_id: str, item_id: str) -> str:
        """The plaintext access token of the user's item, for a Plaid call the
        app is about to make; records the use (see record_use).

        Raises ItemNotFoundError for a missing item and for another user's
        (alike), TokenUnusableError for a revoked or expired one (the user
        must link the account again), and the vault's errors for a token
        that does not decrypt. An active item with an error_code is returned:
        Link's update mode needs it to repair the Item. A failure to record
        the use is logged (logger ``plaid_token_vault.store``), not raised.
        """
        if not _valid_id(user_id) or not _valid_id(item_id):
            raise ItemNotFoundError(f"no item {item_id!r} for this user")
        col = self._client.collection(self._collection)
        ref, snap, path, fields = self._locate(col, user_id, item_id)
        status, _ = _normalized_status(fields)
        if status != "active":
            raise TokenUnusableError(f"item {item_id!r} is {status}; link the account again", status)
        token = open_token(item_id, fields.get("access_token"), self._vault, self._legacy)
        try:
            _record_use(self._client, ref, snap, path, self._clock(),
                        lambda s: _fields_at(s, path) if _owned(s, path, user_id) else None)
        except Exception:  # noqa: BLE001 - any Firestore failure
            # The app's Plaid call must not fail for this bookkeeping; the
            # next use tries again, as last_used_at did not move.
            _log.warning("recording the use of item %s failed", item_id, exc_info=True)
        return token

    def _locate(self, col: Any, user_id: str, item_id: str):
        """Finds the item: its own document, else its user's old per-user
        document, else its own document once more. The migration creates
        the item's document in the transaction that deletes the per-user
        one, so an item that moved between the first two reads is there on
        the third."""
        ref = col.document(item_id)
        snap = ref.get()
        if _token_fields(snap) is None:
            legacy_ref = col.document(user_id)
            legacy_snap = legacy_ref.get()
            path = ("items", item_id)
            if _owned(legacy_snap, path, user_id):
                return legacy_ref, legacy_snap, path, _fields_at(legacy_snap, path)
            snap = ref.get()
        if _owned(snap, (), user_id):
            return ref, snap, (), _token_fields(snap)
        raise ItemNotFoundError(f"no item {item_id!r} for this user")


def record_use(client: Any, item_id: str, *, now: Optional[_dt.datetime] = None,
               collection: str = TOKENS_COLLECTION) -> bool:
    """Records that the app used the token of ``item_id`` (DESIGN §7):
    bumps ``last_used_at`` to ``now`` (default: the current UTC time) when
    it is unset or at least USAGE_WRITE_EVERY (one hour) old, and never
    more often.

    The write carries a precondition on the document's update time, as
    read: a document that changed in between (another instance recorded the
    same use, a cleanup validated or revoked it) is read again and the rule
    decided again, at most three times. So however many app instances use a
    token, it takes about one usage write an hour (Firestore sustains about
    one write a second per document), and a write never lands on a state
    the decision did not see: a token revoked or deleted meanwhile is not
    bumped. The write changes ``last_used_at`` only.

    Returns whether a write landed. Only active tokens are recorded; a
    missing document records nothing. Firestore errors other than the
    precondition's propagate: a caller about to make a Plaid call may log
    and go on (the next use tries again), as the Go service does.
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    ref = client.collection(collection).document(item_id)
    return _record_use(client, ref, ref.get(), (), now, lambda s: _token_fields(s))


def _record_use(client: Any, ref: Any, snap: Any, path: tuple, now: _dt.datetime,
                fields_of: Callable[[Any], Optional[Mapping[str, Any]]]) -> bool:
    """The usage rule over one document: ``path`` is where the item's fields
    are in it (() for an item document, ("items", item_id) in a per-user
    document), ``fields_of`` reads them from a snapshot (None: not this
    token any more)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    for _ in range(_USE_ATTEMPTS):
        fields = fields_of(snap) if snap.exists else None
        if fields is None or _normalized_status(fields)[0] != "active":
            return False
        last = fields.get("last_used_at")
        if isinstance(last, _dt.datetime) and last.tzinfo is not None and now - last < USAGE_WRITE_EVERY:
            return False
        try:
            ref.update({client.field_path(*path, "last_used_at"): now},
                       option=client.write_option(last_update_time=snap.update_time))
            return True
        except Exception as err:  # noqa: BLE001 - google.api_core's classes, matched by name
            if _is_error(err, "NotFound"):
                return False
            if not _is_error(err, "FailedPrecondition"):
                raise
        snap = ref.get()
    return False


def _is_error(err: BaseException, name: str) -> bool:
    """Whether err is google.api_core.exceptions.<name> (or a subclass),
    without importing google-api-core."""
    return any(c.__name__ == name for c in type(err).__mro__)


def _where(col: Any, field_name: str, value: str) -> Any:
    """col filtered on field == value: google-cloud-firestore's FieldFilter
    where it has one (2.11 and later warn about the positional form),
    positional otherwise."""
    try:
        from google.cloud.firestore_v1.base_query import FieldFilter  # type: ignore
    except ImportError:
        return col.where(field_name, "==", value)
    return col.where(filter=FieldFilter(field_name, "==", value))


def _valid_id(doc_id: Any) -> bool:
    """Whether doc_id can name a document the service writes (as Go's
    ValidItemID): anything else names no item, whoever asks."""
    return (isinstance(doc_id, str) and doc_id != "" and len(doc_id.encode("utf-8", "surrogatepass")) <= _MAX_ID_LENGTH
            and "/" not in doc_id and doc_id not in (".", "..")
            and not (len(doc_id) >= 4 and doc_id.startswith("__") and doc_id.endswith("__")))


def _token_fields(snap: Any) -> Optional[Mapping[str, Any]]:
    data = snap.to_dict() if snap.exists else None
    return data if data is not None and "status" in data else None


def _fields_at(snap: Any, path: tuple) -> Optional[Mapping[str, Any]]:
    data = snap.to_dict() if snap.exists else None
    if not path:
        return data
    if data is None or "status" in data:
        return None  # not (or no longer) an old per-user document
    items = data.get("items")
    item = items.get(path[1]) if isinstance(items, dict) else None
    return item if isinstance(item, dict) else None


def _owned(snap: Any, path: tuple, user_id: str) -> bool:
    """Whether the old per-user document in snap holds the item at path for
    user_id (an item's own user_id, when set, must be its document's)."""
    if not path:
        data = _token_fields(snap)
        return data is not None and data.get("user_id") == user_id
    fields = _fields_at(snap, path)
    if fields is None or snap.id != user_id:
        return False
    owner = fields.get("user_id")
    return owner in (None, "", user_id)


def _normalized_status(fields: Mapping[str, Any]) -> tuple[str, Optional[str]]:
    """The item's status and error code as the service reads them: an
    unknown status (the old service's ``error``) is active with
    LEGACY_ERROR, as migrate-legacy writes it."""
    status = fields.get("status")
    code = fields.get("error_code")
    code = code if isinstance(code, str) and code else None
    if status in _STATUSES:
        return status, code
    return "active", LEGACY_ERROR_CODE


def _str(fields: Mapping[str, Any], key: str) -> Optional[str]:
    v = fields.get(key)
    return v if isinstance(v, str) else None


def _public(fields: Mapping[str, Any]) -> dict:
    return {k: v for k, v in fields.items() if k != "access_token"}


def _item_from(snap: Any) -> Optional[Item]:
    data = _token_fields(snap)
    if data is None:
        return None
    status, code = _normalized_status(data)
    return Item(item_id=snap.id, user_id=_str(data, "user_id") or "", status=status, error_code=code,
                institution_id=_str(data, "institution_id"), institution_name=_str(data, "institution_name"),
                environment=_str(data, "environment"), legacy=False, fields=_public(data))


def _legacy_items(user_id: str, snap: Any) -> Iterable[Item]:
    data = snap.to_dict() if snap.exists else None
    if data is None or "status" in data or not isinstance(data.get("items"), dict):
        return []
    out = []
    for item_id, fields in data["items"].items():
        if not isinstance(fields, dict) or not _valid_id(item_id) or item_id == user_id:
            continue  # migrate-legacy refuses these too; the document stays for an operator
        if fields.get("user_id") not in (None, "", user_id):
            continue
        status, code = _normalized_status(fields)
        out.append(Item(item_id=item_id, user_id=user_id, status=status, error_code=code,
                        institution_id=_str(fields, "institution_id"),
                        institution_name=_str(fields, "institution_name"),
                        environment=_str(fields, "environment"), legacy=True, fields=_public(fields)))
    return out
