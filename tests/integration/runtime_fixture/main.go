// Command runtimefixture is a Lambda function that speaks the Runtime API with the standard
// library only. tests/integration/test_local_invoke.py builds it into an image and invokes it
// locally; the event's "mode" says what it does:
//
//	echo (default)  responds {"greeting": "hello <name>", "event": <the event>, "env": ..., "headers": ...}
//	error           posts a function error (errorType Fixture.Failed) with a stack trace
//	hang            never answers (the timeout must end it)
//	exit            exits with status 3 without answering
//	oom             allocates memory until the memory limit kills it
//	dial            tries a TCP connection to the event's "address"; responds {"dialed": true|false}
//
// With "seconds" in the event it first sleeps that long (a slow function: test_release_cli.py).
// With FIXTURE_INIT_ERROR set it reports an init error and exits before asking for an event.
// Every mode first writes "fixture: mode=<mode>" to stderr and "fixture: stdout" to stdout.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

var api = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime"

func main() {
	fmt.Fprintln(os.Stderr, "fixture: starting")
	if os.Getenv("FIXTURE_INIT_ERROR") != "" {
		post("/init/error", "Fixture.InitFailed", `{"errorMessage":"init failed on purpose","errorType":"Fixture.InitFailed"}`)
		os.Exit(1)
	}
	for {
		resp, err := http.Get(api + "/invocation/next")
		if err != nil {
			fail("next: %v", err)
		}
		event, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			fail("next: status %d, %v", resp.StatusCode, err)
		}
		var request struct {
			Mode, Name, Address string
			Seconds             int
		}
		_ = json.Unmarshal(event, &request)
		time.Sleep(time.Duration(request.Seconds) * time.Second)
		fmt.Fprintf(os.Stderr, "fixture: mode=%s\n", request.Mode)
		fmt.Println("fixture: stdout")
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		switch request.Mode {
		case "error":
			post("/invocation/"+id+"/error", "Fixture.Failed",
				`{"errorMessage":"failed on purpose","errorType":"Fixture.Failed","stackTrace":["main.go:42"]}`)
		case "hang":
			for {
				time.Sleep(time.Hour)
			}
		case "exit":
			os.Exit(3)
		case "dial":
			conn, err := net.DialTimeout("tcp", request.Address, 2*time.Second)
			if err == nil {
				conn.Close()
			}
			post("/invocation/"+id+"/response", "", fmt.Sprintf(`{"dialed":%t}`, err == nil))
		case "oom":
			var hoard [][]byte
			for {
				chunk := make([]byte, 16<<20)
				for i := 0; i < len(chunk); i += 4096 {
					chunk[i] = 1 // touched: resident, charged to the container
				}
				hoard = append(hoard, chunk)
			}
		default:
			headers := map[string]string{}
			for _, name := range []string{"Lambda-Runtime-Aws-Request-Id", "Lambda-Runtime-Deadline-Ms",
				"Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Trace-Id"} {
				headers[name] = resp.Header.Get(name)
			}
			env := map[string]string{}
			for _, pair := range os.Environ() {
				name, value, _ := strings.Cut(pair, "=")
				env[name] = value
			}
			body, _ := json.Marshal(map[string]any{"greeting": "hello " + request.Name,
				"event": json.RawMessage(event), "env": env, "headers": headers})
			post("/invocation/"+id+"/response", "", string(body))
		}
	}
}

// post sends a document to the Runtime API, with the error type header when one is given.
func post(path, errorType, body string) {
	req, err := http.NewRequest(http.MethodPost, api+path, bytes.NewReader([]byte(body)))
	if err != nil {
		fail("post %s: %v", path, err)
	}
	if errorType != "" {
		req.Header.Set("Lambda-Runtime-Function-Error-Type", errorType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail("post %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		fail("post %s: status %d", path, resp.StatusCode)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fixture: "+format+"\n", args...)
	os.Exit(2)
}
