package sdk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors callers branch on. They cross the wire as gRPC status
// codes: a plugin returns (a wrap of) one of them, the host gets back an
// error that matches the same sentinel with errors.Is and keeps the message.
var (
	// ErrInvalidRequest: the request or an option is invalid; retrying the
	// same request cannot succeed. (InvalidArgument)
	ErrInvalidRequest = errors.New("invalid request")
	// ErrModelNotLoaded: Load has not succeeded yet. (FailedPrecondition)
	ErrModelNotLoaded = errors.New("model not loaded")
	// ErrOverloaded: the plugin has no room for the request now; retry
	// later or elsewhere. (ResourceExhausted)
	ErrOverloaded = errors.New("backend overloaded")
	// ErrUnsupported: the plugin lacks the capability. (Unimplemented)
	ErrUnsupported = errors.New("not supported by this backend")
	// ErrPluginShutdown: the plugin process exited or its connection is
	// gone; the call did not complete. (Unavailable)
	ErrPluginShutdown = errors.New("plugin shut down")
)

// InvalidRequestf returns an error wrapping ErrInvalidRequest with a message.
func InvalidRequestf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}

// IsInvalidRequest reports whether err is or wraps ErrInvalidRequest.
func IsInvalidRequest(err error) bool { return errors.Is(err, ErrInvalidRequest) }

// IsModelNotLoaded reports whether err is or wraps ErrModelNotLoaded.
func IsModelNotLoaded(err error) bool { return errors.Is(err, ErrModelNotLoaded) }

// IsOverloaded reports whether err is or wraps ErrOverloaded.
func IsOverloaded(err error) bool { return errors.Is(err, ErrOverloaded) }

// IsUnsupported reports whether err is or wraps ErrUnsupported.
func IsUnsupported(err error) bool { return errors.Is(err, ErrUnsupported) }

// IsPluginShutdown reports whether err is or wraps ErrPluginShutdown.
func IsPluginShutdown(err error) bool { return errors.Is(err, ErrPluginShutdown) }

var sentinelCodes = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalidRequest, codes.InvalidArgument},
	{ErrModelNotLoaded, codes.FailedPrecondition},
	{ErrOverloaded, codes.ResourceExhausted},
	{ErrUnsupported, codes.Unimplemented},
	{ErrPluginShutdown, codes.Unavailable},
}

// toStatus turns an error returned by a Backend into a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	for _, s := range sentinelCodes {
		if errors.Is(err, s.err) {
			return status.Error(s.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// fromStatus turns an error from a gRPC call into an error matching the
// sentinel of its code. ctx is the caller's context, exited reports whether
// the plugin process is gone: a call that failed because the process died
// is ErrPluginShutdown, one the caller cancelled is the context's error.
func fromStatus(ctx context.Context, err error, exited bool) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		if exited {
			return fmt.Errorf("%w: %v", ErrPluginShutdown, err)
		}
		return err
	}
	code, msg := st.Code(), st.Message()
	switch code {
	case codes.Canceled, codes.DeadlineExceeded:
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%s)", context.Cause(ctx), msg)
		}
		if exited {
			return fmt.Errorf("%w: %s", ErrPluginShutdown, msg)
		}
		if code == codes.Canceled {
			return fmt.Errorf("%w: %s", context.Canceled, msg)
		}
		return fmt.Errorf("%w: %s", context.DeadlineExceeded, msg)
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrPluginShutdown, msg)
	}
	for _, s := range sentinelCodes {
		if s.code == code {
			return &wireError{sentinel: s.err, msg: msg}
		}
	}
	return &wireError{msg: msg}
}

// wireError is an error that crossed the wire. Its message is the plugin's
// message unchanged (which already names the sentinel when the plugin
// wrapped one); errors.Is matches the sentinel of its status code.
type wireError struct {
	sentinel error
	msg      string
}

func (e *wireError) Error() string {
	if e.sentinel != nil && e.msg == "" {
		return e.sentinel.Error()
	}
	return e.msg
}

func (e *wireError) Unwrap() error { return e.sentinel }
