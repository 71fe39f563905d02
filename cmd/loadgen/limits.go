package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/procs"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/wallet"
)

// scenarioKind names a scenario.
type scenarioKind int

const (
	scenarioWithdraw scenarioKind = iota + 1
	scenarioPay
	scenarioSwap
	scenarioCheck
)

// scenarios lists every scenario, in the order "limits" measures them.
var scenarios = []scenarioKind{scenarioWithdraw, scenarioPay, scenarioSwap, scenarioCheck}

func (s scenarioKind) String() string {
	switch s {
	case scenarioWithdraw:
		return "withdraw"
	case scenarioPay:
		return "pay"
	case scenarioSwap:
		return "swap"
	case scenarioCheck:
		return "check"
	}
	return fmt.Sprintf("scenario(%d)", int(s))
}

// parseScenario is the inverse of String.
func parseScenario(name string) (scenarioKind, bool) {
	for _, s := range scenarios {
		if s.String() == name {
			return s, true
		}
	}
	return 0, false
}

// scenarioNames is "withdraw, pay, swap or check", for messages.
const scenarioNames = "withdraw, pay, swap or check"

// defaultCoinsPerOp is a scenario's --coins-per-op when none is given: 4
// for swap (4 coins in, 4 out, the comparison with gonuts), 1
// otherwise.
func (s scenarioKind) defaultCoinsPerOp() int {
	if s == scenarioSwap {
		return 4
	}
	return 1
}

// coinsPerOp is the coins per operation for the --coins-per-op flag
// (0: the scenario's default); a check carries none, it counts one.
func (s scenarioKind) coinsPerOp(flag int) int {
	switch {
	case s == scenarioCheck:
		return 1
	case flag == 0:
		return s.defaultCoinsPerOp()
	}
	return flag
}

// unit is what the scenario counts: coins, or for check, checks (one per
// operation). Every "coins" figure of a check report counts checks.
func (s scenarioKind) unit() string {
	if s == scenarioCheck {
		return "check"
	}
	return "coin"
}

// cryptoKit is the key material a crypto-limit measurement runs with: the
// bank's keys with the denomination under test, and a merchant.
type cryptoKit struct {
	keys            *bank.Keys
	ks              *ecash.KeySet
	denom           bank.DenomKey
	merchantKey     ed25519.PrivateKey
	merchantAccount uint64
}

func newCryptoKit(keys *bank.Keys, denom bank.DenomKey) (*cryptoKit, error) {
	_, mk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &cryptoKit{keys: keys, ks: keys.KeySet(), denom: denom, merchantKey: mk, merchantAccount: bank.FirstUserAccount}, nil
}

// limitResult is the crypto limit of one scenario.
type limitResult struct {
	Scenario   string `json:"scenario"`
	Cipher     string `json:"cipher"`
	CoinsPerOp int    `json:"coins_per_op"`
	// Unit is what Coins and the rates count: "coin", or "check" for the
	// check scenario (one per operation).
	Unit string `json:"unit"`
	// EPOKind is the kind of payment order of the check scenario: "check"
	// (a written check) or "goods" (a purchase).
	EPOKind string  `json:"epo_kind,omitempty"`
	Workers int     `json:"workers"`
	Seconds float64 `json:"seconds"`
	Coins   int64   `json:"coins"`
	// CoinsPerSec is the limit: coins per second on all the cores,
	// from the process's CPU time over the measurement (Workers cores
	// over the CPU time per coin), so that other processes taking cores
	// for a while do not lower it.
	CoinsPerSec float64 `json:"coins_per_s"`
	// WallCoinsPerSec is coins over wall time: the same on an idle machine.
	WallCoinsPerSec float64 `json:"wall_coins_per_s"`
	// OtherCores is how many cores other processes kept busy meanwhile
	// (Linux; -1 if unknown).
	OtherCores float64 `json:"other_processes_cores"`
	// The CPU time each party's steps took per coin, in microseconds of
	// one core: the process's CPU time over the measurement (the garbage
	// collector's included), divided in the proportions of the CPU time of
	// each party's steps.
	WalletUs   float64 `json:"wallet_us_per_coin"`
	BankUs     float64 `json:"bank_us_per_coin"`
	MerchantUs float64 `json:"merchant_us_per_coin"`
	// BankOnlyCoinsPerSec is what the bank's share alone would allow on
	// the same cores, were the wallets and the merchant elsewhere.
	BankOnlyCoinsPerSec float64 `json:"bank_only_coins_per_s"`
}

// verifyBatch is the bank's check of a request's coins and permissions
// (bank.VerifyCoins: in batches, checked in parallel above bank.BatchSize
// coins).
func (kit *cryptoKit) verifyBatch(perms []ecash.DepositPermission) error {
	keys := make([]*bank.DenomKey, len(perms))
	for i := range keys {
		keys[i] = &kit.denom
	}
	_, err := bank.VerifyCoins(perms, keys, "coin", func(_ int, err error) error { return err })
	return err
}

// label names the scenario, with the kind of payment order for check.
func (l limitResult) label() string {
	if l.EPOKind != "" {
		return l.Scenario + " (" + l.EPOKind + ")"
	}
	return l.Scenario
}

// TotalUs is all parties' crypto per coin on one core.
func (l limitResult) TotalUs() float64 { return l.WalletUs + l.BankUs + l.MerchantUs }

// partyTimes accumulates the time spent in each party's steps.
type partyTimes struct{ wallet, bank, merchant time.Duration }

func (p *partyTimes) add(q partyTimes) {
	p.wallet += q.wallet
	p.bank += q.bank
	p.merchant += q.merchant
}

// stopwatch charges the time since its last lap to a party: the CPU time
// of the worker's thread where the system can tell (Linux; the workers are
// locked to their threads), else wall time.
type stopwatch struct{ t time.Duration }

func startStopwatch() stopwatch { return stopwatch{clock()} }

func (s *stopwatch) lap(d *time.Duration) {
	now := clock()
	*d += now - s.t
	s.t = now
}

var clockBase = time.Now()

func clock() time.Duration {
	if t, ok := threadCPU(); ok {
		return t
	}
	return time.Since(clockBase)
}

// limitOp is one operation of a scenario's cryptography, for n coins.
type limitOp func(pt *partyTimes) error

// measureLimit runs the scenario's cryptography on one worker per core for
// about d and returns the coins per second it allows.
// For check, n is 1 and epo the kind of payment order.
func measureLimit(ctx context.Context, kit *cryptoKit, s scenarioKind, n int, epo echeck.Kind, d time.Duration) (limitResult, error) {
	// One worker per core, and no more Ps than cores meanwhile: procs.Raise
	// sets GOMAXPROCS above the cores, and on the spare Ps the garbage
	// collector's idle workers and the servers' background work would run
	// beside the workers, taking the cores' time from them (5-20% more CPU
	// per coin, measured).
	workers := procs.Cores()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(workers))
	ops := make([]limitOp, workers)
	for i := range ops {
		var err error
		switch s {
		case scenarioWithdraw:
			ops[i], err = newWithdrawLimitOp(kit, n)
		case scenarioPay:
			ops[i], err = newPayLimitOp(kit, n)
		case scenarioSwap:
			ops[i], err = newSwapLimitOp(kit, n)
		case scenarioCheck:
			ops[i], err = newCheckLimitOp(kit, epo)
		default:
			err = fmt.Errorf("unknown scenario %v", s)
		}
		if err != nil {
			return limitResult{}, err
		}
		// One untimed operation first: lazily built tables, caches.
		if err := ops[i](&partyTimes{}); err != nil {
			return limitResult{}, err
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total partyTimes
		coins int64
		first error
		last  time.Time
	)
	cpu0, err := processCPU()
	if err != nil {
		return limitResult{}, err
	}
	sys0, sysOK := systemBusy()
	start := time.Now()
	deadline := start.Add(d)
	for _, op := range ops {
		wg.Go(func() {
			// One thread per worker, so its CPU clock is the worker's.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var pt partyTimes
			var done int64
			var err error
			for err == nil && ctx.Err() == nil && time.Now().Before(deadline) {
				if err = op(&pt); err == nil {
					done += int64(n)
				}
			}
			end := time.Now()
			mu.Lock()
			defer mu.Unlock()
			total.add(pt)
			coins += done
			if end.After(last) {
				last = end
			}
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	cpu1, err := processCPU()
	if err != nil {
		return limitResult{}, err
	}
	sys1, sysOK1 := systemBusy()
	if first != nil {
		return limitResult{}, fmt.Errorf("crypto limit of %s: %w", s, first)
	}
	if err := ctx.Err(); err != nil {
		return limitResult{}, err
	}
	if coins == 0 {
		return limitResult{}, fmt.Errorf("crypto limit of %s: no operation finished in %s", s, d)
	}
	wall := last.Sub(start)
	cpu := cpu1 - cpu0
	if cpu <= 0 {
		return limitResult{}, fmt.Errorf("crypto limit of %s: no CPU time measured", s)
	}
	// The stopwatches miss the work of other threads (the garbage
	// collector's background workers): scale their shares to the
	// process's CPU time over the measurement.
	scale := 1.0
	if sum := total.wallet + total.bank + total.merchant; sum > 0 {
		scale = float64(cpu) / float64(sum)
	}
	per := func(t time.Duration) float64 { return float64(t.Nanoseconds()) / 1e3 * scale / float64(coins) }
	l := limitResult{
		Scenario: s.String(), Cipher: kit.denom.Key.Cipher().String(), CoinsPerOp: n, Unit: s.unit(), Workers: workers,
		Seconds: wall.Seconds(), Coins: coins,
		CoinsPerSec:     float64(workers) * float64(coins) / cpu.Seconds(),
		WallCoinsPerSec: float64(coins) / wall.Seconds(),
		OtherCores:      -1,
		WalletUs:        per(total.wallet), BankUs: per(total.bank), MerchantUs: per(total.merchant),
	}
	if sysOK && sysOK1 {
		l.OtherCores = max(0, (sys1-sys0-cpu).Seconds()/wall.Seconds())
	}
	if s == scenarioCheck {
		l.EPOKind = epo.String()
	}
	if l.BankUs > 0 {
		l.BankOnlyCoinsPerSec = float64(workers) * 1e6 / l.BankUs
	}
	return l, nil
}

// newWithdrawLimitOp returns the cryptography of one withdrawal of n coins,
// every step the wallet and the bank do, in order, without the network and
// the store.
func newWithdrawLimitOp(kit *cryptoKit, n int) (limitOp, error) {
	out, err := newIssued(kit, n)
	if err != nil {
		return nil, err
	}
	acctKey, err := ecash.DeriveAccountKey(out.seed)
	if err != nil {
		return nil, err
	}
	acctPub := acctKey.Public().(ed25519.PublicKey)
	d := kit.denom.Denomination
	return func(pt *partyTimes) error {
		sw := startStopwatch()
		if err := out.firstRound(&sw, pt); err != nil {
			return err
		}
		// Wallet: blind, build and sign the request.
		req := &ecash.WithdrawRequest{Account: bank.FirstUserAccount, CreatedAt: time.Now()}
		binary.BigEndian.PutUint64(req.Nonce[:], out.next)
		req.Planchets = make([]ecash.Planchet, n)
		if err := out.blind(req.Planchets); err != nil {
			return err
		}
		amount := ecash.Amount{Currency: d.Value.Currency, Value: d.Value.Value * uint64(n)}
		body := req.Body()
		sig := ecash.SignWithdraw(acctKey, req, amount)
		sw.lap(&pt.wallet)
		// Bank: decode, authenticate (the signature covers the amount and
		// the request's hash), lock the CS nonces, sign.
		got, err := ecash.DecodeWithdrawRequest(body)
		if err != nil {
			return err
		}
		if err := ecash.VerifyBody(acctPub, ecash.WithdrawSignatureInput(got.Account, amount, ecash.HashOf(body)), sig, "withdraw request"); err != nil {
			return err
		}
		if err := out.sign(got.Planchets); err != nil {
			return err
		}
		sw.lap(&pt.bank)
		return out.unblind(&sw, pt)
	}, nil
}

// issued is the coins one operation of a limit has the bank issue (a
// withdrawal's or a swap's outputs), through the same steps: the wallet
// derives them and, for CS, asks for the first round; the bank answers
// it; the wallet blinds; the bank locks the nonces and signs; the wallet
// unblinds and verifies. Reused from one operation to the next.
type issued struct {
	kit     *cryptoKit
	seed    []byte
	next    uint64 // the next planchet index
	ps      []ecash.PlanchetSecret
	first   [][]byte // first-round requests (nil for RSA)
	answers [][]byte
	states  []ecash.BlindState
	sigs    [][]byte
}

func newIssued(kit *cryptoKit, n int) (*issued, error) {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	return &issued{kit: kit, seed: seed, ps: make([]ecash.PlanchetSecret, n), first: make([][]byte, n),
		answers: make([][]byte, n), states: make([]ecash.BlindState, n), sigs: make([][]byte, n)}, nil
}

// firstRound is the wallet deriving the coin keys and blinding seeds (and
// the CS first-round requests), then the bank's first round (CS only),
// each timed to its party.
func (o *issued) firstRound(sw *stopwatch, pt *partyTimes) error {
	d, priv := o.kit.denom.Denomination, o.kit.denom.Private
	var err error
	for i := range o.ps {
		if o.ps[i], err = ecash.DerivePlanchet(o.seed, o.next); err != nil {
			return err
		}
		o.next++
		o.first[i] = o.ps[i].PrepareRequest(d)
	}
	sw.lap(&pt.wallet)
	for i := range o.first {
		o.answers[i] = nil
		if o.first[i] != nil {
			if o.answers[i], err = priv.Prepare(o.first[i]); err != nil {
				return err
			}
		}
	}
	sw.lap(&pt.bank)
	return nil
}

// blind is the wallet's blinding into ps (untimed: its caller laps).
func (o *issued) blind(ps []ecash.Planchet) error {
	var err error
	for i := range ps {
		if ps[i], o.states[i], err = o.ps[i].Blind(o.kit.denom.Denomination, o.answers[i]); err != nil {
			return err
		}
	}
	return nil
}

// sign is the bank locking each CS nonce and blind-signing ps (untimed).
func (o *issued) sign(ps []ecash.Planchet) error {
	priv := o.kit.denom.Private
	var err error
	for i, p := range ps {
		if _, err := priv.LockKey(p.Blinded); err != nil {
			return err
		}
		if o.sigs[i], err = priv.BlindSign(p.Blinded); err != nil {
			return err
		}
	}
	return nil
}

// unblind is the wallet unblinding and verifying the signatures, timed.
func (o *issued) unblind(sw *stopwatch, pt *partyTimes) error {
	for i := range o.states {
		if _, err := o.states[i].Unblind(o.sigs[i]); err != nil {
			return err
		}
	}
	sw.lap(&pt.wallet)
	return nil
}

// mintCoins makes n valid coins with the denomination's private key, through
// the blind-signature protocol (for fixtures; not measured).
func mintCoins(kit *cryptoKit, n int) ([]heldCoin, error) {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	out := make([]heldCoin, n)
	for i := range n {
		m, err := mintOne(kit.denom, seed, uint64(i))
		if err != nil {
			return nil, err
		}
		out[i] = m.coin
	}
	return out, nil
}

// minted is a coin issued through every step of the protocol, with what
// the bank saw on the way.
type minted struct {
	coin     heldCoin
	blinded  []byte // the planchet's blinded message
	blindSig []byte // the bank's answer
}

// mintOne issues planchet i of seed under denom: derive, first round (CS),
// blind, blind-sign, unblind and verify.
func mintOne(denom bank.DenomKey, seed []byte, i uint64) (minted, error) {
	d, priv := denom.Denomination, denom.Private
	ps, err := ecash.DerivePlanchet(seed, i)
	if err != nil {
		return minted{}, err
	}
	var ans []byte
	if r := ps.PrepareRequest(d); r != nil {
		if ans, err = priv.Prepare(r); err != nil {
			return minted{}, err
		}
	}
	p, st, err := ps.Blind(d, ans)
	if err != nil {
		return minted{}, err
	}
	bs, err := priv.BlindSign(p.Blinded)
	if err != nil {
		return minted{}, err
	}
	sig, err := st.Unblind(bs)
	if err != nil {
		return minted{}, err
	}
	return minted{
		coin:    heldCoin{Coin: ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}, Key: ps.CoinKey},
		blinded: p.Blinded, blindSig: bs,
	}, nil
}

// signedOrder makes a payment request for amount as the merchant signs it
// when an order is created.
func (kit *cryptoKit) signedOrder(amount ecash.Amount, now time.Time) (*ecash.PaymentOffer, error) {
	var rnd [10]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	summary := "loadgen order"
	pr := &ecash.PaymentRequest{
		BankID: kit.ks.BankID(), MerchantAccount: kit.merchantAccount, MerchantPub: kit.merchantKey.Public().(ed25519.PublicKey),
		OrderID: fmt.Sprintf("ord-%x", rnd), Amount: amount, SummaryHash: sha256.Sum256([]byte(summary)),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
	body := pr.Body()
	return &ecash.PaymentOffer{Request: body, MerchantSig: ecash.SignBody(kit.merchantKey, body), Summary: summary}, nil
}

// newPayLimitOp returns the cryptography of one payment of n coins: the
// wallet's, the bank's and the merchant's steps in order, without the
// network and the stores. The coins and the signed payment requests are
// made beforehand and reused (nothing caches a verification).
func newPayLimitOp(kit *cryptoKit, n int) (limitOp, error) {
	coins, err := mintCoins(kit, n)
	if err != nil {
		return nil, err
	}
	amount := ecash.Amount{Currency: kit.ks.Currency, Value: kit.denom.Value.Value * uint64(n)}
	orders := make([]*ecash.PaymentOffer, 16)
	for i := range orders {
		if orders[i], err = kit.signedOrder(amount, time.Now()); err != nil {
			return nil, err
		}
	}
	cs := make([]ecash.Coin, n)
	keys := make([]ed25519.PrivateKey, n)
	values := make([]ecash.Amount, n)
	for i, c := range coins {
		cs[i], keys[i], values[i] = c.Coin, c.Key, kit.denom.Value
	}
	merchantPub := kit.merchantKey.Public().(ed25519.PublicKey)
	next := 0
	return func(pt *partyTimes) error {
		o := orders[next%len(orders)]
		next++
		sw := startStopwatch()
		// Wallet: verify the offer, sign the permissions, seal.
		now := time.Now()
		offer, err := wallet.VerifyOffer(kit.ks, o, now)
		if err != nil {
			return err
		}
		payment, err := ecash.NewPayment(offer.Request, cs, keys, values, now)
		if err != nil {
			return err
		}
		sealed, err := ecash.SealPayment(kit.ks.HPKEPub, offer.Request, payment)
		if err != nil {
			return err
		}
		sw.lap(&pt.wallet)
		// Bank: authenticate the merchant, open, verify every coin and
		// permission, sign the receipt.
		pr, err := ecash.DecodePaymentRequest(o.Request)
		if err != nil {
			return err
		}
		if err := ecash.VerifyBody(merchantPub, o.Request, o.MerchantSig, "payment request"); err != nil {
			return err
		}
		opened, err := ecash.OpenPayment(kit.keys.HPKE, pr, sealed)
		if err != nil {
			return err
		}
		ids := make([]ecash.Hash, len(opened.Permissions))
		for i := range opened.Permissions {
			ids[i] = opened.Permissions[i].Coin.ID()
			opened.Permissions[i].Value = kit.denom.Value
		}
		if err := kit.verifyBatch(opened.Permissions); err != nil {
			return err
		}
		for i := range opened.Permissions {
			_ = opened.Permissions[i].Encode()
		}
		rcpt := &ecash.DepositReceipt{
			PaymentHash: pr.Hash(), MerchantAccount: pr.MerchantAccount, Total: pr.Amount, Coins: ids,
			DepositedAt: now, SignerPub: kit.ks.SigningPub,
		}
		rcpt.Sig = ecash.SignBody(kit.keys.Signing, rcpt.Body())
		raw := rcpt.Encode()
		sw.lap(&pt.bank)
		// Merchant, then wallet: verify the receipt.
		for _, party := range []*time.Duration{&pt.merchant, &pt.wallet} {
			r, err := ecash.DecodeDepositReceipt(raw)
			if err != nil {
				return err
			}
			if err := r.Verify(kit.ks, pr); err != nil {
				return err
			}
			sw.lap(party)
		}
		return nil
	}, nil
}

// limitsReport is the output of "loadgen limits".
type limitsReport struct {
	Machine machineInfo   `json:"machine"`
	Keys    keyInfo       `json:"keys"`
	Limits  []limitResult `json:"limits"`
}

// limits measures the crypto limit of each scenario in which. n is
// --coins-per-op (0: each scenario's default; check always has 1).
func limits(ctx context.Context, cipher ecash.Cipher, n int, epo echeck.Kind, d time.Duration, keysFile string, which []scenarioKind, prog *progress) (*limitsReport, error) {
	prog.Status("generating or loading the bank's keys (%s) ...", cipher)
	keys, denom, info, err := loadOrGenerateKeys(keysFile, cipher, 2048)
	prog.Clear()
	if err != nil {
		return nil, err
	}
	kit, err := newCryptoKit(keys, denom)
	if err != nil {
		return nil, err
	}
	rep := &limitsReport{Machine: machine(), Keys: info}
	for _, s := range which {
		n := s.coinsPerOp(n)
		prog.Status("measuring the crypto limit of %s, %s coins, %d per op, for %s ...", s, cipher, n, d)
		l, err := measureLimit(ctx, kit, s, n, epo, d)
		prog.Clear()
		if err != nil {
			return nil, err
		}
		rep.Limits = append(rep.Limits, l)
	}
	return rep, nil
}

func (r *limitsReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "crypto limit per coin, no I/O, %d workers (one per core) on %s\n", r.Machine.Cores, r.Machine.describe())
	fmt.Fprintf(w, "keys: %s\n\n", r.Keys.describe())
	t := cli.NewTable(w)
	t.Row("scenario", "cipher", "coins/op", "limit coins/s", "bank alone coins/s", "wallet µs/coin", "bank µs/coin", "merchant µs/coin", "all µs/coin")
	checks := false
	for _, l := range r.Limits {
		checks = checks || l.Unit == "check"
		t.Row(l.label(), l.Cipher, l.CoinsPerOp, fmt.Sprintf("%.0f", l.CoinsPerSec), fmt.Sprintf("%.0f", l.BankOnlyCoinsPerSec),
			fmt.Sprintf("%.1f", l.WalletUs), fmt.Sprintf("%.1f", l.BankUs), fmt.Sprintf("%.1f", l.MerchantUs), fmt.Sprintf("%.1f", l.TotalUs()))
	}
	t.Flush()
	fmt.Fprintln(w, "\n(limit: all parties' crypto on all cores, from the CPU time per coin; bank alone: the bank's")
	fmt.Fprintln(w, " share only; µs/coin: CPU time of each party's steps per coin, on one core)")
	if checks {
		fmt.Fprintln(w, "(check: one payment order per operation and no coins; its figures are per check)")
	}
	for _, l := range r.Limits {
		if l.OtherCores > 0.1*float64(l.Workers) {
			fmt.Fprintf(w, "note: other processes kept %.2f cores busy while %s was measured (coins/s over wall time: %.0f)\n", l.OtherCores, l.Scenario, l.WallCoinsPerSec)
		}
	}
}
