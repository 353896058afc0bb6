// Package schema decodes and validates the events that workflow functions
// receive. Validation reports every problem at once, not just the first, so a
// broken state machine definition is fixed in one round.
package schema

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	werrors "example.com/shared/errors"
)

// StateError is the error object a Step Functions Catch clause passes on
// (its ResultPath content): the error name and a free-text cause.
type StateError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

// FinalizeEvent asks a function to record that a workflow execution ended in
// error. Bucket and Key address the state object; Key may be left empty for
// the function to derive.
type FinalizeEvent struct {
	ExecutionID string      `json:"executionId"`
	Error       *StateError `json:"error"`
	Bucket      string      `json:"bucket"`
	Key         string      `json:"key,omitempty"`
}

// Problems lists everything wrong with an input; it is an error.
type Problems []string

func (p Problems) Error() string { return strings.Join(p, "; ") }

// bucketName follows the S3 naming rules for new buckets (3-63 characters of
// lowercase letters, digits, dots and hyphens, alphanumeric at both ends).
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// DecodeFinalizeEvent parses payload without validating it, so a caller can
// fill defaults first. Unknown fields are ignored: Step Functions passes the
// whole state input along. Malformed JSON is a validation error.
func DecodeFinalizeEvent(payload []byte) (FinalizeEvent, error) {
	var ev FinalizeEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return ev, werrors.Wrap(werrors.KindValidation, "schema.DecodeFinalizeEvent", err)
	}
	return ev, nil
}

// ValidateFinalizeEvent returns a validation error listing all Problems of ev.
func ValidateFinalizeEvent(ev FinalizeEvent) error {
	var p Problems
	if strings.TrimSpace(ev.ExecutionID) == "" {
		p = append(p, "executionId: required")
	}
	if ev.Error == nil {
		p = append(p, "error: required")
	} else if ev.Error.Error == "" {
		p = append(p, "error.Error: required")
	}
	if err := ValidateBucket(ev.Bucket); err != nil {
		p = append(p, "bucket: "+err.Error())
	}
	if err := ValidateKey(ev.Key); err != nil {
		p = append(p, "key: "+err.Error())
	}
	if len(p) > 0 {
		return werrors.Wrap(werrors.KindValidation, "schema.ValidateFinalizeEvent", p)
	}
	return nil
}

// ValidateBucket checks an S3 bucket name.
func ValidateBucket(name string) error {
	if name == "" {
		return fmt.Errorf("required")
	}
	if !bucketName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("%q is not a valid S3 bucket name", name)
	}
	return nil
}

// ValidateKey checks an object key: present, at most 1024 bytes, not starting
// with "/" and without ".." segments that would escape a prefix.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("required")
	case len(key) > 1024:
		return fmt.Errorf("longer than 1024 bytes")
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("%q must not start with /", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == ".." {
			return fmt.Errorf("%q must not contain .. segments", key)
		}
	}
	return nil
}

// ValidateKeyPrefix checks a configured key prefix: empty, or a valid key
// that ends with "/".
func ValidateKeyPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("%q must end with /", prefix)
	}
	return ValidateKey(prefix)
}
