package wallet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// A swap (change) gives coins to the bank for blind signatures on new
// planchets of the same value. Crash safety is the withdrawal's: the signed
// request is persisted, with its inputs marked pending, before it is sent;
// a retry sends the same bytes and the bank answers with the same
// signatures. Only the bank's word settles it: its signatures (inputs spent,
// outputs stored), a double-spend proof it signed (that input spent, the
// others free), or another definitive refusal (nothing recorded: inputs
// free) of a swap never sent before. One sent before, refused, may be
// committing still: see swaprefused.go.

func swapKey(h ecash.Hash) []byte { return append([]byte("s/"), h[:]...) }

// pendingSwap is a signed swap request persisted before it is sent, or a
// signed recoup request whose outputs re-issue a coin from a swap (Recoup):
// both spend inputs for blind signatures on outputs.
type pendingSwap struct {
	Body     []byte   // "swap-request", or "signed-recoup-request"
	Indices  []uint64 // the outputs' planchet indices
	Prepared [][]byte // the outputs' first-round answers
	Inputs   []ecash.Hash
	Recoup   bool
	Credits  []ecash.Hash      // inputs spending a refund credit: coins already spent, which stay spent
	blinded  []blindedPlanchet // not stored: see planchets
	// recovered: read back from the store to be sent again (recoverSwaps),
	// so perhaps sent before, its outcome unknown (see swaprefused.go).
	recovered bool
}

// request decodes the pending request: its hash (the bank's idempotency
// key and audit-log reference), its outputs, and the hash a permission of
// this request names (a double-spend proof naming it is our own spend).
func (p *pendingSwap) request() (hash ecash.Hash, outputs []ecash.Planchet, err error) {
	if p.Recoup {
		r, err := ecash.DecodeRecoupRequest(p.Body)
		if err != nil {
			return hash, nil, err
		}
		return r.Hash(), r.Outputs, nil
	}
	r, err := ecash.DecodeSwapRequest(p.Body)
	if err != nil {
		return hash, nil, err
	}
	return ecash.HashOf(p.Body), r.Outputs, nil
}

func (p *pendingSwap) encode() []byte {
	e := ecash.NewEncoder("wallet/swap")
	e.VarBytes(p.Body)
	e.U32(uint32(len(p.Indices)))
	for i, idx := range p.Indices {
		e.U64(idx)
		e.VarBytes(p.Prepared[i])
	}
	e.U32(uint32(len(p.Inputs)))
	for _, h := range p.Inputs {
		e.Fixed(h[:])
	}
	if p.Recoup {
		e.U8(1)
	} else {
		e.U8(0)
	}
	if len(p.Credits) > 0 {
		e.U32(uint32(len(p.Credits)))
		for _, h := range p.Credits {
			e.Fixed(h[:])
		}
	}
	return e.Bytes()
}

func decodePendingSwap(b []byte) (*pendingSwap, error) {
	d := ecash.NewDecoder("wallet/swap", b)
	p := &pendingSwap{Body: d.VarBytes(ecash.MaxFieldLen)}
	n := d.Count(ecash.MaxCoinsPerRequest)
	for range n {
		p.Indices = append(p.Indices, d.U64())
		prep := d.VarBytes(1024)
		if len(prep) == 0 {
			prep = nil
		}
		p.Prepared = append(p.Prepared, prep)
	}
	n = d.Count(ecash.MaxCoinsPerRequest)
	for range n {
		var h ecash.Hash
		copy(h[:], d.Fixed(32))
		p.Inputs = append(p.Inputs, h)
	}
	switch d.U8() {
	case 0:
	case 1:
		p.Recoup = true
	default:
		return nil, fmt.Errorf("%w: pending swap of an unknown kind", ecash.ErrMalformed)
	}
	if d.More() {
		n = d.Count(ecash.MaxCoinsPerRequest)
		for range n {
			var h ecash.Hash
			copy(h[:], d.Fixed(32))
			p.Credits = append(p.Credits, h)
		}
	}
	return p, d.Finish()
}

// makeChange makes sure the fresh coins are worth amount exactly together,
// at their values (a swap's inputs), swapping one coin for smaller ones if
// they are not. It reports whether it swapped. (A payment plans its change
// with planPayment, valuing coins after their deposit fees.)
func (w *Wallet) makeChange(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, amount ecash.Amount) (bool, error) {
	w.mu.Lock()
	_, plan, err := w.planChange(ks, amount, false)
	w.mu.Unlock()
	if err != nil || plan == nil {
		return false, err
	}
	if _, err := w.swap(ctx, bank, ks, []*coinRecord{plan.big}, plan.outputs); err != nil {
		return false, fmt.Errorf("wallet: making change: %w", err)
	}
	return true, nil
}

// changePlan is the swap that makes change for a payment: one coin for
// outputs of which the first (need) pay the rest of the amount after their
// deposit fees, beside the fresh coins picked.
type changePlan struct {
	big     *coinRecord
	outputs []ecash.Denomination
	swapFee uint64               // the swap fee big pays
	need    []ecash.Denomination // the outputs that pay the rest: outputs[:len(need)]
}

// planChange picks the fresh coins that pay amount, valued after their
// deposit fees if net is set, else at their values, and returns them with
// the swap that makes the change they leave unpaid (nil if they pay it
// exactly). Caller holds w.mu.
func (w *Wallet) planChange(ks *ecash.KeySet, amount ecash.Amount, net bool) ([]*coinRecord, *changePlan, error) {
	value, splitFn := coinValue, split
	if net {
		value, splitFn = netValue(ks), splitNet
	}
	picked, rest, fresh, err := w.pick(amount, ks, value)
	if err != nil {
		return nil, nil, err
	}
	if rest == 0 {
		return picked, nil, nil
	}
	now := w.now()
	need, err := splitFn(ecash.Amount{Currency: amount.Currency, Value: rest}, ks, now)
	if err != nil {
		return nil, nil, err
	}
	var needValue uint64
	for _, d := range need {
		needValue += d.Value.Value
	}
	// Largest first leaves only coins worth more than rest unpicked: swap
	// the smallest of them that buys the outputs the rest needs.
	var big *coinRecord
	for _, c := range fresh {
		if !slices.Contains(picked, c) && swapValue(ks, c) >= needValue && (big == nil || c.Value.Value < big.Value.Value) {
			big = c
		}
	}
	if big == nil {
		return nil, nil, fmt.Errorf("%w: %s is more than the wallet's fresh coins pay after fees", ErrNoExactChange, amount)
	}
	more, err := split(ecash.Amount{Currency: amount.Currency, Value: swapValue(ks, big) - needValue}, ks, now)
	if err != nil {
		return nil, nil, err
	}
	return picked, &changePlan{big: big, outputs: append(need, more...), swapFee: big.Value.Value - swapValue(ks, big), need: need}, nil
}

// netValue values a coin at what it pays into a deposit: its value less its
// denomination's deposit fee.
func netValue(ks *ecash.KeySet) func(*coinRecord) uint64 {
	return func(c *coinRecord) uint64 {
		if d, err := ks.Denomination(c.Coin.Denom); err == nil {
			return d.Net().Value
		}
		return c.Value.Value
	}
}

// coinValue values a coin at its denomination's value.
func coinValue(c *coinRecord) uint64 { return c.Value.Value }

// swapValue is what a coin buys in a swap: its value less its swap fee.
func swapValue(ks *ecash.KeySet, c *coinRecord) uint64 {
	if d, err := ks.Denomination(c.Coin.Denom); err == nil {
		return c.Value.Value - d.Fees.Swap.Value
	}
	return c.Value.Value
}

// Swap exchanges fresh coins worth amount for new coins worth amount less
// the coins' swap fees, split as a withdrawal splits (one of each small value
// first): what keeps a wallet able to pay any amount, and renews coins
// before their denomination's deposit deadline. It returns the new coins.
func (w *Wallet) Swap(ctx context.Context, bank pb.BankClient, amount ecash.Amount) ([]ecash.Coin, error) {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	if err := w.recoverSwaps(ctx, bank, ks); err != nil {
		return nil, err
	}
	if _, err := w.makeChange(ctx, bank, ks, amount); err != nil {
		return nil, err
	}
	w.mu.Lock()
	picked, rest, _, err := w.pick(amount, ks, coinValue)
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if rest != 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoExactChange, amount)
	}
	var buys uint64
	for _, c := range picked {
		buys += swapValue(ks, c)
	}
	outputs, err := split(ecash.Amount{Currency: amount.Currency, Value: buys}, ks, w.now())
	if err != nil {
		return nil, err
	}
	return w.swap(ctx, bank, ks, picked, outputs)
}

// swap runs one swap of inputs for outputs of the same total value.
func (w *Wallet) swap(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, inputs []*coinRecord, outputs []ecash.Denomination) ([]ecash.Coin, error) {
	return w.swapValues(ctx, bank, ks, inputs, nil, outputs)
}

// swapValues is swap; with credits, the inputs are spent coins and each
// spends its refund credit, credits[i], instead of its value.
func (w *Wallet) swapValues(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, inputs []*coinRecord, credits []ecash.Amount, outputs []ecash.Denomination) ([]ecash.Coin, error) {
	if len(outputs) > ecash.MaxCoinsPerRequest {
		return nil, fmt.Errorf("wallet: a swap into %d coins; at most %d", len(outputs), ecash.MaxCoinsPerRequest)
	}
	return w.sendOutputs(ctx, bank, ks, outputs, func(fresh *planchets) (*pendingSwap, error) {
		return w.swapRequest(inputs, credits, fresh)
	})
}

// sendOutputs makes fresh planchets for outputs, builds a swap or recoup
// of them (build) and sends it. Refused for a blinded message the bank
// signed before (the counter may be stale: catchUp), it takes in what
// this seed got signed past the counter if the bank shows it signed one of
// the refused planchets, and tries once more with new planchets; the
// refused request's indices stay skipped.
func (w *Wallet) sendOutputs(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, outputs []ecash.Denomination, build func(*planchets) (*pendingSwap, error)) ([]ecash.Coin, error) {
	return anonymousCall(ctx, w, bank, func(bank pb.BankClient) ([]ecash.Coin, error) {
		return w.sendOutputsOn(ctx, bank, ks, outputs, build)
	})
}

// sendOutputsOn is sendOutputs on the connection bank: the first round,
// the swap, and a catch-up if the bank says the counter is behind.
func (w *Wallet) sendOutputsOn(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, outputs []ecash.Denomination, build func(*planchets) (*pendingSwap, error)) ([]ecash.Coin, error) {
	send := func() ([]ecash.Coin, *planchets, error) {
		fresh, err := w.newPlanchets(ctx, bank, outputs, false)
		if err != nil {
			return nil, nil, err
		}
		ps, err := build(fresh)
		if err != nil {
			return nil, nil, errors.Join(err, w.giveBack(fresh.res))
		}
		coins, err := w.reserveAndSend(ctx, bank, ks, ps)
		return coins, fresh, err
	}
	coins, refused, err := send()
	if !alreadyIssued(err) {
		return coins, err
	}
	if cerr := w.catchUp(ctx, bank, ks, refused); cerr != nil {
		return nil, errors.Join(err, cerr)
	}
	coins, _, err = send()
	return coins, err
}

// swapRequest builds the pending swap of inputs (spending credits, if not
// nil) for the fresh planchets.
func (w *Wallet) swapRequest(inputs []*coinRecord, credits []ecash.Amount, fresh *planchets) (*pendingSwap, error) {
	coins := make([]ecash.Coin, len(inputs))
	keys := make([]ed25519.PrivateKey, len(inputs))
	values := make([]ecash.Amount, len(inputs))
	ids := make([]ecash.Hash, len(inputs))
	for i, c := range inputs {
		ps, err := ecash.DerivePlanchet(w.seed, c.Index)
		if err != nil {
			return nil, err
		}
		coins[i], keys[i], values[i], ids[i] = c.Coin, ps.CoinKey, c.Value, c.Coin.ID()
	}
	// Time 0, not the wallet's clock (see pay.go): the bank does not need it.
	req, err := ecash.NewSwapRequest(coins, keys, values, fresh.Planchets, time.UnixMilli(0))
	if err != nil {
		return nil, err
	}
	for i := range credits {
		req.SignCredit(i, keys[i], credits[i])
	}
	ps := &pendingSwap{Body: req.Body(), Indices: fresh.Indices, Prepared: fresh.Prepared, Inputs: ids, blinded: fresh.blinded}
	if credits != nil {
		ps.Credits = ids
	}
	return ps, nil
}

// reserveAndSend persists a new swap or recoup (reserveForSwap) and sends
// it, claimed from before it is persisted: a Recover running meanwhile
// leaves it to this call (see Wallet.sending).
func (w *Wallet) reserveAndSend(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, ps *pendingSwap) ([]ecash.Coin, error) {
	h, _, err := ps.request()
	if err != nil {
		return nil, err
	}
	key := string(swapKey(h))
	if !w.claim(key) {
		return nil, errInFlight
	}
	defer w.release(key)
	if err := w.reserveForSwap(ps); err != nil {
		return nil, err
	}
	return w.sendSwap(ctx, bank, ks, ps)
}

// reserveForSwap marks the inputs pending in the swap and persists it, in
// one synced batch; it refuses inputs that are no longer fresh.
func (w *Wallet) reserveForSwap(ps *pendingSwap) error {
	h, _, err := ps.request()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.db.NewBatch()
	defer b.Close()
	for _, id := range ps.Inputs {
		c, err := w.coin(id)
		if err != nil {
			return err
		}
		if slices.Contains(ps.Credits, id) {
			if c.State != CoinSpent {
				return fmt.Errorf("wallet: coin %x has refund credit but is not spent", id[:8])
			}
			continue
		}
		if c.State != CoinFresh {
			return fmt.Errorf("wallet: coin %x is no longer fresh", id[:8])
		}
		c.State, c.Payment = CoinPending, h
		if err := b.Set(coinKey(id), c.encode(), nil); err != nil {
			return err
		}
	}
	if err := b.Set(swapKey(h), ps.encode(), nil); err != nil {
		return err
	}
	// About to be sent: the first send whose outcome may be unknown.
	if err := b.Set(swapSentKey(h), (&swapSent{LastSent: w.now()}).encode(), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// sendSwap sends a persisted swap and settles it on the bank's answer.
func (w *Wallet) sendSwap(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, ps *pendingSwap) ([]ecash.Coin, error) {
	h, outputs, err := ps.request()
	if err != nil {
		return nil, err
	}
	var sent *swapSent // a recovered swap's send record as it was before this send
	if ps.recovered {
		if sent, err = w.markSending(h); err != nil {
			return nil, err
		}
	}
	var resp *pb.SwapResponse
	what := "swap"
	if ps.Recoup {
		what = "recoup"
		w.tr.Record(w.now(), "recoup-request", ps.Body, "")
		var r *pb.RecoupResponse
		if r, err = bank.Recoup(ctx, &pb.RecoupRequest{Request: ps.Body}); err == nil {
			resp = &pb.SwapResponse{BlindSignatures: r.BlindSignatures, LogIndex: r.LogIndex}
		}
	} else {
		w.tr.Record(w.now(), "swap-request", ps.Body, "")
		resp, err = bank.Swap(ctx, &pb.SwapRequest{Body: ps.Body})
	}
	if err != nil {
		if ds := DoubleSpendFromError(err); ds != nil {
			spent := ds.Proof.Earlier.Coin.ID()
			if verr := w.verifyBank(ctx, bank, ks, ds.Proof.Verify); verr != nil || !slices.Contains(ps.Inputs, spent) || ownSpend(ds.Proof.Earlier, h, outputs) {
				return nil, fmt.Errorf("%w: %s refused with a double-spend claim that does not hold (%v)", ErrPending, what, err)
			}
			w.tr.Record(w.now(), "double-spend-proof", ds.Proof.Encode(), "")
			return nil, errors.Join(ds, w.endSwap(h, ps, nil, &spent, 0, nil, w.keptEnded(h, ps, sent, err)))
		}
		if definitive(err) {
			// A refusal of a swap sent before may meet its original still
			// committing (swaprefused.go); not one for outputs signed in
			// another request, which the original meets too.
			if sent != nil && !alreadyIssued(err) {
				return w.settleRefused(ctx, bank, ks, h, ps, outputs, sent, err)
			}
			if err := w.endSwap(h, ps, nil, &ecash.Hash{}, 0, nil, w.keptEnded(h, ps, sent, err)); err != nil {
				return nil, err
			}
			// The planchet indices stay used: sent again, they would link
			// this swap to the request that took them (see parkIndices).
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrPending, what, err)
	}
	var note *SwapRecovery
	if sent != nil && sent.Refused != "" {
		// Reported kept pending (takeSwapRecoveries): report how it ended.
		note = &SwapRecovery{Request: h, Recoup: ps.Recoup, Outcome: SwapCompleted, Reason: sent.Refused, At: sent.RefusedAt}
	}
	return w.completeSwap(ks, h, ps, outputs, resp.BlindSignatures, resp.LogIndex, note)
}

// keptEnded is the note for Recover's report of a recovered swap that a
// refusal an earlier send meets too (a double-spend proof, outputs signed
// in another request) ends, if Recover reported it kept pending (sent:
// its send record from before this send): how it ended, as a completed
// one's is reported. nil otherwise.
func (w *Wallet) keptEnded(h ecash.Hash, ps *pendingSwap, sent *swapSent, refusal error) *SwapRecovery {
	if sent == nil || sent.Refused == "" {
		return nil
	}
	return &SwapRecovery{Request: h, Recoup: ps.Recoup, Outcome: SwapRefused, Reason: refusalReason(refusal), At: w.now()}
}

// completeSwap finishes a swap the bank committed, from its blind
// signatures on the outputs: the outputs stored, the inputs spent, the
// audit-log entry (at logIndex; 0: the bank is asked) due for checking,
// note (if not nil) recorded for Recover's report.
func (w *Wallet) completeSwap(ks *ecash.KeySet, h ecash.Hash, ps *pendingSwap, outputs []ecash.Planchet, sigs [][]byte, logIndex int64, note *SwapRecovery) ([]ecash.Coin, error) {
	recs, bad, err := w.finish(ks, &planchets{Planchets: outputs, Indices: ps.Indices, Prepared: ps.Prepared, blinded: ps.blinded}, sigs)
	if err != nil {
		return nil, err
	}
	if bad != nil {
		// The bank spent the inputs; its answer will not change. Keep the
		// outputs that verify and the evidence; stop retrying.
		bad.Kind, bad.Request, bad.At = "swap", ps.Body, w.now()
		if ps.Recoup {
			bad.Kind = "recoup"
		}
	}
	if err := w.endSwap(h, ps, recs, nil, logIndex, bad, note); err != nil {
		return nil, err
	}
	coins := make([]ecash.Coin, len(recs))
	for i := range recs {
		coins[i] = recs[i].Coin
	}
	return coins, bad.err()
}

// ownSpend reports whether a spend the bank holds is this very request's
// (a swap permission names the outputs' hash, a recoup's the request hash):
// then the bank did not refuse it for a double spend.
func ownSpend(p ecash.DepositPermission, h ecash.Hash, outputs []ecash.Planchet) bool {
	switch p.MerchantAccount {
	case ecash.SwapAccount:
		return p.PaymentHash == (&ecash.SwapRequest{Outputs: outputs}).OutputsHash()
	case ecash.RecoupAccount:
		return p.PaymentHash == h
	}
	return false
}

// endSwap settles a pending swap atomically. spentOnly nil: the swap went
// through, every input is spent, recs are stored and the swap's audit-log
// entry (at logIndex) is due for checking. Otherwise it was refused: the
// input spentOnly (if one of ours) is spent, the others fresh (a revealed
// one still revealed: the bank saw it once more, in the swap). bad, if
// not nil, is the dispute over outputs whose signatures failed, recorded in
// the same batch, as is note, if not nil, for Recover's report. A swap
// already settled (by a concurrent recovery) is left alone, and so is an
// output coin the wallet holds already (newCoins).
func (w *Wallet) endSwap(h ecash.Hash, ps *pendingSwap, recs []coinRecord, spentOnly *ecash.Hash, logIndex int64, bad *Dispute, note *SwapRecovery) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if raw, err := get(w.db, swapKey(h)); err != nil || raw == nil {
		return err
	}
	b := w.db.NewBatch()
	defer b.Close()
	for _, id := range ps.Inputs {
		if slices.Contains(ps.Credits, id) {
			continue // spent before the swap, spent after it
		}
		c, err := w.coin(id)
		if err != nil {
			return err
		}
		c.State, c.Payment = CoinFresh, ecash.Hash{}
		switch {
		case spentOnly == nil || *spentOnly == id:
			c.State = CoinSpent
		case c.Revealed:
			c.Payment = h // revealed again, with this swap's other inputs
		}
		if err := b.Set(coinKey(id), c.encode(), nil); err != nil {
			return err
		}
	}
	added, err := w.newCoins(b, recs)
	if err != nil {
		return err
	}
	var used []uint64
	for _, rec := range recs {
		used = append(used, rec.Index)
	}
	if bad != nil {
		used = append(used, bad.Indices...)
		if err := b.Set(disputeKey(bad.Kind, h[:]), bad.encode(), nil); err != nil {
			return err
		}
	}
	// Reserved indices, below the counter already: kept so (holdIndices).
	if err := w.holdIndices(b, used, false); err != nil {
		return err
	}
	if err := b.Delete(swapKey(h), nil); err != nil {
		return err
	}
	if err := b.Delete(swapSentKey(h), nil); err != nil {
		return err
	}
	if note != nil {
		if err := b.Set(swapRecoveryKey(h), note.encode(), nil); err != nil {
			return err
		}
	}
	if spentOnly == nil {
		if err := b.Set(logCheckKey(h), (&logCheck{Kind: logSwap, Index: logIndex, Coins: ps.Inputs}).encode(), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	w.recordCoins(added)
	return nil
}

// coin reads one coin record. Caller holds w.mu.
func (w *Wallet) coin(id ecash.Hash) (*coinRecord, error) {
	raw, err := get(w.db, coinKey(id))
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("wallet: coin record %x missing", id[:8])
	}
	return decodeCoinRecord(raw)
}

// recoverSwaps re-sends every persisted swap until the bank settles it.
func (w *Wallet) recoverSwaps(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet) error {
	keys, err := w.pendingKeys("s/")
	if err != nil {
		return err
	}
	for _, key := range keys {
		recoup := false
		err := sendClaimed(w, key, decodePendingSwap, func(ps *pendingSwap) error {
			recoup, ps.recovered = ps.Recoup, true
			_, err := anonymousCall(ctx, w, bank, func(bank pb.BankClient) ([]ecash.Coin, error) {
				return w.sendSwap(ctx, bank, ks, ps)
			})
			return err
		})
		if errors.As(err, new(*dialError)) {
			// Not resent now: still pending, whatever the dial's error says.
			return &swapRecoveryError{recoup: recoup, err: fmt.Errorf("%w: %w", ErrPending, err)}
		}
		// One kept pending after a refusal (its original may commit)
		// waits for a later recovery; the caller goes on without its
		// inputs.
		var kept *swapKeptError
		if err != nil && !errors.Is(err, ecash.ErrDoubleSpend) && !definitive(err) && !errors.Is(err, ErrBadAnswer) && !unlisted(err) && !errors.As(err, &kept) {
			return &swapRecoveryError{recoup: recoup, err: err}
		}
	}
	return nil
}

// swapRecoveryError is a pending swap recoverSwaps could not settle;
// recoup if it is a recoup's re-issue, which a payment must not report as
// change (ChangePendingError).
type swapRecoveryError struct {
	recoup bool
	err    error
}

func (e *swapRecoveryError) Error() string {
	if e.recoup {
		return "wallet: recovering a recoup's re-issue: " + e.err.Error()
	}
	return "wallet: recovering a swap: " + e.err.Error()
}

func (e *swapRecoveryError) Unwrap() error { return e.err }

// pick is selectCoins' search: the coins largest first, valued by value,
// and what they leave unpaid, and every fresh coin it considered. It never
// considers a revealed coin: paid or swapped as change beside a payment, it
// would link that payment to the one the bank saw it in (renewRevealed
// swaps it on its own). Caller holds w.mu.
func (w *Wallet) pick(amount ecash.Amount, ks *ecash.KeySet, value func(*coinRecord) uint64) (picked []*coinRecord, rest uint64, fresh []*coinRecord, err error) {
	now := w.now()
	err = w.eachCoin(func(c *coinRecord) error {
		if c.State != CoinFresh || c.Revealed || c.Value.Currency != amount.Currency {
			return nil
		}
		if d, err := ks.Denomination(c.Coin.Denom); err != nil || d.CanDeposit(now) != nil {
			return nil
		}
		fresh = append(fresh, c)
		return nil
	})
	if err != nil {
		return nil, 0, nil, err
	}
	sort.Slice(fresh, func(i, j int) bool { return value(fresh[i]) > value(fresh[j]) })
	rest = amount.Value
	for _, c := range fresh {
		if v := value(c); v <= rest && len(picked) < ecash.MaxCoinsPerRequest {
			picked = append(picked, c)
			rest -= v
		}
	}
	return picked, rest, fresh, nil
}
