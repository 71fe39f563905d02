package walletcmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/bank/pebblestore/formattest"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/wallet"
)

// TestStoreTooNew: a wallet whose store a newer build marked with its
// format is refused by the commands that open it, and by restore
// --from-wallet reading it, with exit 1 and a message that names both
// formats and says to use a newer build; the record stays as it was and
// restore creates nothing.
func TestStoreTooNew(t *testing.T) {
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"bank": "127.0.0.1:1", "plaintext": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	known, newer := formattest.MarkNewer(t, dir, []byte("m/wallet-format"))

	restored := filepath.Join(t.TempDir(), "r")
	for _, args := range [][]string{
		{"--wallet", dir, "info"},
		{"--wallet", dir, "balance"},
		{"--wallet", restored, "restore", "--from-wallet", dir, "--bank", "127.0.0.1:1", "--plaintext"},
	} {
		r := runWallet(t, cli.Env{}, args...)
		if r.code != cli.ExitError || !strings.HasPrefix(r.stderr, "wallet: open "+dir+": store written by a newer build") ||
			!strings.Contains(r.stderr, fmt.Sprintf("format %d, this build reads formats up to %d; use a newer build", known+1, known)) {
			t.Errorf("wallet %s on a newer store: %+v", strings.Join(args, " "), r)
		}
	}
	if _, err := os.Stat(restored); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restore from a newer store made %s: %v", restored, err)
	}
	if v := formattest.Record(t, dir, []byte("m/wallet-format")); !bytes.Equal(v, newer) {
		t.Fatalf("the format record after the commands: %x, want %x", v, newer)
	}
}
