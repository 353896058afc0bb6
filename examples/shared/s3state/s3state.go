// Package s3state records the outcome of workflow executions as JSON objects
// addressed by bucket and key, the layout the workflows keep in S3.
//
// Storage sits behind the Store interface so this module needs no AWS SDK:
// a deployment adapts an S3 client to Store; tests and local runs use
// MemoryStore.
package s3state

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	werrors "example.com/shared/errors"
	"example.com/shared/logger"
)

// Store reads and writes whole objects. Get must return an error of kind
// werrors.KindNotFound when the object does not exist.
type Store interface {
	Get(ctx context.Context, bucket, key string) ([]byte, error)
	Put(ctx context.Context, bucket, key string, body []byte) error
}

// Terminal statuses of an execution.
const (
	StatusSucceeded = "SUCCEEDED"
	StatusFailed    = "FAILED"
)

// FinalState is the terminal record of one execution. Once written for an
// execution it is never replaced (see Save).
type FinalState struct {
	ExecutionID string    `json:"executionId"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	Cause       string    `json:"cause,omitempty"`
	Category    string    `json:"category,omitempty"`
	Retryable   bool      `json:"retryable"`
	FinalizedAt time.Time `json:"finalizedAt"`
}

// Save writes st to bucket/key unless a final state is already there.
// Lambda and Step Functions retry invocations, so a second Save for the same
// execution returns the state written first and writes nothing; an object
// belonging to a different execution is a validation error.
func Save(ctx context.Context, store Store, bucket, key string, st FinalState) (FinalState, error) {
	const op = "s3state.Save"
	log := logger.FromContext(ctx).With("bucket", bucket, "key", key)

	if raw, err := store.Get(ctx, bucket, key); err == nil {
		var prev FinalState
		if err := json.Unmarshal(raw, &prev); err != nil {
			return FinalState{}, werrors.Wrap(werrors.KindInternal, op, err)
		}
		if prev.ExecutionID != st.ExecutionID {
			return FinalState{}, werrors.New(werrors.KindValidation, op,
				"object already holds the final state of execution "+prev.ExecutionID)
		}
		log.Info("final state already recorded", "status", prev.Status)
		return prev, nil
	} else if werrors.KindOf(err) != werrors.KindNotFound {
		return FinalState{}, werrors.Wrap(werrors.KindDependency, op, err)
	}

	body, err := json.Marshal(st)
	if err != nil {
		return FinalState{}, werrors.Wrap(werrors.KindInternal, op, err)
	}
	if err := store.Put(ctx, bucket, key, body); err != nil {
		return FinalState{}, werrors.Wrap(werrors.KindDependency, op, err)
	}
	log.Info("final state recorded", "status", st.Status)
	return st, nil
}

// MemoryStore is a Store held in memory, safe for concurrent use. The zero
// value is empty and ready.
type MemoryStore struct {
	mu      sync.Mutex
	objects map[string][]byte
}

// Get returns a copy of the object, or a NotFound error.
func (m *MemoryStore) Get(_ context.Context, bucket, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	body, ok := m.objects[bucket+"/"+key]
	if !ok {
		return nil, werrors.New(werrors.KindNotFound, "s3state.MemoryStore.Get", "no object s3://"+bucket+"/"+key)
	}
	return append([]byte(nil), body...), nil
}

// Put stores a copy of body.
func (m *MemoryStore) Put(_ context.Context, bucket, key string, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objects == nil {
		m.objects = make(map[string][]byte)
	}
	m.objects[bucket+"/"+key] = append([]byte(nil), body...)
	return nil
}
