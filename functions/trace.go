package functions

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The trace of a request or event, as its headers carry it, so that Cloud
// Logging shows a request's log lines together and beside its trace
// (DESIGN §11).

// Keys of a log line that Cloud Logging lifts into the LogEntry's trace.
const (
	logKeyTrace        = "logging.googleapis.com/trace"
	logKeySpanID       = "logging.googleapis.com/spanId"
	logKeyTraceSampled = "logging.googleapis.com/trace_sampled"
)

// traceContext is the trace of an incoming request or event: what Cloud
// Logging correlates a request's log lines by.
type traceContext struct {
	TraceID string // 32 lowercase hex digits
	SpanID  string // 16 lowercase hex digits; "" when the header had none
	Sampled bool
}

// withTrace returns l adding tc to every line as Cloud Logging's trace,
// spanId and trace_sampled, so that the console shows a request's lines
// together and beside its trace. Without a project or a trace it returns l.
func withTrace(l *slog.Logger, project string, tc traceContext) *slog.Logger {
	if project == "" || tc.TraceID == "" {
		return l
	}
	attrs := []slog.Attr{slog.String(logKeyTrace, "projects/"+project+"/traces/"+tc.TraceID)}
	if tc.SpanID != "" {
		attrs = append(attrs, slog.String(logKeySpanID, tc.SpanID))
	}
	attrs = append(attrs, slog.Bool(logKeyTraceSampled, tc.Sampled))
	return slog.New(l.Handler().WithAttrs(attrs))
}

// parseTraceparent parses a W3C traceparent header
// (https://www.w3.org/TR/trace-context/#traceparent-header), as HTTP
// requests and CloudEvents' traceparent extension carry it:
// "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>". OpenTelemetry's
// propagator (already in every binary through the Google Cloud clients)
// parses it, as strictly as the specification asks: lowercase hex only, no
// all-zero id, no version ff, nothing after a version 00 header's flags
// and none of its reserved flags.
func parseTraceparent(h string) (traceContext, bool) {
	carrier := propagation.MapCarrier{"traceparent": strings.Trim(h, " \t")}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	if !sc.IsValid() {
		return traceContext{}, false
	}
	return traceContext{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), Sampled: sc.IsSampled()}, true
}

// parseCloudTraceContext parses Google's X-Cloud-Trace-Context header,
// "TRACE_ID/SPAN_ID;o=OPTIONS" (span and options optional): a 32-digit hex
// trace id, a decimal span id, which Cloud Logging wants as 16 hex digits,
// and o=1 when the request is sampled.
func parseCloudTraceContext(h string) (traceContext, bool) {
	h = strings.Trim(h, " \t")
	ids, options, hasOptions := strings.Cut(h, ";")
	traceID, spanID, hasSpan := strings.Cut(ids, "/")
	traceID = strings.ToLower(traceID)
	if len(traceID) != 32 || !isLowerHex(traceID) || strings.Trim(traceID, "0") == "" {
		return traceContext{}, false
	}
	tc := traceContext{TraceID: traceID}
	if hasSpan {
		n, err := strconv.ParseUint(spanID, 10, 64) // digits only: no sign, no 0x
		if err != nil {
			return traceContext{}, false
		}
		if n != 0 { // zero names no span
			tc.SpanID = fmt.Sprintf("%016x", n)
		}
	}
	if hasOptions {
		o, ok := strings.CutPrefix(options, "o=")
		n, err := strconv.ParseUint(o, 10, 64)
		if !ok || err != nil {
			return traceContext{}, false
		}
		tc.Sampled = n&1 == 1
	}
	return tc, true
}

func isLowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}
