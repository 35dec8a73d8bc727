package chat

import (
	"errors"
	"fmt"
)

// The error vocabulary of the service. Every error it returns either wraps
// one of these (and its message is safe to show to the client) or is an
// internal failure whose detail must not reach the client.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
	ErrNotFound        = errors.New("not found")
	ErrInvalid         = errors.New("invalid input")
	ErrRateLimited     = errors.New("rate limited")
	// ErrLagged ends a subscription whose consumer fell too far behind.
	ErrLagged = errors.New("subscriber too slow")
)

// Error is a client-facing error: Msg is shown, Kind says which code it maps to.
type Error struct {
	Kind  error
	Msg   string
	Field string
	// Details are machine-readable facts for the client, such as how long
	// to wait before retrying.
	Details map[string]any
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func invalidf(field, format string, args ...any) error {
	return &Error{Kind: ErrInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func notFound(what string) error {
	return &Error{Kind: ErrNotFound, Msg: what + " not found"}
}

func forbidden(msg string) error {
	return &Error{Kind: ErrForbidden, Msg: msg}
}

func unauthenticated(msg string) error {
	return &Error{Kind: ErrUnauthenticated, Msg: msg}
}
