package walletcmd

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
)

// keysetJSONOut is what wallet keyset --json prints.
type keysetJSONOut struct {
	MasterKey string `json:"bank_master_key"`
	Held      bool   `json:"held"`
	SHA256    string `json:"sha256"`
	Issued    string `json:"issued"`
	Denoms    int    `json:"denominations"`
	Revoked   *int   `json:"revoked"`
	Error     string `json:"error"`
	Dropped   bool   `json:"dropped"`
}

// storedKeySet reads, or (set non-nil) writes, the key set stored in the
// closed wallet in dir, as a damaged store would hold it.
func storedKeySet(t *testing.T, dir string, set []byte) []byte {
	t.Helper()
	db, err := pebblestore.OpenDB(dir, pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if set != nil {
		if err := db.Set([]byte("m/keyset"), set, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	v, closer, err := db.Get([]byte("m/keyset"))
	if err != nil {
		return nil
	}
	defer closer.Close()
	return bytes.Clone(v)
}

// TestKeysetWayOut: a wallet whose stored key set no longer decodes fails
// every command that needs it, naming "wallet keyset"; keyset shows the
// set as not decoding (text and --json), refuses to drop another set than
// the one named, drops it only when agreed, and the wallet then takes the
// bank's set again and withdraws.
func TestKeysetWayOut(t *testing.T) {
	b, _, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, b.Addr, "EUR:3.00")
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:1.00"); r.code != 0 {
		t.Fatalf("withdraw: %+v", r)
	}
	r := runWallet(t, env, "--wallet", dir, "keyset", "--json")
	var good keysetJSONOut
	if err := json.Unmarshal([]byte(r.stdout), &good); r.code != 0 || err != nil || !good.Held || good.Error != "" ||
		good.Denoms != 3 || good.Revoked == nil || *good.Revoked != 0 || good.Issued == "" || good.MasterKey == "" {
		t.Fatalf("keyset --json of a sound set: %+v (%v)", r, err)
	}
	if want := ecash.HashOf(storedKeySet(t, dir, nil)).String(); good.SHA256 != want {
		t.Fatalf("keyset --json: sha256 %s, want %s", good.SHA256, want)
	}

	// A set that decodes is dropped only past a warning that it is sound
	// and what dropping it gives up; not agreed, it stays.
	r = runWallet(t, cli.Env{Stdin: strings.NewReader("no\n")}, "--wallet", dir, "keyset", "--drop")
	if r.code != 1 || !strings.Contains(r.stdout, "WARNING: this key set decodes") || !strings.Contains(r.stdout, "revoked since") ||
		ecash.HashOf(storedKeySet(t, dir, nil)).String() != good.SHA256 {
		t.Fatalf("keyset --drop of a sound set, not agreed: %+v", r)
	}

	damaged := []byte("not a key set")
	storedKeySet(t, dir, damaged)
	r = runWallet(t, env, "--wallet", dir, "withdraw", "EUR:0.50")
	if r.code != 1 || !strings.Contains(r.stderr, "wallet --wallet "+dir+" keyset") {
		t.Fatalf("withdraw with a damaged key set stored: %+v, want the way out named", r)
	}
	r = runWallet(t, env, "--wallet", dir, "keyset")
	if r.code != 0 || !strings.Contains(r.stdout, "DOES NOT DECODE") || !strings.Contains(r.stdout, ecash.HashOf(damaged).String()) {
		t.Fatalf("keyset: %+v", r)
	}
	var bad keysetJSONOut
	r = runWallet(t, env, "--wallet", dir, "keyset", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &bad); r.code != 0 || err != nil || !bad.Held || bad.Error == "" ||
		bad.SHA256 != ecash.HashOf(damaged).String() || bad.MasterKey != good.MasterKey {
		t.Fatalf("keyset --json of a damaged set: %+v (%v)", r, err)
	}

	// Another set than the one named (the good one, shown before) is not
	// dropped; nor is one the user does not agree to drop.
	r = runWallet(t, env, "--wallet", dir, "keyset", "--drop", "--yes", "--sha256", good.SHA256)
	if r.code != 1 || !strings.Contains(r.stderr, "nothing dropped") {
		t.Fatalf("keyset --drop of another set than the one held: %+v", r)
	}
	if got := storedKeySet(t, dir, nil); !bytes.Equal(got, damaged) {
		t.Fatalf("after a refused drop the wallet stores %q", got)
	}
	r = runWallet(t, cli.Env{Stdin: strings.NewReader("no\n")}, "--wallet", dir, "keyset", "--drop")
	if r.code != 1 || !strings.Contains(r.stderr, "nothing dropped") || storedKeySet(t, dir, nil) == nil || strings.Contains(r.stdout, "WARNING") {
		t.Fatalf("keyset --drop, not agreed: %+v", r)
	}
	if r := runWallet(t, env, "--wallet", dir, "keyset", "--yes"); r.code != 2 {
		t.Fatalf("keyset --yes without --drop: %+v", r)
	}

	r = runWallet(t, env, "--wallet", dir, "keyset", "--drop", "--yes", "--sha256", bad.SHA256, "--json")
	var dropped keysetJSONOut
	if err := json.Unmarshal([]byte(r.stdout), &dropped); r.code != 0 || err != nil || !dropped.Dropped || dropped.SHA256 != bad.SHA256 {
		t.Fatalf("keyset --drop of the set held: %+v (%v)", r, err)
	}
	if got := storedKeySet(t, dir, nil); got != nil {
		t.Fatalf("after the drop the wallet stores %q", got)
	}
	r = runWallet(t, env, "--wallet", dir, "keyset")
	if r.code != 0 || !strings.Contains(r.stdout, "none held") {
		t.Fatalf("keyset after the drop: %+v", r)
	}
	r = runWallet(t, env, "--wallet", dir, "withdraw", "EUR:0.50")
	if r.code != 0 {
		t.Fatalf("withdraw after the drop: %+v", r)
	}
	r = runWallet(t, env, "--wallet", dir, "keyset", "--json")
	var again keysetJSONOut
	if err := json.Unmarshal([]byte(r.stdout), &again); r.code != 0 || err != nil || again.SHA256 != good.SHA256 || again.MasterKey != good.MasterKey {
		t.Fatalf("keyset after the fetch: %+v (%v), want the bank's set again", r, err)
	}
}
