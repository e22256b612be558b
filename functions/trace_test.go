package functions

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// logLines decodes every line of out as one JSON object.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("log line is not a JSON object: %v\n%s", err, line)
		}
		lines = append(lines, obj)
	}
	return lines
}

func TestWithTrace(t *testing.T) {
	t.Parallel()
	trace := "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name    string
		project string
		tc      traceContext
		want    map[string]any // the trace keys of the line
	}{
		{"sampled", "proj-1", traceContext{TraceID: trace, SpanID: "00f067aa0ba902b7", Sampled: true}, map[string]any{
			logKeyTrace: "projects/proj-1/traces/" + trace, logKeySpanID: "00f067aa0ba902b7", logKeyTraceSampled: true}},
		{"not sampled, no span", "proj-1", traceContext{TraceID: trace}, map[string]any{
			logKeyTrace: "projects/proj-1/traces/" + trace, logKeyTraceSampled: false}},
		{"no project", "", traceContext{TraceID: trace, SpanID: "00f067aa0ba902b7"}, map[string]any{}},
		{"no trace", "proj-1", traceContext{}, map[string]any{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := withTrace(lifecycle.NewJSONLogger(&buf, slog.LevelInfo), tc.project, tc.tc)
			log.Info("one")
			log.With("k", "v").Info("two")
			for _, line := range logLines(t, buf.String()) {
				got := map[string]any{}
				for k, v := range line {
					if strings.HasPrefix(k, "logging.googleapis.com/") && k != "logging.googleapis.com/sourceLocation" {
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
	log := withTrace(slog.New(slog.NewJSONHandler(&buf, nil)), "p", traceContext{TraceID: trace, Sampled: true})
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
		want   traceContext
		ok     bool
	}{
		// The specification's example, sampled and not.
		{"00-" + trace + "-" + span + "-01", traceContext{trace, span, true}, true},
		{"00-" + trace + "-" + span + "-00", traceContext{trace, span, false}, true},
		// The random flag (Trace Context level 2) is not the sampled one.
		{"00-" + trace + "-" + span + "-03", traceContext{trace, span, true}, true},
		{"00-" + trace + "-" + span + "-02", traceContext{trace, span, false}, true},
		// A later version may set flags version 00 reserves.
		{"cc-" + trace + "-" + span + "-ff", traceContext{trace, span, true}, true},
		// Surrounding whitespace (HTTP's optional whitespace).
		{" 00-" + trace + "-" + span + "-01\t", traceContext{trace, span, true}, true},
		// A later version may append fields after a dash.
		{"01-" + trace + "-" + span + "-01", traceContext{trace, span, true}, true},
		{"cc-" + trace + "-" + span + "-01-what-the-future-holds", traceContext{trace, span, true}, true},

		{"", traceContext{}, false},
		{"00", traceContext{}, false},
		{"ff-" + trace + "-" + span + "-01", traceContext{}, false}, // version ff is invalid
		{"00-" + trace + "-" + span + "-ff", traceContext{}, false}, // reserved flags in version 00
		{"00-" + trace + "-" + span + "-01-extra", traceContext{}, false},
		{"00-" + trace + "-" + span + "-01x", traceContext{}, false},
		{"cc-" + trace + "-" + span + "-01x", traceContext{}, false},
		{"00-" + strings.ToUpper(trace) + "-" + span + "-01", traceContext{}, false},
		{"00-" + trace + "-" + strings.ToUpper(span) + "-01", traceContext{}, false},
		{"0A-" + trace + "-" + span + "-01", traceContext{}, false},
		{"00-" + trace + "-" + span + "-0G", traceContext{}, false},
		{"00-" + strings.Repeat("0", 32) + "-" + span + "-01", traceContext{}, false},
		{"00-" + trace + "-" + strings.Repeat("0", 16) + "-01", traceContext{}, false},
		{"00-" + trace[:31] + "-" + span + "-01", traceContext{}, false},
		{"00-" + trace + "0-" + span + "-01", traceContext{}, false},
		{"00-" + trace + "-" + span[:15] + "-01", traceContext{}, false},
		{"00-" + trace + "-" + span + "-1", traceContext{}, false},
		{"00_" + trace + "_" + span + "_01", traceContext{}, false},
		{"00-" + trace + "-" + span + "-01\n", traceContext{}, false},
		{"00-" + trace[:30] + "zz-" + span + "-01", traceContext{}, false},
		{trace + "/1;o=1", traceContext{}, false},
	}
	for _, tc := range tests {
		got, ok := parseTraceparent(tc.header)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseTraceparent(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseCloudTraceContext(t *testing.T) {
	t.Parallel()
	const trace = "105445aa7843bc8bf206b12000100000"
	tests := []struct {
		header string
		want   traceContext
		ok     bool
	}{
		// Google's documented example; the span is decimal there.
		{trace + "/1;o=1", traceContext{trace, "0000000000000001", true}, true},
		{trace + "/1;o=0", traceContext{trace, "0000000000000001", false}, true},
		{trace + "/18446744073709551615;o=1", traceContext{trace, "ffffffffffffffff", true}, true},
		{trace + "/11597247069615945225", traceContext{trace, "a0f1b2c3d4e5f609", false}, true},
		{trace, traceContext{trace, "", false}, true},
		{trace + ";o=1", traceContext{trace, "", true}, true},
		{trace + "/0;o=1", traceContext{trace, "", true}, true}, // span 0 names none
		{strings.ToUpper(trace) + "/1", traceContext{trace, "0000000000000001", false}, true},

		{"", traceContext{}, false},
		{"/1;o=1", traceContext{}, false},
		{trace[:31] + "/1", traceContext{}, false},
		{trace + "0/1", traceContext{}, false},
		{strings.Repeat("0", 32) + "/1;o=1", traceContext{}, false},
		{trace[:31] + "g/1", traceContext{}, false},
		{trace + "/", traceContext{}, false},
		{trace + "/-1", traceContext{}, false},
		{trace + "/+1", traceContext{}, false},
		{trace + "/0x1f", traceContext{}, false},
		{trace + "/18446744073709551616", traceContext{}, false}, // 2^64
		{trace + "/1;o=", traceContext{}, false},
		{trace + "/1;o=x", traceContext{}, false},
		{trace + "/1;sampled", traceContext{}, false},
		{trace + "/1 ;o=1", traceContext{}, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", traceContext{}, false},
	}
	for _, tc := range tests {
		got, ok := parseCloudTraceContext(tc.header)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseCloudTraceContext(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
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
		check := func(parser string, tc traceContext, ok bool) {
			if !ok {
				if tc != (traceContext{}) {
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
		tc, ok := parseTraceparent(h)
		check("parseTraceparent", tc, ok)
		if ok {
			if tc.SpanID == "" {
				t.Fatalf("parseTraceparent(%q): no span id", h)
			}
			// What it accepts, it accepts again as version 00.
			flags := "00"
			if tc.Sampled {
				flags = "01"
			}
			again, ok := parseTraceparent("00-" + tc.TraceID + "-" + tc.SpanID + "-" + flags)
			if !ok || again != tc {
				t.Fatalf("parseTraceparent(%q) = %+v, which does not parse back: %+v, %v", h, tc, again, ok)
			}
		}
		tc, ok = parseCloudTraceContext(h)
		check("parseCloudTraceContext", tc, ok)
	})
}
