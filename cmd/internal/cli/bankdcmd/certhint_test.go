package bankdcmd

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// TestCertFailureHints: "bankd admin" meeting an admin listener whose TLS
// certificate does not verify against --ca says so and names --ca, as
// merchantd's admin commands do, rather than calling the bank
// unreachable: over gRPC (balance) and over HTTP (backup), in one line
// that states the cause once, names only the flags an admin connection
// has (no pin) and gives the verifier's reason once. The listener
// is a TLS server with a certificate of its own; the handshake fails on
// the client's side before anything else is said.
func TestCertFailureHints(t *testing.T) {
	srvDir := t.TempDir()
	cert, _, _, err := transport.LoadOrCreateCert(srvDir)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c) // the handshake runs here, and fails
			}()
		}
	}()
	other := t.TempDir() // a certificate that is not the listener's
	if _, _, _, err := transport.LoadOrCreateCert(other); err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(other, transport.CertFile)
	tok := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"admin", "--admin", lis.Addr().String(), "--token-file", tok, "--ca", wrongCA}
	const (
		cause = "bankd: the bank admin listener's TLS certificate did not verify: x509: certificate signed by unknown authority"
		check = "; check --ca (with --data and no --ca: the certificate file named in DIR/addresses.json)\n"
	)
	for _, sub := range [][]string{
		{"balance", "--account", "1000"},
		{"backup", "--to", filepath.Join(t.TempDir(), "b")},
	} {
		code, _, errs := bankd(t, append(flags, sub...)...)
		if code != 1 || !strings.HasPrefix(errs, cause) || !strings.HasSuffix(errs, check) ||
			strings.Count(errs, "\n") != 1 || strings.Count(errs, "did not verify") != 1 || strings.Contains(errs, "failed to verify") || strings.Count(errs, "unknown authority") != 1 ||
			strings.Contains(errs, "unreachable") || strings.Contains(errs, "pin") {
			t.Errorf("admin %s with a wrong --ca: exit %d: %s", sub[0], code, errs)
		}
	}
}
