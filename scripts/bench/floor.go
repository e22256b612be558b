package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// The floor: the plainest concurrent implementation of the same rules
// (DESIGN §7), what the cleanup is measured against. It reads the same
// pages (the service's TokenStore.Page, at the cleanup's page size), makes the same
// Plaid calls through the same client (decrypt, /item/get or /item/remove,
// as many in flight as the cleanup's workers), and makes the same deletes
// and marks through one BulkWriter for the whole run. It has none of what
// makes the cleanup safe: no update-time preconditions, no re-read before a
// stale removal, no lease, no audit entries, no run record. It is not
// correct (it would delete a token the app used meanwhile); it is the cost
// of the work alone.

// floorRun runs the floor over the token collection, with prod's
// dependencies and the cleanup's page size and workers, and returns the
// same statistics a cleanup gives for the same dataset.
func floorRun(ctx context.Context, prod *production, threshold time.Duration, tl *timeline, st *stages) (lifecycle.Statistics, error) {
	client, pageSize, workers := prod.client, prod.cfg.CleanupPageSize, prod.cfg.CleanupConcurrency
	tokensCol := client.Collection(lifecycle.TokensCollection)
	bw := client.BulkWriter(context.WithoutCancel(ctx))
	now := time.Now()

	// A job is a queued write and what to count once it lands.
	type job struct {
		j     *firestore.BulkWriterJob
		count func(*lifecycle.Statistics)
	}
	tokens := make(chan *lifecycle.Token, pageSize)
	jobs := make(chan job, pageSize)

	var mu sync.Mutex
	var stats lifecycle.Statistics
	done := 0
	count := func(f func(*lifecycle.Statistics)) {
		mu.Lock()
		defer mu.Unlock()
		f(&stats)
		stats.TotalChecked++
		done++
		if done%250 == 0 {
			tl.mark(done)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // reader
		defer close(tokens)
		cursor := ""
		for {
			page, next, err := prod.deps.Tokens.Page(gctx, cursor, pageSize)
			if err != nil {
				return err
			}
			for _, t := range page {
				tokens <- t
			}
			if next == "" {
				return nil
			}
			cursor = next
		}
	})
	g.Go(func() error { // workers
		defer close(jobs)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for t := range tokens {
					write, c := floorDecide(gctx, prod, t, now, threshold)
					if write == nil {
						count(c)
						continue
					}
					start := time.Now()
					j, err := write(bw, tokensCol.Doc(t.ItemID))
					st.observe("floor_queue_write", start, 1)
					if err != nil {
						count(func(s *lifecycle.Statistics) { s.Errors++ })
						continue
					}
					jobs <- job{j, c}
				}
			})
		}
		wg.Wait()
		return nil
	})
	g.Go(func() error { // counts writes as they land
		for j := range jobs {
			if _, err := j.j.Results(); err != nil {
				count(func(s *lifecycle.Statistics) { s.Errors++ })
				continue
			}
			count(j.count)
		}
		return nil
	})
	err := g.Wait()
	bw.End()
	stats.TotalCleaned = stats.ExpiredRemoved + stats.StaleRemoved + stats.RevokedRemoved
	return stats, err
}

type floorWrite func(*firestore.BulkWriter, *firestore.DocumentRef) (*firestore.BulkWriterJob, error)

func floorDelete(bw *firestore.BulkWriter, doc *firestore.DocumentRef) (*firestore.BulkWriterJob, error) {
	return bw.Delete(doc)
}

func floorUpdate(u ...firestore.Update) floorWrite {
	return func(bw *firestore.BulkWriter, doc *firestore.DocumentRef) (*firestore.BulkWriterJob, error) {
		return bw.Update(doc, u)
	}
}

// floorDecide applies the rules to one token: the Plaid call, then the
// write to make (nil: none) and what to count.
func floorDecide(ctx context.Context, prod *production, t *lifecycle.Token, now time.Time, threshold time.Duration) (floorWrite, func(*lifecycle.Statistics)) {
	cipher, plaid := prod.deps.Cipher, prod.deps.Plaid
	failed := func(s *lifecycle.Statistics) { s.Errors++ }
	remove := func() bool {
		if t.PlaidRemoved {
			return true
		}
		access, err := cipher.Decrypt(t.ItemID, t.AccessToken)
		if err != nil {
			return false
		}
		return plaid.RemoveItem(ctx, access) == nil
	}
	switch {
	case t.Status == lifecycle.StatusExpired || t.Status == lifecycle.StatusRevoked:
		if !remove() {
			return nil, failed
		}
		if t.Status == lifecycle.StatusExpired {
			return floorDelete, func(s *lifecycle.Statistics) { s.ExpiredRemoved++ }
		}
		return floorDelete, func(s *lifecycle.Statistics) { s.RevokedRemoved++ }
	case t.Status == lifecycle.StatusActive && now.Sub(t.LastActivity()) > threshold:
		if !remove() {
			return nil, failed
		}
		return floorDelete, func(s *lifecycle.Statistics) { s.StaleRemoved++ }
	case t.Status == lifecycle.StatusActive:
		if iv := prod.cfg.ValidationInterval; iv > 0 && !t.LastValidatedAt.IsZero() && now.Sub(t.LastValidatedAt) < iv {
			return nil, func(s *lifecycle.Statistics) { s.ValidationSkipped++ }
		}
		access, err := cipher.Decrypt(t.ItemID, t.AccessToken)
		if err != nil {
			return nil, failed
		}
		_, err = plaid.GetItem(ctx, access)
		var pe *lifecycle.PlaidError
		switch {
		case err == nil:
			u := []firestore.Update{{Path: "last_validated_at", Value: now}}
			if t.ErrorCode != "" {
				u = append(u, firestore.Update{Path: "error_code", Value: firestore.Delete})
			}
			return floorUpdate(u...), func(s *lifecycle.Statistics) { s.Validated++ }
		case errors.As(err, &pe) && pe.Class == lifecycle.ClassGone:
			return floorUpdate(
				firestore.Update{Path: "status", Value: string(lifecycle.StatusExpired)},
				firestore.Update{Path: "error_code", Value: pe.Code},
				firestore.Update{Path: "updated_at", Value: now},
				firestore.Update{Path: "last_validated_at", Value: now},
			), func(s *lifecycle.Statistics) { s.InvalidMarked++ }
		case errors.As(err, &pe) && pe.Class == lifecycle.ClassNeedsUser:
			return floorUpdate(
				firestore.Update{Path: "error_code", Value: pe.Code},
				firestore.Update{Path: "last_validated_at", Value: now},
			), func(s *lifecycle.Statistics) { s.NeedsUser++ }
		}
	}
	return nil, failed
}
