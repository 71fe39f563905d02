package merchantdcmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
)

// TestCertFailureHints: where merchantd meets a TLS certificate that does
// not verify against the CA it was given, it says so and names where the
// CA came from, not "unreachable": its own link to the bank, past the
// start's account check; an admin listener; the public listener
// "products --data" asks.
func TestCertFailureHints(t *testing.T) {
	b, err := node.StartBank(node.BankConfig{ // over TLS
		Dir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Keys: bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{ecash.MustParseAmount("EUR:1.00")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	other := t.TempDir() // a certificate that is not the bank's
	if _, _, _, err := transport.LoadOrCreateCert(other); err != nil {
		t.Fatal(err)
	}
	wrongCA := filepath.Join(other, transport.CertFile)
	dir, acct := shopDir(t, b)
	const notVerified = "TLS certificate did not verify: x509: certificate signed by unknown authority"

	// The link to the bank: the account check only warns, the key set
	// fetch fails.
	code, _, errs := runMerchantd("serve", "--data", dir, "--bank", b.Addr, "--bank-ca", wrongCA, "--account", strconv.FormatUint(acct, 10),
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--plaintext")
	last := errs[strings.LastIndex(strings.TrimRight(errs, "\n"), "\n")+1:]
	if code != 1 || !strings.Contains(last, "fetching the bank's keys: the bank's "+notVerified) || !strings.HasSuffix(last, "; check --bank-ca or --bank-pin\n") {
		t.Errorf("serve with a wrong --bank-ca: exit %d, last line %q", code, last)
	}

	// An admin listener over TLS (any TLS listener fails the same way).
	tok := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runMerchantd("order", "--admin", b.Addr, "--token-file", tok, "--ca", wrongCA, "status", "ord-1")
	if code != 1 || !strings.HasPrefix(errs, "merchantd: the merchant admin listener's "+notVerified) ||
		!strings.HasSuffix(errs, "; check --ca (with --data and no --ca: the certificate file named in DIR/addresses.json)\n") || strings.Contains(errs, "pin") {
		t.Errorf("order status with a wrong --ca: exit %d: %s", code, errs)
	}

	// products --data: the public listener and certificate addresses.json names.
	info := cli.ServeInfo{Addr: b.Addr, TLS: true, CertFile: wrongCA}
	raw, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	shop := t.TempDir()
	if err := os.WriteFile(filepath.Join(shop, cli.AddressesFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runMerchantd("products", "--data", shop)
	if code != 1 || !strings.Contains(errs, "the merchant's "+notVerified) || !strings.Contains(errs, "; check its certificate file "+wrongCA) {
		t.Errorf("products --data with a certificate that does not verify: exit %d: %s", code, errs)
	}
}
