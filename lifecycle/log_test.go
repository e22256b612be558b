package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
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
		{"WithTrace under a group", func() {
			WithTrace(log.WithGroup("g"), "p", TraceContext{TraceID: strings.Repeat("ab", 16), SpanID: "0000000000000001"}).Info("traced", "k", "v")
		}},
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
			log.WithGroup("req").Error("cleanup failed", "error", errors.New("boom"))

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
				"req": map[string]any{"error": "boom"},
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

func TestWithTrace(t *testing.T) {
	t.Parallel()
	trace := "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name    string
		project string
		tc      TraceContext
		want    map[string]any // the trace keys of the line
	}{
		{"sampled", "proj-1", TraceContext{TraceID: trace, SpanID: "00f067aa0ba902b7", Sampled: true}, map[string]any{
			logKeyTrace: "projects/proj-1/traces/" + trace, logKeySpanID: "00f067aa0ba902b7", logKeyTraceSampled: true}},
		{"not sampled, no span", "proj-1", TraceContext{TraceID: trace}, map[string]any{
			logKeyTrace: "projects/proj-1/traces/" + trace, logKeyTraceSampled: false}},
		{"no project", "", TraceContext{TraceID: trace, SpanID: "00f067aa0ba902b7"}, map[string]any{}},
		{"no trace", "proj-1", TraceContext{}, map[string]any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := WithTrace(slog.New(newCloudHandler(&buf, slog.LevelInfo, serviceContext{})), tc.project, tc.tc)
			log.Info("one")
			log.WithGroup("g").Info("two", "k", "v")
			for _, line := range logLines(t, buf.String()) {
				got := map[string]any{}
				for k, v := range line {
					if strings.HasPrefix(k, "logging.googleapis.com/") && k != logKeySourceLocation {
						got[k] = v
					}
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s: trace keys (-want +got):\n%s", line["message"], diff)
				}
			}
		})
	}

	// Any other handler gets the attributes as With would add them.
	var buf bytes.Buffer
	log := WithTrace(slog.New(slog.NewJSONHandler(&buf, nil)), "p", TraceContext{TraceID: trace, Sampled: true})
	log.Info("m")
	if line := logLines(t, buf.String())[0]; line[logKeyTrace] != "projects/p/traces/"+trace || line[logKeyTraceSampled] != true {
		t.Errorf("line = %v", line)
	}
}

func TestParseTraceparent(t *testing.T) {
	t.Parallel()
	const (
		trace = "4bf92f3577b34da6a3ce929d0e0e4736"
		span  = "00f067aa0ba902b7"
	)
	tests := []struct {
		header string
		want   TraceContext
		ok     bool
	}{
		// The specification's example, sampled and not.
		{"00-" + trace + "-" + span + "-01", TraceContext{trace, span, true}, true},
		{"00-" + trace + "-" + span + "-00", TraceContext{trace, span, false}, true},
		// The random flag (Trace Context level 2) is not the sampled one.
		{"00-" + trace + "-" + span + "-03", TraceContext{trace, span, true}, true},
		{"00-" + trace + "-" + span + "-02", TraceContext{trace, span, false}, true},
		// A later version may set flags version 00 reserves.
		{"cc-" + trace + "-" + span + "-ff", TraceContext{trace, span, true}, true},
		// Surrounding whitespace (HTTP's optional whitespace).
		{" 00-" + trace + "-" + span + "-01\t", TraceContext{trace, span, true}, true},
		// A later version may append fields after a dash.
		{"01-" + trace + "-" + span + "-01", TraceContext{trace, span, true}, true},
		{"cc-" + trace + "-" + span + "-01-what-the-future-holds", TraceContext{trace, span, true}, true},

		{"", TraceContext{}, false},
		{"00", TraceContext{}, false},
		{"ff-" + trace + "-" + span + "-01", TraceContext{}, false}, // version ff is invalid
		{"00-" + trace + "-" + span + "-ff", TraceContext{}, false}, // reserved flags in version 00
		{"00-" + trace + "-" + span + "-01-extra", TraceContext{}, false},
		{"00-" + trace + "-" + span + "-01x", TraceContext{}, false},
		{"cc-" + trace + "-" + span + "-01x", TraceContext{}, false},
		{"00-" + strings.ToUpper(trace) + "-" + span + "-01", TraceContext{}, false},
		{"00-" + trace + "-" + strings.ToUpper(span) + "-01", TraceContext{}, false},
		{"0A-" + trace + "-" + span + "-01", TraceContext{}, false},
		{"00-" + trace + "-" + span + "-0G", TraceContext{}, false},
		{"00-" + strings.Repeat("0", 32) + "-" + span + "-01", TraceContext{}, false},
		{"00-" + trace + "-" + strings.Repeat("0", 16) + "-01", TraceContext{}, false},
		{"00-" + trace[:31] + "-" + span + "-01", TraceContext{}, false},
		{"00-" + trace + "0-" + span + "-01", TraceContext{}, false},
		{"00-" + trace + "-" + span[:15] + "-01", TraceContext{}, false},
		{"00-" + trace + "-" + span + "-1", TraceContext{}, false},
		{"00_" + trace + "_" + span + "_01", TraceContext{}, false},
		{"00-" + trace + "-" + span + "-01\n", TraceContext{}, false},
		{"00-" + trace[:30] + "zz-" + span + "-01", TraceContext{}, false},
		{trace + "/1;o=1", TraceContext{}, false},
	}
	for _, tc := range tests {
		got, ok := ParseTraceparent(tc.header)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseTraceparent(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseCloudTraceContext(t *testing.T) {
	t.Parallel()
	const trace = "105445aa7843bc8bf206b12000100000"
	tests := []struct {
		header string
		want   TraceContext
		ok     bool
	}{
		// Google's documented example; the span is decimal there.
		{trace + "/1;o=1", TraceContext{trace, "0000000000000001", true}, true},
		{trace + "/1;o=0", TraceContext{trace, "0000000000000001", false}, true},
		{trace + "/18446744073709551615;o=1", TraceContext{trace, "ffffffffffffffff", true}, true},
		{trace + "/11597247069615945225", TraceContext{trace, "a0f1b2c3d4e5f609", false}, true},
		{trace, TraceContext{trace, "", false}, true},
		{trace + ";o=1", TraceContext{trace, "", true}, true},
		{trace + "/0;o=1", TraceContext{trace, "", true}, true}, // span 0 names none
		{strings.ToUpper(trace) + "/1", TraceContext{trace, "0000000000000001", false}, true},

		{"", TraceContext{}, false},
		{"/1;o=1", TraceContext{}, false},
		{trace[:31] + "/1", TraceContext{}, false},
		{trace + "0/1", TraceContext{}, false},
		{strings.Repeat("0", 32) + "/1;o=1", TraceContext{}, false},
		{trace[:31] + "g/1", TraceContext{}, false},
		{trace + "/", TraceContext{}, false},
		{trace + "/-1", TraceContext{}, false},
		{trace + "/+1", TraceContext{}, false},
		{trace + "/0x1f", TraceContext{}, false},
		{trace + "/18446744073709551616", TraceContext{}, false}, // 2^64
		{trace + "/1;o=", TraceContext{}, false},
		{trace + "/1;o=x", TraceContext{}, false},
		{trace + "/1;sampled", TraceContext{}, false},
		{trace + "/1 ;o=1", TraceContext{}, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceContext{}, false},
	}
	for _, tc := range tests {
		got, ok := ParseCloudTraceContext(tc.header)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseCloudTraceContext(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

var (
	traceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
	spanIDPattern  = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// FuzzTraceHeaders: trace headers come from anyone who can reach a
// function. Neither parser panics, and whatever they accept is a trace
// Cloud Logging takes: 32 and 16 lowercase hex digits, neither all zeros.
func FuzzTraceHeaders(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"105445aa7843bc8bf206b12000100000/1;o=1",
		"105445aa7843bc8bf206b12000100000/18446744073709551615;o=1",
		"105445aa7843bc8bf206b12000100000/18446744073709551616",
		"105445AA7843BC8BF206B12000100000",
		"105445aa7843bc8bf206b12000100000/0;o=0",
		"",
		"/;o=",
		"\xff\xfe-\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		check := func(parser string, tc TraceContext, ok bool) {
			if !ok {
				if tc != (TraceContext{}) {
					t.Fatalf("%s(%q) refused the header but returned %+v", parser, h, tc)
				}
				return
			}
			if !traceIDPattern.MatchString(tc.TraceID) || strings.Trim(tc.TraceID, "0") == "" {
				t.Fatalf("%s(%q): trace id %q", parser, h, tc.TraceID)
			}
			if tc.SpanID != "" && (!spanIDPattern.MatchString(tc.SpanID) || strings.Trim(tc.SpanID, "0") == "") {
				t.Fatalf("%s(%q): span id %q", parser, h, tc.SpanID)
			}
		}
		tc, ok := ParseTraceparent(h)
		check("ParseTraceparent", tc, ok)
		if ok {
			if tc.SpanID == "" {
				t.Fatalf("ParseTraceparent(%q): no span id", h)
			}
			// What it accepts, it accepts again as version 00.
			flags := "00"
			if tc.Sampled {
				flags = "01"
			}
			again, ok := ParseTraceparent("00-" + tc.TraceID + "-" + tc.SpanID + "-" + flags)
			if !ok || again != tc {
				t.Fatalf("ParseTraceparent(%q) = %+v, which does not parse back: %+v, %v", h, tc, again, ok)
			}
		}
		tc, ok = ParseCloudTraceContext(h)
		check("ParseCloudTraceContext", tc, ok)
	})
}

func TestTextLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := NewTextLogger(&buf, slog.LevelWarn)
	log.Info("not shown")
	log.Warn("retrying Plaid call", "endpoint", "/item/get", "attempt", 1)
	log.Error("cleanup failed", "error", errors.New("plaid /item/remove: 503"))
	log.With("run_id", "r1").WithGroup("stats").Warn("slow", "pages", 3)
	log.Warn("two\nlines")
	log.Log(context.Background(), slog.LevelError+4, "worse")
	want := `WARN  retrying Plaid call endpoint=/item/get attempt=1
ERROR cleanup failed error="plaid /item/remove: 503"
WARN  slow run_id=r1 stats.pages=3
WARN  two; lines
ERROR+4 worse
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("text log (-want +got):\n%s", diff)
	}
}

func TestTextLoggerConcurrent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	log := NewTextLogger(lockedWriter{&mu, &buf}, slog.LevelInfo)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				log.With("worker", i).Info("tick", "j", j)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	line := regexp.MustCompile(`^INFO  tick worker=\d j=\d+$`)
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Fatalf("interleaved line %q", l)
		}
	}
	if len(lines) != 400 {
		t.Errorf("%d lines, want 400", len(lines))
	}
}
