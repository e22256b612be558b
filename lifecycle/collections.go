package lifecycle

// Collections the service uses. plaid_tokens is fixed by DESIGN §5; the
// others are this service's own, all named plaid_token_* (the Firestore
// security rules in terraform/ refuse client SDKs on every one of them).
const (
	TokensCollection    = "plaid_tokens"          // one document per Item, id = item_id
	RunsCollection      = "plaid_token_runs"      // one document per cleanup or analytics run
	AuditCollection     = "plaid_token_audit"     // one document per removal or revocation
	LocksCollection     = "plaid_token_locks"     // leases: one document per exclusive job
	EventsCollection    = "plaid_token_events"    // CloudEvent ids already handled
	SnapshotsCollection = "plaid_token_analytics" // weekly analytics snapshots
	// webhookKeysCollection holds the webhook verification keys Plaid
	// vouched for, shared between instances (public keys only).
	webhookKeysCollection = "plaid_token_webhook_keys"
	// quotaCollection holds the slots of the fleet's Plaid quota taken
	// (SharedPacer), one document per endpoint, window and slot, written
	// once and deleted an hour later by a TTL on expire_at.
	quotaCollection = "plaid_token_quota"
	// LegacyArchiveCollection keeps the old service's per-user documents
	// the migration carried over (DESIGN §5).
	LegacyArchiveCollection = "plaid_token_legacy_archive"
	// StatsCollection holds the analytics counters (DESIGN §12): the
	// counter shards shard-00 .. shard-15 and the "state" document
	// (initialized, the repair horizon and lease, the last repair).
	StatsCollection = "plaid_token_stats"
	// statsUsersCollection holds each user's token count (for unique
	// users), one document per user with tokens.
	statsUsersCollection = "plaid_token_stats_users"
	// statsEventsCollection records every applied change: its event id
	// (the document id derives from it), commit time and delta; deleted
	// eight days later by a TTL on expire_at.
	statsEventsCollection = "plaid_token_stats_events"
)
