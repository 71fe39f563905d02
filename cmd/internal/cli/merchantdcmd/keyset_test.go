package merchantdcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
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

// TestCorruptKeySetWayOut: a merchant whose key set held no longer decodes
// does not start, and the error names "merchantd keyset"; keyset shows the
// set as not decoding, drops it only when the operator agrees, and the
// merchant then starts with the bank's.
func TestCorruptKeySetWayOut(t *testing.T) {
	ctx := context.Background()
	b, conn := loopbackBank(t, 0)
	dir, acct := shopDir(t, b)
	open := func() error {
		m, err := merchant.Open(ctx, merchant.Config{Dir: dir, Account: acct, Bank: pb.NewBankClient(conn)})
		if err == nil {
			m.Close()
		}
		return err
	}
	if err := open(); err != nil {
		t.Fatal(err)
	}
	db, err := pebblestore.OpenDB(filepath.Join(dir, merchant.StoreDir), pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("m/keyset"), []byte("not a key set"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()

	run := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		env := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}
		return cli.Run(ctx, Command(), env, args), out.String(), errb.String()
	}
	code, _, errs := run("", "serve", "--data", dir, "--bank", b.Addr, "--bank-plaintext", "--account", strconv.FormatUint(acct, 10),
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--plaintext")
	if code != 1 || !strings.Contains(errs, "corrupt key set held") || !strings.Contains(errs, "merchantd keyset --data "+dir+" --drop") {
		t.Fatalf("serve with a corrupt key set held: exit %d: %s", code, errs)
	}
	if code, out, errs := run("", "keyset", "--data", dir); code != 0 || !strings.Contains(out, "DOES NOT DECODE") {
		t.Fatalf("keyset: exit %d: %s%s", code, out, errs)
	}
	if code, _, errs := run("no\n", "keyset", "--data", dir, "--drop"); code != 1 || !strings.Contains(errs, "nothing dropped") {
		t.Fatalf("keyset --drop, not agreed: exit %d: %s", code, errs)
	}
	if err := open(); err == nil {
		t.Fatal("the key set was dropped without the operator's agreement")
	}
	code, out, errs := run("", "keyset", "--data", dir, "--drop", "--yes", "--json")
	var got struct {
		Dropped bool   `json:"dropped"`
		Error   string `json:"error"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || !got.Dropped || got.Error == "" {
		t.Fatalf("keyset --drop --yes: exit %d: %s%s", code, out, errs)
	}
	if err := open(); err != nil {
		t.Fatalf("the merchant does not start after the drop: %v", err)
	}
	if code, out, _ := run("", "keyset", "--data", dir, "--json"); code != 0 || !strings.Contains(out, `"held": true`) || strings.Contains(out, `"error"`) {
		t.Fatalf("keyset after the restart: exit %d: %s", code, out)
	}
}

// changingStdin answers the prompt after running change, as if the store
// changed while the operator read the set shown (a merchant started and
// stopped, taking another set).
type changingStdin struct {
	change func()
	r      io.Reader
}

func (c *changingStdin) Read(p []byte) (int, error) {
	if c.change != nil {
		c.change()
		c.change = nil
	}
	return c.r.Read(p)
}

// TestKeysetDropWhatWasShown: keyset --drop deletes the set the operator
// agreed to drop, not another one the store came to hold after it was
// shown.
func TestKeysetDropWhatWasShown(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, merchant.StoreDir)
	set := func(v string) {
		db, err := pebblestore.OpenDB(path, pebblestore.DBOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Set([]byte("m/keyset"), []byte(v), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	set("not a key set")
	var out, errb bytes.Buffer
	stdin := &changingStdin{change: func() { set("another set") }, r: strings.NewReader("y\n")}
	env := &cli.Env{Stdin: stdin, Stdout: &out, Stderr: &errb}
	code := cli.Run(context.Background(), Command(), env, []string{"keyset", "--data", dir, "--drop"})
	held, err := merchant.ReadKeySet(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code != 1 || string(held.Signed) != "another set" {
		t.Fatalf("exit %d (%s): the store holds %q, want the set it came to hold kept", code, errb.String(), held.Signed)
	}
}
