package faults

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// The invariants every scenario ends with (DESIGN §7, §12), each
// checked against Firestore (read by the test's own client) and the fake
// Plaid's records:
//
//  1. Removed at Plaid before deleted. The fake's OnRemoved hook runs when
//     an Item is removed and before the remover is answered; the remover
//     deletes the document only after that answer, so the document must
//     still exist when the hook reads it (world.checkRemoval). Then every
//     document that disappeared (the other writer's deletions aside) whose
//     Item Plaid knew was removed at the fake, and no document says
//     plaid_removed for an Item Plaid still has. Together: no deletion came
//     before its removal, and none went without one (an Item already gone
//     at Plaid, ITEM_NOT_FOUND, needs none).
//  2. No live token in use harmed. Every token Plaid knew and the app used
//     recently (its user did not revoke it, the other writer did not touch
//     or delete it) is still live at Plaid and active in Firestore; after
//     a clean final run its error_code is what Plaid says, and no active
//     document names an Item that Plaid removed.
//  3. Every document still decrypts with the vault, to the access token
//     that was written, and is a document the test (or the other writer)
//     wrote.
//  4. The run records add up and match what changed: every run's outcomes
//     sum to total_checked and total_cleaned to its removals; no run is
//     left running or checkpointed; a succeeded run has one audit entry per
//     removal it counted; every deleted document has an audit entry; and
//     the clean final run's statistics are exactly what its before and
//     after documents say.

// invariantsPerScenario is how many invariants checkInvariants checks.
const invariantsPerScenario = 4

// finalRun is the last, clean run of a scenario and the documents just
// before it.
type finalRun struct {
	id     string
	before map[string]docState
}

// invariantOptions says what a scenario did that the invariants allow.
type invariantOptions struct {
	final *finalRun
}

// invariant runs one named check: each violation fails the test, and the
// invariant counts as held only without any.
func (w *world) invariant(name string, check func(violate func(format string, args ...any))) {
	w.t.Helper()
	n := 0
	check(func(format string, args ...any) {
		n++
		if n <= 12 {
			w.t.Errorf("%s: invariant %q broken: %s", w.name, name, fmt.Sprintf(format, args...))
		}
	})
	if n > 12 {
		w.t.Errorf("%s: invariant %q: %d more violations", w.name, name, n-12)
	}
	if n == 0 {
		summary.held.Add(1)
	}
}

// checkInvariants checks the four invariants at the end of a scenario.
func (w *world) checkInvariants(opts invariantOptions) {
	w.t.Helper()
	docs := w.docs()
	w.mu.Lock()
	facts := make(map[string]tokenFacts, len(w.facts))
	for id, f := range w.facts {
		facts[id] = *f
	}
	broken := slices.Clone(w.removalsBroken)
	seen := w.removalsSeen
	w.mu.Unlock()
	ids := make([]string, 0, len(facts))
	for id := range facts {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	w.invariant("removed at Plaid before deleted", func(violate func(string, ...any)) {
		for _, b := range broken {
			violate("%s", b)
		}
		if n := len(w.fake.Removals()); seen != n {
			violate("the fake removed %d Items but its hook looked at %d", n, seen)
		}
		for _, id := range ids {
			f := facts[id]
			d, present := docs[id]
			removed := w.fake.Removed(f.plaintext)
			switch {
			case !present && !f.writerDeleted && f.liveAtPlaid && !removed:
				violate("%s (%s) was deleted but its Item is still live at Plaid (still billed)", id, f.class)
			case present && d.plaidRemoved && f.liveAtPlaid && !removed:
				violate("%s (%s) says plaid_removed but Plaid still has its Item", id, f.class)
			}
		}
	})

	w.invariant("no live token in use deleted or marked", func(violate func(string, ...any)) {
		for _, id := range ids {
			f := facts[id]
			d, present := docs[id]
			removed := w.fake.Removed(f.plaintext)
			if f.liveAtPlaid && f.recent && !f.userRevoked && !f.writerDeleted && !f.touched {
				switch {
				case removed:
					violate("%s (%s, in use) was removed at Plaid", id, f.class)
				case !present:
					violate("%s (%s, in use) was deleted", id, f.class)
				case d.status != lifecycle.StatusActive:
					violate("%s (%s, in use) was marked %s (error_code %q)", id, f.class, d.status, d.errorCode)
				case opts.final != nil && d.errorCode != wantErrorCode(f.class):
					violate("%s (%s) has error_code %q after a clean run, want %q", id, f.class, d.errorCode, wantErrorCode(f.class))
				}
			}
			if opts.final != nil && present && d.status == lifecycle.StatusActive && removed {
				violate("%s (%s) is active but Plaid removed its Item", id, f.class)
			}
		}
	})

	w.invariant("every document decrypts", func(violate func(string, ...any)) {
		for id, d := range docs {
			f, ok := facts[id]
			switch {
			case !ok:
				violate("document %s was written by no one the test knows", id)
			case !d.token:
				violate("document %s has no status: not a token any more", id)
			default:
				plain, err := w.vault.Decrypt(id, d.accessToken)
				if err != nil {
					violate("%s does not decrypt: %v", id, err)
				} else if plain != f.plaintext {
					violate("%s decrypts to another access token", id)
				}
			}
		}
	})

	w.invariant("run statistics add up and match what changed", func(violate func(string, ...any)) {
		runs := w.runs()
		if len(runs) == 0 {
			violate("no run record")
		}
		audits := w.audits()
		auditsOf := map[string]map[string]int{} // run id → reason → entries
		audited := map[string]bool{}            // item ids with a cleanup audit entry
		for _, a := range audits {
			if a.RunID == "" {
				continue // a revocation
			}
			if auditsOf[a.RunID] == nil {
				auditsOf[a.RunID] = map[string]int{}
			}
			auditsOf[a.RunID][a.Reason]++
			audited[a.ItemID] = true
		}
		for _, r := range runs {
			st := r.Statistics
			summary.tokensChecked.Add(int64(st.TotalChecked))
			if st.Outcomes() != st.TotalChecked {
				violate("run %s: outcomes add up to %d, total_checked is %d (%+v)", r.ID, st.Outcomes(), st.TotalChecked, st)
			}
			if st.TotalCleaned != st.ExpiredRemoved+st.StaleRemoved+st.RevokedRemoved {
				violate("run %s: total_cleaned %d is not the sum of its removals (%+v)", r.ID, st.TotalCleaned, st)
			}
			if !r.Status.Finished() {
				violate("run %s is left %s (lease until %s): stranded", r.ID, r.Status, r.LeaseUntil.Format(time.RFC3339))
			}
			if r.Status == lifecycle.RunSucceeded {
				want := map[string]int{"expired": st.ExpiredRemoved, "stale": st.StaleRemoved, "revoked": st.RevokedRemoved}
				got := map[string]int{"expired": auditsOf[r.ID]["expired"], "stale": auditsOf[r.ID]["stale"], "revoked": auditsOf[r.ID]["revoked"]}
				if diff := cmp.Diff(want, got); diff != "" {
					violate("run %s: audit entries do not match its removals (-counted +audited):\n%s", r.ID, diff)
				}
			}
		}
		for _, id := range ids {
			if _, present := docs[id]; !present && !facts[id].writerDeleted && !audited[id] {
				violate("%s (%s) was deleted without an audit entry", id, facts[id].class)
			}
		}
		if opts.final != nil {
			w.checkFinalRun(opts.final, docs, violate)
		}
	})
}

// wantErrorCode is the error_code a live token in use has after a clean run.
func wantErrorCode(c class) string {
	if c == classNeedsUser {
		return "ITEM_LOGIN_REQUIRED"
	}
	return ""
}

// checkFinalRun compares the final run's statistics with what changed
// between before and after: nothing else wrote meanwhile, so they must
// agree exactly.
func (w *world) checkFinalRun(f *finalRun, after map[string]docState, violate func(string, ...any)) {
	var want lifecycle.Statistics
	for id, b := range f.before {
		if !b.token {
			continue
		}
		want.TotalChecked++
		a, present := after[id]
		switch {
		case b.status == lifecycle.StatusExpired && !present:
			want.ExpiredRemoved++
		case b.status == lifecycle.StatusRevoked && !present:
			want.RevokedRemoved++
		case b.status != lifecycle.StatusActive:
			violate("final run left %s %s (plaid_removed %v)", b.status, id, a.plaidRemoved)
		case !present:
			want.StaleRemoved++
		case a.status == lifecycle.StatusExpired:
			want.InvalidMarked++
		case a.errorCode != "":
			want.NeedsUser++
		default:
			want.Validated++
		}
	}
	want.TotalCleaned = want.ExpiredRemoved + want.StaleRemoved + want.RevokedRemoved
	run := w.run(f.id)
	if run.Status != lifecycle.RunSucceeded {
		violate("final run %s is %s (%s), want succeeded", run.ID, run.Status, run.Failure)
	}
	if diff := cmp.Diff(want, run.Statistics); diff != "" {
		violate("final run %s: statistics differ from what changed (-changed +recorded):\n%s", run.ID, diff)
	}
}

// checkWorkFinished checks that a clean final run left nothing undone:
// no expired token but those it marked, no revoked token, no stale one,
// and every token a user revoked gone and removed at Plaid.
func (w *world) checkWorkFinished(before map[string]docState) {
	w.t.Helper()
	docs := w.docs()
	for id, d := range docs {
		f := w.fact(id)
		switch {
		case d.status == lifecycle.StatusRevoked:
			w.t.Errorf("%s: %s is still revoked after a clean run", w.name, id)
		case d.status == lifecycle.StatusExpired && before[id].status != lifecycle.StatusActive:
			w.t.Errorf("%s: %s is still expired after a clean run", w.name, id)
		case d.status == lifecycle.StatusActive && f != nil && (f.class == classStale || f.class == classStaleUndated) && !f.touched && !f.recent:
			w.t.Errorf("%s: stale %s (%s) is still there after a clean run", w.name, id, f.class)
		}
	}
	for _, id := range w.itemsOf(func(f *tokenFacts) bool { return f.userRevoked }) {
		f := w.fact(id)
		if _, present := docs[id]; present {
			w.t.Errorf("%s: %s, revoked by its user, is still there after a clean run", w.name, id)
		}
		if f.liveAtPlaid && !w.fake.Removed(f.plaintext) {
			w.t.Errorf("%s: %s, revoked by its user, is still live at Plaid", w.name, id)
		}
	}
}
