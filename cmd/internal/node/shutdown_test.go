package node

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// TestShutdownEndsStreams: GracefulStop waits for every call, and a
// health Watch (which the shutdown turns NOT_SERVING but did not end) or
// a reflection stream lasts as long as its client likes: one watching
// peer made every shutdown wait its full 10 seconds and then be forced.
// The shutdown now ends the streams first, Unavailable, on both
// listeners, and the daemon drains at once.
func TestShutdownEndsStreams(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := dialPlain(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin, err := transport.DialAdmin(b.AdminAddr, b.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	type stream interface{ RecvMsg(any) error }
	streams := map[string]stream{}
	for name, c := range map[string]healthpb.HealthClient{"public Watch": healthpb.NewHealthClient(conn), "admin Watch": healthpb.NewHealthClient(admin)} {
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		streams[name] = w
	}
	r, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(); err != nil {
		t.Fatal(err)
	}
	streams["reflection"] = r

	start := time.Now()
	b.Close()
	t.Logf("Close with two health Watches and a reflection stream open took %v", time.Since(start))
	for name, s := range streams {
		var err error
		for err == nil { // a Watch may first be told NOT_SERVING
			if name == "reflection" {
				if err = s.RecvMsg(new(reflectionpb.ServerReflectionResponse)); err == nil {
					t.Fatalf("reflection answered after the shutdown")
				}
			} else {
				err = s.RecvMsg(new(healthpb.HealthCheckResponse))
			}
		}
		// Forced (after 10 seconds), the stream ends with its connection.
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("%s at shutdown: %v; want Unavailable, the server shutting down", name, err)
		}
	}
}

// TestShutdownPastStalledAdminPeer: the admin listener's stop waited for
// every connection to be idle (http.Server.Shutdown), and a peer that
// stops reading (its streams' windows 0) never takes its answer: its
// stream stays open, and held the shutdown until it was forced. The
// admin listener now stops as the public one does (transport.Drain):
// once no call runs and nothing has been written for a second, the
// connections left are closed. The stop's timeout is an hour here: the
// shutdown must end without it.
func TestShutdownPastStalledAdminPeer(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	b.stopTimeout = time.Hour
	c := dialH2Settings(t, b.AdminAddr, []byte{0, 0x4, 0, 0, 0, 0}) // SETTINGS_INITIAL_WINDOW_SIZE 0
	defer c.close()
	if !c.settled {
		t.Fatal("connection refused")
	}
	c.mu.Lock()
	id := c.start(b.AdminAddr, "/grpc.health.v1.Health/Check", [2]string{"authorization", "Bearer " + b.Token})
	c.write(frData, flagEndStream, id, make([]byte, 5)) // an empty request
	for !c.answered[id] && !c.ended_[id] && !c.done {
		c.cond.Wait()
	}
	held := c.answered[id] && !c.ended_[id]
	c.mu.Unlock()
	if !held {
		t.Fatal("the admin listener did not answer the call, or ended it: its answer is not held")
	}

	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("the shutdown waited for the admin peer that does not read")
	}
}

// TestForcedStopWaitsForHandlers: a stop forced by its timeout cuts the
// calls still running off from their peers and cancels their contexts,
// but returned without waiting for their handlers, and the daemon then
// closed its store under a handler between two of its steps (it failed
// Unavailable halfway). The stop now waits, up to CallsGrace, for the
// handlers to return.
func TestForcedStopWaitsForHandlers(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	slow := &grpc.ServiceDesc{
		ServiceName: "test.Slow",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Call", Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(healthpb.HealthCheckRequest)
			if err := dec(req); err != nil {
				return nil, err
			}
			return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/test.Slow/Call"}, func(ctx context.Context, _ any) (any, error) {
				close(started)
				<-ctx.Done() // the forced stop
				<-release    // a step still to finish
				finished.Store(true)
				return &healthpb.HealthCheckResponse{}, nil
			})
		}}},
	}
	waiting := make(chan struct{}, 1)
	log := slog.New(logFunc(func(r slog.Record) {
		if strings.HasPrefix(r.Message, "shutdown: waiting for the calls still running") {
			waiting <- struct{}{}
		}
	}))
	d := &Daemon{stopTimeout: 100 * time.Millisecond}
	if err := d.start(daemonSpec{
		dir: t.TempDir(), listen: "127.0.0.1:0", adminListen: "127.0.0.1:0", plaintext: true, log: log,
		public: func(s *grpc.Server) { s.RegisterService(slow, struct{}{}) },
		admin:  func(*grpc.Server) {},
	}); err != nil {
		t.Fatal(err)
	}
	conn, err := dialPlain(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go conn.Invoke(context.Background(), "/test.Slow/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	<-started

	stopped := make(chan bool, 1)
	go func() { d.stop(); stopped <- finished.Load() }()
	select {
	case <-waiting:
		close(release)
	case <-stopped:
		close(release)
		t.Fatal("the forced stop returned with a handler still running: the store would close under it")
	}
	if !<-stopped {
		t.Error("the stop returned before the handler it waited for")
	}
}

// logFunc is a slog.Handler that hands every record to a function.
type logFunc func(slog.Record)

func (logFunc) Enabled(context.Context, slog.Level) bool        { return true }
func (f logFunc) Handle(_ context.Context, r slog.Record) error { f(r); return nil }
func (f logFunc) WithAttrs([]slog.Attr) slog.Handler            { return f }
func (f logFunc) WithGroup(string) slog.Handler                 { return f }
