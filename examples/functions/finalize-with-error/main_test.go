package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	werrors "example.com/shared/errors"
	"example.com/shared/s3state"
)

var fixedNow = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func newTestHandler(store s3state.Store) *handler {
	return &handler{cfg: config{defaultBucket: "default-bucket", keyPrefix: "executions/"}, store: store, now: func() time.Time { return fixedNow }}
}

func TestHandleRecordsFailedFinalState(t *testing.T) {
	store := &s3state.MemoryStore{}
	h := newTestHandler(store)
	resp, err := h.handle(context.Background(), []byte(`{"executionId":"exec-1","error":{"Error":"States.Timeout","Cause":"task timed out"},"bucket":"wf-state","key":"runs/exec-1.json"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := response{ExecutionID: "exec-1", Status: "FAILED", Category: "Timeout", Retryable: true, StateURI: "s3://wf-state/runs/exec-1.json"}
	if resp != want {
		t.Fatalf("response = %+v, want %+v", resp, want)
	}
	raw, err := store.Get(context.Background(), "wf-state", "runs/exec-1.json")
	if err != nil {
		t.Fatal(err)
	}
	var st s3state.FinalState
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.Cause != "task timed out" || !st.FinalizedAt.Equal(fixedNow) {
		t.Fatalf("stored state = %+v", st)
	}
}

func TestHandleFillsBucketAndKeyFromConfig(t *testing.T) {
	resp, err := newTestHandler(&s3state.MemoryStore{}).handle(context.Background(), []byte(`{"executionId":"e-2","error":{"Error":"CustomFailure"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StateURI != "s3://default-bucket/executions/e-2/final-state.json" || resp.Category != "Internal" {
		t.Fatalf("response = %+v", resp)
	}
}

func TestHandleRejectsInvalidEventWithAllProblems(t *testing.T) {
	h := newTestHandler(&s3state.MemoryStore{})
	h.cfg.defaultBucket = ""
	_, err := h.handle(context.Background(), []byte(`{"error":{}}`))
	if werrors.KindOf(err) != werrors.KindValidation {
		t.Fatalf("want Validation error, got %v", err)
	}
	for _, p := range []string{"executionId: required", "error.Error: required", "bucket: required"} {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestLoadConfigRejectsBadPrefix(t *testing.T) {
	env := map[string]string{"STATE_KEY_PREFIX": "no-trailing-slash"}
	if _, err := loadConfig(func(k string) string { return env[k] }); werrors.KindOf(err) != werrors.KindValidation {
		t.Fatalf("want Validation error, got %v", err)
	}
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil || cfg.keyPrefix != "executions/" {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
}

// fakeRuntimeAPI emulates the Lambda Runtime API: it hands out queued events
// from /next (blocking once they run out, as Lambda does) and records posts.
type fakeRuntimeAPI struct {
	mu     sync.Mutex
	events []string
	posts  chan post
	nextID int
}

type post struct {
	path, errorType string
	body            []byte
}

func newFakeRuntimeAPI(t *testing.T, events ...string) (*fakeRuntimeAPI, *runtimeClient) {
	f := &fakeRuntimeAPI{events: events, posts: make(chan post, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", f.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/{kind}", f.record)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", f.record)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, newRuntimeClient(strings.TrimPrefix(srv.URL, "http://"))
}

func (f *fakeRuntimeAPI) next(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if len(f.events) == 0 {
		f.mu.Unlock()
		<-r.Context().Done()
		return
	}
	ev := f.events[0]
	f.events = f.events[1:]
	f.nextID++
	id := f.nextID
	f.mu.Unlock()
	w.Header().Set(hdrRequestID, "req-"+strconv.Itoa(id))
	w.Header().Set(hdrDeadlineMs, strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
	w.Header().Set(hdrTraceID, "Root=1-00000000-000000000000000000000001;Sampled=0")
	w.Header().Set(hdrFunctionARN, "arn:aws:lambda:us-east-1:123456789012:function:finalize-with-error")
	io.WriteString(w, ev)
}

func (f *fakeRuntimeAPI) record(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.posts <- post{path: r.URL.Path, errorType: r.Header.Get(hdrErrorType), body: body}
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeRuntimeAPI) wait(t *testing.T) post {
	t.Helper()
	select {
	case p := <-f.posts:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no post from the runtime loop within 5s")
		return post{}
	}
}

func runServe(t *testing.T, rt *runtimeClient, h handlerFunc) (cancel func() error) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, rt, h, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	return func() error {
		stop()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("serve did not stop after cancel")
			return nil
		}
	}
}

func TestServeAnswersEachInvocationThroughRuntimeAPI(t *testing.T) {
	api, rt := newFakeRuntimeAPI(t,
		`{"executionId":"exec-1","error":{"Error":"States.TaskFailed","Cause":"boom"},"bucket":"wf-state"}`,
		`{"executionId":"exec-2"}`,
	)
	stop := runServe(t, rt, newTestHandler(&s3state.MemoryStore{}).invoke)

	ok := api.wait(t)
	if ok.path != "/2018-06-01/runtime/invocation/req-1/response" || ok.errorType != "" {
		t.Fatalf("first post = %s (error type %q)", ok.path, ok.errorType)
	}
	var resp response
	if err := json.Unmarshal(ok.body, &resp); err != nil || resp.Category != "Dependency" || resp.StateURI != "s3://wf-state/executions/exec-1/final-state.json" {
		t.Fatalf("response body %s (%v)", ok.body, err)
	}

	bad := api.wait(t)
	if bad.path != "/2018-06-01/runtime/invocation/req-2/error" || bad.errorType != "ValidationError" {
		t.Fatalf("second post = %s (error type %q)", bad.path, bad.errorType)
	}
	var lerr lambdaError
	if err := json.Unmarshal(bad.body, &lerr); err != nil || lerr.ErrorType != "ValidationError" || !strings.Contains(lerr.ErrorMessage, "error: required") {
		t.Fatalf("error body %s (%v)", bad.body, err)
	}

	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("serve returned %v, want context.Canceled", err)
	}
}

func TestServeAppliesDeadlineAndReportsPanics(t *testing.T) {
	api, rt := newFakeRuntimeAPI(t, `{}`)
	var hadDeadline bool
	stop := runServe(t, rt, func(ctx context.Context, _ []byte) ([]byte, error) {
		_, hadDeadline = ctx.Deadline()
		panic("handler bug")
	})
	p := api.wait(t)
	stop()
	if !hadDeadline {
		t.Error("handler context has no deadline from Lambda-Runtime-Deadline-Ms")
	}
	var lerr lambdaError
	if err := json.Unmarshal(p.body, &lerr); err != nil {
		t.Fatal(err)
	}
	if p.errorType != "Runtime.Panic" || lerr.ErrorMessage != "handler bug" || len(lerr.StackTrace) == 0 {
		t.Fatalf("panic report: type %q body %s", p.errorType, p.body)
	}
}

func TestInitErrorIsPosted(t *testing.T) {
	api, rt := newFakeRuntimeAPI(t)
	_, cfgErr := loadConfig(func(k string) string { return map[string]string{"STATE_BUCKET": "Not_Valid"}[k] })
	if err := rt.initError(context.Background(), toLambdaError(cfgErr)); err != nil {
		t.Fatal(err)
	}
	p := api.wait(t)
	if p.path != "/2018-06-01/runtime/init/error" || p.errorType != "ValidationError" {
		t.Fatalf("init error post = %s (error type %q)", p.path, p.errorType)
	}
}
