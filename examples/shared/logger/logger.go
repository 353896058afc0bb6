// Package logger builds the structured JSON loggers that workflow functions
// write to stdout, where Lambda forwards each line to CloudWatch Logs.
//
// A per-invocation logger travels in the context, so shared modules log with
// the request and trace IDs of the invocation that called them.
package logger

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ctxKey is the context key for the invocation's logger.
type ctxKey struct{}

// discard drops every record; FromContext returns it when no logger was set,
// so library code can always log without nil checks.
var discard = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 1}))

// New returns a JSON logger writing to w that tags each record with the
// component (usually the function's name) and drops records below level.
func New(w io.Writer, component string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("component", component)
}

// ParseLevel reads a LOG_LEVEL style value: debug, info, warn or error,
// in any case. The empty string means info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// WithRequest returns l tagged with a Lambda invocation's request ID and,
// when present, its X-Ray trace ID.
func WithRequest(l *slog.Logger, requestID, traceID string) *slog.Logger {
	l = l.With("requestId", requestID)
	if traceID != "" {
		l = l.With("traceId", traceID)
	}
	return l
}

// NewContext returns a copy of ctx carrying l.
func NewContext(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext returns the logger stored by NewContext, or one that discards
// everything.
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return discard
}
