package walletcmd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
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
	// The format this build records, and one past it, as a newer build
	// would write.
	db, err := pebblestore.OpenDB(dir, pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, found, err := pebblestore.Get(db, []byte("m/format"))
	if err != nil || !found || len(v) != 4 {
		db.Close()
		t.Fatalf("the format record of a new wallet: %x, %v, %v", v, found, err)
	}
	known := binary.BigEndian.Uint32(v)
	newer := binary.BigEndian.AppendUint32(nil, known+1)
	if err := errors.Join(db.Set([]byte("m/format"), newer, pebble.Sync), db.Close()); err != nil {
		t.Fatal(err)
	}

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
	db, err = pebblestore.OpenDB(dir, pebblestore.DBOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _, err := pebblestore.Get(db, []byte("m/format")); err != nil || string(v) != string(newer) {
		t.Fatalf("the format record after the commands: %x, %v; want %x", v, err, newer)
	}
}
