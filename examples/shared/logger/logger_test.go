package logger

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestRequestLoggerTravelsInContext(t *testing.T) {
	var buf bytes.Buffer
	l := WithRequest(New(&buf, "fn", slog.LevelInfo), "req-1", "Root=1-abc")
	FromContext(NewContext(context.Background(), l)).Info("hello", "n", 2)

	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("record is not JSON: %v: %q", err, buf.String())
	}
	for k, want := range map[string]any{"msg": "hello", "component": "fn", "requestId": "req-1", "traceId": "Root=1-abc", "n": 2.0} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v", k, rec[k], want)
		}
	}
}

func TestFromContextWithoutLoggerDiscards(t *testing.T) {
	FromContext(context.Background()).Error("must not panic")
}

func TestParseLevel(t *testing.T) {
	if lvl, err := ParseLevel("DEBUG"); err != nil || lvl != slog.LevelDebug {
		t.Fatalf("ParseLevel(DEBUG) = %v, %v", lvl, err)
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Fatal("ParseLevel(loud) succeeded")
	}
}
