package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// revoke revokes the denomination of value in the bank's key file and
// restarts the bank, as "bankd keys revoke" and a restart do.
func (e *env) revoke(t *testing.T, value string) ecash.Denomination {
	t.Helper()
	if err := e.bank.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, bank.KeysFile)
	k, err := bank.LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	var d ecash.Denomination
	for _, x := range k.Denoms {
		if x.Value.String() == value {
			d = x.Denomination
		}
	}
	if err := k.Revoke(d.ID, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	e.startBank()
	return d
}

// TestRevocationAndRecoup: the bank revokes a denomination; its coins are
// neither issued nor accepted; a wallet recoups them: withdrawn coins are
// credited to its account, coins from a swap re-issued; a recouped coin
// cannot be spent or recouped again, a spent coin cannot be recouped; money
// is conserved throughout (and the log passes the audit at the end).
func TestRevocationAndRecoup(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc := e.dialBank()
	var transcript bytes.Buffer
	w := e.newWalletWith(t.TempDir(), "EUR:20.00", wallet.Options{Now: e.clock.Now, Transcript: &transcript})
	defer w.Close()
	acct, _ := w.Account()
	// EUR:0.03 as 0.01 + 0.02 (CS), swapped for 0.01 + 0.02 again (a 0.02
	// coin from a swap), then another EUR:0.03 withdrawn (a withdrawn 0.02).
	// A raw coin of 0.02 is spent before the revocation.
	for _, step := range []func() error{
		func() error { _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:0.03"), nil); return err },
		func() error { _, err := w.Swap(ctx, bankc, mustAmount(t, "EUR:0.03")); return err },
		func() error { _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:0.03"), nil); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	// A coin of 0.02 from a swap (its planchet secret known), then spent by
	// another swap.
	raw0, key0 := e.rawCoin(t, bankc, "EUR:0.02")
	p := newSwapParty(t, e, bankc)
	outs, states, secs := p.outputs("EUR:0.02")
	sigs, err := p.swap(p.request([]ecash.Coin{raw0}, []ed25519.PrivateKey{key0}, outs))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := states[0].Unblind(sigs[0])
	if err != nil {
		t.Fatal(err)
	}
	spentCoin, spentSecret := ecash.Coin{Denom: outs[0].Denom, Pub: secs[0].CoinPub(), Sig: sig}, secs[0]
	outs2, _, _ := p.outputs("EUR:0.01", "EUR:0.01")
	if _, err := p.swap(p.request([]ecash.Coin{spentCoin}, []ed25519.PrivateKey{spentSecret.CoinKey}, outs2)); err != nil {
		t.Fatal(err)
	}
	before, _ := w.Balance()
	balBefore := e.raw(acct)

	d := e.revoke(t, "EUR:0.02")
	bankc = e.dialBank()
	p.bankc = bankc
	ks, _ := e.bank.Bank.KeySet()
	if got, _ := ks.Denomination(d.ID); !got.Revoked {
		t.Fatal("the key set does not list the revocation")
	}
	// No coin of the revoked key is issued any more.
	seed := make([]byte, 32)
	rand.Read(seed)
	acctKey, _ := ecash.DeriveAccountKey(seed)
	raw := e.openAccount("raw", acctKey.Public().(ed25519.PublicKey), false)
	e.credit(raw, "EUR:1.00")
	pl, _ := ecash.DerivePlanchet(seed, 0)
	planchet, _, err := pl.Blind(d, e.prepare(t, bankc, d, pl))
	if err != nil {
		t.Fatal(err)
	}
	wreq := &ecash.WithdrawRequest{Account: raw, CreatedAt: e.clock.Now(), Planchets: []ecash.Planchet{planchet}}
	body := wreq.Body()
	if _, err := bankc.Withdraw(ctx, &pb.WithdrawRequest{Body: body, AccountSig: ecash.SignWithdraw(acctKey, wreq, d.Value)}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("withdrawing a revoked denomination: %v, want FailedPrecondition", err)
	}

	rep, err := w.Recoup(ctx, bankc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recoup: %+v", rep)
	// The withdrawn 0.02 credited; the 0.02 from the swap re-issued (as
	// two 0.01: the only value left below it).
	if rep.Credited.String() != "EUR:0.02" || rep.Reissued.String() != "EUR:0.02" || len(rep.Coins) != 2 || len(rep.Errors) != 0 {
		t.Fatalf("recoup %+v; want EUR:0.02 credited and EUR:0.02 re-issued", rep)
	}
	if got := e.raw(acct); got != balBefore+2 {
		t.Errorf("account %d after recoup, want %d", got, balBefore+2)
	}
	after, _ := w.Balance()
	if after.Fresh.Value != before.Fresh.Value-2 || !after.Pending.IsZero() {
		t.Errorf("wallet fresh %s after recoup (was %s): want 0.02 less (credited), the re-issued 0.02 kept", after.Fresh, before.Fresh)
	}
	// The re-issued coins spend.
	if _, err := w.Swap(ctx, bankc, mustAmount(t, "EUR:0.04")); err != nil {
		t.Errorf("swapping every coin after the recoup: %v", err)
	}
	// The wallet's own log check takes the re-issue for what the bank
	// logged: a recoup entry, not a swap.
	if lr, err := w.VerifyLog(ctx, bankc, e.dialLog()); err != nil {
		t.Errorf("verify-log after the recoup: %v", err)
	} else if lr.Verified == 0 {
		t.Errorf("verify-log after the recoup verified nothing: %+v", lr)
	}
	// Again: nothing left to recoup.
	if again, err := w.Recoup(ctx, bankc); err != nil || !again.Credited.IsZero() || !again.Reissued.IsZero() {
		t.Errorf("second recoup: %+v, %v", again, err)
	}
	// A spent coin cannot be recouped: the proof names the swap that spent it.
	outs3, _, _ := p.outputs("EUR:0.01", "EUR:0.01")
	req := ecash.NewRecoupRequest(spentCoin, spentSecret.CoinKey, d.Value, spentSecret.BlindSeed, outs3, e.clock.Now())
	_, err = bankc.Recoup(ctx, &pb.RecoupRequest{Request: req.Encode()})
	if ds := wallet.DoubleSpendFromError(err); ds == nil || ds.Proof.Earlier.MerchantAccount != ecash.SwapAccount {
		t.Errorf("recoup of a spent coin: %v, want a proof naming its swap", err)
	}
	// A recouped coin cannot be spent: the wallet's recouped coins are gone
	// for good (a copy of them would get a proof naming the recoup).
	// A coin not revoked is not recouped.
	c1, k1 := e.rawCoin(t, bankc, "EUR:0.01")
	req = ecash.NewRecoupRequest(c1, k1, mustAmount(t, "EUR:0.01"), [32]byte{}, nil, e.clock.Now())
	if _, err := bankc.Recoup(ctx, &pb.RecoupRequest{Request: req.Encode()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("recoup of a coin not revoked: %v, want FailedPrecondition", err)
	}
	// The wallet's transcript, recoups included, passes the offline audit
	// against the key set that lists the revocation.
	keys, err := auditcmd.NewKeySets(ks)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := auditcmd.Verify(bytes.NewReader(transcript.Bytes()), "wallet", keys, auditcmd.Options{Complete: true})
	if err != nil || !tr.OK {
		for _, l := range tr.Lines {
			t.Log(l)
		}
		t.Fatalf("audit of the wallet's transcript: %v, failures %d", err, tr.Failures)
	}
	f := e.raw(bank.AccountFunding) + e.raw(bank.AccountOutstanding)
	if f > 0 {
		t.Errorf("funding + outstanding = %d: the bank owes more than came in", f)
	}
}
