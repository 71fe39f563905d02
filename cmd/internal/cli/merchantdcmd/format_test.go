package merchantdcmd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// TestStoreTooNew: a merchant rolled back to a build older than the one
// that last wrote its store does not start, nor do the offline keyset
// commands read or drop anything: exit 1, with a message that names both
// formats and says to use a newer build; the record stays as it was.
func TestStoreTooNew(t *testing.T) {
	ctx := context.Background()
	b, conn := loopbackBank(t, 0)
	dir := t.TempDir()
	pub, err := merchant.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := b.Bank.OpenAccount(ctx, "shop", pub, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := merchant.Open(ctx, merchant.Config{Dir: dir, Account: acct, Bank: pb.NewBankClient(conn)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// The format this build records, and one past it, as a newer build
	// would write.
	path := filepath.Join(dir, merchant.StoreDir)
	db, err := pebblestore.OpenDB(path, pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, found, err := pebblestore.Get(db, []byte("m/format"))
	if err != nil || !found || len(v) != 4 {
		db.Close()
		t.Fatalf("the format record of a new merchant store: %x, %v, %v", v, found, err)
	}
	known := binary.BigEndian.Uint32(v)
	newer := binary.BigEndian.AppendUint32(nil, known+1)
	if err := errors.Join(db.Set([]byte("m/format"), newer, pebble.Sync), db.Close()); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{
		{"serve", "--data", dir, "--bank", b.Addr, "--bank-plaintext", "--account", strconv.FormatUint(acct, 10),
			"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--plaintext"},
		{"keyset", "--data", dir},
		{"keyset", "--data", dir, "--drop", "--yes"},
	} {
		// A serve that started anyway stops once it says it serves,
		// rather than serve on.
		rctx, cancel := context.WithCancel(ctx)
		out := &stopWriter{stop: cancel}
		var errb bytes.Buffer
		code := cli.Run(rctx, Command(), &cli.Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: &errb}, args)
		cancel()
		if code != cli.ExitError || !strings.HasPrefix(errb.String(), "merchantd: merchant: open "+path+": store written by a newer build") ||
			!strings.Contains(errb.String(), fmt.Sprintf("format %d, this build reads formats up to %d; use a newer build", known+1, known)) {
			t.Errorf("merchantd %s on a newer store: exit %d: %s%s", args[0], code, out.String(), errb.String())
		}
	}
	db, err = pebblestore.OpenDB(path, pebblestore.DBOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _, err := pebblestore.Get(db, []byte("m/format")); err != nil || !bytes.Equal(v, newer) {
		t.Fatalf("the format record after the commands: %x, %v; want %x", v, err, newer)
	}
}

// stopWriter is a command's output that calls stop at its first write.
type stopWriter struct {
	bytes.Buffer
	stop func()
}

func (w *stopWriter) Write(p []byte) (int, error) {
	w.stop()
	return w.Buffer.Write(p)
}
