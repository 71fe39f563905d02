package walletcmd

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// TestVerifyLogJSONRootHex: wallet verify-log --json gives the checkpoint's
// root in hex, as merchantd verify-log does and all our JSON does (it was
// base64), with the same fields (cli.LogCheck).
func TestVerifyLogJSONRootHex(t *testing.T) {
	b, _, _, _ := startShop(t, "", "EUR:1.00")
	dir, _ := accountWallet(t, cli.Env{}, b, b.Addr, "EUR:5.00")
	if r := runWallet(t, cli.Env{}, "--wallet", dir, "withdraw", "EUR:2.00"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	r := runWallet(t, cli.Env{}, "--wallet", dir, "verify-log", "--json")
	if r.code != 0 {
		t.Fatalf("verify-log: %+v", r)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	for _, k := range []string{"log_size", "root", "verified", "waiting", "adopted_key_set"} {
		if _, ok := got[k]; !ok || len(got) != 5 {
			t.Fatalf("fields %v, want log_size, root, verified, waiting, adopted_key_set", got)
		}
	}
	root, _ := got["root"].(string)
	if raw, err := hex.DecodeString(root); err != nil || len(raw) != 32 {
		t.Fatalf("root %q is not 32 bytes in hex", root)
	}
}

// TestVerifyLogAdoptedKeySet: wallet verify-log says when the wallet took
// a newer logged key set from the checkpoint than the bank served, in text
// and with --json (adopted_key_set). The bank node keeps serving its key
// set while another bank on its store (a replica) logs a revocation.
func TestVerifyLogAdoptedKeySet(t *testing.T) {
	ctx := context.Background()
	b, _, _, _ := startShop(t, "", "EUR:1.00", "EUR:2.00")
	dir, _ := accountWallet(t, cli.Env{}, b, b.Addr, "EUR:5.00")
	if r := runWallet(t, cli.Env{}, "--wallet", dir, "withdraw", "EUR:2.00"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	r := runWallet(t, cli.Env{}, "--wallet", dir, "verify-log")
	if r.code != 0 || strings.Contains(r.stdout, cli.AdoptedKeySetNote) {
		t.Fatalf("verify-log, the served key set the newest: %+v", r)
	}
	// Each revocation is a newer key set that follows the one held.
	keys := *b.Bank.Keys()
	keys.Denoms = slices.Clone(keys.Denoms)
	revoke := func(i int) {
		t.Helper()
		if err := keys.Revoke(keys.Denoms[i].ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		k := keys
		if err := bank.New(b.Bank.Store(), &k, time.Now, nil).PublishKeySet(ctx); err != nil {
			t.Fatal(err)
		}
	}
	revoke(0)
	r = runWallet(t, cli.Env{}, "--wallet", dir, "verify-log")
	if r.code != 0 || !strings.Contains(r.stdout, cli.AdoptedKeySetNote+"\n") {
		t.Fatalf("verify-log after a newer key set was logged: %+v", r)
	}
	revoke(1)
	r = runWallet(t, cli.Env{}, "--wallet", dir, "verify-log", "--json")
	var got cli.LogCheck
	if err := json.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil || !got.AdoptedKeySet {
		t.Fatalf("verify-log --json after a newer key set was logged: %+v (%v)", r, err)
	}
}
