package wallet

import (
	"context"
	"crypto/sha256"
	"time"

	pb "github.com/blindbank/blindbank/proto"
	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
)

// ForgetRevealedBy clears Payment on every fresh revealed coin: a store
// written by the build of f2d10d2 (before 3303a69) holds them so.
func ForgetRevealedBy(w *Wallet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var recs []*coinRecord
	if err := w.eachCoin(func(c *coinRecord) error {
		if c.State == CoinFresh && c.Revealed {
			recs = append(recs, c)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, c := range recs {
		c.Payment = ecash.Hash{}
		if err := w.db.Set(coinKey(c.Coin.ID()), c.encode(), pebble.Sync); err != nil {
			return err
		}
	}
	return nil
}

// StoreOldPayment stores a pending payment of amount to the wallet's own
// account for a request living `life` (as a build before the lifetime bound
// could store one), its coins marked pending; nothing is sent.
func StoreOldPayment(ctx context.Context, w *Wallet, bank pb.BankClient, amount ecash.Amount, life time.Duration) error {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return err
	}
	acct, err := w.Account()
	if err != nil {
		return err
	}
	now := time.UnixMilli(w.now().UnixMilli())
	pr := &ecash.PaymentRequest{BankID: ks.BankID(), MerchantAccount: acct, MerchantPub: w.AccountKey(), OrderID: "old-1",
		Amount: amount, SummaryHash: sha256.Sum256([]byte("old")), CreatedAt: now, ExpiresAt: now.Add(life)}
	w.mu.Lock()
	picked, err := w.selectCoins(amount, ks)
	w.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = w.reserveCoins(ks, pr, pr.Body(), "old-shop", pr.OrderID, picked)
	return err
}

// NextIndex returns the planchet counter (m/next).
func NextIndex(w *Wallet) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	nb, err := get(w.db, keyNext)
	return beU64(nb), err
}

// TopCoinIndex returns the highest planchet index of a coin the wallet
// holds, and how many it holds.
func TopCoinIndex(w *Wallet) (top uint64, n int, err error) {
	err = w.eachCoin(func(c *coinRecord) error {
		n++
		top = max(top, c.Index)
		return nil
	})
	return top, n, err
}

// SavedCheckpoint returns the witness state VerifyLog saved (m/witness),
// nil if none.
func SavedCheckpoint(w *Wallet) ([]byte, error) { return get(w.db, keyWitness) }

// ForgetLogCheckTimes rewrites every due log check without the bank's
// answer time, as a build before it was kept wrote them.
func ForgetLogCheckTimes(w *Wallet) error {
	due, err := w.dueChecks()
	if err != nil {
		return err
	}
	for ref, c := range due {
		c.Answered, c.Asked = 0, 0
		if err := w.db.Set(logCheckKey(ref), c.encode(), pebble.Sync); err != nil {
			return err
		}
	}
	return nil
}

// ForgetPaidIndex deletes the index of kept receipts by payment request
// and its marker: a store written before the index existed.
func ForgetPaidIndex(w *Wallet) error {
	b := w.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte("h/"), prefixEnd([]byte("h/")), nil); err != nil {
		return err
	}
	if err := b.Delete(keyIndexed, nil); err != nil {
		return err
	}
	w.paidIndexed.Store(false) // as a store opened so
	return b.Commit(pebble.Sync)
}

// CorruptMasterPin overwrites the wallet's pinned master key (m/master)
// with bytes of the wrong length, as a store gone bad would hold: reading
// it fails, a failure of the wallet's own.
func CorruptMasterPin(w *Wallet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.db.Set(keyMasterPin, []byte("short"), pebble.Sync)
}

// DropSwapSent deletes every swap's send record (t/), as a store whose
// swaps an older build persisted holds them.
func DropSwapSent(w *Wallet) error {
	return w.db.DeleteRange([]byte("t/"), prefixEnd([]byte("t/")), pebble.Sync)
}

// SwapSentRecords counts the swap send records (t/).
func SwapSentRecords(w *Wallet) (int, error) { return w.countPending("t/") }

// LeaveSwapSent writes a send record for a swap that is not pending, as
// an older build leaves one behind when it settles the swap.
func LeaveSwapSent(w *Wallet, h ecash.Hash) error {
	return w.db.Set(swapSentKey(h), (&swapSent{LastSent: w.now()}).encode(), pebble.Sync)
}
