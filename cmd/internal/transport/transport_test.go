package transport

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/h2frames"
)

// serveHealth serves the standard health service with the given options.
func serveHealth(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func check(addr string, c ClientConfig, extra ...grpc.DialOption) error {
	conn, err := Dial(addr, c, extra...)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err
}

func TestTLSTrust(t *testing.T) {
	dir := t.TempDir()
	cert, fp, created, err := LoadOrCreateCert(dir)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if _, fp2, created2, err := LoadOrCreateCert(dir); err != nil || created2 || fp2 != fp {
		t.Fatalf("reload: fingerprint %s vs %s, created %v, %v", fp2, fp, created2, err)
	}
	addr := serveHealth(t, Server{Cert: &cert}.Options()...)

	if err := check(addr, ClientConfig{Pin: fp}); err != nil {
		t.Fatalf("pinned fingerprint: %v", err)
	}
	if err := check(addr, ClientConfig{Pin: strings.ToUpper(fp)}); err != nil {
		t.Fatalf("upper-case pin: %v", err)
	}
	wrong := []byte(fp)
	wrong[0] ^= 1
	if err := check(addr, ClientConfig{Pin: string(wrong)}); err == nil {
		t.Fatal("a wrong pin was accepted")
	}
	if err := check(addr, ClientConfig{CAFile: dir + "/" + CertFile}); err != nil {
		t.Fatalf("CA file: %v", err)
	}
	other := t.TempDir()
	if _, _, _, err := LoadOrCreateCert(other); err != nil {
		t.Fatal(err)
	}
	if err := check(addr, ClientConfig{CAFile: other + "/" + CertFile}); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	if err := check(addr, ClientConfig{}); err == nil {
		t.Fatal("dialing with no trust configured succeeded")
	}
	if err := check(addr, ClientConfig{Pin: "abc"}); err == nil {
		t.Fatal("a malformed pin was accepted")
	}
}

func TestPlaintextOnlyOnLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true,
		"192.0.2.1:1": false, "example.com:1": false, "nonsense": false,
	} {
		_, err := ClientConfig{Plaintext: true}.Credentials(addr)
		if (err == nil) != ok {
			t.Errorf("plaintext to %s: %v", addr, err)
		}
	}
	if _, err := DialAdmin("192.0.2.1:7444", "x"); err == nil {
		t.Error("admin dial to a non-loopback address allowed")
	}
}

func TestAdminToken(t *testing.T) {
	path := t.TempDir() + "/" + TokenFile
	tok, err := LoadOrCreateToken(path)
	if err != nil || len(tok) != 64 {
		t.Fatalf("token %q: %v", tok, err)
	}
	if again, err := LoadOrCreateToken(path); err != nil || again != tok {
		t.Fatalf("the token loaded again: %q, %v; want %q", again, err, tok)
	}
	if read, err := ReadToken(path); err != nil || read != tok {
		t.Fatalf("ReadToken: %q, %v; want %q", read, err, tok)
	}
	// A token file others may read is refused by the client as by the
	// daemon; so is one too short to be a token.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a token file of mode 0644 read: %v", err)
	}
	if _, err := LoadOrCreateToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a token file of mode 0644 loaded: %v", err)
	}
	short := t.TempDir() + "/short"
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(short); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("a short token read: %v", err)
	}
	addr := serveHealth(t, Server{Token: tok}.Options()...)
	conn, err := DialAdmin(addr, tok)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("right token: %v", err)
	}
	for _, bad := range []string{"", tok[:63], tok + "0", strings.ToUpper(tok)} {
		conn, err := DialAdmin(addr, bad)
		if err != nil {
			t.Fatal(err)
		}
		_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		conn.Close()
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("token %q: %v, want Unauthenticated", bad, err)
		}
	}
}

// fakeService registers one unary method, /test.Fake/Call, with handler h.
func fakeService(h func(ctx context.Context) error) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Fake",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Call",
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(healthpb.HealthCheckRequest)
				if err := dec(in); err != nil {
					return nil, err
				}
				call := func(ctx context.Context, req any) (any, error) {
					return &healthpb.HealthCheckResponse{}, h(ctx)
				}
				if icpt == nil {
					return call(ctx, in)
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/test.Fake/Call"}, call)
			},
		}},
	}
}

func serveFake(t *testing.T, h func(ctx context.Context) error) string {
	t.Helper()
	return serveFakeWith(t, Server{}, h)
}

func serveFakeWith(t *testing.T, c Server, h func(ctx context.Context) error) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(c.Options()...)
	s.RegisterService(fakeService(h), struct{}{})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func callFake(t *testing.T, addr string, ctx context.Context) error {
	t.Helper()
	conn, err := Dial(addr, ClientConfig{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.Invoke(ctx, "/test.Fake/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
}

// A panicking handler answers Internal with no detail, and the server lives on.
func TestPanicRecovered(t *testing.T) {
	addr := serveFake(t, func(context.Context) error { panic("secret detail") })
	for range 2 {
		err := callFake(t, addr, context.Background())
		if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "secret") {
			t.Fatalf("panic: %v", err)
		}
	}
}

// The caller's request id reaches the handler and rides on its own
// outbound calls; without one, the server makes one.
func TestRequestID(t *testing.T) {
	got := make(chan [2]string, 2)
	addr := serveFake(t, func(ctx context.Context) error {
		md, _ := metadata.FromOutgoingContext(ctx)
		out := ""
		if v := md.Get(RequestIDKey); len(v) == 1 {
			out = v[0]
		}
		got <- [2]string{RequestID(ctx), out}
		return nil
	})
	ctx := metadata.AppendToOutgoingContext(context.Background(), RequestIDKey, "pay-42")
	if err := callFake(t, addr, ctx); err != nil {
		t.Fatal(err)
	}
	if ids := <-got; ids != [2]string{"pay-42", "pay-42"} {
		t.Fatalf("request id seen %q, passed on %q", ids[0], ids[1])
	}
	if err := callFake(t, addr, context.Background()); err != nil {
		t.Fatal(err)
	}
	if ids := <-got; len(ids[0]) != 16 || ids[0] != ids[1] {
		t.Fatalf("made-up request id %q / %q", ids[0], ids[1])
	}
}

// The handler sees its peer's address key as the call's source, what the
// bank counts failed authentications by.
// With per-peer limits the tap works the key out, and the interceptors
// take it from there.
func TestSource(t *testing.T) {
	for _, c := range []Server{{}, {PeerCalls: 4}} {
		got := make(chan string, 1)
		addr := serveFakeWith(t, c, func(ctx context.Context) error {
			got <- bank.Source(ctx)
			return nil
		})
		if err := callFake(t, addr, context.Background()); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s != "127.0.0.1" {
			t.Fatalf("source %q, want 127.0.0.1 (PeerCalls %d)", s, c.PeerCalls)
		}
	}
}

// TestTLSFilesReload: a replaced certificate is picked up on the next look;
// a certificate whose key has not arrived yet, or a damaged file, leaves the
// previous one in use until the files change again.
func TestTLSFilesReload(t *testing.T) {
	live, a, b := t.TempDir(), t.TempDir(), t.TempDir()
	_, fpLive, _, err := LoadOrCreateCert(live)
	if err != nil {
		t.Fatal(err)
	}
	_, fpA, _, _ := LoadOrCreateCert(a)
	certFile, keyFile := filepath.Join(live, CertFile), filepath.Join(live, KeyFile)
	f, err := LoadTLSFiles(certFile, keyFile, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var loaded []string
	f.OnLoad(func(leaf *x509.Certificate) { loaded = append(loaded, Fingerprint(leaf.Raw)) })
	if f.Fingerprint() != fpLive {
		t.Fatal("wrong certificate loaded")
	}
	replace := func(src, dst string) {
		t.Helper()
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+".new", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dst+".new", dst); err != nil {
			t.Fatal(err)
		}
	}
	replace(filepath.Join(a, CertFile), certFile)
	if f.Fingerprint() != fpLive {
		t.Fatal("a certificate without its key was loaded")
	}
	replace(filepath.Join(a, KeyFile), keyFile)
	if f.Fingerprint() != fpA {
		t.Fatal("the new pair was not loaded")
	}
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f.Fingerprint() != fpA {
		t.Fatal("a damaged certificate replaced a good one")
	}
	_, fpB, _, _ := LoadOrCreateCert(b)
	replace(filepath.Join(b, CertFile), certFile)
	replace(filepath.Join(b, KeyFile), keyFile)
	if f.Fingerprint() != fpB {
		t.Fatal("recovery after a damaged file")
	}
	if want := []string{fpLive, fpA, fpB}; strings.Join(loaded, " ") != strings.Join(want, " ") {
		t.Fatalf("OnLoad saw %v, want %v", loaded, want)
	}
	if _, err := LoadTLSFiles(certFile, keyFile, filepath.Join(a, KeyFile), nil); err == nil {
		t.Fatal("a key file was taken as a CA file")
	}
}

func TestClientCertConfig(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, err := LoadOrCreateCert(dir); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if _, err := (ClientConfig{Plaintext: true, CertFile: cert, KeyFile: key}).Credentials("127.0.0.1:1"); err == nil {
		t.Error("a client certificate over plaintext was accepted")
	}
	if _, err := (ClientConfig{CAFile: cert, CertFile: cert}).Credentials("127.0.0.1:1"); err == nil {
		t.Error("a client certificate without its key was accepted")
	}
	if _, err := (ClientConfig{CAFile: cert, CertFile: cert, KeyFile: filepath.Join(dir, "missing")}).Credentials("127.0.0.1:1"); err == nil {
		t.Error("a missing client key was accepted")
	}
	if _, err := (ClientConfig{CAFile: cert, CertFile: cert, KeyFile: key}).Credentials("127.0.0.1:1"); err != nil {
		t.Error(err)
	}
	if _, err := DialAdminTLS("192.0.2.1:7444", "x", ClientConfig{Plaintext: true}); err == nil {
		t.Error("plaintext admin dial off loopback allowed")
	}
	if _, _, err := AdminHTTP("192.0.2.1:7444", ClientConfig{}); err == nil {
		t.Error("plaintext admin HTTP off loopback allowed")
	}
	if _, base, err := AdminHTTP("192.0.2.1:7444", ClientConfig{CAFile: cert, CertFile: cert, KeyFile: key}); err != nil || base != "https://192.0.2.1:7444" {
		t.Errorf("admin HTTP over TLS: %s %v", base, err)
	}
}

// TestCallLog: at level debug every call is logged with its method, request
// id and code; above it, nothing.
func TestCallLog(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf syncBuffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))
		addr := serveFakeWith(t, Server{Log: log}, func(context.Context) error { return status.Error(codes.NotFound, "no") })
		ctx := metadata.AppendToOutgoingContext(context.Background(), RequestIDKey, "req-7")
		if err := callFake(t, addr, ctx); status.Code(err) != codes.NotFound {
			t.Fatalf("call: %v", err)
		}
		got := buf.String()
		logged := strings.Contains(got, "msg=call method=/test.Fake/Call request_id=req-7 code=NotFound duration=")
		if logged != (level == slog.LevelDebug) {
			t.Errorf("level %s: logged %v: %q", level, logged, got)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Calls exchange no PINGs: the fixed flow-control window of both sides
// turns off gRPC's bandwidth-delay estimation, which would answer every
// burst of data with a PING (and the peer with its ack), and both sides
// announce that window for streams and the connection. A client with
// gRPC's default window shows that the counting sees PINGs.
func TestNoFlowControlPings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dial  func(addr string) (*grpc.ClientConn, error)
		pings bool
	}{
		{"Dial", func(addr string) (*grpc.ClientConn, error) { return Dial(addr, ClientConfig{Plaintext: true}) }, false},
		{"gRPC's default window", func(addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			frames := h2frames.Listen(lis)
			s := grpc.NewServer(Server{}.Options()...)
			healthpb.RegisterHealthServer(s, health.NewServer())
			go s.Serve(frames)
			t.Cleanup(s.Stop)
			conn, err := tc.dial(lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for range 20 {
				if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close()
			s.Stop()
			sent, received := frames.FromClients.Pings(), frames.FromServer.Pings()
			if got := sent+received > 0; got != tc.pings {
				t.Fatalf("PINGs from the client %d, from the server %d; want any: %v", sent, received, tc.pings)
			}
			sides := []struct {
				name string
				f    *h2frames.Counter
			}{{"server", frames.FromServer}, {"client", frames.FromClients}}
			for _, side := range sides {
				if tc.pings && side.name == "client" {
					continue // gRPC's defaults
				}
				if stream, conn := side.f.Windows(); stream != FlowWindow || conn != FlowWindow {
					t.Errorf("the %s announced windows of %d bytes a stream and %d the connection, want %d", side.name, stream, conn, FlowWindow)
				}
			}
		})
	}
}
