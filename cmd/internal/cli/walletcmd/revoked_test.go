package walletcmd

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestRevokedPayAndRecoup: after the bank revokes a denomination the
// wallet's key set does not show yet, a payment with its coins is refused
// for good (exit 1, a message naming the revocation and 'wallet recoup',
// nothing left pending), and a recoup that cannot re-issue swapped coins
// for want of a live key of their value says so and exits 1, --json too.
func TestRevokedPayAndRecoup(t *testing.T) {
	ctx := context.Background()
	b, m, _, _ := startShop(t, "", "EUR:0.01", "EUR:0.02", "EUR:0.04")
	dir := filepath.Join(t.TempDir(), "w")
	env := cli.Env{}
	r := runWallet(t, env, "--wallet", dir, "init", "--bank", b.Addr, "--plaintext")
	if r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	key, err := hex.DecodeString(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("init printed %q", r.stdout)
	}
	acct, err := b.Bank.OpenAccount(ctx, "alice", key, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bank.Credit(ctx, acct, ecash.MustParseAmount("EUR:1.00"), "", ""); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"set-account", strconv.FormatUint(acct, 10)}, {"withdraw", "EUR:0.07"}, {"swap", "EUR:0.02"}} {
		if r := runWallet(t, env, append([]string{"--wallet", dir}, args...)...); r.code != 0 {
			t.Fatalf("%s: %+v", args[0], r)
		}
	}
	ks, _ := b.Bank.KeySet()
	var cent string
	for _, d := range ks.Denominations {
		if d.Value.Value == 1 && !d.Revoked {
			cent = d.ID.String()
		}
	}
	if _, err := b.Bank.RevokeDenomination(ctx, cent); err != nil {
		t.Fatal(err)
	}

	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:0.05"), "gum", 0)
	if err != nil {
		t.Fatal(err)
	}
	r = runWallet(t, env, "--wallet", dir, "pay", "--yes", "--merchant", m.Addr, "--merchant-plaintext", "--order", o.ID)
	if r.code != 1 || !strings.Contains(r.stderr, "revoked the denomination of the coins of EUR:0.01") || !strings.Contains(r.stderr, "'wallet recoup'") ||
		strings.Contains(r.stderr, "not confirmed") {
		t.Fatalf("pay with a revoked coin: %+v", r)
	}
	if r := runWallet(t, env, "--wallet", dir, "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) {
		t.Fatalf("balance after the refusal: %+v", r)
	}

	r = runWallet(t, env, "--wallet", dir, "recoup")
	if r.code != 1 || !strings.Contains(r.stderr, "no key issuing their value yet") || !strings.Contains(r.stderr, "bankd keys extend") ||
		strings.Contains(r.stderr, "pays this amount exactly") {
		t.Fatalf("recoup without a replacement key: %+v", r)
	}
	r = runWallet(t, env, "--wallet", dir, "recoup", "--json")
	var out struct {
		NotRecouped []struct{ Coin, Reason, Message string } `json:"not_recouped"`
	}
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.NotRecouped) == 0 {
		t.Fatalf("recoup --json without a replacement key: %+v", r)
	}
	for _, n := range out.NotRecouped {
		// The reason is a code a script can match, the coin its full id.
		if id, err := hex.DecodeString(n.Coin); err != nil || len(id) != 32 || n.Reason != "no_replacement_key" || !strings.Contains(n.Message, "no key") {
			t.Fatalf("recoup --json lists %+v; want the coin's id, reason no_replacement_key and the message", n)
		}
	}
}

// TestRecoupReasons: each way a coin's recoup fails maps to its code in
// the fixed set recoup's help lists.
func TestRecoupReasons(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{wallet.ErrNoReplacementKey, "no_replacement_key"},
		{fmt.Errorf("wallet: the bank's recoup receipt: %w", ecash.ErrBadSignature), "bad_answer"},
		{wallet.ErrBadAnswer, "bad_answer"},
		{status.Error(codes.NotFound, "bank: no withdrawal or swap of this bank issued this coin"), "refused"},
		{errors.New("pebble: closed"), "failed"},
	} {
		if got := recoupReason(&wallet.RecoupError{Err: c.err}); got != c.want {
			t.Errorf("recoupReason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestPayOrderPaidByAnotherWallet: paying an order another wallet paid
// says it is paid already, when, and that nothing was paid now (exit 1,
// --json "paid-with-other-coins"): it printed the merchant's relayed
// refusal, a gRPC status, as if the payment had failed. Paying it again
// says the same, from the bank's receipt kept, and sends no coins.
func TestPayOrderPaidByAnotherWallet(t *testing.T) {
	b, m, _, _ := startShop(t, "", "EUR:0.50", "EUR:1.00", "EUR:2.00")
	env := cli.Env{}
	var dirs []string
	for range 2 {
		dir, _ := accountWallet(t, env, b, b.Addr, "EUR:10.00")
		if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:3.50"); r.code != 0 {
			t.Fatalf("withdraw: %+v", r)
		}
		dirs = append(dirs, dir)
	}
	o, err := m.Merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "tea", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pay := []string{"pay", "--yes", "--merchant", m.Addr, "--merchant-plaintext", "--order", o.ID}
	if r := runWallet(t, env, append([]string{"--wallet", dirs[0]}, pay...)...); r.code != 0 {
		t.Fatalf("first wallet's payment: %+v", r)
	}
	r := runWallet(t, env, append([]string{"--wallet", dirs[1]}, pay...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "is already paid, EUR:1.00 at ") || !strings.Contains(r.stderr, "Nothing was paid now") {
		t.Fatalf("second wallet's payment of the paid order: %+v", r)
	}
	r = runWallet(t, env, append([]string{"--wallet", dirs[1], "--json"}, pay...)...)
	var out struct {
		Error, Paid string
	}
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Error != "paid-with-other-coins" || out.Paid != "EUR:1.00" {
		t.Fatalf("second wallet's payment of the paid order, --json: %+v", r)
	}
	// The second time, the bank's receipt kept the first time answers:
	// no coins were sent, which the message must not contradict.
	if !strings.Contains(r.stderr, "no coins were sent") || strings.Contains(r.stderr, "back in the wallet") {
		t.Fatalf("second wallet's payment of the paid order, again: %+v; want it answered from the receipt kept, no coins sent", r)
	}
	if r := runWallet(t, env, "--wallet", dirs[1], "balance", "--json"); !strings.Contains(r.stdout, `"pending": "EUR:0.00"`) || !strings.Contains(r.stdout, `"fresh": "EUR:3.50"`) {
		t.Fatalf("balance after the refusal: %+v", r)
	}
}
