package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestSentinelsCrossTheWire(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     codes.Code
		sentinel error
		is       func(error) bool
	}{
		{"invalid request", InvalidRequestf("unknown option %q", "n_gpu"), codes.InvalidArgument, ErrInvalidRequest, IsInvalidRequest},
		{"model not loaded", ErrModelNotLoaded, codes.FailedPrecondition, ErrModelNotLoaded, IsModelNotLoaded},
		{"overloaded", fmt.Errorf("queue full (32 waiting): %w", ErrOverloaded), codes.ResourceExhausted, ErrOverloaded, IsOverloaded},
		{"unsupported", fmt.Errorf("tokenize: %w", ErrUnsupported), codes.Unimplemented, ErrUnsupported, IsUnsupported},
		{"plugin shutdown", fmt.Errorf("draining: %w", ErrPluginShutdown), codes.Unavailable, ErrPluginShutdown, IsPluginShutdown},
	}
	all := []func(error) bool{IsInvalidRequest, IsModelNotLoaded, IsOverloaded, IsUnsupported, IsPluginShutdown}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := toStatus(tt.err)
			st, ok := status.FromError(wire)
			if !ok || st.Code() != tt.code {
				t.Fatalf("toStatus(%v) = %v, want code %v", tt.err, wire, tt.code)
			}
			got := fromStatus(context.Background(), wire, false)
			if !errors.Is(got, tt.sentinel) || !tt.is(got) {
				t.Errorf("fromStatus = %v, does not match %v", got, tt.sentinel)
			}
			if !strings.Contains(got.Error(), tt.err.Error()) {
				t.Errorf("message lost: got %q, want it to contain %q", got, tt.err)
			}
			matches := 0
			for _, is := range all {
				if is(got) {
					matches++
				}
			}
			if matches != 1 {
				t.Errorf("fromStatus = %v matches %d sentinels, want 1", got, matches)
			}
		})
	}
}

func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"canceled", fmt.Errorf("decode: %w", context.Canceled), codes.Canceled, "decode: context canceled"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded"},
		{"unknown", errors.New("CUDA error 700"), codes.Unknown, "CUDA error 700"},
		{"status passes through", status.Error(codes.Aborted, "aborted by plugin"), codes.Aborted, "aborted by plugin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ok := status.FromError(toStatus(tt.err))
			if !ok || st.Code() != tt.code || st.Message() != tt.msg {
				t.Errorf("toStatus(%v) = %v %q, want %v %q", tt.err, st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}

func TestFromStatus(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	cause := errors.New("client went away")
	caused, cancel3 := context.WithCancelCause(context.Background())
	cancel3(cause)

	canceledWire := status.Error(codes.Canceled, "context canceled")
	deadlineWire := status.Error(codes.DeadlineExceeded, "context deadline exceeded")

	tests := []struct {
		name         string
		ctx          context.Context
		err          error
		exited       bool
		want         error // errors.Is target
		notShutdown  bool
		wantContains string
	}{
		{name: "caller cancelled", ctx: cancelled, err: canceledWire, want: context.Canceled, notShutdown: true},
		{name: "caller cancelled while the process died", ctx: cancelled, err: canceledWire, exited: true, want: context.Canceled, notShutdown: true},
		{name: "caller cancelled with a cause", ctx: caused, err: canceledWire, want: cause, notShutdown: true},
		{name: "caller deadline", ctx: expired, err: deadlineWire, want: context.DeadlineExceeded, notShutdown: true},
		{name: "cancelled by a dead process", ctx: live, err: canceledWire, exited: true, want: ErrPluginShutdown},
		{name: "deadline by a dead process", ctx: live, err: deadlineWire, exited: true, want: ErrPluginShutdown},
		{name: "plugin-side cancel, process alive", ctx: live, err: canceledWire, want: context.Canceled, notShutdown: true},
		{name: "plugin-side deadline, process alive", ctx: live, err: deadlineWire, want: context.DeadlineExceeded, notShutdown: true},
		{name: "unavailable", ctx: live, err: status.Error(codes.Unavailable, "connection refused"), want: ErrPluginShutdown, wantContains: "connection refused"},
		{name: "non-status error from a dead process", ctx: live, err: errors.New("EOF"), exited: true, want: ErrPluginShutdown, wantContains: "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fromStatus(tt.ctx, tt.err, tt.exited)
			if !errors.Is(got, tt.want) {
				t.Errorf("fromStatus = %v, want it to match %v", got, tt.want)
			}
			if tt.notShutdown && IsPluginShutdown(got) {
				t.Errorf("fromStatus = %v matches ErrPluginShutdown", got)
			}
			if !strings.Contains(got.Error(), tt.wantContains) {
				t.Errorf("fromStatus = %q, want it to contain %q", got, tt.wantContains)
			}
		})
	}
}

func TestFromStatusUnknownKeepsMessage(t *testing.T) {
	for _, code := range []codes.Code{codes.Unknown, codes.Internal, codes.Aborted} {
		t.Run(code.String(), func(t *testing.T) {
			got := fromStatus(context.Background(), status.Error(code, "llama_decode failed: -3"), false)
			if got.Error() != "llama_decode failed: -3" {
				t.Errorf("message = %q, want the plugin's message", got)
			}
			for _, s := range []error{ErrInvalidRequest, ErrModelNotLoaded, ErrOverloaded, ErrUnsupported, ErrPluginShutdown, context.Canceled} {
				if errors.Is(got, s) {
					t.Errorf("%v matches %v", got, s)
				}
			}
		})
	}
	if err := fromStatus(context.Background(), errors.New("plain"), false); err.Error() != "plain" {
		t.Errorf("non-status error from a live process = %v, want it unchanged", err)
	}
	if fromStatus(context.Background(), nil, true) != nil {
		t.Error("fromStatus(nil) != nil")
	}
}

func TestWireErrorWithoutMessage(t *testing.T) {
	got := fromStatus(context.Background(), status.Error(codes.FailedPrecondition, ""), false)
	if got.Error() != ErrModelNotLoaded.Error() || !IsModelNotLoaded(got) {
		t.Errorf("got %q, want the sentinel's message and match", got)
	}
}
