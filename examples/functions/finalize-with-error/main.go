// Command finalize-with-error is the Lambda function a workflow's Catch clause
// calls when the workflow fails: it validates the failure event, classifies
// the error and records the execution's final state.
//
// It is built as the "bootstrap" binary of a provided.al2 container image and
// speaks the Lambda Runtime API itself (see runtime.go).
package main

import (
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"syscall"
	"time"

	werrors "example.com/shared/errors"
	"example.com/shared/logger"
	"example.com/shared/s3state"
	"example.com/shared/schema"
)

// config is read once at init. An invalid value fails init (reported through
// /runtime/init/error) instead of failing every invocation.
type config struct {
	defaultBucket string // used when the event names no bucket; may be empty
	keyPrefix     string // prefix of derived keys; empty or ends with "/"
}

func loadConfig(getenv func(string) string) (config, error) {
	const op = "loadConfig"
	cfg := config{defaultBucket: getenv("STATE_BUCKET"), keyPrefix: getenv("STATE_KEY_PREFIX")}
	if cfg.keyPrefix == "" {
		cfg.keyPrefix = "executions/"
	}
	if cfg.defaultBucket != "" {
		if err := schema.ValidateBucket(cfg.defaultBucket); err != nil {
			return config{}, werrors.Wrap(werrors.KindValidation, op, err)
		}
	}
	if err := schema.ValidateKeyPrefix(cfg.keyPrefix); err != nil {
		return config{}, werrors.Wrap(werrors.KindValidation, op, err)
	}
	return cfg, nil
}

// handler finalizes one execution per invocation.
type handler struct {
	cfg   config
	store s3state.Store
	now   func() time.Time
}

// response is what the function returns to the workflow.
type response struct {
	ExecutionID string `json:"executionId"`
	Status      string `json:"status"`
	Category    string `json:"category"`
	Retryable   bool   `json:"retryable"`
	StateURI    string `json:"stateUri"`
}

func (h *handler) handle(ctx context.Context, payload []byte) (response, error) {
	ev, err := schema.DecodeFinalizeEvent(payload)
	if err != nil {
		return response{}, err
	}
	if ev.Bucket == "" {
		ev.Bucket = h.cfg.defaultBucket
	}
	if ev.Key == "" && ev.ExecutionID != "" {
		ev.Key = h.cfg.keyPrefix + ev.ExecutionID + "/final-state.json"
	}
	if err := schema.ValidateFinalizeEvent(ev); err != nil {
		return response{}, err
	}

	failure := werrors.FromStateError(ev.Error.Error, ev.Error.Cause)
	log := logger.FromContext(ctx).With("executionId", ev.ExecutionID)
	log.Warn("workflow failed", "error", ev.Error.Error, "category", failure.Kind.String())

	st, err := s3state.Save(ctx, h.store, ev.Bucket, ev.Key, s3state.FinalState{
		ExecutionID: ev.ExecutionID,
		Status:      s3state.StatusFailed,
		Error:       ev.Error.Error,
		Cause:       ev.Error.Cause,
		Category:    failure.Kind.String(),
		Retryable:   failure.Kind.Retryable(),
		FinalizedAt: h.now().UTC(),
	})
	if err != nil {
		return response{}, werrors.Wrap(werrors.KindOf(err), "finalize", err)
	}
	return response{
		ExecutionID: st.ExecutionID,
		Status:      st.Status,
		Category:    st.Category,
		Retryable:   st.Retryable,
		StateURI:    "s3://" + ev.Bucket + "/" + ev.Key,
	}, nil
}

// invoke adapts handle to the runtime loop's byte-level contract.
func (h *handler) invoke(ctx context.Context, payload []byte) ([]byte, error) {
	resp, err := h.handle(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

func main() {
	level, levelErr := logger.ParseLevel(os.Getenv("LOG_LEVEL"))
	log := logger.New(os.Stdout, "finalize-with-error", level)
	if levelErr != nil {
		log.Warn("ignoring LOG_LEVEL", "error", levelErr.Error())
	}

	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		log.Error("AWS_LAMBDA_RUNTIME_API is not set; this binary runs inside Lambda or the runtime interface emulator")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rt := newRuntimeClient(api)

	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Error("init failed", "error", err.Error())
		if rerr := rt.initError(ctx, toLambdaError(err)); rerr != nil {
			log.Error("reporting init error failed", "error", rerr.Error())
		}
		os.Exit(1)
	}
	// No AWS SDK in this example: state lives in memory for the life of the
	// execution environment. A deployment would plug an S3-backed Store in here.
	h := &handler{cfg: cfg, store: &s3state.MemoryStore{}, now: time.Now}

	if err := serve(ctx, rt, h.invoke, log); err != nil && ctx.Err() == nil {
		log.Error("runtime loop stopped", "error", err.Error())
		os.Exit(1)
	}
}
