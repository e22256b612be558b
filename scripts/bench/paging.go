package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// pagingCmd reads the seeded collection page by page through the service's
// TokenStore.Page, writing nothing, and prints the time per page at each
// tenth of the collection: whether a page costs more on a larger
// collection, or further along it, with nothing else loading the emulator.
func pagingCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("paging", flag.ExitOnError)
	n := fs.Int("n", 10000, "tokens in the seeded dataset")
	pageSize := fs.Int("page-size", 0, "documents per page (0: the service's default)")
	filler := fs.Int("filler", 0, "first write this many small documents to another collection (bench_filler)")
	maxPages := fs.Int("pages", 0, "read at most this many pages (0: the whole collection)")
	fs.Parse(args)
	size := cmp.Or(*pageSize, lifecycle.DefaultCleanupPageSize)

	prod, err := openProduction(ctx, lifecycle.Needs{Store: true})
	if err != nil {
		return err
	}
	defer prod.Close()
	client := prod.client
	if *filler > 0 {
		bw := client.BulkWriter(ctx)
		col := client.Collection("bench_filler")
		for i := range *filler {
			if _, err := bw.Create(col.Doc(fmt.Sprintf("filler-%07d", i)), map[string]any{"i": i}); err != nil {
				return err
			}
		}
		bw.End()
	}
	cpu := startCPUMeter()
	start := time.Now()
	var perPage []float64
	cursor, read := "", 0
	for {
		t0 := time.Now()
		page, next, err := prod.deps.Tokens.Page(ctx, cursor, size)
		if err != nil {
			return err
		}
		perPage = append(perPage, time.Since(t0).Seconds()*1000)
		read += len(page)
		if next == "" || len(perPage) == *maxPages {
			break
		}
		cursor = next
	}
	elapsed := time.Since(start)
	_, emuS, _ := cpu.stop()
	// The mean time of a page in each tenth of the collection.
	var tenths []float64
	for k := range 10 {
		lo, hi := len(perPage)*k/10, len(perPage)*(k+1)/10
		if hi <= lo {
			continue
		}
		sum := 0.0
		for _, ms := range perPage[lo:hi] {
			sum += ms
		}
		tenths = append(tenths, sum/float64(hi-lo))
	}
	return emit(Result{"section": "paging", "n": *n, "filler": *filler, "read": read, "pages": len(perPage),
		"seconds": elapsed.Seconds(), "emulator_cpu_s": emuS, "page_ms_by_tenth": tenths, "page_size": size})
}
