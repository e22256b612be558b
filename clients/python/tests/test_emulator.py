"""The usage rule and the reads on the real Firestore emulator.

Needs FIRESTORE_EMULATOR_HOST; the project is PLAID_TOKEN_VAULT_TEST_PROJECT
or a fresh one. Without an emulator these tests are skipped, loudly, unless
REQUIRE_FIRESTORE_EMULATOR is set (scripts/test.sh sets it, and the Go test
that runs this suite gives it an emulator): then they fail.
"""

import datetime as dt
import os
import secrets
import unittest

from plaid_token_vault import TokenStore, Vault, record_use
from tests import firestore_rest
from tests.firestore_rest import FailedPrecondition

HOST = os.environ.get("FIRESTORE_EMULATOR_HOST", "")
NOW = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.timezone.utc)
COL = "plaid_tokens"

if not HOST and os.environ.get("REQUIRE_FIRESTORE_EMULATOR"):
    raise RuntimeError("REQUIRE_FIRESTORE_EMULATOR is set but FIRESTORE_EMULATOR_HOST is not")


class HookedClient(firestore_rest.Client):
    """The REST client, with a hook that runs once just before the next
    update: a concurrent writer acting between the store's read and write."""

    before_update = None

    def collection(self, name):
        return _HookedCollection(self, name)


class _HookedCollection(firestore_rest.CollectionReference):
    def document(self, doc_id):
        return _HookedDocument(self._client, self.id, doc_id)


class _HookedDocument(firestore_rest.DocumentReference):
    def update(self, field_updates, option=None):
        hook, self._client.before_update = self._client.before_update, None
        if hook:
            hook()
        super().update(field_updates, option)


@unittest.skipUnless(HOST, "\n*** SKIPPED: no Firestore emulator (FIRESTORE_EMULATOR_HOST is not set); "
                           "run scripts/test.sh or go test ./clients/python ***")
class EmulatorTest(unittest.TestCase):
    def setUp(self):
        base = os.environ.get("PLAID_TOKEN_VAULT_TEST_PROJECT") or "py-vault"
        project = f"{base}-{secrets.token_hex(4)}"  # each test its own project: nothing shared
        self.fs = HookedClient(project)
        self.other = firestore_rest.Client(project)  # another writer

    def test_emulator_enforces_the_update_time_precondition(self):
        ref = self.fs.collection(COL).document("item-1")
        ref.set({"user_id": "user-1", "status": "active"})
        stale = ref.get()
        self.other.collection(COL).document("item-1").update({"error_code": "ITEM_LOGIN_REQUIRED"})
        with self.assertRaises(FailedPrecondition):
            ref.update({"last_used_at": NOW}, option=self.fs.write_option(last_update_time=stale.update_time))
        fresh = ref.get()
        ref.update({"last_used_at": NOW}, option=self.fs.write_option(last_update_time=fresh.update_time))
        self.assertEqual(ref.get().to_dict()["last_used_at"], NOW)

    def test_record_use_against_a_concurrent_use(self):
        ref = self.fs.collection(COL).document("item-1")
        ref.set({"user_id": "user-1", "status": "active", "last_used_at": NOW - dt.timedelta(days=2)})
        other_use = NOW - dt.timedelta(seconds=1)
        self.fs.before_update = lambda: self.other.collection(COL).document("item-1").update(
            {"last_used_at": other_use})
        self.assertFalse(record_use(self.fs, "item-1", now=NOW))
        self.assertEqual(ref.get().to_dict()["last_used_at"], other_use)

    def test_record_use_after_an_unrelated_write(self):
        ref = self.fs.collection(COL).document("item-1")
        ref.set({"user_id": "user-1", "status": "active", "last_used_at": NOW - dt.timedelta(days=2)})
        self.fs.before_update = lambda: self.other.collection(COL).document("item-1").update(
            {"last_validated_at": NOW})
        self.assertTrue(record_use(self.fs, "item-1", now=NOW))
        data = ref.get().to_dict()
        self.assertEqual((data["last_used_at"], data["last_validated_at"]), (NOW, NOW))
        # Within the hour: no write at all (the update time stays).
        before = ref.get().update_time.raw
        self.assertFalse(record_use(self.fs, "item-1", now=NOW + dt.timedelta(minutes=59)))
        self.assertEqual(ref.get().update_time.raw, before)

    def test_legacy_item_with_an_awkward_id(self):
        # Item ids are map keys in the old per-user document: a field path
        # must quote them (dots, backticks, hyphens).
        vault = Vault("test-encryption-key-not-for-production")
        item_id = "item.a`b-ü"
        ref = self.fs.collection(COL).document("user-1")
        ref.set({"items": {
            item_id: {"access_token": "access-sandbox-awkward", "status": "active",
                      "last_used_at": NOW - dt.timedelta(days=1), "transactions": {"cursor": "c1"}},
            "item-plain": {"access_token": "access-sandbox-plain", "status": "active"},
        }})
        store = TokenStore(self.fs, vault, clock=lambda: NOW)
        self.assertEqual([i.item_id for i in store.items("user-1")], sorted([item_id, "item-plain"]))
        self.assertEqual(store.access_token("user-1", item_id), "access-sandbox-awkward")
        items = ref.get().to_dict()["items"]
        self.assertEqual(items[item_id]["last_used_at"], NOW)
        self.assertEqual(items[item_id]["transactions"], {"cursor": "c1"})
        self.assertEqual(items["item-plain"], {"access_token": "access-sandbox-plain", "status": "active"})
        self.assertEqual(set(ref.get().to_dict()), {"items"})


if __name__ == "__main__":
    unittest.main()
