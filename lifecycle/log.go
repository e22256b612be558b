package lifecycle

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type loggerKey struct{}

// WithLogger returns ctx carrying logger.
func WithLogger(ctx context.Context, logger *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, logger)
}

// Logger returns the logger in ctx, or slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.Default()
}

// Keys of a log line that Cloud Logging lifts out of the JSON payload into
// the LogEntry, and the type that makes Error Reporting take an entry as an
// error event without a stack trace (DESIGN §11).
const (
	logKeySourceLocation = "logging.googleapis.com/sourceLocation"
	logKeyTrace          = "logging.googleapis.com/trace"
	logKeySpanID         = "logging.googleapis.com/spanId"
	logKeyTraceSampled   = "logging.googleapis.com/trace_sampled"
	reportedErrorEvent   = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)

// NewJSONLogger returns a logger writing one JSON object per line with
// Cloud Logging's keys (DESIGN §11): severity, message, time and the
// sourceLocation of the call that logged. ERROR entries also carry what
// Error Reporting groups them by without a stack trace: the
// ReportedErrorEvent @type, the serviceContext (K_SERVICE or
// FUNCTION_TARGET, else the program's name; K_REVISION) and the
// reportLocation. WithTrace adds the request's trace.
func NewJSONLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(newCloudHandler(w, level, serviceContextFrom(os.LookupEnv)))
}

// serviceContext is what Error Reporting groups errors under: the service
// and its version.
type serviceContext struct {
	Service, Version string
}

// serviceContextFrom reads the service's name and version from the
// variables Cloud Functions gen2 (Cloud Run) sets for every instance; they
// are the platform's, not the deployment's configuration.
func serviceContextFrom(lookup func(string) (string, bool)) serviceContext {
	var sc serviceContext
	for _, k := range []string{"K_SERVICE", "FUNCTION_TARGET"} {
		if v, _ := lookup(k); strings.TrimSpace(v) != "" {
			sc.Service = strings.TrimSpace(v)
			break
		}
	}
	if sc.Service == "" && len(os.Args) > 0 {
		sc.Service = strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	}
	if v, _ := lookup("K_REVISION"); strings.TrimSpace(v) != "" {
		sc.Version = strings.TrimSpace(v)
	}
	return sc
}

// cloudHandler writes Cloud Logging's JSON lines through a slog.JSONHandler
// and adds the Error Reporting fields to ERROR entries. Those fields (and a
// trace) must be top-level keys of the line, so the handler keeps the
// groups opened by WithGroup itself, nesting the record's attributes into
// them in Handle, instead of letting the JSONHandler open them (anything
// added in Handle would land inside them).
type cloudHandler struct {
	json    slog.Handler // never given a group: its attributes are top-level
	service serviceContext
	scopes  []logScope // WithGroup and the WithAttrs after it, outermost first
}

// logScope is one WithGroup (group != "") or WithAttrs call.
type logScope struct {
	group string
	attrs []slog.Attr
}

func newCloudHandler(w io.Writer, level slog.Leveler, sc serviceContext) *cloudHandler {
	return &cloudHandler{
		json: slog.NewJSONHandler(w, &slog.HandlerOptions{
			AddSource:   true,
			Level:       level,
			ReplaceAttr: cloudLoggingKeys,
		}),
		service: sc,
	}
}

// cloudLoggingKeys renames slog's built-in keys to Cloud Logging's.
func cloudLoggingKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "message"
	case slog.LevelKey:
		if lvl, ok := a.Value.Any().(slog.Level); ok {
			return slog.String("severity", severity(lvl))
		}
	case slog.SourceKey:
		if src, ok := a.Value.Any().(*slog.Source); ok {
			if src.File == "" {
				return slog.Attr{} // a record without a caller
			}
			return slog.Attr{Key: logKeySourceLocation, Value: slog.GroupValue(
				slog.String("file", moduleRelative(src.File)),
				slog.Int("line", src.Line),
				slog.String("function", src.Function),
			)}
		}
	}
	return a
}

func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	default:
		return "DEBUG"
	}
}

// moduleRoot is the directory of this module as the compiler saw it: the
// checkout's absolute path, or the module path when built with -trimpath.
var moduleRoot = sync.OnceValue(func() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return path.Dir(path.Dir(file)) // this file is <root>/lifecycle/log.go
})

// moduleRelative returns file relative to the module's root
// (lifecycle/cleanup.go), so that a log line names the same file wherever
// the binary was built. Files outside the module keep their path.
func moduleRelative(file string) string {
	if root := moduleRoot(); root != "" && root != "." {
		if rel, ok := strings.CutPrefix(file, root+"/"); ok {
			return rel
		}
	}
	return file
}

func (h *cloudHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.json.Enabled(ctx, l)
}

func (h *cloudHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	if len(h.scopes) == 0 {
		h2.json = h.json.WithAttrs(attrs) // top-level: formatted once, here
		return &h2
	}
	h2.scopes = append(slices.Clip(h.scopes), logScope{attrs: slices.Clone(attrs)})
	return &h2
}

func (h *cloudHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.scopes = append(slices.Clip(h.scopes), logScope{group: name})
	return &h2
}

// withTopLevel returns h with attrs at the top level of every line,
// whatever groups are open.
func (h *cloudHandler) withTopLevel(attrs []slog.Attr) *cloudHandler {
	h2 := *h
	h2.json = h.json.WithAttrs(attrs)
	return &h2
}

func (h *cloudHandler) Handle(ctx context.Context, r slog.Record) error {
	attrs := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	for _, s := range slices.Backward(h.scopes) {
		if s.group != "" {
			attrs = []slog.Attr{{Key: s.group, Value: slog.GroupValue(attrs...)}}
		} else {
			attrs = append(slices.Clip(s.attrs), attrs...)
		}
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if r.Level >= slog.LevelError {
		out.AddAttrs(h.errorReport(r)...)
	}
	out.AddAttrs(attrs...)
	return h.json.Handle(ctx, out)
}

// errorReport returns the fields of a ReportedErrorEvent that let Error
// Reporting group an entry that has no stack trace: with the @type it takes
// the entry's message as the error, and it groups by service and
// reportLocation (https://cloud.google.com/error-reporting/docs/formatting-error-messages).
func (h *cloudHandler) errorReport(r slog.Record) []slog.Attr {
	service := []slog.Attr{slog.String("service", h.service.Service)}
	if h.service.Version != "" {
		service = append(service, slog.String("version", h.service.Version))
	}
	attrs := []slog.Attr{
		slog.String("@type", reportedErrorEvent),
		{Key: "serviceContext", Value: slog.GroupValue(service...)},
	}
	if src := r.Source(); src != nil && src.File != "" {
		attrs = append(attrs, slog.Group("context", slog.Group("reportLocation",
			slog.String("filePath", moduleRelative(src.File)),
			slog.Int("lineNumber", src.Line),
			slog.String("functionName", src.Function),
		)))
	}
	return attrs
}

// TraceContext is the trace of an incoming request or event: what Cloud
// Logging correlates a request's log lines by.
type TraceContext struct {
	TraceID string // 32 lowercase hex digits
	SpanID  string // 16 lowercase hex digits; "" when the header had none
	Sampled bool
}

// WithTrace returns l adding tc to every line as Cloud Logging's trace,
// spanId and trace_sampled, so that the console shows a request's lines
// together and beside its trace. Without a project or a trace it returns l.
func WithTrace(l *slog.Logger, project string, tc TraceContext) *slog.Logger {
	if project == "" || tc.TraceID == "" {
		return l
	}
	attrs := []slog.Attr{slog.String(logKeyTrace, "projects/"+project+"/traces/"+tc.TraceID)}
	if tc.SpanID != "" {
		attrs = append(attrs, slog.String(logKeySpanID, tc.SpanID))
	}
	attrs = append(attrs, slog.Bool(logKeyTraceSampled, tc.Sampled))
	if h, ok := l.Handler().(*cloudHandler); ok {
		return slog.New(h.withTopLevel(attrs)) // even under a WithGroup
	}
	return slog.New(l.Handler().WithAttrs(attrs))
}

// ParseTraceparent parses a W3C traceparent header
// (https://www.w3.org/TR/trace-context/#traceparent-header), as HTTP
// requests and CloudEvents' traceparent extension carry it:
// "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>". OpenTelemetry's
// propagator (already in every binary through the Google Cloud clients)
// parses it, as strictly as the specification asks: lowercase hex only, no
// all-zero id, no version ff, nothing after a version 00 header's flags
// and none of its reserved flags.
func ParseTraceparent(h string) (TraceContext, bool) {
	carrier := propagation.MapCarrier{"traceparent": strings.Trim(h, " \t")}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	if !sc.IsValid() {
		return TraceContext{}, false
	}
	return TraceContext{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), Sampled: sc.IsSampled()}, true
}

// ParseCloudTraceContext parses Google's X-Cloud-Trace-Context header,
// "TRACE_ID/SPAN_ID;o=OPTIONS" (span and options optional): a 32-digit hex
// trace id, a decimal span id, which Cloud Logging wants as 16 hex digits,
// and o=1 when the request is sampled.
func ParseCloudTraceContext(h string) (TraceContext, bool) {
	h = strings.Trim(h, " \t")
	ids, options, hasOptions := strings.Cut(h, ";")
	traceID, spanID, hasSpan := strings.Cut(ids, "/")
	traceID = strings.ToLower(traceID)
	if len(traceID) != 32 || !isLowerHex(traceID) || strings.Trim(traceID, "0") == "" {
		return TraceContext{}, false
	}
	tc := TraceContext{TraceID: traceID}
	if hasSpan {
		n, err := strconv.ParseUint(spanID, 10, 64) // digits only: no sign, no 0x
		if err != nil {
			return TraceContext{}, false
		}
		if n != 0 { // zero names no span
			tc.SpanID = fmt.Sprintf("%016x", n)
		}
	}
	if hasOptions {
		o, ok := strings.CutPrefix(options, "o=")
		n, err := strconv.ParseUint(o, 10, 64)
		if !ok || err != nil {
			return TraceContext{}, false
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

// NewTextLogger returns a logger for a person at a terminal: one line per
// entry, "LEVEL message key=value ...", e.g.
//
//	WARN  retrying Plaid call endpoint=/item/get attempt=1
//
// without time or source location. Attributes are quoted and grouped as
// slog.TextHandler does. Programs whose output a machine reads use
// NewJSONLogger.
func NewTextLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	line := &textLine{w: w}
	return slog.New(&textHandler{line: line, attrs: slog.NewTextHandler(line, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 {
				switch a.Key {
				case slog.TimeKey, slog.LevelKey, slog.MessageKey:
					return slog.Attr{} // the line's prefix says them
				}
			}
			return a
		},
	})})
}

// textHandler prefixes the attributes slog.TextHandler formats with the
// record's level and message.
type textHandler struct {
	attrs slog.Handler // slog.TextHandler writing into line
	line  *textLine
}

// textLine receives the attributes of one record from the TextHandler and
// writes them after the record's prefix. Handle holds mu from setting the
// prefix until the TextHandler's one Write, so lines never interleave.
type textLine struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (l *textLine) Write(p []byte) (int, error) {
	line := l.prefix
	if attrs := strings.TrimSuffix(string(p), "\n"); attrs != "" {
		line += " " + attrs
	}
	if _, err := io.WriteString(l.w, line+"\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (h *textHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.attrs.Enabled(ctx, l)
}

func (h *textHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &textHandler{attrs: h.attrs.WithAttrs(attrs), line: h.line}
}

func (h *textHandler) WithGroup(name string) slog.Handler {
	return &textHandler{attrs: h.attrs.WithGroup(name), line: h.line}
}

func (h *textHandler) Handle(ctx context.Context, r slog.Record) error {
	h.line.mu.Lock()
	defer h.line.mu.Unlock()
	// One line per entry: a message with newlines (errors.Join) stays on it.
	msg := strings.ReplaceAll(r.Message, "\n", "; ")
	h.line.prefix = fmt.Sprintf("%-5s %s", r.Level.String(), msg)
	return h.attrs.Handle(ctx, r)
}
