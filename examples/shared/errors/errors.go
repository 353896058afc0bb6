// Package errors gives workflow functions one vocabulary for failures, so that
// logs, recorded state and the Lambda runtime's errorType agree on what went
// wrong and whether retrying can help.
//
// The package name shadows the standard library's errors; callers import it
// under an alias (for example werrors).
package errors

import (
	stderrors "errors"
	"fmt"
	"strings"
)

// Kind is the category of a failure. The zero value is KindInternal, so an
// error nobody classified is never mistaken for a caller's mistake.
type Kind int

const (
	KindInternal   Kind = iota // a bug or an unexpected condition
	KindValidation             // the input is wrong; retrying it unchanged cannot help
	KindNotFound               // a referenced object does not exist
	KindTimeout                // an operation ran out of time
	KindPermission             // the caller is not allowed to do this
	KindDependency             // a downstream service failed or throttled
)

var kindNames = [...]string{"Internal", "Validation", "NotFound", "Timeout", "Permission", "Dependency"}

// String returns the kind's name, e.g. "Validation".
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Retryable reports whether an operation that failed with this kind may
// succeed when repeated unchanged.
func (k Kind) Retryable() bool { return k == KindTimeout || k == KindDependency }

// LambdaType is the value used for the Lambda error document's errorType and
// the Lambda-Runtime-Function-Error-Type header, e.g. "ValidationError".
// Step Functions Catch and Retry rules match on it.
func (k Kind) LambdaType() string { return k.String() + "Error" }

// Error is a classified error. Op names the operation that failed (for
// example "s3state.Save"); Err is the underlying cause and is never nil.
type Error struct {
	Kind Kind
	Op   string
	Err  error
}

func (e *Error) Error() string {
	if e.Op == "" {
		return fmt.Sprintf("%s: %v", e.Kind, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.Op, e.Kind, e.Err)
}

// Unwrap exposes the cause to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// New returns a classified error with a plain message.
func New(kind Kind, op, msg string) error {
	return &Error{Kind: kind, Op: op, Err: stderrors.New(msg)}
}

// Wrap classifies err. It returns nil for a nil err, so the result of a call
// can be wrapped directly.
func Wrap(kind Kind, op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Op: op, Err: err}
}

// KindOf returns the kind of the outermost classified error in err's chain,
// or KindInternal when there is none.
func KindOf(err error) Kind {
	var e *Error
	if stderrors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// stateKinds maps the error names AWS Step Functions reports to kinds.
var stateKinds = map[string]Kind{
	"States.Timeout":                  KindTimeout,
	"States.HeartbeatTimeout":         KindTimeout,
	"States.Permissions":              KindPermission,
	"States.DataLimitExceeded":        KindValidation,
	"States.TaskFailed":               KindDependency,
	"Lambda.ServiceException":         KindDependency,
	"Lambda.TooManyRequestsException": KindDependency,
}

// FromStateError classifies the {"Error", "Cause"} pair a Step Functions
// Catch clause passes on. Names not known to Step Functions are errors thrown
// by task code: those ending in a kind's LambdaType keep that kind, the rest
// are internal.
func FromStateError(name, cause string) *Error {
	kind, ok := stateKinds[name]
	if !ok {
		kind = KindInternal
		for k := range kindNames {
			if strings.HasSuffix(name, Kind(k).LambdaType()) {
				kind = Kind(k)
			}
		}
	}
	if cause == "" {
		cause = name
	}
	return &Error{Kind: kind, Op: name, Err: stderrors.New(cause)}
}
