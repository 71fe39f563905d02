package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/merchant"
)

// TestSecretFilesOpenToOthers: a merchant key (it signs payment requests
// and refunds) or an admin token (merchantd's admin refunds, bankd's
// credits and payouts) that other users may read, e.g. restored from a
// backup with the default mode, stops the daemon at start with an error
// that names the file and the remedy, as bankd's key file does; and
// merchantd makes its directory, made with mkdir under umask 022, private.
func TestSecretFilesOpenToOthers(t *testing.T) {
	e := startEnv(t)
	dir := filepath.Join(t.TempDir(), "shop")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	acct := e.openAccount("shop", pub, true)
	start := func() (*Merchant, error) {
		return StartMerchant(context.Background(), MerchantConfig{
			Dir: dir, BankAddr: e.bank.Addr, BankTLS: transport.ClientConfig{CAFile: e.bank.CertFile},
			Account: acct, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Now: e.clock.Now,
		})
	}
	startRefused := func() error { // closes a merchant that should not have started
		m, err := start()
		if err == nil {
			m.Close()
		}
		return err
	}
	refused := func(what, path string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("%s with %s open to others: %v; want a refusal naming it and chmod 600", what, path, err)
		}
	}
	chmod := func(path string, mode os.FileMode) {
		t.Helper()
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}

	keyPath := filepath.Join(dir, merchant.KeyFile)
	chmod(keyPath, 0o644)
	err = startRefused()
	refused("merchantd", keyPath, err)
	chmod(keyPath, 0o600)

	m, err := start() // writes the token
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("merchantd's directory: %v, %v; want mode 0700", fi.Mode().Perm(), err)
	}
	tok := filepath.Join(dir, transport.TokenFile)
	chmod(tok, 0o640)
	err = startRefused()
	refused("merchantd", tok, err)

	if err := e.bank.Close(); err != nil {
		t.Fatal(err)
	}
	chmod(e.bank.TokenFile, 0o644)
	b, err := StartBank(BankConfig{Dir: e.dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Now: e.clock.Now})
	if err == nil {
		b.Close()
	}
	refused("bankd", e.bank.TokenFile, err)
	chmod(e.bank.TokenFile, 0o600)
	e.startBank() // for the audit at cleanup
}
