package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// newTextLogger returns a logger for a person at a terminal: one line per
// entry, "LEVEL message key=value ...", e.g.
//
//	WARN  retrying Plaid call endpoint=/item/get attempt=1
//
// without time or source location. Attributes are quoted and grouped as
// slog.TextHandler does. Programs whose output a machine reads use
// NewJSONLogger.
func newTextLogger(w io.Writer, level slog.Leveler) *slog.Logger {
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
