package s3state

import (
	"context"
	stderrors "errors"
	"testing"
	"time"

	werrors "example.com/shared/errors"
)

func TestSaveIsIdempotentPerExecution(t *testing.T) {
	ctx := context.Background()
	store := &MemoryStore{}
	first := FinalState{ExecutionID: "e-1", Status: StatusFailed, FinalizedAt: time.Unix(1, 0).UTC()}
	if _, err := Save(ctx, store, "b", "k", first); err != nil {
		t.Fatal(err)
	}
	retry := first
	retry.FinalizedAt = time.Unix(2, 0).UTC()
	got, err := Save(ctx, store, "b", "k", retry)
	if err != nil {
		t.Fatal(err)
	}
	if !got.FinalizedAt.Equal(first.FinalizedAt) {
		t.Fatalf("retry overwrote the first state: %v", got.FinalizedAt)
	}
}

func TestSaveRefusesAnotherExecutionsObject(t *testing.T) {
	ctx := context.Background()
	store := &MemoryStore{}
	if _, err := Save(ctx, store, "b", "k", FinalState{ExecutionID: "e-1"}); err != nil {
		t.Fatal(err)
	}
	_, err := Save(ctx, store, "b", "k", FinalState{ExecutionID: "e-2"})
	if werrors.KindOf(err) != werrors.KindValidation {
		t.Fatalf("want Validation error, got %v", err)
	}
}

type failingStore struct{ MemoryStore }

func (f *failingStore) Put(context.Context, string, string, []byte) error {
	return stderrors.New("503 Slow Down")
}

func TestStoreFailureIsDependencyError(t *testing.T) {
	_, err := Save(context.Background(), &failingStore{}, "b", "k", FinalState{ExecutionID: "e-1"})
	if k := werrors.KindOf(err); k != werrors.KindDependency || !k.Retryable() {
		t.Fatalf("want retryable Dependency error, got %v", err)
	}
}
