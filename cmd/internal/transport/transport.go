// Package transport is the TLS and token plumbing shared by the blindbank
// commands: self-signed server certificates with printed fingerprints,
// certificates reloaded from disk without a restart, optional client
// certificates (mutual TLS) on both sides, clients that trust a CA file or a
// pinned fingerprint, loopback-only plaintext, and the admin bearer token.
package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protoCodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"

	"github.com/blindbank/blindbank/bank"
	pb "github.com/blindbank/blindbank/proto"
)

// File names inside a daemon's data directory.
const (
	CertFile  = "tls.crt"
	KeyFile   = "tls.key"
	TokenFile = "admin.token"
)

// MaxMessageSize bounds every gRPC message both ways (1024 RSA-4096 coins fit).
const MaxMessageSize = 4 << 20

// MaxHeaderListSize bounds a call's header list (its metadata) on the
// servers' listeners, as HTTP/2 counts it: each field's name and value
// plus 32 bytes. gRPC's default is 16 MiB, and headers are not flow
// controlled: a call's metadata stays in its context until it ends, and a
// header block a peer never finishes (HEADERS, then CONTINUATIONs without
// END_HEADERS) opens no stream the per-peer caps could count, yet the
// server buffers it. An honest call's headers are a few hundred bytes
// (the pseudo-headers, content-type, te, user-agent, grpc-timeout, an
// x-request-id of at most 64 bytes, the admin token's authorization). A
// larger header list is refused: its stream is reset, or, when a field or
// a frame goes well beyond the bound, the connection is closed, and what
// was sent beyond the bound is never kept.
const MaxHeaderListSize = 16 << 10

// MaxResponseHeaderListSize bounds the headers and trailers a client
// (Dial) takes from a server: the status message and details of an
// error (a double-spend proof, some 2 KiB in base64) ride in the trailers,
// so it leaves them more room than MaxHeaderListSize.
const MaxResponseHeaderListSize = 64 << 10

// MaxStreamsPerConn bounds the streams open on one connection (gRPC's
// default is unbounded), and Server.PeerCalls bounds them further
// (streamsPerConn): a merchant's many concurrent deposits fit. What one
// peer address may hold is bounded across its connections by
// Server.PeerCalls (and their number by LimitConns).
const MaxStreamsPerConn = 1024

// HandshakeTimeout and IdleTimeout bound a connection's handshake and its
// time without a call (gRPC's defaults: two minutes, and forever).
const (
	HandshakeTimeout = 20 * time.Second
	IdleTimeout      = 10 * time.Minute
)

// boundedCodec is gRPC's protobuf codec, leaving undecoded a request
// larger than its kind can be (maxDecoded). The requests that carry lists
// are small when honest (1024 hashes: 35 KB), but a 4 MiB message of empty
// list items decodes into a quarter of a gigabyte of allocations. gRPC
// answers any error of a codec as INTERNAL, a server's fault, so the codec
// records its refusal in undecoded instead, and refuseUndecoded answers it
// ResourceExhausted, where the call is logged, counted under its method and
// gives its place back as any other.
type boundedCodec struct {
	encoding.CodecV2
	undecoded *sync.Map // request message -> its refusal
}

// tooLarge is the refusal of a request message v of n bytes, over its
// kind's limit.
func tooLarge(v any, n, limit int) error {
	return bank.NewStatus(codes.ResourceExhausted, "MESSAGE_TOO_LARGE", fmt.Sprintf("a %T of %d bytes; at most %d", v, n, limit)).Err()
}

func (c boundedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if limit := maxDecoded(v); limit > 0 && data.Len() > limit {
		c.undecoded.Store(v, tooLarge(v, data.Len(), limit))
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// refuseUndecoded answers a request boundedCodec left undecoded with its
// refusal; it must run before anything reads the request.
func refuseUndecoded(undecoded *sync.Map) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if maxDecoded(req) > 0 {
			if err, ok := undecoded.LoadAndDelete(req); ok {
				return nil, err.(error)
			}
		}
		return handler(ctx, req)
	}
}

// maxDecoded is the largest message of v's kind worth decoding; 0: only
// MaxMessageSize applies. Each list holds at most 1024 items
// (ecash.MaxCoinsPerRequest), of some 70 bytes for a first-round item and
// 34 for a hash.
func maxDecoded(v any) int {
	switch v.(type) {
	case *pb.PrepareWithdrawRequest:
		return 128 << 10
	case *pb.IssuedSignaturesRequest, *pb.CoinsSpentRequest:
		return 64 << 10
	}
	return 0
}

// FlowWindow is the HTTP/2 flow-control window of every stream and
// connection, on both sides. A fixed window turns off gRPC's bandwidth-delay
// estimation, which answers data with a WINDOW_UPDATE and a PING and the peer
// with a PING ack: eight of the fourteen socket writes of a one-coin payment,
// each waking a reader on the other end (PERFORMANCE, "Flow control without
// pings"). At the largest message's size, a call is seldom held up by flow
// control (the window is topped up after each quarter of it); the
// estimation would grow it to 16 MiB at most.
const FlowWindow = MaxMessageSize

// MaxCallBytes bounds the request bytes a call in progress holds in the
// server: gRPC buffers a message until it is whole (at most
// MaxMessageSize; it widens the stream's window to let a message through,
// so a smaller window would not bound it), and keeps what a peer sends
// after it, a window's worth, unread until the call ends.
const MaxCallBytes = MaxMessageSize + FlowWindow

// flowControl are the server options of the fixed flow-control window.
func flowControl() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StaticStreamWindowSize(FlowWindow), grpc.StaticConnWindowSize(FlowWindow)}
}

// NewSignerServer is the gRPC server of an external signer's unix socket:
// the fixed flow-control window, and requests of up to 16 MiB.
func NewSignerServer() *grpc.Server {
	return grpc.NewServer(append(flowControl(), grpc.MaxRecvMsgSize(16<<20))...)
}

// DialFlowControl are the dial options of the fixed flow-control window,
// for a client not made by Dial (the bank's client of its signer).
func DialFlowControl() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStaticStreamWindowSize(FlowWindow), grpc.WithStaticConnWindowSize(FlowWindow)}
}

// Fingerprint is the hex SHA-256 of a DER certificate.
func Fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

// LoadOrCreateCert loads DIR/tls.crt and DIR/tls.key, or creates a
// self-signed ECDSA P-256 certificate for localhost and the given hosts.
func LoadOrCreateCert(dir string, hosts ...string) (cert tls.Certificate, fingerprint string, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if cert, err = tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return cert, Fingerprint(cert.Certificate[0]), false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return cert, "", false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return cert, "", false, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return cert, "", false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "blindbank"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		// A leaf, not a CA: a client told to trust this file (--ca) must
		// not thereby trust certificates it could sign for other hosts.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return cert, "", false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return cert, "", false, err
	}
	if err := bank.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return cert, "", false, err
	}
	if err := bank.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return cert, "", false, err
	}
	cert, err = tls.LoadX509KeyPair(certPath, keyPath)
	return cert, Fingerprint(der), true, err
}

// Server configures a listener's gRPC options.
type Server struct {
	Cert      *tls.Certificate  // nil (and TLS nil): plaintext (loopback only)
	TLS       *tls.Config       // if set, used instead of Cert (e.g. TLSFiles.ServerConfig)
	Log       *slog.Logger      // nil: discard
	Metrics   *RPCMetrics       // nil: none
	PeerLimit *bank.RateLimiter // calls per second per peer address; nil: none
	PeerCalls int               // calls in progress at once per peer address; 0: no bound
	Token     string            // non-empty: every call must carry it (admin)
	// CertMethods are the full method names ("/blindbank.v1.Bank/Deposit")
	// refused, with Unauthenticated, to callers whose connection presented
	// no verified client certificate (see ClientCertMethods).
	CertMethods map[string]bool
	// Stopping, closed as the server begins to stop, ends the streaming
	// calls in progress (Unavailable), which GracefulStop would otherwise
	// wait for: a health Watch lasts as long as its client likes. nil:
	// they run until they end.
	Stopping <-chan struct{}
	// Drain, if set, counts the unary calls in progress and the writes of
	// the server's connections, for its stop (Drain.Stop).
	Drain *Drain
}

// Options are the gRPC options: TLS (unless plaintext), message and
// header list size bounds, request ids, panic recovery, per-peer rate
// limits and calls in progress, metrics (the streams gRPC refuses beyond
// streamsPerConn included: serverCreds), client certificates for
// CertMethods, for the admin listener, the token, and with Drain the
// count of calls and writes its stop waits for. Streaming calls
// (health Watch, reflection) get the request ids, panic recovery,
// metrics, the token and the per-peer rate, charged for each message.
func (c Server) Options() []grpc.ServerOption {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var chain []grpc.UnaryServerInterceptor
	if c.PeerCalls > 0 {
		chain = append(chain, releasePeerCall)
	}
	chain = append(chain, serverInterceptors(log))
	if c.Metrics != nil {
		chain = append(chain, c.Metrics.interceptor)
	}
	undecoded := new(sync.Map)
	chain = append(chain, refuseUndecoded(undecoded))
	if len(c.CertMethods) > 0 {
		chain = append(chain, requireClientCert(c.CertMethods))
	}
	if c.Token != "" {
		chain = append(chain, RequireToken(c.Token))
	}
	if c.PeerLimit != nil {
		chain = append(chain, chargePeers(c.PeerLimit))
	}
	if c.Drain != nil {
		chain = append(chain, c.Drain.unary)
	}
	// The log and the metrics record a stream's answer as its client gets
	// it, Unavailable if endStreams ended it (see there).
	streams := []grpc.StreamServerInterceptor{serverStreamInterceptor(log)}
	if c.Metrics != nil {
		streams = append(streams, c.Metrics.streamInterceptor)
	}
	streams = append(streams, endStreams(c.Stopping), recoverStreams(log))
	if c.Token != "" {
		streams = append(streams, RequireTokenStream(c.Token))
	}
	if c.PeerLimit != nil {
		streams = append(streams, chargeStreamMessages(c.PeerLimit))
	}
	opts := append(flowControl(),
		grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.ForceServerCodecV2(boundedCodec{encoding.GetCodecV2(protoCodec.Name), undecoded}),
		grpc.MaxConcurrentStreams(c.streamsPerConn()),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		// A connection must finish its handshake within HandshakeTimeout
		// and is closed after IdleTimeout without a call (a client reconnects
		// on its next): neither a slow handshake nor an idle connection
		// holds a server's memory for long.
		grpc.ConnectionTimeout(HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: IdleTimeout, Timeout: KeepaliveTimeout}),
		grpc.ChainUnaryInterceptor(chain...),
		grpc.ChainStreamInterceptor(streams...),
		// Calls run on a pool of goroutines whose stacks have already grown
		// to what a handler's cryptography needs, instead of a fresh
		// goroutine per call copying its stack as it grows (4% of the CPU
		// of a one-coin payment). Beyond the pool's size gRPC starts a
		// goroutine per call as before, so a slow call never queues others.
		grpc.NumStreamWorkers(streamWorkers()),
	)
	var calls *PeerCounter
	if c.PeerCalls > 0 {
		calls = NewPeerCounter(c.PeerCalls)
	}
	if c.PeerLimit != nil || calls != nil {
		opts = append(opts, grpc.InTapHandle(tapPeers(c.PeerLimit, calls, c.Metrics)))
	}
	var creds credentials.TransportCredentials // nil: plaintext
	switch {
	case c.TLS != nil:
		creds = credentials.NewTLS(c.TLS)
	case c.Cert != nil:
		creds = credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*c.Cert}, MinVersion: tls.VersionTLS13})
	}
	if c.Metrics != nil || c.Drain != nil {
		creds = serverCreds{inner: creds, m: c.Metrics, drain: c.Drain}
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	return opts
}

// streamsPerConn is the streams one connection may have open at once,
// told to the peer: no more than PeerCalls. A call gives its place in
// PeerCalls back when its handler has answered, but gRPC keeps its stream,
// and the answer queued on it, until the peer's flow-control window lets
// the answer out; a peer that never opens its windows would otherwise
// hold answered streams without end while PeerCalls admits new ones. The
// connection's limit counts a stream until it is gone. A gRPC client
// waits for a place beyond it rather than failing the call, which
// PeerCalls would refuse anyway.
func (c Server) streamsPerConn() uint32 {
	if c.PeerCalls > 0 {
		return uint32(min(c.PeerCalls, MaxStreamsPerConn))
	}
	return MaxStreamsPerConn
}

// streamWorkers sizes the pool of call goroutines: handlers mostly wait for
// a group commit, so several per core are busy at once.
func streamWorkers() uint32 { return uint32(max(16, 8*runtime.GOMAXPROCS(0))) }

// ClientConfig says how a client trusts a server, and which certificate,
// if any, it presents to a server that asks for one (mutual TLS).
type ClientConfig struct {
	CAFile    string // PEM file of the server's certificate or its CA
	Pin       string // hex SHA-256 fingerprint of the server's certificate
	Plaintext bool   // no TLS; refused unless the address is loopback

	// CertFile and KeyFile (PEM, both or neither) are the client
	// certificate. They are read when dialing and re-read on a later
	// handshake if they changed on disk, so a renewed certificate is used
	// without a restart.
	CertFile, KeyFile string
}

// IsZero reports whether c says nothing at all.
func (c ClientConfig) IsZero() bool { return c == ClientConfig{} }

// IsLoopback reports whether addr's host is a loopback address or localhost.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Credentials builds the transport credentials for dialing addr.
func (c ClientConfig) Credentials(addr string) (credentials.TransportCredentials, error) {
	if c.Plaintext {
		if c.CertFile != "" || c.KeyFile != "" {
			return nil, errors.New("a client certificate needs TLS, not plaintext")
		}
		if !IsLoopback(addr) {
			return nil, fmt.Errorf("plaintext is allowed only to a loopback address, not %s", addr)
		}
		return insecure.NewCredentials(), nil
	}
	cfg, err := c.TLSConfig(addr)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

// TLSConfig is the client TLS configuration for dialing addr (not for
// plaintext).
func (c ClientConfig) TLSConfig(addr string) (*tls.Config, error) {
	if c.Plaintext {
		return nil, errors.New("plaintext: no TLS configuration")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: host}
	switch {
	case c.Pin != "":
		want, err := hex.DecodeString(strings.ReplaceAll(strings.ToLower(c.Pin), ":", ""))
		if err != nil || len(want) != sha256.Size {
			return nil, fmt.Errorf("pin must be a hex SHA-256 fingerprint")
		}
		// The pin replaces chain verification: exactly this certificate is trusted.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("server sent no certificate")
			}
			got := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("server certificate fingerprint %x does not match the pin", got)
			}
			return nil
		}
	case c.CAFile != "":
		pemBytes, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	default:
		return nil, errors.New("no way to trust the server: give a CA file, a pinned fingerprint, or plaintext on loopback")
	}
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		files, err := LoadTLSFiles(c.CertFile, c.KeyFile, "", nil)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return files.Certificate(), nil
		}
	case c.CertFile != "" || c.KeyFile != "":
		return nil, errors.New("a client certificate needs both its certificate file and its key file")
	}
	return cfg, nil
}

// Dial connects to addr. extra options (e.g. a token) are appended.
func Dial(addr string, c ClientConfig, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds, err := c.Credentials(addr)
	if err != nil {
		return nil, err
	}
	opts := append(DialFlowControl(),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
		grpc.WithMaxHeaderListSize(MaxResponseHeaderListSize),
		grpc.WithChainUnaryInterceptor(clientInterceptor),
	)
	opts = append(opts, extra...)
	return grpc.NewClient(addr, opts...)
}

// LoadOrCreateToken reads the admin token at path or writes a fresh one. A
// token file other users may read is refused: whoever reads it holds the
// daemon's admin (credits and payouts, refunds).
func LoadOrCreateToken(path string) (string, error) {
	tok, err := ReadToken(path)
	if !errors.Is(err, os.ErrNotExist) {
		return tok, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok = hex.EncodeToString(b[:])
	return tok, bank.WriteFileAtomic(path, []byte(tok+"\n"), 0o600)
}

// ReadToken reads a token file written by LoadOrCreateToken. It refuses
// one other users may read, as the daemon that wrote it does: the token
// is all the admin listener asks for.
func ReadToken(path string) (string, error) {
	f, err := bank.OpenPrivate(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("admin token %s: too short", path)
	}
	return tok, nil
}

// RequireToken is a unary interceptor that admits only calls carrying
// "authorization: Bearer <token>", compared in constant time.
func RequireToken(token string) grpc.UnaryServerInterceptor {
	want := []byte("Bearer " + token)
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := checkToken(ctx, want); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// checkToken refuses a call whose metadata does not carry want, the
// bearer token, once, compared in constant time.
func checkToken(ctx context.Context, want []byte) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 || subtle.ConstantTimeCompare([]byte(vals[0]), want) != 1 {
		return bank.NewStatus(codes.Unauthenticated, "ADMIN_TOKEN", "admin token missing or wrong").Err()
	}
	return nil
}

// tokenCreds sends the bearer token with every call.
type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// The admin listener is loopback-only, so the token may travel without TLS.
func (tokenCreds) RequireTransportSecurity() bool { return false }

// DialAdmin connects to a loopback admin listener with a token.
func DialAdmin(addr, token string) (*grpc.ClientConn, error) {
	return DialAdminTLS(addr, token, ClientConfig{})
}

// DialAdminTLS connects to an admin listener with a token. A zero c means
// plaintext to a loopback address, as DialAdmin; otherwise c says how to
// trust the listener's certificate and which client certificate to present
// (an admin listener with a client CA serves TLS and may be off loopback).
func DialAdminTLS(addr, token string, c ClientConfig) (*grpc.ClientConn, error) {
	c, err := adminClientConfig(addr, c)
	if err != nil {
		return nil, err
	}
	return Dial(addr, c, grpc.WithPerRPCCredentials(tokenCreds(token)))
}

func adminClientConfig(addr string, c ClientConfig) (ClientConfig, error) {
	if c.IsZero() {
		c.Plaintext = true
	}
	if c.Plaintext && !IsLoopback(addr) {
		return c, fmt.Errorf("admin address %s is not loopback; without TLS the admin service is served on loopback only", addr)
	}
	return c, nil
}

// AdminHTTP returns an HTTP client and the base URL ("http://ADDR" or
// "https://ADDR") for the admin listener's HTTP endpoints (/metrics,
// /v1/backup); c is as for DialAdminTLS. Requests must carry the token
// (SetToken).
func AdminHTTP(addr string, c ClientConfig) (*http.Client, string, error) {
	c, err := adminClientConfig(addr, c)
	if err != nil {
		return nil, "", err
	}
	if c.Plaintext {
		return &http.Client{Transport: &http.Transport{Proxy: nil}}, "http://" + addr, nil
	}
	cfg, err := c.TLSConfig(addr)
	if err != nil {
		return nil, "", err
	}
	return &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: cfg, ForceAttemptHTTP2: true}}, "https://" + addr, nil
}

// SetToken adds the admin bearer token to an HTTP request.
func SetToken(r *http.Request, token string) { r.Header.Set("Authorization", "Bearer "+token) }

// RequireTokenHTTP admits only HTTP requests (the admin listener's /metrics)
// carrying the same bearer token, compared in constant time.
func RequireTokenHTTP(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hasToken(r, want) {
			http.Error(w, "admin token missing or wrong", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RequireTokenGRPC admits only gRPC calls served over net/http (the admin
// listener's, by grpc.Server.ServeHTTP) carrying the bearer token in
// exactly one authorization header, compared in constant time, before
// gRPC reads any of the call's message: RequireToken, an interceptor,
// runs only once the whole message (up to MaxMessageSize) has arrived and
// been decoded, so a caller without the token could have the daemon hold
// every message it started. A call without the token is answered
// Unauthenticated at once (a trailers-only answer) and its stream reset,
// its message unread.
func RequireTokenGRPC(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header.Values("Authorization")) != 1 || !hasToken(r, want) {
			h := w.Header()
			h.Set("Content-Type", "application/grpc")
			h.Set("Grpc-Status", strconv.Itoa(int(codes.Unauthenticated)))
			h.Set("Grpc-Message", "admin token missing or wrong")
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func hasToken(r *http.Request, want []byte) bool {
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1
}
