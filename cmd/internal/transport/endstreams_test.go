package transport

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type sendingStream struct {
	grpc.ServerStream
	sent <-chan struct{}
}

func (s sendingStream) Context() context.Context { return context.Background() }

// SendMsg returns once sent is closed: a send in progress as the stop
// begins.
func (s sendingStream) SendMsg(any) error {
	<-s.sent
	return nil
}

// TestEndStreamsAnswersStopping: a stream ended by the stop answers
// Unavailable, the server shutting down, even when its handler returns
// first what the cancellation made it say (the health server's Watch:
// Canceled, "Stream has ended"), which a client cannot tell from its own
// cancellation. The interceptor used to pass on whichever came first;
// a handler in a send when the stop came usually came first.
func TestEndStreamsAnswersStopping(t *testing.T) {
	for i := range 500 {
		stopping := make(chan struct{})
		started := make(chan struct{})
		handler := func(_ any, ss grpc.ServerStream) error {
			close(started)
			ss.SendMsg(nil) // in progress as the stop begins
			<-ss.Context().Done()
			return status.Error(codes.Canceled, "Stream has ended.")
		}
		go func() { <-started; close(stopping) }()
		err := endStreams(stopping)(nil, sendingStream{sent: stopping}, &grpc.StreamServerInfo{}, handler)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("run %d: stream ended by the stop answered %v; want Unavailable", i, err)
		}
	}
}
