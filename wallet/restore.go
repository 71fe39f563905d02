package wallet

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// RestoreGap is how many planchet indices in a row restore scans without
// finding a coin before it stops. Indices are reserved per request (at
// most MaxPlanchetsPerRequest for a withdrawal; a swap's outputs), durably,
// before its first round. Those of a request that failed before anything
// signed was sent (its first round refused or unanswered) are given back
// (giveBack); those of a withdrawal the bank refused go to the next
// withdrawal (parkIndices). Both only if nothing touched the counter since
// (its generation, bumpGen). The
// rest are skipped: a refused swap's or recoup's (sending its planchets in
// another request would link the two), a withdrawal's refused with
// ALREADY_EXISTS (a CS nonce or blinded message answered before), one
// that failed after another request reserved indices, and one that
// outlived a crash between reserving and persisting. Holes stay
// rare: only such skips with more than RestoreGap indices in all, with no
// coin between them, hide the coins after them from a restore.
const RestoreGap = 4 * MaxPlanchetsPerRequest

// maxRestoreDisputes stops a restore whose bank keeps answering signatures
// that do not verify.
const maxRestoreDisputes = 64

// Seed returns the wallet's seed: with it alone, Restore rebuilds the
// wallet. Keep it as secret as the coins.
func (w *Wallet) Seed() []byte { return append([]byte(nil), w.seed...) }

// RestoreProgress is told how many planchet indices were scanned and how
// many coins were found so far.
type RestoreProgress func(scanned uint64, found int)

// RestoreReport is what a restore found.
type RestoreReport struct {
	Scanned  uint64       // planchet indices scanned
	Found    int          // coins the bank signed for this seed (new to this wallet or not)
	Added    int          // of which were not in the wallet yet
	Spent    int          // coins the bank holds spent
	Disputed int          // signatures of the bank that did not verify (see Disputes)
	Fresh    ecash.Amount // the wallet's fresh value afterwards
}

// Restore rebuilds a wallet in dir from its seed alone. Every coin and the
// account key derive from the seed and a planchet index, so it re-derives
// the planchets of successive indices under every denomination of the key
// set, asks the bank which of their blinded messages it signed (in batches
// of up to ecash.MaxCoinsPerRequest), unblinds and verifies those coins,
// and stops after RestoreGap indices without one. Then it asks which of
// the coins are spent and keeps the others fresh. Run it again on the same
// directory to resume or re-check: coins already held are left as they are,
// except that coins the bank holds spent are marked spent.
//
// Privacy: a restore shows the bank which coins are this wallet's (it sees
// the blinded messages, then the coin ids), linking the wallet's past
// payments to its account. Restore is for a lost device, not routine use.
//
// The account id is not derivable: set it with SetAccount afterwards.
func Restore(ctx context.Context, dir string, seed []byte, bank pb.BankClient, opts Options, progress RestoreProgress) (*Wallet, *RestoreReport, error) {
	w, err := openForRestore(dir, seed, opts)
	if err != nil {
		return nil, nil, err
	}
	rep, err := w.restore(ctx, bank, progress)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, rep, nil
}

// ReadSeed reads the seed of the wallet in dir without changing anything
// there: how a copy of a wallet directory (a backup) is put back, by
// Restore from its seed into a new directory. Its planchet counter is the
// copy's, behind the indices the wallet used after it; a restore scans
// them, where a copy used in place would make their coins again under
// other denominations, coins the bank holds spent (see catchUp).
func ReadSeed(dir string) ([]byte, error) {
	seed, _, err := ReadCopy(dir)
	return seed, err
}

// ReadCopy is ReadSeed that also returns the bank account the copy was
// set to (0 if none): the account cannot be derived from the seed, and a
// copy that knows it should not have to be told again.
func ReadCopy(dir string) (seed []byte, account uint64, err error) {
	db, err := openDB(dir, nil, true)
	if err != nil {
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			return nil, 0, ErrNotFound
		}
		return nil, 0, err
	}
	defer db.Close()
	if seed, err = get(db, keySeed); err == nil && seed == nil {
		err = ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	if len(seed) != seedSize {
		return nil, 0, fmt.Errorf("wallet: %s holds a seed of %d bytes, not %d: not a wallet of this kind, or damaged", dir, len(seed), seedSize)
	}
	acct, err := get(db, keyAccount)
	if err != nil {
		return nil, 0, err
	}
	if len(acct) == 8 {
		account = beU64(acct)
	}
	return seed, account, nil
}

// openForRestore opens the wallet in dir if it was made from seed, or
// creates one from seed if dir holds none.
func openForRestore(dir string, seed []byte, opts Options) (*Wallet, error) {
	w, err := Open(dir, opts)
	if errors.Is(err, ErrNotFound) {
		return createFromSeed(dir, seed, true, opts)
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(w.seed, seed) != 1 {
		w.Close()
		return nil, fmt.Errorf("%w: made from another seed", ErrExists)
	}
	return w, nil
}

// candidate is one planchet index tried under one denomination.
type candidate struct {
	index    uint64
	denom    ecash.Denomination
	ps       ecash.PlanchetSecret
	prepared []byte // the first-round answer (CS), nil for RSA
	st       ecash.BlindState
	hash     ecash.Hash
}

func (w *Wallet) restore(ctx context.Context, bank pb.BankClient, progress RestoreProgress) (*RestoreReport, error) {
	// Until the scan ends, indices another copy of this seed used may lie
	// past m/next: no index is reserved meanwhile, even after a crash
	// (reserveIndices refuses while the marker is set).
	if err := w.db.Set(keyRestore, []byte{1}, pebble.Sync); err != nil {
		return nil, err
	}
	ks, err := w.RefreshKeys(ctx, bank)
	if err != nil {
		return nil, err
	}
	rep := &RestoreReport{}
	found, _, end, err := w.scan(ctx, bank, ks, 0, rep, progress)
	if err != nil {
		return nil, err
	}
	if err := w.advanceIndex(end); err != nil {
		return nil, err
	}
	spent, err := w.markSpent(ctx, bank, ks, found)
	if err != nil {
		return nil, err
	}
	rep.Spent = spent
	bal, err := w.Balance()
	if err != nil {
		return nil, err
	}
	rep.Fresh = bal.Fresh
	return rep, nil
}

// scan looks for the coins the bank signed for this seed from planchet
// index from on, under every denomination of ks, until RestoreGap indices
// in a row without one, and stores those not held yet (and the disputes
// over signatures that do not verify). It returns the ids of the coins
// found, of those the ones it added (not held before), and the index after
// the last one used; rep counts what it did.
func (w *Wallet) scan(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, from uint64, rep *RestoreReport, progress RestoreProgress) (found, added []ecash.Hash, end uint64, err error) {
	if len(ks.Denominations) == 0 {
		return nil, nil, 0, fmt.Errorf("wallet: the bank's key set has no denominations")
	}
	perBatch := uint64(max(1, ecash.MaxCoinsPerRequest/len(ks.Denominations)))
	next, lastFound, lastUsed := from, int64(from)-1, int64(from)-1
	for next < uint64(lastFound+1)+RestoreGap {
		cands, err := w.candidates(ctx, bank, ks, next, perBatch)
		if err != nil {
			return nil, nil, 0, err
		}
		recs, bad, err := w.signed(ctx, bank, cands)
		if err != nil {
			return nil, nil, 0, err
		}
		newIDs, err := w.addCoins(recs, bad)
		if err != nil {
			return nil, nil, 0, err
		}
		added = append(added, newIDs...)
		for _, d := range bad {
			// Used, but not by a coin: it does not stretch the scan (a
			// bank answering garbage everywhere would stretch it forever).
			lastUsed = max(lastUsed, int64(d.Indices[0]))
		}
		if rep.Disputed += len(bad); rep.Disputed > maxRestoreDisputes {
			return nil, nil, 0, fmt.Errorf("%w: restore stopped after %d signatures that do not verify (the coins found so far are stored; until a restore finishes, the wallet withdraws and swaps nothing, see Disputes)", ErrBadAnswer, rep.Disputed)
		}
		for _, r := range recs {
			found = append(found, r.Coin.ID())
			lastFound = max(lastFound, int64(r.Index))
		}
		rep.Found += len(recs)
		rep.Added += len(newIDs)
		next += perBatch
		rep.Scanned = next
		if progress != nil {
			progress(next, rep.Found)
		}
	}
	return found, added, uint64(max(lastFound, lastUsed) + 1), nil
}

// catchUp answers the bank's ErrAlreadyIssued: a new request of this
// wallet held a blinded message the bank had signed in another, so the
// planchet counter is behind the indices this seed used (the wallet
// directory was put back from a copy, or another copy of the seed is in
// use). refused is the refused request's planchets. It first checks the
// claim (issuedBefore): only if the bank shows a signature on one of
// them that unblinds to a valid coin of this seed does it scan, from the
// refused request's first index as Restore does, taking in the coins
// found, moving the counter past each in the batch that stores it
// (addCoins), marking spent those of them the bank holds spent, and moving
// the counter past the scan's last used index. Whatever fails on the way
// (a later batch, markSpent, a crash), no coin it took in is at or above
// the counter. A claim that does not hold is not acted on: nothing is
// scanned (the refused request's indices stay skipped, and the caller
// tries once more past them). Like a restore, a scan shows the bank
// which coins are this wallet's.
//
// What a malicious bank can still do: (1) trigger the scan at the price
// of a coin: signing one of the refused request's blinded messages (a
// coin it gives the wallet without a debit) passes the check, and the scan
// then shows it the blinded messages of the RestoreGap indices after the
// last coin found, under every denomination, beside the refused request
// (an account-signed withdrawal's, or a swap's); the counter stops after
// the last coin found, so the wallet's later requests use those indices
// and the bank can link them to that request. The same holds after an
// honest catch-up. (2) Say coins the catch-up took in are spent: markSpent
// takes its word (only for coins new to the wallet, never for ones it
// held before), so the wallet does not spend them; they were the lost
// copy's, of which only the bank knows the state.
//
// A planchet index reused under another denomination is not caught: its
// blinded message is new to the bank, and its coin, whose id is its key
// (the same under every denomination), is as spent as the old one. Hence a
// wallet is put back with Restore, never by copying its directory back.
func (w *Wallet) catchUp(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, refused *planchets) error {
	if ok, err := w.issuedBefore(ctx, bank, ks, refused); err != nil || !ok {
		return err
	}
	// Swaps (and recoups) pending, their answer lost, are settled first,
	// as far as the bank answers (recoverSwaps; one in flight is left to
	// its call). A coin the scan finds at a pending swap's planchet does
	// not tell whether the swap went through: the lost copy may have got
	// the same planchet signed, and then the bank refuses the swap
	// (ErrAlreadyIssued) and its inputs are the wallet's. Taken for the
	// swap's output, it would drop them from Balance (pendingSwaps): for
	// a swap in flight it does, until the refusal is processed (see
	// Balance.Pending). Such a coin gets no transcript line: no coin a
	// scan takes in does (TRANSCRIPTS.md, "coin").
	_ = w.recoverSwaps(ctx, bank, ks)
	// No reservation while the scan runs: its indices would be those whose
	// coins the scan takes in.
	w.mu.Lock()
	w.catching++
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.catching--
		w.caught.Broadcast()
		w.mu.Unlock()
	}()
	// From the counter as the refused request found it: a swap skips a
	// parked range, whose indices a copy's coins may hold too.
	from := refused.Indices[0]
	if r := refused.res; r.end != 0 && r.prevNext < from {
		from = r.prevNext
	}
	_, added, end, err := w.scan(ctx, bank, ks, from, &RestoreReport{}, nil)
	if err != nil {
		return fmt.Errorf("wallet: catching up with the planchets this seed used: %w", err)
	}
	if _, err := w.markSpent(ctx, bank, ks, added); err != nil {
		return err
	}
	return w.raiseIndex(end)
}

// issuedBefore checks a refusal for a blinded message signed before
// (ErrAlreadyIssued): it asks the bank for its signatures on the refused
// request's own blinded messages only (the bank saw them in the request),
// and reports whether one unblinds to a valid coin of this seed, which
// the bank can show only if it signed that message. The refusal's text
// alone proves nothing: a bank (or anyone relaying its errors) can send
// it for any request.
func (w *Wallet) issuedBefore(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, p *planchets) (bool, error) {
	if p == nil || len(p.Planchets) == 0 {
		return false, nil
	}
	resp, err := bank.IssuedSignatures(ctx, &pb.IssuedSignaturesRequest{BlindedHashes: blindedHashes(p.Planchets)})
	if err != nil {
		return false, fmt.Errorf("wallet: checking the bank's claim of planchets signed before: %w", err)
	}
	if len(resp.BlindSignatures) != len(p.Planchets) {
		return false, nil
	}
	for i, bs := range resp.BlindSignatures {
		if len(bs) == 0 {
			continue
		}
		d, err := ks.Denomination(p.Planchets[i].Denom)
		if err != nil {
			continue
		}
		var bp blindedPlanchet
		if p.blinded != nil {
			bp = p.blinded[i]
		} else {
			ps, err := ecash.DerivePlanchet(w.seed, p.Indices[i])
			if err != nil {
				return false, err
			}
			again, st, err := ps.Blind(d, p.Prepared[i])
			if err != nil || string(again.Blinded) != string(p.Planchets[i].Blinded) {
				continue
			}
			bp = blindedPlanchet{ps, st}
		}
		sig, err := bp.st.Unblind(bs)
		if err != nil {
			continue
		}
		coin := ecash.Coin{Denom: d.ID, Pub: bp.ps.CoinPub(), Sig: sig}
		if coin.Verify(d.Key) == nil {
			return true, nil
		}
	}
	return false, nil
}

// candidates derives the planchets of indices [first, first+n) under every
// denomination, running the first round for ciphers that have one.
func (w *Wallet) candidates(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, first, n uint64) ([]candidate, error) {
	var (
		cands []candidate
		prep  = &pb.PrepareWithdrawRequest{}
		asked []int
	)
	for i := first; i < first+n; i++ {
		ps, err := ecash.DerivePlanchet(w.seed, i)
		if err != nil {
			return nil, err
		}
		for _, d := range ks.Denominations {
			if r := ps.PrepareRequest(d); r != nil {
				prep.Items = append(prep.Items, &pb.PrepareWithdrawRequest_Item{Denomination: d.ID[:], Request: r})
				asked = append(asked, len(cands))
			}
			cands = append(cands, candidate{index: i, denom: d, ps: ps})
		}
	}
	prepared := make([][]byte, len(cands))
	if len(asked) > 0 {
		resp, err := paced(ctx, func() (*pb.PrepareWithdrawResponse, error) { return bank.PrepareWithdraw(ctx, prep) })
		if err != nil {
			return nil, fmt.Errorf("wallet: restore: first round: %w", err)
		}
		if len(resp.Answers) != len(asked) {
			return nil, fmt.Errorf("wallet: bank answered %d of %d first-round requests", len(resp.Answers), len(asked))
		}
		for j, c := range asked {
			prepared[c] = resp.Answers[j]
		}
	}
	// Blinding is the cost of a restore (an RSA modular inverse per
	// candidate): spread it over the cores.
	err := parallel(len(cands), func(i int) error {
		c := &cands[i]
		pl, st, err := c.ps.Blind(c.denom, prepared[i])
		if err != nil {
			return err
		}
		c.st, c.hash, c.prepared = st, ecash.HashOf(pl.Blinded), prepared[i]
		return nil
	})
	return cands, err
}

// parallel runs f(0..n-1) on all cores and returns the first error.
func parallel(n int, f func(i int) error) error {
	workers := min(n, runtime.GOMAXPROCS(0))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// signed asks the bank for the signatures on the candidates and turns each
// into a verified fresh coin record; a signature that does not verify is a
// dispute, and the restore goes on.
func (w *Wallet) signed(ctx context.Context, bank pb.BankClient, cands []candidate) ([]coinRecord, []*Dispute, error) {
	req := &pb.IssuedSignaturesRequest{}
	for _, c := range cands {
		req.BlindedHashes = append(req.BlindedHashes, c.hash[:])
	}
	resp, err := paced(ctx, func() (*pb.IssuedSignaturesResponse, error) { return bank.IssuedSignatures(ctx, req) })
	if err != nil {
		return nil, nil, fmt.Errorf("wallet: restore: %w", err)
	}
	if len(resp.BlindSignatures) != len(cands) {
		return nil, nil, fmt.Errorf("wallet: bank answered %d of %d blinded messages", len(resp.BlindSignatures), len(cands))
	}
	var recs []coinRecord
	var bad []*Dispute
	for i, bs := range resp.BlindSignatures {
		if len(bs) == 0 {
			continue
		}
		c := cands[i]
		sig, err := c.st.Unblind(bs)
		if err != nil {
			d := &Dispute{Kind: "restore", Request: c.hash[:], Reason: fmt.Sprintf("planchet %d: %v", c.index, err), At: w.now()}
			d.fail(c.index, c.prepared, bs, c.denom.Value)
			bad = append(bad, d)
			continue
		}
		coin := ecash.Coin{Denom: c.denom.ID, Pub: c.ps.CoinPub(), Sig: sig}
		recs = append(recs, coinRecord{Index: c.index, Coin: coin, Value: c.denom.Value, State: CoinFresh})
	}
	return recs, bad, nil
}

// addCoins stores coin records not yet held, and the disputes over
// signatures that failed, atomically, and returns the ids of the coins
// added. In the
// same batch it moves the planchet counter past every index it stores
// (holdIndices): a scan that fails half-way (a later batch, markSpent, a
// crash) leaves no coin the wallet holds at or above the counter, whose
// planchets the next request would derive again.
func (w *Wallet) addCoins(recs []coinRecord, bad []*Dispute) ([]ecash.Hash, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.db.NewBatch()
	defer b.Close()
	newRecs, err := w.newCoins(b, recs)
	if err != nil {
		return nil, err
	}
	var added []ecash.Hash
	for _, r := range newRecs {
		added = append(added, r.Coin.ID())
	}
	var used []uint64
	for _, r := range recs {
		used = append(used, r.Index)
	}
	for _, d := range bad {
		used = append(used, d.Indices...)
		if err := b.Set(disputeKey(d.Kind, d.Request), d.encode(), nil); err != nil {
			return nil, err
		}
	}
	if err := w.holdIndices(b, used, true); err != nil {
		return nil, err
	}
	return added, b.Commit(pebble.Sync)
}

// holdIndices adds to batch b a move of the planchet counter (m/next) to
// max(m/next, i+1) for every index i in used. Every write of a coin record
// (or dispute) with a planchet index goes through it, in the same batch,
// so that the wallet keeps the invariant: no coin it holds is at or above
// the counter. A counter left behind a held coin makes the next request
// derive that coin's key again: refused if under the same denomination,
// but under another (after a key rotation) signed and debited, and its
// record dropped as a duplicate (storeCoins): paid for nothing. The caller
// holds w.mu.
//
// taken is true for coins a scan took in (not reserved by a request of
// this process): they bump the counter's generation (bumpGen) whatever the
// counter, so that a reservation made before them is not given back or
// parked below them. A request's own coins, at its reserved indices, bump
// it only if the counter moves.
func (w *Wallet) holdIndices(b *pebble.Batch, used []uint64, taken bool) error {
	if len(used) == 0 {
		return nil
	}
	nb, err := get(w.db, keyNext)
	if err != nil {
		return err
	}
	next := beU64(nb)
	top := next
	for _, i := range used {
		top = max(top, i+1)
	}
	if top != next {
		if err := b.Set(keyNext, u64(top), nil); err != nil {
			return err
		}
	}
	if top != next || taken {
		_, err = w.bumpGen(b)
	}
	return err
}

// advanceIndex moves the planchet counter to at least next, so that no
// index a coin was found at is used again, and ends the restore.
func (w *Wallet) advanceIndex(next uint64) error { return w.moveIndex(next, true) }

// raiseIndex moves the planchet counter to at least next (catchUp).
func (w *Wallet) raiseIndex(next uint64) error { return w.moveIndex(next, false) }

func (w *Wallet) moveIndex(next uint64, restored bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	nb, err := get(w.db, keyNext)
	if err != nil {
		return err
	}
	b := w.db.NewBatch()
	defer b.Close()
	if beU64(nb) < next {
		if err := b.Set(keyNext, u64(next), nil); err != nil {
			return err
		}
		if _, err := w.bumpGen(b); err != nil {
			return err
		}
	}
	if restored {
		if err := b.Delete(keyRestore, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

// markSpent asks the bank which coins are spent and marks fresh ones among
// them spent; it returns how many the bank holds spent. A spent coin with
// refund credit (its payment refunded since) gets its payment's receipt
// stored (refundPayments), so that CollectRefunds finds the credit.
func (w *Wallet) markSpent(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, ids []ecash.Hash) (int, error) {
	spent := 0
	refunded := map[ecash.Hash][]ecash.Hash{} // payment hash: its coins with credit
	for start := 0; start < len(ids); start += ecash.MaxCoinsPerRequest {
		batch := ids[start:min(start+ecash.MaxCoinsPerRequest, len(ids))]
		req := &pb.CoinsSpentRequest{CoinIds: hashBytes(batch)}
		resp, err := paced(ctx, func() (*pb.CoinsSpentResponse, error) { return bank.CoinsSpent(ctx, req) })
		if err != nil {
			return 0, fmt.Errorf("wallet: restore: %w", err)
		}
		if len(resp.Spent) != len(batch) {
			return 0, fmt.Errorf("wallet: bank answered %d of %d coins", len(resp.Spent), len(batch))
		}
		if len(resp.RefundCredit) == len(batch) && len(resp.RefundPayment) == len(batch) {
			for i, credit := range resp.RefundCredit {
				if credit > 0 && resp.Spent[i] && len(resp.RefundPayment[i]) == len(ecash.Hash{}) {
					h := ecash.Hash(resp.RefundPayment[i])
					refunded[h] = append(refunded[h], batch[i])
				}
			}
		}
		w.mu.Lock()
		b := w.db.NewBatch()
		for i, s := range resp.Spent {
			if !s {
				continue
			}
			spent++
			c, err := w.coin(batch[i])
			if err == nil && c.State == CoinFresh {
				c.State = CoinSpent
				err = b.Set(coinKey(batch[i]), c.encode(), nil)
			}
			if err != nil {
				b.Close()
				w.mu.Unlock()
				return 0, err
			}
		}
		err = b.Commit(pebble.Sync)
		b.Close()
		w.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return spent, w.refundPayments(ctx, bank, ks, refunded)
}

// refundPayments fetches, checks and stores the bank's receipt of each
// payment (by hash) that spent coins of this wallet since refunded: a
// wallet restored from its seed has none of its receipts, which
// CollectRefunds walks to find refund credit and checks it against (it
// collects each payment's credit in a swap of its own, so that no swap
// links two payments). Asking links nothing: a restore has shown the bank
// these coins are this wallet's.
func (w *Wallet) refundPayments(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, refunded map[ecash.Hash][]ecash.Hash) error {
	for h, coins := range refunded {
		resp, err := paced(ctx, func() (*pb.DepositResponse, error) {
			return bank.DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: h[:]})
		})
		if err != nil {
			return fmt.Errorf("wallet: the receipt of refunded payment %x: %w", h[:8], err)
		}
		rcpt, err := ecash.DecodeDepositReceipt(resp.Receipt)
		if err == nil {
			err = w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error { return rcpt.Verify(ks, nil) })
		}
		if err == nil && rcpt.PaymentHash != h {
			err = fmt.Errorf("%w: the receipt is of another payment", ecash.ErrBadSignature)
		}
		for _, c := range coins {
			if err == nil && !slices.Contains(rcpt.Coins, c) {
				err = fmt.Errorf("%w: the receipt does not name coin %x", ecash.ErrBadSignature, c[:8])
			}
		}
		if err != nil {
			return fmt.Errorf("wallet: the bank's receipt of refunded payment %x: %w", h[:8], err)
		}
		if err := w.db.Set(restoredReceiptKey(h), resp.Receipt, pebble.Sync); err != nil {
			return err
		}
	}
	return nil
}

// paced makes a restore's call, and when the bank refuses it for going too
// fast (RESOURCE_EXHAUSTED: a restore's calls are large, and a bank charges
// its per-address rate by their items) waits and makes it again: at first
// pacedWait, doubling, up to pacedTries calls in all.
func paced[T any](ctx context.Context, call func() (T, error)) (T, error) {
	wait := pacedWait
	for try := 1; ; try++ {
		resp, err := call()
		if status.Code(err) != codes.ResourceExhausted || try == pacedTries {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// The pace of a restore refused for its rate: waits of 250 ms, 500 ms, ...,
// 16 s, half a minute in all, enough for any bucket to fill again.
var (
	pacedWait  = 250 * time.Millisecond
	pacedTries = 8
)
