package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	werrors "example.com/shared/errors"
	"example.com/shared/logger"
)

// Lambda Runtime API (version 2018-06-01) names.
const (
	runtimeAPIVersion = "2018-06-01"
	hdrRequestID      = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadlineMs     = "Lambda-Runtime-Deadline-Ms"
	hdrTraceID        = "Lambda-Runtime-Trace-Id"
	hdrFunctionARN    = "Lambda-Runtime-Invoked-Function-Arn"
	hdrErrorType      = "Lambda-Runtime-Function-Error-Type"
)

// invocation is one event handed out by GET /runtime/invocation/next.
type invocation struct {
	requestID   string
	deadline    time.Time // zero when the header is missing
	traceID     string
	functionARN string
	payload     []byte
}

// lambdaError is the error document the Runtime API accepts.
type lambdaError struct {
	ErrorMessage string   `json:"errorMessage"`
	ErrorType    string   `json:"errorType"`
	StackTrace   []string `json:"stackTrace,omitempty"`
}

func toLambdaError(err error) lambdaError {
	return lambdaError{ErrorMessage: err.Error(), ErrorType: werrors.KindOf(err).LambdaType()}
}

// runtimeClient talks to the Runtime API at AWS_LAMBDA_RUNTIME_API.
type runtimeClient struct {
	base string // http://host:port/2018-06-01/runtime
	http *http.Client
}

func newRuntimeClient(hostPort string) *runtimeClient {
	// No client timeout: /next blocks until Lambda has an event, which may be
	// as long as the execution environment stays frozen.
	return &runtimeClient{base: "http://" + hostPort + "/" + runtimeAPIVersion + "/runtime", http: &http.Client{}}
}

func (c *runtimeClient) next(ctx context.Context) (*invocation, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/invocation/next", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("runtime API next: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("runtime API next: reading event: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("runtime API next: status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	inv := &invocation{
		requestID:   resp.Header.Get(hdrRequestID),
		traceID:     resp.Header.Get(hdrTraceID),
		functionARN: resp.Header.Get(hdrFunctionARN),
		payload:     body,
	}
	if inv.requestID == "" {
		return nil, fmt.Errorf("runtime API next: missing %s header", hdrRequestID)
	}
	if ms, err := strconv.ParseInt(resp.Header.Get(hdrDeadlineMs), 10, 64); err == nil {
		inv.deadline = time.UnixMilli(ms)
	}
	return inv, nil
}

func (c *runtimeClient) respond(ctx context.Context, requestID string, body []byte) error {
	return c.post(ctx, "/invocation/"+requestID+"/response", body, "")
}

func (c *runtimeClient) invocationError(ctx context.Context, requestID string, e lambdaError) error {
	body, _ := json.Marshal(e) // a struct of strings always marshals
	return c.post(ctx, "/invocation/"+requestID+"/error", body, e.ErrorType)
}

func (c *runtimeClient) initError(ctx context.Context, e lambdaError) error {
	body, _ := json.Marshal(e)
	return c.post(ctx, "/init/error", body, e.ErrorType)
}

func (c *runtimeClient) post(ctx context.Context, path string, body []byte, errorType string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if errorType != "" {
		req.Header.Set(hdrErrorType, errorType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("runtime API POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("runtime API POST %s: status %d: %s", path, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}

// handlerFunc handles one event payload and returns the response payload.
type handlerFunc func(ctx context.Context, payload []byte) ([]byte, error)

// serve runs the Runtime API loop until ctx is cancelled or the API fails.
// A handler error or panic is reported for that invocation only; failing to
// talk to the API ends the loop, after which Lambda restarts the environment.
func serve(ctx context.Context, rt *runtimeClient, h handlerFunc, log *slog.Logger) error {
	for {
		inv, err := rt.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if err := handleOne(ctx, rt, h, log, inv); err != nil {
			return err
		}
	}
}

func handleOne(ctx context.Context, rt *runtimeClient, h handlerFunc, log *slog.Logger, inv *invocation) error {
	// AWS runtimes expose the trace header to the X-Ray SDK through this variable.
	if inv.traceID != "" {
		os.Setenv("_X_AMZN_TRACE_ID", inv.traceID)
	} else {
		os.Unsetenv("_X_AMZN_TRACE_ID")
	}
	ictx, cancel := ctx, context.CancelFunc(func() {})
	if !inv.deadline.IsZero() {
		ictx, cancel = context.WithDeadline(ctx, inv.deadline)
	}
	defer cancel()
	ilog := logger.WithRequest(log, inv.requestID, inv.traceID)
	ictx = logger.NewContext(ictx, ilog)

	out, herr := callSafely(ictx, h, inv.payload)
	if herr != nil {
		ilog.Error("invocation failed", "errorType", herr.ErrorType, "error", herr.ErrorMessage)
		return rt.invocationError(ctx, inv.requestID, *herr)
	}
	return rt.respond(ctx, inv.requestID, out)
}

// callSafely runs h, turning an error or a panic into a Lambda error document.
func callSafely(ctx context.Context, h handlerFunc, payload []byte) (out []byte, lerr *lambdaError) {
	defer func() {
		if r := recover(); r != nil {
			out, lerr = nil, &lambdaError{
				ErrorMessage: fmt.Sprint(r),
				ErrorType:    "Runtime.Panic",
				StackTrace:   strings.Split(strings.TrimSpace(string(debug.Stack())), "\n"),
			}
		}
	}()
	out, err := h(ctx, payload)
	if err != nil {
		e := toLambdaError(err)
		return nil, &e
	}
	return out, nil
}
