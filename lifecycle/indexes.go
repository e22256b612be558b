package lifecycle

// Collections the service uses. plaid_tokens is fixed by DESIGN §5; the
// others are this service's own.
const (
	TokensCollection    = "plaid_tokens"          // one document per Item, id = item_id
	RunsCollection      = "plaid_token_runs"      // one document per cleanup or analytics run
	AuditCollection     = "plaid_token_audit"     // one document per removal or revocation
	LocksCollection     = "plaid_token_locks"     // leases: one document per exclusive job
	EventsCollection    = "plaid_token_events"    // CloudEvent ids already handled
	SnapshotsCollection = "plaid_token_analytics" // weekly analytics snapshots
)

// IndexField is one field of a composite index.
type IndexField struct {
	Path       string
	Descending bool
}

// CompositeIndex is a composite Firestore index a query of this package
// needs. terraform/firestore.tf must declare each one; a test checks it.
type CompositeIndex struct {
	Collection string
	Fields     []IndexField
	Query      string // the query that needs it, for humans
}

// CompositeIndexes lists every composite index the code's queries need.
// Single-field queries (user_id ==, status ==, ordering by one field) use
// Firestore's automatic single-field indexes and are not listed.
var CompositeIndexes = []CompositeIndex{
	{
		Collection: TokensCollection,
		Fields:     []IndexField{{Path: "status"}, {Path: "error_code"}},
		Query:      "analytics error_tokens: status == active AND error_code > \"\" (count)",
	},
	{
		Collection: RunsCollection,
		Fields:     []IndexField{{Path: "kind"}, {Path: "started_at", Descending: true}},
		Query:      "latest runs of a kind: kind == K ORDER BY started_at DESC",
	},
}
