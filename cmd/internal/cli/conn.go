package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// TLSFlags are the three ways a client trusts a server: --ca FILE,
// --pin FINGERPRINT or --plaintext (loopback only), optionally prefixed
// ("--bank-ca", "--merchant-pin"), and, if ClientCert is asked for, the
// client certificate to present to a server that requires one
// (--client-cert, --client-key).
type TLSFlags struct {
	Prefix         string // "" or e.g. "bank-"
	What           string // "bank", "merchant": for help and errors
	WithClientCert bool   // register --client-cert and --client-key too
	CA             string
	Pin            string
	Plaintext      bool
	ClientCert     string
	ClientKey      string
}

// Register adds the flags to fs.
func (t *TLSFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&t.CA, t.Prefix+"ca", "", "trust the "+t.What+"'s TLS certificate (or its CA) in PEM `FILE`, e.g. the "+t.What+"'s DATA/tls.crt")
	fs.StringVar(&t.Pin, t.Prefix+"pin", "", "trust only the "+t.What+" certificate whose SHA-256 `FINGERPRINT` (hex, as printed by serve) matches")
	fs.BoolVar(&t.Plaintext, t.Prefix+"plaintext", false, "talk to the "+t.What+" without TLS (loopback addresses only)")
	if !t.WithClientCert {
		return
	}
	fs.StringVar(&t.ClientCert, t.Prefix+"client-cert", "", "present this client certificate, PEM `FILE`, to a "+t.What+" that requires one (with --"+t.Prefix+"client-key); re-read when it changes")
	fs.StringVar(&t.ClientKey, t.Prefix+"client-key", "", "the client certificate's private key, PEM `FILE`")
}

// Given reports whether any of the flags was set.
func (t *TLSFlags) Given() bool { return t.CA != "" || t.Pin != "" || t.Plaintext }

// Config checks the flags (exactly one way of trust) for dialing addr.
func (t *TLSFlags) Config(addr string) (transport.ClientConfig, error) {
	n := 0
	for _, set := range []bool{t.CA != "", t.Pin != "", t.Plaintext} {
		if set {
			n++
		}
	}
	p := "--" + t.Prefix
	switch {
	case n == 0:
		return transport.ClientConfig{}, Usagef("say how to trust the %s: %sca FILE, %spin FINGERPRINT or %splaintext", t.What, p, p, p)
	case n > 1:
		return transport.ClientConfig{}, Usagef("give only one of %sca, %spin and %splaintext", p, p, p)
	}
	cfg := transport.ClientConfig{CAFile: t.CA, Pin: t.Pin, Plaintext: t.Plaintext, CertFile: t.ClientCert, KeyFile: t.ClientKey}
	if (t.ClientCert == "") != (t.ClientKey == "") {
		return cfg, Usagef("give %sclient-cert and %sclient-key together", p, p)
	}
	if t.ClientCert != "" && t.Plaintext {
		return cfg, Usagef("%sclient-cert needs TLS, not %splaintext", p, p)
	}
	switch {
	case t.Pin != "":
		pin, err := NormalizePin(t.Pin)
		if err != nil {
			return cfg, fmt.Errorf("bad %spin: %w", p, err)
		}
		cfg.Pin = pin
	case t.CA != "":
		b, err := os.ReadFile(t.CA)
		if err != nil {
			return cfg, fmt.Errorf("%sca: %w", p, err)
		}
		if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
			return cfg, fmt.Errorf("%sca %s holds no PEM certificate", p, t.CA)
		}
	case t.Plaintext:
		if !transport.IsLoopback(addr) {
			return cfg, fmt.Errorf("%splaintext is allowed only to a loopback address, not %s", p, addr)
		}
	}
	return cfg, nil
}

// CertHint returns t's peer-specific CertHintOption: a failed certificate
// check names --ca and --pin with t's prefix.
func (t *TLSFlags) CertHint() grpc.DialOption {
	p := "--" + t.Prefix
	return CertHintOption(t.What, p+"ca or "+p+"pin")
}

// CertHintOption is a dial option that explains a call failing because the
// peer's TLS certificate did not verify against the trust given: the peer
// was reached, so the "unreachable" gRPC's Unavailable would be shown as
// misleads. The error keeps the call's gRPC status (GRPCStatus), so code
// that acts on the status code (retries, settling a payment) sees the same
// error as before; only its text changes, naming what (the peer,
// "merchant") and flags (where its trust came from, "--merchant-ca or
// --merchant-pin").
func CertHintOption(what, flags string) grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var p peer.Peer
		err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
		if p.Addr != nil {
			// The call reached the peer over a connection whose
			// certificate verified: its status is the peer's own, whose
			// text may quote any x509 error.
			return err
		}
		return CertHint(err, what, flags)
	})
}

// CertHint is err explained as CertHintOption explains it, if it is a
// certificate failure (IsCertFailure); else err. For a connection whose
// dial options the caller does not choose (transport.DialAdminTLS).
func CertHint(err error, what, flags string) error {
	if err == nil || !IsCertFailure(err) {
		return err
	}
	st, _ := status.FromError(err)
	return &certError{what: what, flags: flags, reason: certReason(err), st: st}
}

// certError is a call refused because the peer's certificate did not
// verify; it carries the call's status. Its text says so once, names the
// flags to check and the verifier's reason (certReason), and not the
// status's text, which repeats the cause and whose code cli.Message would
// show as "unreachable".
type certError struct {
	what, flags, reason string
	st                  *status.Status
}

func (e *certError) Error() string {
	return fmt.Sprintf("the %s's TLS certificate did not verify: %s; check %s", e.what, e.reason, e.flags)
}

func (e *certError) GRPCStatus() *status.Status { return e.st }

// certReason is why a certificate failure (IsCertFailure) failed: the x509
// error or the pin mismatch, without what wraps it; or, when that says
// nothing (a text cut after its prefixes), what to look at, so that the
// hint never ends its "did not verify:" with nothing.
func certReason(err error) string {
	if r := strings.TrimSpace(statedCertReason(err)); r != "" {
		return r
	}
	return "no reason given (an unknown authority, another host name, an expired certificate, or another key than the one pinned)"
}

// statedCertReason is the reason err states, perhaps empty. gRPC flattens
// the TLS error into the status's text, quoted ("connection error: desc =
// \"transport: authentication handshake failed: tls: failed to verify
// certificate: x509: ...\""), so that text is unquoted and cut.
func statedCertReason(err error) string {
	if cause := x509Cause(err); cause != nil && strings.TrimSpace(cause.Error()) != "" {
		return cause.Error()
	}
	msg := err.Error()
	if i := strings.Index(msg, `desc = "`); i >= 0 {
		if q, qerr := strconv.QuotedPrefix(msg[i+len("desc = "):]); qerr == nil {
			if u, uerr := strconv.Unquote(q); uerr == nil {
				msg = u
			}
		}
	}
	for _, p := range []string{"tls: failed to verify certificate: ", "authentication handshake failed: "} {
		if i := strings.LastIndex(msg, p); i >= 0 {
			return msg[i+len(p):]
		}
	}
	return msg
}

// x509Cause is the certificate verifier's own error in err's chain (an
// unknown authority, a wrong host name, an invalid certificate), or nil.
func x509Cause(err error) error {
	var verifies *tls.CertificateVerificationError
	if errors.As(err, &verifies) && verifies.Err != nil {
		return verifies.Err
	}
	var (
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &unknown):
		return unknown
	case errors.As(err, &host):
		return host
	case errors.As(err, &invalid):
		return invalid
	}
	return nil
}

// IsCertFailure reports whether err is a connection refused because the
// server's certificate did not verify: an x509 error (unknown authority,
// wrong host name, expired) or a pin that does not match. gRPC does not keep
// the TLS error in the chain of a call's error: it flattens it into the
// Unavailable status's text ("connection error: desc = \"transport:
// authentication handshake failed: tls: failed to verify certificate:
// x509: ..."), so besides the error types this matches that text. It does
// not match "authentication handshake failed" alone, which other handshake
// failures (no common protocol version, a client certificate refused) share.
func IsCertFailure(err error) bool {
	var verifies *tls.CertificateVerificationError
	if x509Cause(err) != nil || errors.As(err, &verifies) {
		return true
	}
	if status.Code(err) != codes.Unavailable {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "tls: failed to verify certificate") || strings.Contains(msg, "x509: ") ||
		strings.Contains(msg, "does not match the pin") // transport's pin check
}

// NormalizePin checks a SHA-256 fingerprint (hex, colons allowed) and
// returns it as lower-case hex.
func NormalizePin(s string) (string, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits, as printed by serve)", s)
	}
	return h, nil
}

// AddressesFile is written by "bankd serve" and "merchantd serve" into their
// data directory once they listen, and removed when they stop: the actual
// addresses (useful with ":0" ports) and where the certificate and token are.
const AddressesFile = "addresses.json"

// ServeInfo is what a daemon prints on start and writes to AddressesFile.
type ServeInfo struct {
	Addr        string `json:"addr"`
	AdminAddr   string `json:"admin_addr"`
	TLS         bool   `json:"tls"`
	CertFile    string `json:"cert_file,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	TokenFile   string `json:"token_file"`
	PID         int    `json:"pid"`
	ClientAuth  string `json:"client_auth,omitempty"` // which public calls need a client certificate
	AdminTLS    bool   `json:"admin_tls,omitempty"`   // the admin listener serves TLS and requires client certificates
	Signer      string `json:"signer,omitempty"`      // bankd: the signer process that signs its denominations, unix:///PATH
}

// maxAddressesFile bounds addresses.json, a few hundred bytes as a daemon
// writes it.
const maxAddressesFile = 64 << 10

// ReadAddresses reads DIR/addresses.json.
func ReadAddresses(dir string) (*ServeInfo, error) {
	b, err := ReadFileLimited(filepath.Join(dir, AddressesFile), maxAddressesFile)
	if err != nil {
		return nil, err
	}
	var info ServeInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, AddressesFile), err)
	}
	return &info, nil
}

// AdminFlags locate a daemon's admin listener and its token: --admin ADDR,
// --token-file FILE, --data DIR. With --data, the address defaults to the
// one in DIR/addresses.json (if the daemon is running) and the token to
// DIR/admin.token. An admin listener that requires client certificates is
// reached over TLS with --client-cert and --client-key, trusting --ca
// (default with --data: the daemon's certificate file).
type AdminFlags struct {
	What        string // "bank" or "merchant"
	DefaultAddr string
	Addr        string
	TokenFile   string
	DataDir     string
	CA          string
	ClientCert  string
	ClientKey   string
}

// Register adds the flags to fs.
func (a *AdminFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&a.Addr, "admin", a.DefaultAddr, "the "+a.What+"'s admin `ADDR` (with --data and no --admin: the address the running "+a.What+" wrote to DIR/"+AddressesFile+")")
	fs.StringVar(&a.TokenFile, "token-file", "", "admin token `FILE` (default DIR/admin.token with --data)")
	fs.StringVar(&a.DataDir, "data", "", "the "+a.What+"'s data `DIR`, to find its admin token and address")
	fs.StringVar(&a.CA, "ca", "", "trust the admin listener's TLS certificate (or its CA) in PEM `FILE` (default with --data, if the listener serves TLS: the "+a.What+"'s certificate file)")
	fs.StringVar(&a.ClientCert, "client-cert", "", "client certificate, PEM `FILE`, for an admin listener that requires one (with --client-key)")
	fs.StringVar(&a.ClientKey, "client-key", "", "the client certificate's private key, PEM `FILE`")
}

// AdminTarget is where and how to reach an admin listener.
type AdminTarget struct {
	Addr  string
	Token string
	TLS   transport.ClientConfig // zero: plaintext on loopback
}

// Target resolves the flags: the address, the token and the TLS settings.
func (a *AdminFlags) Target(inv *Invocation) (AdminTarget, error) {
	addr := a.Addr
	var info *ServeInfo
	if a.DataDir != "" {
		i, err := ReadAddresses(a.DataDir)
		switch {
		case err == nil:
			info = i
		case !errors.Is(err, os.ErrNotExist):
			return AdminTarget{}, err
		}
	}
	if !inv.IsSet("admin") && info != nil && info.AdminAddr != "" {
		addr = info.AdminAddr
	}
	if err := CheckAddr("admin", addr); err != nil {
		return AdminTarget{}, err
	}
	var tlsc transport.ClientConfig
	if (a.ClientCert == "") != (a.ClientKey == "") {
		return AdminTarget{}, Usagef("give --client-cert and --client-key together")
	}
	if a.ClientCert != "" || a.CA != "" {
		tlsc = transport.ClientConfig{CAFile: a.CA, CertFile: a.ClientCert, KeyFile: a.ClientKey}
		if tlsc.CAFile == "" && info != nil && info.CertFile != "" {
			tlsc.CAFile = info.CertFile
		}
		if tlsc.CAFile == "" {
			return AdminTarget{}, Usagef("give --ca FILE: how to trust the %s's admin certificate", a.What)
		}
	} else if info != nil && info.AdminTLS {
		return AdminTarget{}, Usagef("the %s's admin listener requires a client certificate: give --client-cert FILE and --client-key FILE", a.What)
	}
	tokenFile := a.TokenFile
	if tokenFile == "" {
		if a.DataDir == "" {
			return AdminTarget{}, Usagef("give --token-file FILE or --data DIR (the %s's data directory, holding %s)", a.What, transport.TokenFile)
		}
		tokenFile = filepath.Join(a.DataDir, transport.TokenFile)
	}
	tok, err := transport.ReadToken(tokenFile)
	if err != nil {
		return AdminTarget{}, err
	}
	if tok == "" {
		return AdminTarget{}, fmt.Errorf("admin token file %s is empty", tokenFile)
	}
	return AdminTarget{Addr: addr, Token: tok, TLS: tlsc}, nil
}

// Explain explains err, a call's on a connection from Dial: the admin
// listener's certificate did not verify against --ca (CertHint), or
// nothing listens at the address, most often because the daemon is not
// running (gRPC says only "connection refused").
func (a *AdminFlags) Explain(err error) error {
	if notListening(err) {
		return fmt.Errorf("%w (nothing listens at the %s's admin address: is %sd serve running? With --data, the address is the one it wrote to DIR/%s when it started)", err, a.What, a.What, AddressesFile)
	}
	return CertHint(err, a.What+" admin listener", "--ca (with --data and no --ca: the certificate file named in DIR/"+AddressesFile+")")
}

// notListening reports whether err is, or wraps, gRPC's own failure to
// connect, the address refusing the connection: a status the peer sent
// is never one, since a peer that answers was connected to.
func notListening(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return false
	}
	st := se.GRPCStatus()
	return st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), "connection error:") &&
		strings.Contains(st.Message(), "connection refused")
}

// Dial connects to the admin listener with the token.
func (a *AdminFlags) Dial(inv *Invocation) (*grpc.ClientConn, string, error) {
	t, err := a.Target(inv)
	if err != nil {
		return nil, "", err
	}
	conn, err := transport.DialAdminTLS(t.Addr, t.Token, t.TLS)
	if err != nil {
		return nil, "", err
	}
	return conn, t.Addr, nil
}
