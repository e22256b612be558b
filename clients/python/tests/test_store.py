"""The usage rule (DESIGN §7) and the reads of both layouts, on an in-memory Firestore."""

import datetime as dt
import unittest

from plaid_token_vault import (
    ItemNotFoundError,
    LegacyDecrypter,
    TokenStore,
    TokenUnusableError,
    Vault,
    record_use,
)
from tests.fake_firestore import FakeClient
from tests.test_legacy import PASSWORD, old_service_encrypt

NOW = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.timezone.utc)
KEY = "test-encryption-key-not-for-production"
COL = "plaid_tokens"


def token_doc(user_id, status="active", last_used=None, **extra):
    doc = {"user_id": user_id, "status": status, "institution_name": "Chase Bank", "environment": "sandbox"}
    if last_used is not None:
        doc["last_used_at"] = last_used
    doc.update(extra)
    return doc


class RecordUseTest(unittest.TestCase):
    def setUp(self):
        self.fs = FakeClient()

    def last_used(self, item_id="item-1"):
        return self.fs.data(COL, item_id).get("last_used_at")

    def test_the_hourly_rule(self):
        cases = [
            ("never used", None, True),
            ("used 59 minutes ago", NOW - dt.timedelta(minutes=59), False),
            ("used an hour ago", NOW - dt.timedelta(hours=1), True),
            ("used days ago", NOW - dt.timedelta(days=3), True),
            ("used in the future (a writer's clock)", NOW + dt.timedelta(minutes=5), False),
            ("last_used_at of another type reads as unset", "2026-11-28T01:59:00", True),
        ]
        for name, last_used, want in cases:
            with self.subTest(name):
                fs = FakeClient()
                fs.put(COL, "item-1", token_doc("user-1", last_used=last_used))
                self.assertEqual(record_use(fs, "item-1", now=NOW), want)
                got = fs.data(COL, "item-1").get("last_used_at")
                self.assertEqual(got, NOW if want else last_used)
                self.assertEqual(len(fs.updates), 1 if want else 0)
                if want:
                    # last_used_at alone: the write touches nothing else.
                    self.assertEqual(fs.updates[0][2], {"last_used_at": NOW})

    def test_only_active_tokens_are_recorded(self):
        for status in ["revoked", "expired"]:
            self.fs.put(COL, "item-" + status, token_doc("user-1", status=status))
            self.assertFalse(record_use(self.fs, "item-" + status, now=NOW))
        self.assertFalse(record_use(self.fs, "item-missing", now=NOW))
        # An old per-user document is not an item document.
        self.fs.put(COL, "user-1", {"items": {"item-1": {"status": "active"}}})
        self.assertFalse(record_use(self.fs, "user-1", now=NOW))
        self.assertEqual(self.fs.updates, [])

    def test_another_instance_recorded_the_use_meanwhile(self):
        # Two app instances read the same stale value: the second write's
        # precondition fails, it reads again and finds the use recorded.
        self.fs.put(COL, "item-1", token_doc("user-1", last_used=NOW - dt.timedelta(days=2)))
        other = NOW - dt.timedelta(seconds=1)

        def concurrent(doc):
            self.fs.before_update = None
            doc.update({self.fs.field_path("last_used_at"): other})

        self.fs.before_update = concurrent
        self.assertFalse(record_use(self.fs, "item-1", now=NOW))
        self.assertEqual(self.last_used(), other)
        self.assertEqual(len(self.fs.updates), 1)  # the other instance's

    def test_an_unrelated_write_meanwhile_is_kept(self):
        self.fs.put(COL, "item-1", token_doc("user-1", last_used=NOW - dt.timedelta(days=2)))
        validated = NOW - dt.timedelta(minutes=1)

        def concurrent(doc):
            self.fs.before_update = None
            doc.update({self.fs.field_path("last_validated_at"): validated})

        self.fs.before_update = concurrent
        self.assertTrue(record_use(self.fs, "item-1", now=NOW))
        data = self.fs.data(COL, "item-1")
        self.assertEqual(data["last_used_at"], NOW)
        self.assertEqual(data["last_validated_at"], validated)

    def test_revoked_or_deleted_meanwhile_is_not_bumped(self):
        for name, change in [
            ("revoked", lambda: self.fs.put(COL, "item-1", token_doc("user-1", status="revoked"))),
            ("deleted", lambda: self.fs.delete(COL, "item-1")),
        ]:
            with self.subTest(name):
                self.fs.put(COL, "item-1", token_doc("user-1"))
                self.fs.updates.clear()

                def concurrent(doc, change=change):
                    self.fs.before_update = None
                    change()

                self.fs.before_update = concurrent
                self.assertFalse(record_use(self.fs, "item-1", now=NOW))
                self.assertEqual(self.fs.updates, [])
                data = self.fs.data(COL, "item-1")
                self.assertTrue(data is None or "last_used_at" not in data)

    def test_contention_gives_up_after_three_attempts(self):
        self.fs.put(COL, "item-1", token_doc("user-1"))
        attempts = []

        def always(doc):
            attempts.append(1)
            self.fs.put(COL, "item-1", token_doc("user-1", note=len(attempts)))

        self.fs.before_update = always
        self.assertFalse(record_use(self.fs, "item-1", now=NOW))
        self.assertEqual(len(attempts), 3)
        self.assertNotIn("last_used_at", self.fs.data(COL, "item-1"))

    def test_other_errors_propagate(self):
        class PermissionDenied(Exception):
            pass

        def deny(doc):
            raise PermissionDenied("no")

        self.fs.put(COL, "item-1", token_doc("user-1"))
        self.fs.before_update = deny
        with self.assertRaises(PermissionDenied):
            record_use(self.fs, "item-1", now=NOW)

    def test_naive_now_is_refused(self):
        self.fs.put(COL, "item-1", token_doc("user-1"))
        with self.assertRaises(ValueError):
            record_use(self.fs, "item-1", now=dt.datetime(2026, 11, 28, 2, 0))


class TokenStoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.vault = Vault(KEY)
        cls.legacy = LegacyDecrypter(PASSWORD)

    def setUp(self):
        self.fs = FakeClient()
        self.store = TokenStore(self.fs, self.vault, self.legacy, clock=lambda: NOW)
        transactions = {"cursor": "CAESJ3Z4", "added": [{"transaction_id": "tx-1", "amount": 12.5}]}
        # The old service's per-user document, with every kind of item.
        self.fs.put(COL, "user-1", {"user_id": "user-1", "items": {
            "item-plain": {"access_token": "access-sandbox-plain", "status": "active",
                           "last_used_at": NOW - dt.timedelta(days=3), "transactions": transactions},
            "item-fernet": {"access_token": old_service_encrypt(PASSWORD, "access-sandbox-fernet"),
                            "status": "error", "user_id": "user-1"},
            "item-revoked": {"access_token": "access-sandbox-revoked", "status": "revoked"},
            "item-foreign": {"access_token": "access-sandbox-foreign", "status": "active", "user_id": "user-2"},
            "item-both": {"access_token": "access-sandbox-both-old", "status": "active"},
        }})
        # Item documents: one of user-1's already migrated, one of user-2.
        self.fs.put(COL, "item-both", token_doc("user-1", access_token=self.vault.encrypt("item-both", "access-sandbox-both"),
                                                last_used_at=NOW - dt.timedelta(minutes=10)))
        self.fs.put(COL, "item-v1", token_doc("user-1", access_token=self.vault.encrypt("item-v1", "access-sandbox-v1")))
        self.fs.put(COL, "item-other", token_doc("user-2", access_token=self.vault.encrypt("item-other", "access-sandbox-other")))

    def test_items_of_both_layouts(self):
        items = self.store.items("user-1")
        got = {i.item_id: (i.status, i.error_code, i.legacy) for i in items}
        self.assertEqual(got, {
            "item-plain": ("active", None, True),
            "item-fernet": ("active", "LEGACY_ERROR", True),  # status error, as migrate-legacy writes it
            "item-revoked": ("revoked", None, True),
            "item-both": ("active", None, False),  # the item document wins
            "item-v1": ("active", None, False),
        })
        self.assertEqual([i.item_id for i in items], sorted(got))
        for item in items:
            self.assertNotIn("access_token", item.fields)
            self.assertEqual(item.user_id, "user-1")
        plain = next(i for i in items if i.item_id == "item-plain")
        self.assertEqual(plain.fields["transactions"]["added"][0]["amount"], 12.5)
        self.assertEqual([i.item_id for i in self.store.items("user-2")], ["item-other"])
        self.assertEqual(self.store.items("user-none"), [])
        self.assertEqual(self.store.items("a/b"), [])

    def test_access_token_of_every_format(self):
        for item_id, want in [("item-plain", "access-sandbox-plain"), ("item-fernet", "access-sandbox-fernet"),
                              ("item-v1", "access-sandbox-v1"), ("item-both", "access-sandbox-both")]:
            with self.subTest(item_id):
                self.assertEqual(self.store.access_token("user-1", item_id), want)

    def test_access_token_records_the_use_where_the_item_is(self):
        self.store.access_token("user-1", "item-plain")
        self.store.access_token("user-1", "item-v1")
        self.store.access_token("user-1", "item-both")  # used 10 minutes ago: no write
        self.assertEqual(sorted((c, d, tuple(u)) for c, d, u in self.fs.updates), [
            (COL, "item-v1", ("last_used_at",)),
            (COL, "user-1", ("items.`item-plain`.last_used_at",)),
        ])
        self.assertEqual(self.fs.data(COL, "user-1")["items"]["item-plain"]["last_used_at"], NOW)
        self.assertEqual(self.fs.data(COL, "item-v1")["last_used_at"], NOW)
        # The rest of the per-user document is as it was.
        self.assertEqual(self.fs.data(COL, "user-1")["items"]["item-plain"]["transactions"]["cursor"], "CAESJ3Z4")

    def test_a_failed_use_record_does_not_fail_the_call(self):
        class ServiceUnavailable(Exception):
            pass

        def unavailable(doc):
            raise ServiceUnavailable("Firestore is away")

        self.fs.before_update = unavailable
        with self.assertLogs("plaid_token_vault.store", "WARNING") as logs:
            self.assertEqual(self.store.access_token("user-1", "item-v1"), "access-sandbox-v1")
        self.assertIn("item-v1", logs.output[0])
        self.assertNotIn("access-sandbox-v1", "".join(logs.output))
        self.assertNotIn("last_used_at", self.fs.data(COL, "item-v1"))

    def test_refusals(self):
        cases = [
            ("another user's item document", "user-1", "item-other", ItemNotFoundError),
            ("another user's legacy item", "user-1", "item-foreign", ItemNotFoundError),
            ("an item of another user's legacy document", "user-2", "item-plain", ItemNotFoundError),
            ("missing", "user-1", "item-missing", ItemNotFoundError),
            ("not a document id", "user-1", "a/b", ItemNotFoundError),
            ("reserved id", "user-1", "__x__", ItemNotFoundError),
            ("the per-user document itself", "user-1", "user-1", ItemNotFoundError),
            ("revoked", "user-1", "item-revoked", TokenUnusableError),
        ]
        for name, user_id, item_id, want in cases:
            with self.subTest(name):
                with self.assertRaises(want):
                    self.store.access_token(user_id, item_id)
        self.assertEqual(self.fs.updates, [])

    def test_item_migrated_between_the_reads_is_found(self):
        # migrate-legacy creates the item document and deletes the per-user
        # one in one transaction; here it lands right after the store's
        # first read of the item document.
        def migrate(read):
            if read.id == "item-plain":
                self.fs.after_read = None
                fields = self.fs.data(COL, "user-1")["items"]["item-plain"]
                self.fs.put(COL, "item-plain", dict(fields, user_id="user-1", item_id="item-plain",
                                                     access_token=self.vault.encrypt("item-plain", "access-sandbox-plain")))
                self.fs.delete(COL, "user-1")

        self.fs.after_read = migrate
        self.assertEqual(self.store.access_token("user-1", "item-plain"), "access-sandbox-plain")
        self.assertEqual(self.fs.data(COL, "item-plain")["last_used_at"], NOW)

    def test_items_during_a_migration_lose_nothing(self):
        # The migration lands right after the store's first read, whichever
        # it is: read the other way round (item documents first), the
        # migrated items would be in neither read.
        def migrate(_):
            self.fs.after_read = None
            for item_id, fields in self.fs.data(COL, "user-1")["items"].items():
                if (COL, item_id) not in self.fs.docs and item_id != "item-foreign":
                    status = "active" if fields["status"] == "error" else fields["status"]
                    self.fs.put(COL, item_id, dict(fields, user_id="user-1", status=status))
            self.fs.delete(COL, "user-1")

        self.fs.after_read = migrate
        self.assertEqual([i.item_id for i in self.store.items("user-1")],
                         ["item-both", "item-fernet", "item-plain", "item-revoked", "item-v1"])


if __name__ == "__main__":
    unittest.main()
