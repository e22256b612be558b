package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// logLines decodes every line of out as one JSON object, failing the test
// on a line that is not one.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		dec := json.NewDecoder(strings.NewReader(line))
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("log line is not a JSON object: %v\n%s", err, line)
		}
		if dec.More() {
			t.Fatalf("log line holds more than one JSON value:\n%s", line)
		}
		lines = append(lines, obj)
	}
	return lines
}

// callerLocation is where its caller is: file (relative to the module),
// line and function.
type callerLocation struct {
	file     string
	line     int
	function string
}

func here(t *testing.T) callerLocation {
	t.Helper()
	pc, file, line, ok := runtime.Caller(1)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return callerLocation{moduleRelative(file), line, runtime.FuncForPC(pc).Name()}
}

type loggable struct{ A, B int }

type redacted struct{}

func (redacted) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// TestJSONLoggerOneObjectPerLine: whatever is logged, and however the
// logger was derived, every line is exactly one JSON object.
func TestJSONLoggerOneObjectPerLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	base := newCloudHandler(&buf, slog.LevelDebug, serviceContext{Service: "svc"})
	log := slog.New(base)
	tests := []struct {
		name string
		log  func()
	}{
		{"plain", func() { log.Info("plain") }},
		{"debug", func() { log.Debug("debug", "k", "v") }},
		{"error value", func() { log.Error("failed", "error", errors.New("boom\nsecond line")) }},
		{"joined errors", func() { log.Warn("failed", slog.Any("error", errors.Join(errors.New("a"), errors.New("b")))) }},
		{"message with newline and quotes", func() { log.Info("line one\nline \"two\"\t\u2028") }},
		{"invalid UTF-8", func() { log.Info("bad \xff utf8", "v", "\xfe") }},
		{"struct and map", func() { log.Info("values", "s", loggable{1, 2}, "m", map[string]int{"x": 1}) }},
		{"LogValuer", func() { log.Info("valuer", "secret", redacted{}) }},
		{"NaN and infinity", func() { log.Info("floats", "nan", math.NaN(), "inf", math.Inf(1)) }},
		{"unmarshalable", func() { log.Info("func", "f", func() {}, "ch", make(chan int)) }},
		{"duration and time", func() { log.Info("times", "d", time.Second, "t", time.Unix(0, 0).UTC()) }},
		{"group attr", func() { log.Info("group", slog.Group("g", "a", 1, slog.Group("h", "b", 2))) }},
		{"empty group", func() { log.Info("empty group", slog.Group("g")) }},
		{"With", func() { log.With("user_id", "u1", "n", 3).Warn("with") }},
		{"WithGroup", func() { log.WithGroup("req").Info("in group", "path", "/x") }},
		{"WithGroup, no attrs", func() { log.WithGroup("req").Info("empty") }},
		{"nested groups and With", func() {
			log.With("top", 1).WithGroup("a").With("x", 1).WithGroup("b").Error("deep", "y", errors.New("e"))
		}},
		{"WithGroup then error", func() { log.WithGroup("g").Error("grouped error", "error", errors.New("boom")) }},
		{"key collisions", func() { log.Info("collide", "message", "m", "severity", "s", "time", "t") }},
		{"Log at custom level", func() { log.Log(context.Background(), slog.LevelError+4, "critical") }},
		{"empty message", func() { log.Info("") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf.Reset()
			tc.log()
			if strings.Count(buf.String(), "\n") != 1 {
				t.Fatalf("want exactly one line, got:\n%s", buf.String())
			}
			line := logLines(t, buf.String())[0]
			for _, k := range []string{"severity", "message", "time", logKeySourceLocation} {
				if _, ok := line[k]; !ok {
					t.Errorf("line has no %q: %s", k, buf.String())
				}
			}
		})
	}
}

func TestJSONLoggerCloudLoggingKeys(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(newCloudHandler(&buf, slog.LevelDebug, serviceContext{Service: "svc"}))
	for _, tc := range []struct {
		level slog.Level
		want  string
	}{
		{slog.LevelDebug, "DEBUG"}, {slog.LevelInfo, "INFO"}, {slog.LevelInfo + 2, "INFO"},
		{slog.LevelWarn, "WARNING"}, {slog.LevelError, "ERROR"}, {slog.LevelError + 4, "ERROR"},
	} {
		buf.Reset()
		log.Log(context.Background(), tc.level, "m", "k", "v")
		line := logLines(t, buf.String())[0]
		if line["severity"] != tc.want || line["message"] != "m" || line["k"] != "v" {
			t.Errorf("level %v: line %s, want severity %s", tc.level, buf.String(), tc.want)
		}
		for _, k := range []string{"level", "msg", "source"} {
			if _, ok := line[k]; ok {
				t.Errorf("level %v: slog's own key %q is still there: %s", tc.level, k, buf.String())
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(line["time"])); err != nil {
			t.Errorf("time %v: %v", line["time"], err)
		}
	}
}

// TestJSONLoggerSourceLocation: the location is the line that logged, in
// the test, relative to the module, not log.go or a build path.
func TestJSONLoggerSourceLocation(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(newCloudHandler(&buf, slog.LevelInfo, serviceContext{Service: "svc"}))

	at := here(t) // the next line logs
	log.WithGroup("g").With("a", 1).Info("where")

	got := logLines(t, buf.String())[0][logKeySourceLocation]
	want := map[string]any{
		"file":     "lifecycle/log_test.go",
		"line":     float64(at.line + 1),
		"function": "github.com/finwell/plaid-token-lifecycle/lifecycle.TestJSONLoggerSourceLocation",
	}
	if at.file != want["file"] || at.function != want["function"] {
		t.Fatalf("this test is at %+v, not in %s", at, want["file"])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sourceLocation (-want +got):\n%s", diff)
	}
}

// TestJSONLoggerErrorReporting: ERROR entries carry a ReportedErrorEvent's
// fields, so Error Reporting groups them without a stack trace; other
// entries do not, or Error Reporting would count them as errors.
func TestJSONLoggerErrorReporting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		service serviceContext
		want    map[string]any
	}{
		{"with version", serviceContext{Service: "tokencleanup", Version: "tokencleanup-00042-abc"},
			map[string]any{"service": "tokencleanup", "version": "tokencleanup-00042-abc"}},
		{"no version", serviceContext{Service: "manage-tokens"}, map[string]any{"service": "manage-tokens"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(newCloudHandler(&buf, slog.LevelDebug, tc.service))

			log.Info("fine")
			log.Warn("retrying")
			at := here(t) // the next line logs
			log.With("run_id", "r1").Error("cleanup failed", "error", errors.New("boom"))

			lines := logLines(t, buf.String())
			for _, l := range lines[:2] {
				for _, k := range []string{"@type", "serviceContext", "context"} {
					if _, ok := l[k]; ok {
						t.Errorf("%s line has %q", l["severity"], k)
					}
				}
			}
			got := lines[2]
			want := map[string]any{
				"@type":          reportedErrorEvent,
				"serviceContext": tc.want,
				"context": map[string]any{"reportLocation": map[string]any{
					"filePath":     "lifecycle/log_test.go",
					"lineNumber":   float64(at.line + 1),
					"functionName": at.function,
				}},
				"run_id": "r1",
				"error":  "boom",
			}
			for k, w := range want {
				if diff := cmp.Diff(w, got[k]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", k, diff)
				}
			}
			if got["severity"] != "ERROR" || got["message"] != "cleanup failed" {
				t.Errorf("line = %v", got)
			}
		})
	}
}

func TestServiceContextFrom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want serviceContext
	}{
		{"Cloud Functions gen2", map[string]string{"K_SERVICE": "tokencleanup", "FUNCTION_TARGET": "TokenCleanup", "K_REVISION": "tokencleanup-00003-xyz"},
			serviceContext{"tokencleanup", "tokencleanup-00003-xyz"}},
		{"function target only", map[string]string{"FUNCTION_TARGET": "TokenCleanup"}, serviceContext{Service: "TokenCleanup"}},
		{"blank K_SERVICE", map[string]string{"K_SERVICE": " ", "FUNCTION_TARGET": "TokenCleanup"}, serviceContext{Service: "TokenCleanup"}},
		{"a program", nil, serviceContext{Service: "lifecycle.test"}},
	}
	for _, tc := range tests {
		got := serviceContextFrom(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestModuleRelative(t *testing.T) {
	t.Parallel()
	root := moduleRoot()
	for in, want := range map[string]string{
		root + "/lifecycle/cleanup.go":             "lifecycle/cleanup.go",
		root + "/functions/server.go":              "functions/server.go",
		"/usr/lib/go/src/net/http/server.go":       "/usr/lib/go/src/net/http/server.go",
		root + "-fork/lifecycle/cleanup.go":        root + "-fork/lifecycle/cleanup.go",
		"github.com/other/module/lifecycle/log.go": "github.com/other/module/lifecycle/log.go",
	} {
		if got := moduleRelative(in); got != want {
			t.Errorf("moduleRelative(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJSONLoggerConcurrent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(newCloudHandler(lockedWriter{&mu, &buf}, slog.LevelInfo, serviceContext{Service: "svc"}))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			l := log.With("worker", i).WithGroup("g")
			for j := range 50 {
				l.Error("x", "j", j)
			}
		})
	}
	wg.Wait()
	if n := len(logLines(t, buf.String())); n != 400 {
		t.Errorf("%d lines, want 400", n)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
