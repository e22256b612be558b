package functions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// ReportStore keeps the weekly report's pages (DESIGN §9): Cloud Storage in
// production, a Cloud Storage emulator locally and in tests.
type ReportStore interface {
	// PutReport stores page as object name and returns where a person
	// opens it.
	PutReport(ctx context.Context, name string, page []byte) (string, error)
}

// Object names of the weekly report in REPORT_BUCKET.
const (
	reportPrefix = "reports/weekly/"
	reportLatest = reportPrefix + "latest.html"
)

// reportObject is the report's object of day t: reports/weekly/YYYY-MM-DD.html.
func reportObject(t time.Time) string { return reportPrefix + t.UTC().Format(time.DateOnly) + ".html" }

// StorageReports is the ReportStore of a Cloud Storage bucket. Its client
// is opened on first use (WeeklyAnalytics runs once a week; no other
// function needs one), or given.
type StorageReports struct {
	bucket, emulator string
	once             sync.Once
	client           *storage.Client
	err              error
}

// NewStorageReports returns the ReportStore of bucket. client nil: one is
// opened on first use from the environment (STORAGE_EMULATOR_HOST points
// it at an emulator); emulatorHost only names the emulator in the
// addresses PutReport returns.
func NewStorageReports(client *storage.Client, bucket, emulatorHost string) *StorageReports {
	return &StorageReports{bucket: bucket, emulator: emulatorHost, client: client}
}

func (s *StorageReports) storageClient(ctx context.Context) (*storage.Client, error) {
	s.once.Do(func() {
		if s.client == nil {
			s.client, s.err = storage.NewClient(context.WithoutCancel(ctx))
		}
	})
	return s.client, s.err
}

// PutReport writes page to gs://bucket/name as an HTML page that is never
// cached past a reload (latest.html changes every week).
func (s *StorageReports) PutReport(ctx context.Context, name string, page []byte) (string, error) {
	client, err := s.storageClient(ctx)
	if err != nil {
		return "", lifecycle.WrapError(lifecycle.CodeUnavailable, err, "opening the Cloud Storage client")
	}
	w := client.Bucket(s.bucket).Object(name).NewWriter(ctx)
	w.ContentType = "text/html; charset=utf-8"
	w.CacheControl = "no-cache"
	if _, err := bytes.NewReader(page).WriteTo(w); err != nil {
		w.Close()
		return "", storageError(s.bucket, name, err)
	}
	if err := w.Close(); err != nil {
		return "", storageError(s.bucket, name, err)
	}
	return s.location(name), nil
}

// location is where a person opens object name: the emulator's download
// address locally, else its gs:// address (the bucket is private).
func (s *StorageReports) location(name string) string {
	if s.emulator == "" {
		return "gs://" + s.bucket + "/" + name
	}
	host := s.emulator
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	return strings.TrimSuffix(host, "/") + "/storage/v1/b/" + s.bucket + "/o/" + url.PathEscape(name) + "?alt=media"
}

// storageError classifies a Cloud Storage failure: a retry helps after a
// 429 or 5xx or a network fault, not after the bucket's or the
// permission's 4xx.
func storageError(bucket, name string, err error) error {
	msg := fmt.Sprintf("writing gs://%s/%s", bucket, name)
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code != http.StatusTooManyRequests && ge.Code < 500 {
		return lifecycle.WrapError(lifecycle.CodeInternal, err, msg)
	}
	if errors.Is(err, storage.ErrBucketNotExist) {
		return lifecycle.WrapError(lifecycle.CodeInternal, err, msg+": the bucket does not exist (REPORT_BUCKET)")
	}
	return lifecycle.WrapError(lifecycle.CodeUnavailable, err, msg)
}

// weeklyReport is what writing the weekly report did, for the summary of
// a local /events/WeeklyAnalytics call.
type weeklyReport struct {
	Bucket  string   `json:"bucket"`
	Objects []string `json:"objects"`
	// Open is where a person reads it: the latest page's address.
	Open string `json:"open"`
}

// writeWeeklyReport renders the weekly report as of now into the report
// store: the page of day at (reports/weekly/YYYY-MM-DD.html) and
// reports/weekly/latest.html. A redelivered event writes the same names
// again.
func (s *Server) writeWeeklyReport(ctx context.Context, at time.Time) (*weeklyReport, error) {
	r, err := s.svc.WeeklyReport(ctx)
	if err != nil {
		return nil, err
	}
	var page bytes.Buffer
	if err := lifecycle.RenderWeeklyReport(&page, r); err != nil {
		return nil, err
	}
	out := &weeklyReport{Bucket: s.cfg.ReportBucket}
	for _, name := range []string{reportObject(at), reportLatest} {
		where, err := s.reports.PutReport(ctx, name, page.Bytes())
		if err != nil {
			return nil, err
		}
		out.Objects, out.Open = append(out.Objects, name), where
	}
	return out, nil
}
