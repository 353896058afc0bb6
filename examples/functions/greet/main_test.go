package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"example.com/shared/logger"
)

func TestHandleGreetsInTitleCase(t *testing.T) {
	out, ferr := handle([]byte(`{"name":"ada lovelace"}`))
	if ferr != nil {
		t.Fatal(ferr)
	}
	if string(out) != `{"greeting":"Hello, Ada Lovelace!"}` {
		t.Fatalf("response = %s", out)
	}
}

func TestHandleRefusesWhenAsked(t *testing.T) {
	_, ferr := handle([]byte(`{"name":"bob","fail":true}`))
	if ferr == nil || ferr.Type != "GreetingRefused" || !strings.Contains(ferr.Message, "bob") {
		t.Fatalf("error = %v", ferr)
	}
	if _, ferr := handle([]byte(`[1]`)); ferr == nil || ferr.Type != "InvalidEvent" {
		t.Fatalf("non-object event: error = %v", ferr)
	}
}

// fakeRuntime hands out the given events, records what the function posts,
// and fails /next once the events are used up, which ends serve.
type fakeRuntime struct {
	mu     sync.Mutex
	events []string
	posted []string // "path errorType body"
}

func (f *fakeRuntime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/invocation/next") {
		if len(f.events) == 0 {
			http.Error(w, "no more events", http.StatusGone)
			return
		}
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", "req-"+string(rune('0'+len(f.events))))
		io.WriteString(w, f.events[0])
		f.events = f.events[1:]
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.posted = append(f.posted, r.URL.Path+" "+r.Header.Get("Lambda-Runtime-Function-Error-Type")+" "+string(body))
	w.WriteHeader(http.StatusAccepted)
}

func TestServeRespondsReportsErrorsAndLogsOneLineEach(t *testing.T) {
	fake := &fakeRuntime{events: []string{`{"name":"world wide"}`, `{"name":"x","fail":true}`}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var logs bytes.Buffer
	rt := &runtimeAPI{base: srv.URL + "/" + runtimeAPIVersion + "/runtime", http: srv.Client()}

	if err := serve(context.Background(), rt, logger.New(&logs, "greet", slog.LevelInfo)); err == nil {
		t.Fatal("serve returned nil after the Runtime API failed")
	}
	want := []string{
		"/2018-06-01/runtime/invocation/req-2/response  " + `{"greeting":"Hello, World Wide!"}`,
		"/2018-06-01/runtime/invocation/req-1/error GreetingRefused " + `{"errorType":"GreetingRefused","errorMessage":"refusing to greet \"x\": the event asked to fail"}`,
	}
	if strings.Join(fake.posted, "\n") != strings.Join(want, "\n") {
		t.Fatalf("posted:\n%s\nwant:\n%s", strings.Join(fake.posted, "\n"), strings.Join(want, "\n"))
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one log line per invocation, got %d: %q", len(lines), logs.String())
	}
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["component"] != "greet" || rec["requestId"] == nil {
			t.Errorf("log line %q: %v", line, err)
		}
	}
}
