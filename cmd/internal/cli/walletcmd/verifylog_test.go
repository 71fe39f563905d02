package walletcmd

import (
	"encoding/hex"
	"encoding/json"
	"testing"

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
	for _, k := range []string{"log_size", "root", "verified", "waiting"} {
		if _, ok := got[k]; !ok || len(got) != 4 {
			t.Fatalf("fields %v, want log_size, root, verified, waiting", got)
		}
	}
	root, _ := got["root"].(string)
	if raw, err := hex.DecodeString(root); err != nil || len(raw) != 32 {
		t.Fatalf("root %q is not 32 bytes in hex", root)
	}
}
