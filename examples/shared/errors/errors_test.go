package errors

import (
	stderrors "errors"
	"fmt"
	"testing"
)

func TestKindOfFindsClassificationThroughWrapping(t *testing.T) {
	base := stderrors.New("disk full")
	err := fmt.Errorf("saving: %w", Wrap(KindDependency, "s3state.Save", base))
	if got := KindOf(err); got != KindDependency {
		t.Fatalf("KindOf = %v, want Dependency", got)
	}
	if !stderrors.Is(err, base) {
		t.Fatal("cause not reachable through errors.Is")
	}
	if KindOf(base) != KindInternal {
		t.Fatal("unclassified error must be Internal")
	}
}

func TestWrapNilIsNil(t *testing.T) {
	if Wrap(KindValidation, "op", nil) != nil {
		t.Fatal("Wrap(nil) must be nil")
	}
}

func TestFromStateError(t *testing.T) {
	cases := []struct {
		name string
		want Kind
	}{
		{"States.Timeout", KindTimeout},
		{"States.Permissions", KindPermission},
		{"InputValidationError", KindValidation},
		{"SomethingBroke", KindInternal},
	}
	for _, c := range cases {
		if got := FromStateError(c.name, "cause").Kind; got != c.want {
			t.Errorf("FromStateError(%q).Kind = %v, want %v", c.name, got, c.want)
		}
	}
	if msg := FromStateError("States.Timeout", "").Error(); msg != "States.Timeout: Timeout: States.Timeout" {
		t.Errorf("empty cause message = %q", msg)
	}
}
