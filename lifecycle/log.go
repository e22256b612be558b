package lifecycle

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
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
	reportedErrorEvent   = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)

// NewJSONLogger returns a logger writing one JSON object per line with
// Cloud Logging's keys (DESIGN §11): severity, message, time and the
// sourceLocation of the call that logged. ERROR entries also carry what
// Error Reporting groups them by without a stack trace: the
// ReportedErrorEvent @type, the serviceContext (K_SERVICE or
// FUNCTION_TARGET, else the program's name; K_REVISION) and the
// reportLocation. functions adds the request's trace.
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
// and adds the Error Reporting fields to ERROR entries. Those fields must be
// top-level keys of the line: the service opens no group (WithGroup would
// nest them too).
type cloudHandler struct {
	json    slog.Handler
	service serviceContext
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
	return &cloudHandler{json: h.json.WithAttrs(attrs), service: h.service}
}

func (h *cloudHandler) WithGroup(name string) slog.Handler {
	return &cloudHandler{json: h.json.WithGroup(name), service: h.service}
}

func (h *cloudHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		r = r.Clone()
		r.AddAttrs(h.errorReport(r)...)
	}
	return h.json.Handle(ctx, r)
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
