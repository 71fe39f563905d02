package wallet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Refreshing coins before their denomination's deposit deadline.
//
// A coin is worth something only until its denomination key's deposit
// deadline. The bank's key schedule gives every key a deposit lifetime
// after it stops issuing coins, and lists the next key before then, so a
// wallet that swaps its coins of an ageing key for coins of the current
// keys in time never loses value. RefreshCoins does that swap; a wallet
// app calls it now and then (at start, daily) with a margin well under the
// deposit lifetime.

// RefreshResult says what RefreshCoins did.
type RefreshResult struct {
	// Renewed is the value of the old coins swapped, Coins the new ones
	// (worth the same).
	Renewed ecash.Amount
	Coins   []ecash.Coin
	// Stranded is the value of fresh coins the bank would not swap: past
	// their deposit deadline, or of a denomination that left the key set
	// and that the bank refused.
	Stranded ecash.Amount
	// Errors are the refusals met on the way (other batches went on).
	Errors []error
}

// RefreshCoins swaps every fresh coin whose denomination's deposit
// deadline is within `within` of now, or whose denomination has left the
// bank's key set, and every revealed coin (Balance.Revealed) whatever its
// age, for coins of the current keys, in as few swaps as the per-request
// bounds allow. It fetches the key set first. Coins of a key that is itself
// current for its value are left alone (there is nothing newer to move to)
// unless revealed. Value is kept exactly: a swap's outputs are worth its
// inputs.
//
// A batch the bank refuses outright leaves its coins fresh and is reported
// in the result; one whose answer is lost stays pending (ErrPending, like
// Swap) until Recover or the next call settles it. An answer the bank got
// wrong (ErrBadAnswer, see Disputes) stops it, with the result so far.
func (w *Wallet) RefreshCoins(ctx context.Context, bank pb.BankClient, within time.Duration) (*RefreshResult, error) {
	ks, err := w.RefreshKeys(ctx, bank)
	if err != nil {
		return nil, err
	}
	if err := w.recoverSwaps(ctx, bank, ks); err != nil {
		return nil, err
	}
	return w.refresh(ctx, bank, ks, within, false)
}

// renewRevealed swaps the revealed coins for new ones (see
// coinRecord.Revealed), as RefreshCoins would. Refusals it meets settle
// their coins (a coin a copy of the wallet spent is spent) and are not
// errors; a swap whose answer is lost is (ErrPending), and leaves its coins
// pending in it until Recover finishes it.
func (w *Wallet) renewRevealed(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet) error {
	_, err := w.refresh(ctx, bank, ks, 0, true)
	return err
}

// refresh is RefreshCoins with the key set at hand; revealedOnly, it swaps
// only the revealed coins.
func (w *Wallet) refresh(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, within time.Duration, revealedOnly bool) (*RefreshResult, error) {
	res := &RefreshResult{Renewed: ecash.Amount{Currency: ks.Currency}, Stranded: ecash.Amount{Currency: ks.Currency}}
	now := w.now()
	// Coins are swapped in groups: those the key set no longer lists apart
	// (the bank most likely refuses them, and must not take the others
	// down), and revealed ones by what revealed them (coinRecord.Payment):
	// a swap of coins two refused payments showed the bank would tell it
	// that one payer made both.
	type groupKey struct {
		revealed bool
		by       ecash.Hash
		unlisted bool
	}
	var order []groupKey
	groups := map[groupKey][]*coinRecord{}
	add := func(k groupKey, c *coinRecord) {
		if c.Revealed {
			k.revealed, k.by = true, c.Payment
			if c.Payment == (ecash.Hash{}) {
				// Revealed by a build that did not record by what: alone.
				k.by = c.Coin.ID()
			}
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	w.mu.Lock()
	err := w.eachCoin(func(c *coinRecord) error {
		if c.State != CoinFresh || c.Value.Currency != ks.Currency || (revealedOnly && !c.Revealed) {
			return nil
		}
		d, err := ks.Denomination(c.Coin.Denom)
		switch {
		case err != nil:
			add(groupKey{unlisted: true}, c)
		case !now.Before(d.DepositEnd):
			var err error
			res.Stranded, err = res.Stranded.Add(c.Value)
			return err
		case d.CanDeposit(now) != nil:
			// Not depositable yet (a key from the future): leave it.
		case c.Revealed:
			add(groupKey{}, c) // it may not pay until swapped
		case d.DepositEnd.Sub(now) <= within:
			if cur, err := ks.CurrentDenomination(d.Value, now); err == nil && cur.ID == d.ID {
				return nil // nothing newer to move to
			}
			add(groupKey{}, c)
		}
		return nil
	})
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, k := range order {
		batches := refreshBatches(groups[k], ks, now)
		if k.revealed {
			// A revealed coin no batch takes never pays: say so.
			if res.Stranded, err = res.Stranded.Add(unbatched(groups[k], batches)); err != nil {
				return res, err
			}
		}
		for _, batch := range batches {
			coins, err := w.swap(ctx, bank, ks, batch.inputs, batch.outputs)
			switch {
			case err == nil:
				res.Coins = append(res.Coins, coins...)
				if res.Renewed, err = res.Renewed.Add(batch.total); err != nil {
					return res, err
				}
			case errors.Is(err, ErrBadAnswer):
				// Recorded as a dispute; a bank that answers wrong gets no
				// more batches.
				res.Coins = append(res.Coins, coins...)
				return res, err
			case errors.Is(err, ErrPending) || !(definitive(err) || errors.Is(err, ecash.ErrDoubleSpend)):
				return res, err
			default:
				res.Errors = append(res.Errors, err)
				if k.unlisted { // coins the key set no longer lists, refused
					if res.Stranded, err = res.Stranded.Add(batch.total); err != nil {
						return res, err
					}
				}
			}
		}
	}
	return res, nil
}

// unbatched is the value of the coins of group that no batch takes.
func unbatched(group []*coinRecord, batches []refreshBatch) ecash.Amount {
	left := ecash.Amount{Currency: group[0].Value.Currency}
	for _, c := range group {
		left.Value += c.Value.Value
	}
	for _, b := range batches {
		for _, c := range b.inputs {
			left.Value -= c.Value.Value
		}
	}
	return left
}

// refreshBatch is one swap of RefreshCoins.
type refreshBatch struct {
	inputs  []*coinRecord
	total   ecash.Amount
	outputs []ecash.Denomination
}

// refreshBatches groups coins into swaps within the per-request bounds on
// inputs and outputs, largest coins first; outputs, worth the inputs less
// their swap fees, are split over the current keys. Coins whose value cannot be made of current keys alone
// (no key withdrawable now) are left out.
func refreshBatches(coins []*coinRecord, ks *ecash.KeySet, now time.Time) []refreshBatch {
	sort.Slice(coins, func(i, j int) bool { return coins[i].Value.Value > coins[j].Value.Value })
	var out []refreshBatch
	var cur refreshBatch
	var left []*coinRecord
	flush := func() {
		if len(cur.inputs) > 0 {
			out = append(out, cur)
		}
		cur = refreshBatch{}
	}
	for _, c := range coins {
		buys := ecash.Amount{Currency: c.Value.Currency, Value: swapValue(ks, c)} // its value less its swap fee
		total := buys
		if len(cur.inputs) > 0 {
			var err error
			if total, err = cur.total.Add(buys); err != nil {
				flush()
				total = buys
			}
		}
		outputs, err := split(total, ks, now)
		if err == nil && len(cur.inputs) < ecash.MaxCoinsPerRequest && len(outputs) <= ecash.MaxCoinsPerRequest {
			cur.inputs, cur.total, cur.outputs = append(cur.inputs, c), total, outputs
			continue
		}
		flush()
		if outputs, err = split(buys, ks, now); err != nil || len(outputs) > ecash.MaxCoinsPerRequest {
			left = append(left, c) // cannot be renewed on its own: perhaps with the others left
			continue
		}
		cur = refreshBatch{inputs: []*coinRecord{c}, total: buys, outputs: outputs}
	}
	flush()
	// Coins none of which a swap takes alone may together buy coins.
	if len(left) > 1 && len(left) <= ecash.MaxCoinsPerRequest {
		t := ecash.Amount{Currency: left[0].Value.Currency}
		var err error
		for _, c := range left {
			if t, err = t.Add(ecash.Amount{Currency: t.Currency, Value: swapValue(ks, c)}); err != nil {
				return out
			}
		}
		if outputs, err := split(t, ks, now); err == nil && len(outputs) <= ecash.MaxCoinsPerRequest {
			out = append(out, refreshBatch{inputs: left, total: t, outputs: outputs})
		}
	}
	return out
}

// String summarises a refresh for people.
func (r *RefreshResult) String() string {
	s := fmt.Sprintf("renewed %s into %d coins", r.Renewed, len(r.Coins))
	if !r.Stranded.IsZero() {
		s += fmt.Sprintf("; %s could not be renewed", r.Stranded)
	}
	return s
}
