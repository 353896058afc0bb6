// Command greet is a Lambda function (custom runtime, provided.al2) with real
// module dependencies: it greets through example.test/greeting, which a
// module proxy serves (and which itself requires example.test/textcase).
//
// It speaks the Lambda Runtime API itself, like finalize-with-error's
// runtime.go, kept to what this function needs. Every invocation writes one
// JSON log line to stderr.
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
	"strings"

	"example.com/shared/logger"
	"example.test/greeting"
)

const runtimeAPIVersion = "2018-06-01"

// event is what the function is invoked with.
type event struct {
	Name string `json:"name"`
	Fail bool   `json:"fail"`
}

// response is what it returns.
type response struct {
	Greeting string `json:"greeting"`
}

// functionError is reported through /invocation/{id}/error.
type functionError struct {
	Type    string `json:"errorType"`
	Message string `json:"errorMessage"`
}

func (e *functionError) Error() string { return e.Type + ": " + e.Message }

// handle answers one event payload.
func handle(payload []byte) ([]byte, *functionError) {
	var ev event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, &functionError{Type: "InvalidEvent", Message: "event is not a JSON object: " + err.Error()}
	}
	if ev.Fail {
		return nil, &functionError{Type: "GreetingRefused", Message: fmt.Sprintf("refusing to greet %q: the event asked to fail", ev.Name)}
	}
	out, _ := json.Marshal(response{Greeting: greeting.Hello(ev.Name)}) // a struct of strings always marshals
	return out, nil
}

// runtimeAPI is the Lambda Runtime API at AWS_LAMBDA_RUNTIME_API.
type runtimeAPI struct {
	base string // http://host:port/2018-06-01/runtime
	http *http.Client
}

// next waits for the next event; it returns its request ID and payload.
func (rt *runtimeAPI) next(ctx context.Context) (string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rt.base+"/invocation/next", nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := rt.http.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("runtime API next: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, fmt.Errorf("runtime API next: %w", err)
	}
	id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		return "", nil, fmt.Errorf("runtime API next: status %d, request id %q", resp.StatusCode, id)
	}
	return id, body, nil
}

func (rt *runtimeAPI) post(ctx context.Context, path string, body []byte, errorType string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rt.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if errorType != "" {
		req.Header.Set("Lambda-Runtime-Function-Error-Type", errorType)
	}
	resp, err := rt.http.Do(req)
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

// serve handles events until the Runtime API fails or ctx ends.
func serve(ctx context.Context, rt *runtimeAPI, log *slog.Logger) error {
	for {
		id, payload, err := rt.next(ctx)
		if err != nil {
			return err
		}
		ilog := logger.WithRequest(log, id, "")
		out, ferr := handle(payload)
		if ferr != nil {
			ilog.Error("invocation failed", "errorType", ferr.Type, "error", ferr.Message)
			body, _ := json.Marshal(ferr)
			err = rt.post(ctx, "/invocation/"+id+"/error", body, ferr.Type)
		} else {
			ilog.Info("greeted", "bytes", len(out))
			err = rt.post(ctx, "/invocation/"+id+"/response", out, "")
		}
		if err != nil {
			return err
		}
	}
}

func main() {
	level, levelErr := logger.ParseLevel(os.Getenv("LOG_LEVEL"))
	log := logger.New(os.Stderr, "greet", level)
	if levelErr != nil {
		log.Warn("ignoring LOG_LEVEL", "error", levelErr.Error())
	}
	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		log.Error("AWS_LAMBDA_RUNTIME_API is not set; this binary runs inside Lambda or the runtime interface emulator")
		os.Exit(1)
	}
	// No client timeout: /next blocks until Lambda has an event.
	rt := &runtimeAPI{base: "http://" + api + "/" + runtimeAPIVersion + "/runtime", http: &http.Client{}}
	if err := serve(context.Background(), rt, log); err != nil {
		log.Error("runtime loop stopped", "error", err.Error())
		os.Exit(1)
	}
}
