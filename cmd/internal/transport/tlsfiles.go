package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/blindbank/blindbank/bank"
)

// ClientAuth says which calls on a TLS listener need a client certificate.
type ClientAuth int

const (
	// ClientCertNone asks for no client certificate (the default).
	ClientCertNone ClientAuth = iota
	// ClientCertMethods verifies a client certificate if one is given, and
	// refuses the methods in [Server.CertMethods] without one
	// (Unauthenticated); every other method is open to all.
	ClientCertMethods
	// ClientCertAll refuses, during the TLS handshake, every connection
	// that does not present a certificate from the client CA.
	ClientCertAll
)

// TLSClientAuth is the crypto/tls policy of a listener with this ClientAuth.
func (a ClientAuth) TLSClientAuth() tls.ClientAuthType {
	switch a {
	case ClientCertMethods:
		return tls.VerifyClientCertIfGiven
	case ClientCertAll:
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

// TLSFiles is a certificate and key, and optionally a file of client CA
// certificates, loaded from PEM files and reloaded when the files change on
// disk: every TLS handshake first looks at the files (a stat each, no read
// unless one changed), so a replaced certificate is served from the next
// connection on while connections already open carry on. A new pair that
// does not load (a certificate whose key is not written yet, a truncated
// file) is logged and ignored until a file changes again; the previous one
// stays in use. Safe for concurrent use.
type TLSFiles struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger

	mu      sync.Mutex
	seen    [3]os.FileInfo // the files as last loaded or tried
	cert    *tls.Certificate
	leaf    *x509.Certificate
	pool    *x509.CertPool
	onLoad  func(leaf *x509.Certificate)
	configs map[configKey]*tls.Config // built for the current cert and pool
}

type configKey struct {
	auth tls.ClientAuthType
	alpn string
}

// LoadTLSFiles loads a certificate and key (PEM) and, if caFile is not
// empty, the client CA certificates in it. It fails if they do not load
// now; later changes that do not load are logged to log (nil: discard).
func LoadTLSFiles(certFile, keyFile, caFile string, log *slog.Logger) (*TLSFiles, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &TLSFiles{certFile: certFile, keyFile: keyFile, caFile: caFile, log: log}
	seen := f.stat()
	if err := f.load(seen); err != nil {
		return nil, err
	}
	return f, nil
}

// OnLoad sets a function told of every certificate loaded, the current one
// first (e.g. to export its expiry as a metric).
func (f *TLSFiles) OnLoad(fn func(leaf *x509.Certificate)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onLoad = fn
	fn(f.leaf)
}

// stat looks at the files; a missing one reads as nil.
func (f *TLSFiles) stat() [3]os.FileInfo {
	var out [3]os.FileInfo
	for i, p := range []string{f.certFile, f.keyFile, f.caFile} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			out[i] = fi
		}
	}
	return out
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func sameFiles(a, b [3]os.FileInfo) bool {
	return sameFile(a[0], b[0]) && sameFile(a[1], b[1]) && sameFile(a[2], b[2])
}

// load reads the files; seen is their stat from just before. Called with
// f.mu held (or before f is shared).
func (f *TLSFiles) load(seen [3]os.FileInfo) error {
	f.seen = seen
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", f.certFile, f.keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("TLS certificate %s: %w", f.certFile, err)
		}
	}
	var pool *x509.CertPool
	if f.caFile != "" {
		if pool, err = LoadCAPool(f.caFile); err != nil {
			return err
		}
	}
	f.cert, f.leaf, f.pool, f.configs = &cert, leaf, pool, nil
	if f.onLoad != nil {
		f.onLoad(leaf)
	}
	return nil
}

// LoadCAPool reads a PEM file of one or more CA certificates.
func LoadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// refresh reloads the files if any of them changed since last looked at.
// Called with f.mu held.
func (f *TLSFiles) refresh() {
	now := f.stat()
	if sameFiles(now, f.seen) {
		return
	}
	previous := Fingerprint(f.cert.Certificate[0])
	if err := f.load(now); err != nil {
		// load changed nothing but f.seen: keep serving what worked, and
		// try again when a file changes again.
		f.log.Warn("TLS files changed but do not load; still serving the previous certificate", "err", err,
			"fingerprint", previous)
		return
	}
	f.log.Info("TLS files reloaded", "cert", f.certFile, "fingerprint", Fingerprint(f.cert.Certificate[0]),
		"previous", previous, "not_after", f.leaf.NotAfter.UTC().Format(time.RFC3339), "client_ca", f.caFile)
	if time.Now().After(f.leaf.NotAfter) {
		f.log.Warn("the reloaded TLS certificate has expired", "cert", f.certFile, "not_after", f.leaf.NotAfter)
	}
}

// Certificate returns the current certificate, reloading the files first
// if they changed.
func (f *TLSFiles) Certificate() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh()
	return f.cert
}

// Fingerprint is the hex SHA-256 of the current certificate.
func (f *TLSFiles) Fingerprint() string { return Fingerprint(f.Certificate().Certificate[0]) }

// ServerConfig is a TLS 1.3 server configuration that serves the current
// certificate (and verifies client certificates against the current client
// CAs, as auth says) on every new connection. nextProtos are the ALPN
// protocols ("h2" for gRPC is added by grpc itself).
func (f *TLSFiles) ServerConfig(auth ClientAuth, nextProtos ...string) *tls.Config {
	key := configKey{auth: auth.TLSClientAuth(), alpn: fmt.Sprint(nextProtos)}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.refresh()
			if c := f.configs[key]; c != nil {
				return c, nil
			}
			if auth != ClientCertNone && f.pool == nil {
				return nil, errors.New("transport: client certificates required but no client CA loaded")
			}
			c := &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{*f.cert},
				NextProtos:   nextProtos,
				ClientAuth:   key.auth,
			}
			if auth != ClientCertNone {
				c.ClientCAs = f.pool
			}
			if f.configs == nil {
				f.configs = map[configKey]*tls.Config{}
			}
			f.configs[key] = c
			return c, nil
		},
	}
}

// HasClientCert reports whether an incoming call's connection presented a
// client certificate that verified against the listener's client CAs.
func HasClientCert(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(ti.State.VerifiedChains) > 0
}

var errNoClientCert = bank.NewStatus(codes.Unauthenticated, "CLIENT_CERTIFICATE", "this call needs a TLS client certificate from the CA this server trusts").Err()

// requireClientCert refuses the given methods to callers without a
// verified client certificate.
func requireClientCert(methods map[string]bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if methods[info.FullMethod] && !HasClientCert(ctx) {
			return nil, errNoClientCert
		}
		return handler(ctx, req)
	}
}
