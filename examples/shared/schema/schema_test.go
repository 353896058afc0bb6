package schema

import (
	stderrors "errors"
	"testing"

	werrors "example.com/shared/errors"
)

func TestValidateReportsEveryProblem(t *testing.T) {
	ev, err := DecodeFinalizeEvent([]byte(`{"bucket":"Bad_Bucket","key":"/abs","extra":1}`))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	err = ValidateFinalizeEvent(ev)
	var p Problems
	if !stderrors.As(err, &p) {
		t.Fatalf("want Problems, got %v", err)
	}
	if len(p) != 4 {
		t.Fatalf("want 4 problems, got %d: %v", len(p), p)
	}
	if werrors.KindOf(err) != werrors.KindValidation {
		t.Fatalf("kind = %v, want Validation", werrors.KindOf(err))
	}
}

func TestValidEventPasses(t *testing.T) {
	ev, err := DecodeFinalizeEvent([]byte(`{"executionId":"e-1","error":{"Error":"States.Timeout","Cause":"slow"},"bucket":"my-state.bucket","key":"executions/e-1/final.json"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateFinalizeEvent(ev); err != nil {
		t.Fatalf("valid event rejected: %v", err)
	}
}

func TestMalformedJSONIsValidationError(t *testing.T) {
	_, err := DecodeFinalizeEvent([]byte(`{"executionId":`))
	if werrors.KindOf(err) != werrors.KindValidation {
		t.Fatalf("kind = %v, want Validation (err %v)", werrors.KindOf(err), err)
	}
}

func TestValidateKeyPrefix(t *testing.T) {
	for prefix, ok := range map[string]bool{"": true, "executions/": true, "executions": false, "../x/": false} {
		if err := ValidateKeyPrefix(prefix); (err == nil) != ok {
			t.Errorf("ValidateKeyPrefix(%q) = %v", prefix, err)
		}
	}
}
