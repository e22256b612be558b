"""The Python side of the Go interop and migration tests (interop_test.go,
migration_test.go): one JSON request on stdin, one JSON answer on stdout.

Request (every key optional):

    vault           {"key", "previous": [...], "salt"}: the Vault to use
    legacy_key      LEGACY_TOKEN_ENCRYPTION_KEY
    encrypt         [{"item_id", "plaintext"}]          -> ["v1:..."]
    decrypt         [{"item_id", "stored"}]             -> Vault.decrypt: [{"plaintext"} | {"error"}]
    open            [{"item_id", "stored"}]             -> open_token: the same
    legacy_decrypt  ["stored"]                          -> LegacyDecrypter.decrypt: the same
    needs_reencrypt ["stored"]                          -> [bool]
    fernet_encrypt  ["plaintext"]                       -> the old service's stored values
    firestore       {"project", "database", "now", "users": [...], "create": [...]}
                    -> {"users": {user_id: [item]}, "created": [...]}: the app's
                       view of each user through TokenStore, on the emulator at
                       FIRESTORE_EMULATOR_HOST

An error is reported by the name of its class (DecryptError, ...), so the
Go test compares classes, never messages.
"""

import base64
import datetime as dt
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cryptography.fernet import Fernet  # noqa: E402

from plaid_token_vault import (  # noqa: E402
    LegacyDecrypter,
    TokenError,
    TokenStore,
    TokenUnusableError,
    Vault,
    open_token,
)
from plaid_token_vault.store import TOKENS_COLLECTION  # noqa: E402
from tests import firestore_rest  # noqa: E402


def attempt(fn):
    try:
        return {"plaintext": fn()}
    except (TokenError, ValueError) as err:
        return {"error": type(err).__name__}


def jsonable(v):
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def old_service_encrypt(password, plaintext):
    """The old service's write path: Fernet over a PBKDF2 key, wrapped once
    more in urlsafe base64."""
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), b"plaid_tokens_salt", 100_000, 32)
    return base64.urlsafe_b64encode(Fernet(base64.urlsafe_b64encode(key)).encrypt(plaintext.encode())).decode()


def read_store(req, vault, legacy):
    """The app's view through TokenStore: every Item of every user, and the
    token of each (active ones through access_token, which records the use
    at ``now``; the others from their stored value, to show it survived)."""
    client = firestore_rest.Client(req["project"], req.get("database", "(default)"))
    now = firestore_rest.parse_timestamp(req["now"])
    store = TokenStore(client, vault, legacy, clock=lambda: now)
    out = {"users": {}, "created": []}
    for c in req.get("create") or []:
        # The app writes a new Item itself, in format v1 (DESIGN §12: every writer).
        doc = dict(c["fields"])
        for k in ("created_at", "updated_at"):
            if k in doc:
                doc[k] = firestore_rest.parse_timestamp(doc[k])
        doc["access_token"] = vault.encrypt(c["item_id"], c["plaintext"])
        client.collection(TOKENS_COLLECTION).document(c["item_id"]).create(doc)
        out["created"].append(c["item_id"])
    for user_id in req.get("users") or []:
        items = []
        for item in store.items(user_id):
            got = {"item_id": item.item_id, "user_id": item.user_id, "status": item.status,
                   "error_code": item.error_code, "institution_id": item.institution_id,
                   "institution_name": item.institution_name, "environment": item.environment,
                   "legacy": item.legacy, "fields": jsonable(dict(item.fields))}
            try:
                got["token"] = store.access_token(user_id, item.item_id)
            except TokenUnusableError:
                got["token"] = stored_token(client, user_id, item, vault, legacy)
            items.append(got)
        out["users"][user_id] = items
    return out


def stored_token(client, user_id, item, vault, legacy):
    doc_id = user_id if item.legacy else item.item_id
    data = client.collection(TOKENS_COLLECTION).document(doc_id).get().to_dict() or {}
    fields = data["items"][item.item_id] if item.legacy else data
    return open_token(item.item_id, fields.get("access_token"), vault, legacy)


def main():
    req = json.load(sys.stdin)
    vault = None
    if "vault" in req:
        v = req["vault"]
        vault = Vault(v["key"], v.get("previous", []), v.get("salt", ""))
    legacy = LegacyDecrypter(req.get("legacy_key", ""))
    out = {}
    if vault is not None:
        out["key_id"] = vault.key_id
    if "encrypt" in req:
        out["encrypt"] = [vault.encrypt(c["item_id"], c["plaintext"]) for c in req["encrypt"]]
    if "decrypt" in req:
        out["decrypt"] = [attempt(lambda c=c: vault.decrypt(c["item_id"], c["stored"])) for c in req["decrypt"]]
    if "open" in req:
        out["open"] = [attempt(lambda c=c: open_token(c["item_id"], c["stored"], vault, legacy)) for c in req["open"]]
    if "legacy_decrypt" in req:
        out["legacy_decrypt"] = [attempt(lambda s=s: legacy.decrypt(s)) for s in req["legacy_decrypt"]]
    if "needs_reencrypt" in req:
        out["needs_reencrypt"] = [vault.needs_reencrypt(s) for s in req["needs_reencrypt"]]
    if "fernet_encrypt" in req:
        out["fernet_encrypt"] = [old_service_encrypt(req["legacy_key"], p) for p in req["fernet_encrypt"]]
    if "firestore" in req:
        out["firestore"] = read_store(req["firestore"], vault, legacy)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
