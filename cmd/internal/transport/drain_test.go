package transport

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// floodStream registers /test.Flood/Flood, a server stream that sends
// messages of 1 MiB until a send fails, telling sent of each.
func floodStream(sent chan<- struct{}) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Flood",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName: "Flood", ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				msg := &wrapperspb.BytesValue{Value: make([]byte, 1<<20)}
				for {
					if err := ss.SendMsg(msg); err != nil {
						return err
					}
					select {
					case sent <- struct{}{}:
					default:
					}
				}
			},
		}},
	}
}

// TestStopPastStalledPeers: a peer that stops reading takes neither its
// answers nor the server's GOAWAY, and GracefulStop waited for its
// connection until the stop was forced, 10 seconds later. Here two such
// peers: a raw connection whose flow-control window is 0 (its unary
// call's answer cannot be sent) and a gRPC client that never reads its
// server stream (the stream's handler blocks in a send, and endStreams
// with it). The stop's timeout is an hour: it must return without it,
// once no unary call runs and nothing is written; a call in progress
// as the stop begins, from a peer that reads, still gets its answer,
// though it outlasts the quiet the stop waits for.
func TestStopPastStalledPeers(t *testing.T) {
	d := NewDrain()
	stopping := make(chan struct{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handled, started, release := make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	s := grpc.NewServer(Server{Stopping: stopping, Drain: d}.Options()...)
	s.RegisterService(fakeService(func(ctx context.Context) error {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("wait")) > 0 {
			close(started)
			<-release
			return nil
		}
		handled <- struct{}{}
		return nil
	}), struct{}{})
	sent := make(chan struct{}, 1)
	s.RegisterService(floodStream(sent), struct{}{})
	go s.Serve(lis)
	defer s.Stop()
	addr := lis.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The raw peer: a window of 0 for its streams, one call, and it never
	// reads.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out = append(out, 0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x4, 0, 0, 0, 0) // SETTINGS: INITIAL_WINDOW_SIZE 0
	out = append(out, h2Headers(1, "/test.Fake/Call")...)
	out = append(out, 0, 0, 5, 0x0, 0x1, 0, 0, 0, 1, 0, 0, 0, 0, 0) // DATA, END_STREAM: an empty message
	if _, err := raw.Write(out); err != nil {
		t.Fatal(err)
	}
	<-handled

	// The stream's client: a window of 64 KiB it never opens further; once
	// a send of 1 MiB has returned, the stream cannot end.
	flood, err := Dial(addr, ClientConfig{Plaintext: true}, grpc.WithStaticStreamWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	st, err := flood.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/test.Flood/Flood")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	<-sent

	// The call in progress, from a peer that reads.
	conn, err := Dial(addr, ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	answered := make(chan error, 1)
	go func() {
		answered <- conn.Invoke(metadata.AppendToOutgoingContext(ctx, "wait", "1"), "/test.Fake/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	}()
	<-started

	close(stopping)
	stopped := make(chan struct{})
	go func() { d.Stop(s, time.Hour); close(stopped) }()
	// Longer than the quiet the stop waits for once no call runs.
	time.Sleep(2 * d.quiet)
	close(release)
	if err := <-answered; err != nil {
		t.Errorf("the call in progress as the stop began: %v; want its answer", err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the stop waited for the peers that do not read")
	}

	// A call the stop did not wait for is refused, its handler not run.
	_, err = d.unary(ctx, nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
		t.Error("a call after the stop ran its handler")
		return nil, nil
	})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a call after the stop: %v; want Unavailable", err)
	}
}

// TestForcedStopRefusesLaterCalls: a stop forced by its timeout (a call
// still running) returned with the Drain still taking calls, so a call
// that reached its interceptor afterwards (it was in an earlier one, a
// rate check, as the connections closed) ran its handler while the daemon
// closed its store. Once Stop returns, forced or not, no handler starts.
func TestForcedStopRefusesLaterCalls(t *testing.T) {
	d := NewDrain()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s := grpc.NewServer(Server{Drain: d}.Options()...)
	s.RegisterService(fakeService(func(ctx context.Context) error {
		close(started)
		<-release
		return nil
	}), struct{}{})
	go s.Serve(lis)
	defer s.Stop()
	conn, err := Dial(lis.Addr().String(), ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go conn.Invoke(ctx, "/test.Fake/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	<-started
	d.Stop(s, 100*time.Millisecond) // forced: the call never ends
	_, err = d.unary(ctx, nil, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) {
		t.Error("a call after a forced stop ran its handler")
		return nil, nil
	})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a call after a forced stop: %v; want Unavailable", err)
	}
}
