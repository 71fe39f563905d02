package walletcmd

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/ecash"
)

// TestWithdrawClockAheadSaysSo: the bank's clock reads six minutes behind
// this computer's, so it refuses the withdrawal for its date. withdraw
// says the clock is ahead, by how much, that nothing was debited and what
// to do; once the clocks agree, withdraw goes through.
func TestWithdrawClockAheadSaysSo(t *testing.T) {
	var behind atomic.Int64
	behind.Store(int64(ecash.MaxClockSkew + time.Minute))
	b, err := node.StartBank(node.BankConfig{
		Dir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Plaintext: true,
		Keys: bank.KeyConfig{Currency: "EUR", Values: []ecash.Amount{ecash.MustParseAmount("EUR:0.50"), ecash.MustParseAmount("EUR:1.00")}},
		Now:  func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	env := cli.Env{}
	dir, _ := accountWallet(t, env, b, b.Addr, "EUR:2.00")
	r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:1.00")
	t.Log(r.stderr)
	for _, want := range []string{"clock is ahead of the bank's", "ahead of the bank's clock", "nothing was debited", "set this computer's clock right"} {
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("withdraw with the clock ahead: %+v; want a failure saying %q", r, want)
		}
	}
	behind.Store(0)
	if r := runWallet(t, env, "--wallet", dir, "withdraw", "EUR:1.00"); r.code != 0 || !strings.Contains(r.stdout, "withdrew EUR:1.00") {
		t.Fatalf("withdraw once the clocks agree: %+v", r)
	}
}
