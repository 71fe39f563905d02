package merchantdcmd

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/bank/pebblestore/formattest"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// TestStoreTooNew: a merchant rolled back to a build that knows only an
// older format than its store's does not start, nor do the offline keyset
// commands read or drop anything: exit 1, with a message that names both
// formats and says to use a newer build; the record stays as it was.
func TestStoreTooNew(t *testing.T) {
	ctx := context.Background()
	b, conn := loopbackBank(t, 0)
	dir, acct := shopDir(t, b)
	m, err := merchant.Open(ctx, merchant.Config{Dir: dir, Account: acct, Bank: pb.NewBankClient(conn)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, merchant.StoreDir)
	known, newer := formattest.MarkNewer(t, path, []byte("m/merchant-format"))

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
	if v := formattest.Record(t, path, []byte("m/merchant-format")); !bytes.Equal(v, newer) {
		t.Fatalf("the format record after the commands: %x, want %x", v, newer)
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
