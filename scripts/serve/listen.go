package main

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// listenTokenChanges feeds the counters locally, where no Eventarc trigger
// calls TokenStats (the Firestore emulator): a snapshot listener on
// plaid_tokens, whose every later change becomes the TokenChange Eventarc
// would have delivered, with the document before and after. The first
// snapshot is the baseline, not creations: baseline gets its read time (a
// recount as of then or later brings the counters up to date with it).
// changes gets each later snapshot's changes, in commit order. It returns
// when ctx ends (nil) or the listener fails.
//
// Event ids derive from the document and its update time (for a removal,
// the removed version's), so a change seen twice counts once. A removal's
// time is the snapshot's read time: the listener cannot know the delete's
// commit time, and on the emulator, which sends one snapshot per commit,
// that is it.
//
// Only for small collections: on the emulator every snapshot resends every
// document, so the cost grows with the square of the collection's size
// (-token-stats=trigger takes the emulator's trigger deliveries instead).
func listenTokenChanges(ctx context.Context, client *firestore.Client, baseline func(time.Time), changes func([]lifecycle.TokenChange)) error {
	iter := client.Collection(lifecycle.TokensCollection).Snapshots(ctx)
	defer iter.Stop()
	first := true
	for {
		snap, err := iter.Next()
		if err != nil {
			if ctx.Err() != nil || status.Code(err) == codes.Canceled {
				return nil
			}
			return fmt.Errorf("listening to %s: %w", lifecycle.TokensCollection, err)
		}
		if first {
			first = false
			baseline(snap.ReadTime)
			continue
		}
		out := make([]lifecycle.TokenChange, 0, len(snap.Changes))
		for _, ch := range snap.Changes {
			out = append(out, listenedChange(ch, snap.ReadTime))
		}
		if len(out) > 0 {
			changes(out)
		}
	}
}

// listenedChange is the TokenChange of one listener change.
func listenedChange(ch firestore.DocumentChange, readTime time.Time) lifecycle.TokenChange {
	summary := func(doc *firestore.DocumentSnapshot) *lifecycle.TokenSummary {
		if doc == nil || !doc.Exists() {
			return nil
		}
		sum, _ := lifecycle.TokenSummaryFromDocument(doc.Ref.ID, doc.Data())
		return sum
	}
	id := ch.Doc.Ref.ID
	switch ch.Kind {
	case firestore.DocumentRemoved:
		old := ch.OldDoc
		if old == nil {
			old = ch.Doc
		}
		return lifecycle.TokenChange{EventID: listenEventID(id, old.UpdateTime, "removed"), At: readTime, Old: summary(old)}
	case firestore.DocumentModified:
		return lifecycle.TokenChange{EventID: listenEventID(id, ch.Doc.UpdateTime, "written"), At: ch.Doc.UpdateTime,
			Old: summary(ch.OldDoc), New: summary(ch.Doc)}
	default: // added
		return lifecycle.TokenChange{EventID: listenEventID(id, ch.Doc.UpdateTime, "written"), At: ch.Doc.UpdateTime,
			New: summary(ch.Doc)}
	}
}

func listenEventID(itemID string, version time.Time, what string) string {
	return fmt.Sprintf("listen:%s:%s@%d", what, itemID, version.UnixNano())
}
