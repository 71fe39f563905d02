package node

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// TLSOptions are a daemon's optional TLS settings. The zero value is the
// default: the self-signed DIR/tls.crt and DIR/tls.key (made if missing), no
// client certificates, and a plaintext admin listener on loopback behind the
// token.
//
// The certificate, its key and the client CA files are reloaded when they
// change on disk (each new connection looks at them first), so a renewed
// certificate or a new client CA is served without a restart; connections
// already open keep the certificate they started with.
type TLSOptions struct {
	// CertFile and KeyFile (PEM, both or neither) are the certificate of
	// both listeners; "" means DIR/tls.crt and DIR/tls.key, made
	// self-signed if missing.
	CertFile, KeyFile string
	// ClientCAFile (PEM, one or more CA certificates) signs the client
	// certificates the public listener accepts; "" asks for none.
	ClientCAFile string
	// ClientAuth says which public calls need a client certificate from
	// ClientCAFile. ClientCertMethods (the bank only): the merchant calls
	// (MerchantMethods) need one and every other call is open, so
	// wallets need none; ClientCertAll: every connection. ClientCertNone
	// with a ClientCAFile means the daemon's default: ClientCertMethods for
	// the bank, ClientCertAll for a merchant.
	ClientAuth transport.ClientAuth
	// AdminClientCAFile, if set, makes the admin listener serve TLS (with
	// the same certificate) and refuse, during the handshake, any client
	// without a certificate signed by a CA in this file; the token is
	// still required. Such an admin listener may listen beyond loopback.
	AdminClientCAFile string
}

// MerchantMethods are the bank's calls that only merchants make: with
// ClientCertMethods, they need a client certificate. They are the calls that
// move money into or out of a merchant's account: Deposit and SubmitCheck
// credit it, Refund debits it. The other calls stay open because wallets
// make them too: DepositStatus (a payer whose payment went unanswered),
// RefundReceipts (a payer collecting refunds), CheckStatus (a customer
// recovering a check's key) and GetStatement (any account holder; each
// request is signed by the account's key).
var MerchantMethods = map[string]bool{
	"/blindbank.v1.Bank/Deposit":     true,
	"/blindbank.v1.Bank/SubmitCheck": true,
	"/blindbank.v1.Bank/Refund":      true,
}

// listenerTLS is what a daemon's listeners serve.
type listenerTLS struct {
	public, admin *transport.TLSFiles // nil: plaintext
	publicAuth    transport.ClientAuth
	certFile      string
}

// publicAuth resolves the public listener's client authentication;
// certMethods are the daemon's calls that ClientCertMethods protects (nil if
// that mode does not apply).
func (o TLSOptions) publicAuth(plaintext bool, certMethods map[string]bool) (transport.ClientAuth, error) {
	auth := o.ClientAuth
	switch {
	case o.ClientCAFile == "" && auth != transport.ClientCertNone:
		return 0, errors.New("client certificates are required but no client CA file is given")
	case o.ClientCAFile == "":
		return transport.ClientCertNone, nil
	case plaintext:
		return 0, errors.New("client certificates need TLS: a client CA file cannot be used with plaintext")
	case auth == transport.ClientCertNone && certMethods != nil:
		auth = transport.ClientCertMethods
	case auth == transport.ClientCertNone:
		auth = transport.ClientCertAll
	case auth == transport.ClientCertMethods && certMethods == nil:
		return 0, errors.New("client certificates for merchant calls only apply to the bank")
	}
	return auth, nil
}

// loadTLS loads (or, for the default files, creates) the certificate and
// the client CAs of a daemon's listeners.
func loadTLS(dir, listen, adminListen string, plaintext bool, o TLSOptions, certMethods map[string]bool, log *slog.Logger) (*listenerTLS, error) {
	auth, err := o.publicAuth(plaintext, certMethods)
	if err != nil {
		return nil, err
	}
	out := &listenerTLS{publicAuth: auth}
	if plaintext && o.AdminClientCAFile == "" {
		return out, nil
	}
	certFile, keyFile := o.CertFile, o.KeyFile
	switch {
	case certFile == "" && keyFile == "":
		var hosts []string
		for _, a := range []string{listen, adminListen} {
			if h, _, err := net.SplitHostPort(a); err == nil {
				hosts = append(hosts, h)
			}
		}
		if _, _, _, err := transport.LoadOrCreateCert(dir, hosts...); err != nil {
			return nil, err
		}
		certFile, keyFile = filepath.Join(dir, transport.CertFile), filepath.Join(dir, transport.KeyFile)
	case certFile == "" || keyFile == "":
		return nil, errors.New("give both the TLS certificate file and its key file, or neither")
	}
	out.certFile = certFile
	if !plaintext {
		if out.public, err = transport.LoadTLSFiles(certFile, keyFile, o.ClientCAFile, log.With("listener", "public")); err != nil {
			return nil, err
		}
	}
	if o.AdminClientCAFile != "" {
		if out.admin, err = transport.LoadTLSFiles(certFile, keyFile, o.AdminClientCAFile, log.With("listener", "admin")); err != nil {
			return nil, fmt.Errorf("admin listener: %w", err)
		}
	}
	return out, nil
}

// instrument exports each listener's certificate expiry.
func (l *listenerTLS) instrument(reg prometheus.Registerer) error {
	expiry := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "blindbank_tls_cert_expiry_timestamp_seconds",
		Help: "When the certificate a listener serves expires (Unix time); it follows reloads.",
	}, []string{"listener"})
	if err := reg.Register(expiry); err != nil {
		return err
	}
	for name, f := range map[string]*transport.TLSFiles{"public": l.public, "admin": l.admin} {
		if f == nil {
			continue
		}
		g := expiry.WithLabelValues(name)
		f.OnLoad(func(leaf *x509.Certificate) { g.Set(float64(leaf.NotAfter.Unix())) })
	}
	return nil
}

// checkAddrs refuses an admin listener off loopback unless it requires
// client certificates, and plaintext off loopback.
func checkAddrs(listen, adminListen string, plaintext bool, o TLSOptions) error {
	if !transport.IsLoopback(adminListen) && o.AdminClientCAFile == "" {
		return fmt.Errorf("admin listener %s must be a loopback address (or require client certificates)", adminListen)
	}
	if plaintext && !transport.IsLoopback(listen) {
		return fmt.Errorf("plaintext is allowed only on a loopback address, not %s", listen)
	}
	return nil
}
