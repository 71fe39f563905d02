package wallet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Progress is told how many coins of a withdrawal are done.
type Progress func(done, total int)

// Withdraw debits amount from the wallet's bank account as fresh coins.
// Pending withdrawals from an earlier crash are finished first: one the
// bank refuses outright is dropped, its refusal kept for Recover's report
// (RecoverReport.Refused), and this withdrawal goes on; one it refuses as
// dated ahead of its clock stays pending and this withdrawal goes on; one
// it does not answer, or refuses for the lock of this wallet's source
// (bank.AccountLocked), stops this withdrawal (ErrPending). Coins are
// requested MaxPlanchetsPerRequest at a time; each batch is persisted before
// it is sent. On an error it returns the coins stored so far; an answer the
// bank got wrong stops it with ErrBadAnswer (see Disputes), and a refusal
// of a request dated ahead of the bank's clock with ErrClockAhead, of one
// dated too long before it with ErrClockBehind.
func (w *Wallet) Withdraw(ctx context.Context, bank pb.BankClient, amount ecash.Amount, progress Progress) ([]ecash.Coin, error) {
	if _, err := w.recoverWithdrawals(ctx, bank); err != nil {
		return nil, err
	}
	account, ks, err := w.accountFor(ctx, bank, amount, "withdraw")
	if err != nil {
		return nil, err
	}
	denoms, err := split(amount, ks, w.now())
	if err != nil {
		return nil, err
	}
	var coins []ecash.Coin
	caughtUp := false
	for start := 0; start < len(denoms); start += MaxPlanchetsPerRequest {
		batch := denoms[start:min(start+MaxPlanchetsPerRequest, len(denoms))]
		got, refused, err := w.withdrawBatch(ctx, bank, ks, account, batch)
		if alreadyIssued(err) && !caughtUp {
			// The counter may be stale (catchUp): if the bank shows it
			// signed one of the refused planchets, take in what this
			// seed got signed past it. Either way try once more, past
			// the refused indices (skipped).
			caughtUp = true
			if cerr := w.catchUp(ctx, bank, ks, refused); cerr != nil {
				return coins, errors.Join(err, cerr)
			}
			got, _, err = w.withdrawBatch(ctx, bank, ks, account, batch)
		}
		coins = append(coins, got...)
		if err != nil {
			return coins, err // with ErrBadAnswer, got holds the batch's good coins
		}
		if progress != nil {
			progress(len(coins), len(denoms))
		}
	}
	return coins, nil
}

// withdrawBatch prepares, persists and sends one withdraw request for
// denoms; sent is its planchets (nil if none was sent), for catchUp.
func (w *Wallet) withdrawBatch(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, account uint64, denoms []ecash.Denomination) (coins []ecash.Coin, sent *planchets, err error) {
	pw, key, err := w.prepareWithdraw(ctx, bank, account, denoms)
	if err != nil {
		return nil, nil, err
	}
	defer w.release(key)
	coins, err = w.sendWithdraw(ctx, bank, ks, pw)
	sent = &planchets{Indices: pw.Indices, Prepared: pw.Prepared, blinded: pw.blinded}
	if req, derr := ecash.DecodeWithdrawRequest(pw.Body); derr == nil {
		sent.Planchets = req.Planchets
	}
	return coins, sent, err
}

// accountFor returns the wallet's account and the bank's key set for an
// operation (what) on amount, which must be a positive amount of the
// bank's currency.
func (w *Wallet) accountFor(ctx context.Context, bank pb.BankClient, amount ecash.Amount, what string) (uint64, *ecash.KeySet, error) {
	account, err := w.Account()
	if err != nil {
		return 0, nil, err
	}
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return 0, nil, err
	}
	if amount.Currency != ks.Currency {
		return 0, nil, fmt.Errorf("%w: the bank holds %s", ecash.ErrCurrencyMismatch, ks.Currency)
	}
	if amount.IsZero() {
		return 0, nil, fmt.Errorf("%w: %s of zero", ecash.ErrBadAmount, what)
	}
	return account, ks, nil
}

// prepareWithdraw builds fresh planchets, signs the request and persists it
// in one synced write before anything is sent to be signed. It returns the
// request claimed (key): the caller sends it, then releases it.
func (w *Wallet) prepareWithdraw(ctx context.Context, bank pb.BankClient, account uint64, denoms []ecash.Denomination) (_ *pendingWithdraw, key string, err error) {
	fresh, err := w.newPlanchets(ctx, bank, denoms, true)
	if err != nil {
		return nil, "", err
	}
	persisted := false
	defer func() {
		if err != nil && !persisted {
			err = errors.Join(err, w.giveBack(fresh.res))
		}
	}()
	req := &ecash.WithdrawRequest{Account: account, CreatedAt: w.now(), Planchets: fresh.Planchets}
	if _, err := rand.Read(req.Nonce[:]); err != nil {
		return nil, "", err
	}
	// Claimed before it is persisted: a Recover running meanwhile leaves
	// it to this call.
	key = string(withdrawKey(req.Nonce))
	w.claim(key)
	defer func() {
		if err != nil {
			w.release(key)
		}
	}()
	pw := &pendingWithdraw{Indices: fresh.Indices, Prepared: fresh.Prepared, blinded: fresh.blinded, res: &fresh.res}
	pw.Body = req.Body()
	debits := make(map[ecash.Hash]ecash.Denomination, len(denoms))
	for _, d := range denoms {
		debits[d.ID] = d
	}
	amount, err := debitOf(req, func(id ecash.Hash) (ecash.Denomination, error) {
		if d, ok := debits[id]; ok {
			return d, nil
		}
		return ecash.Denomination{}, ecash.ErrUnknownDenomination
	})
	if err != nil {
		return nil, "", err
	}
	pw.Sig = ecash.SignWithdraw(w.acctKey, req, amount)
	if err := w.db.Set(withdrawKey(req.Nonce), pw.encode(), pebble.Sync); err != nil {
		return nil, "", err
	}
	persisted = true
	return pw, key, nil
}

// debitOf is what withdraw request req debits, its denominations looked
// up by denom: what the account signs.
func debitOf(req *ecash.WithdrawRequest, denom func(ecash.Hash) (ecash.Denomination, error)) (ecash.Amount, error) {
	return ecash.WithdrawAmount(req, func(id ecash.Hash) (ecash.Amount, bool) {
		d, err := denom(id)
		if err != nil {
			return ecash.Amount{}, false
		}
		v, err := d.WithdrawDebit()
		return v, err == nil
	})
}

// withdrawCheck is the log check an answered withdraw request req leaves:
// its entry debits the account what it signed for (a key keeps its fees
// once listed, so ks, which lists every denomination of an answer the
// wallet finished, gives the same), for coins of the denominations asked
// for. Its answer carries no date: it is judged by the request's.
func withdrawCheck(ks *ecash.KeySet, req *ecash.WithdrawRequest) (*logCheck, error) {
	debit, err := debitOf(req, ks.Denomination)
	if err != nil {
		return nil, err
	}
	c := &logCheck{Kind: logWithdraw, Merchant: req.Account, Credited: debit, Asked: req.CreatedAt.UnixMilli()}
	for _, p := range req.Planchets {
		c.Coins = append(c.Coins, p.Denom)
	}
	return c, nil
}

// planchets are blinded planchets with what the wallet needs to finish
// their coins: the seed indices and the first-round answers.
type planchets struct {
	Planchets []ecash.Planchet
	Indices   []uint64
	Prepared  [][]byte // CS R values, nil for RSA
	// blinded holds each planchet's secret and blinding state when this
	// process made it, so that finish need not derive and blind it again;
	// nil for planchets read back from a pending record (after a crash),
	// which finish re-derives from the seed.
	blinded []blindedPlanchet
	// res is the reservation of the indices, for giveBack until the
	// request is persisted.
	res reservation
}

type blindedPlanchet struct {
	ps ecash.PlanchetSecret
	st ecash.BlindState
}

// newPlanchets reserves planchet indices (for an account-signed withdrawal,
// or not), runs the first round for denominations whose cipher has one
// (CS), and blinds.
func (w *Wallet) newPlanchets(ctx context.Context, bank pb.BankClient, denoms []ecash.Denomination, withdrawal bool) (_ *planchets, err error) {
	res, err := w.reserveIndices(len(denoms), withdrawal)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.giveBack(res))
		}
	}()
	first := res.first
	secrets := make([]ecash.PlanchetSecret, len(denoms))
	out := &planchets{Prepared: make([][]byte, len(denoms)), res: res}
	prep := &pb.PrepareWithdrawRequest{}
	var asked []int
	for i, d := range denoms {
		if secrets[i], err = ecash.DerivePlanchet(w.seed, first+uint64(i)); err != nil {
			return nil, err
		}
		out.Indices = append(out.Indices, first+uint64(i))
		if r := secrets[i].PrepareRequest(d); r != nil {
			prep.Items = append(prep.Items, &pb.PrepareWithdrawRequest_Item{Denomination: d.ID[:], Request: r})
			asked = append(asked, i)
		}
	}
	if len(asked) > 0 {
		resp, err := bank.PrepareWithdraw(ctx, prep)
		if err != nil {
			return nil, err
		}
		if len(resp.Answers) != len(asked) {
			return nil, fmt.Errorf("wallet: bank answered %d of %d first-round requests", len(resp.Answers), len(asked))
		}
		for j, i := range asked {
			out.Prepared[i] = resp.Answers[j]
		}
	}
	for i, d := range denoms {
		p, st, err := secrets[i].Blind(d, out.Prepared[i])
		if err != nil {
			return nil, err
		}
		out.Planchets = append(out.Planchets, p)
		out.blinded = append(out.blinded, blindedPlanchet{secrets[i], st})
	}
	return out, nil
}

// finish unblinds the bank's signatures on planchets into fresh coin
// records, re-deriving each planchet from the seed unless this process
// made it (p.blinded), and checking every signature. Signatures that do
// not verify (or an answer with the wrong number of them) come back as a
// Dispute, its Kind, Request and At for the caller to fill, beside the
// coins that do verify; an error is the wallet's own trouble (a planchet
// that does not re-derive, a denomination the key set lacks), after which
// the operation stays pending.
func (w *Wallet) finish(ks *ecash.KeySet, p *planchets, blindSigs [][]byte) ([]coinRecord, *Dispute, error) {
	type redone struct {
		d ecash.Denomination
		blindedPlanchet
	}
	if p.blinded != nil && len(p.blinded) != len(p.Planchets) {
		return nil, nil, fmt.Errorf("wallet: %d blinding states for %d planchets", len(p.blinded), len(p.Planchets))
	}
	redo := make([]redone, len(p.Planchets))
	for i, pl := range p.Planchets {
		d, err := ks.Denomination(pl.Denom)
		if err != nil {
			return nil, nil, err
		}
		if p.blinded != nil {
			redo[i] = redone{d, p.blinded[i]}
			continue
		}
		ps, err := ecash.DerivePlanchet(w.seed, p.Indices[i])
		if err != nil {
			return nil, nil, err
		}
		again, st, err := ps.Blind(d, p.Prepared[i])
		if err != nil {
			return nil, nil, err
		}
		if string(again.Blinded) != string(pl.Blinded) {
			return nil, nil, fmt.Errorf("wallet: planchet %d does not re-derive", p.Indices[i])
		}
		redo[i] = redone{d, blindedPlanchet{ps, st}}
	}
	bad := &Dispute{}
	if len(blindSigs) != len(p.Planchets) {
		for i, r := range redo {
			bad.fail(p.Indices[i], p.Prepared[i], nil, r.d.Value)
		}
		bad.Answer = blindSigs
		bad.Reason = fmt.Sprintf("%d signatures for %d planchets", len(blindSigs), len(p.Planchets))
		return nil, bad, nil
	}
	var recs []coinRecord
	for i, r := range redo {
		sig, err := r.st.Unblind(blindSigs[i])
		if err != nil {
			if bad.Reason == "" {
				bad.Reason = fmt.Sprintf("planchet %d: %v", p.Indices[i], err)
			}
			bad.fail(p.Indices[i], p.Prepared[i], blindSigs[i], r.d.Value)
			continue
		}
		coin := ecash.Coin{Denom: r.d.ID, Pub: r.ps.CoinPub(), Sig: sig}
		recs = append(recs, coinRecord{Index: p.Indices[i], Coin: coin, Value: r.d.Value, State: CoinFresh})
	}
	if len(bad.Indices) == 0 {
		return recs, nil, nil
	}
	bad.Reason = fmt.Sprintf("%d of %d signatures do not verify (the first, %s)", len(bad.Indices), len(p.Planchets), bad.Reason)
	return recs, bad, nil
}

// reservation is a run of planchet indices reserved for one request, and
// the counter's state before (giveBack restores it).
type reservation struct {
	first, end uint64
	prevNext   uint64
	prevParked []byte // m/parked before, nil if none
	gen        uint64 // m/gen once reserved (see bumpGen)
}

// bumpGen adds to batch b the increment of the counter's generation
// (m/gen), and returns the new one. Every change to the counter or the
// parked range (a reservation, a park, a give-back, a raise) and every
// batch of coins a scan takes in bumps it, so a reservation's gen equal
// to m/gen means: nothing was reserved, parked, given back, raised or
// taken in since. Comparing m/next with the reservation's end is not
// enough: a catch-up's coins or another request's park or give-back in
// between can put it back there. The caller holds w.mu.
func (w *Wallet) bumpGen(b *pebble.Batch) (uint64, error) {
	gb, err := get(w.db, keyGen)
	if err != nil {
		return 0, err
	}
	gen := beU64(gb) + 1
	return gen, b.Set(keyGen, u64(gen), nil)
}

// unchanged reports whether nothing touched the counter since r was
// reserved (see bumpGen). The caller holds w.mu.
func (w *Wallet) unchanged(r reservation) (bool, error) {
	gb, err := get(w.db, keyGen)
	if err != nil {
		return false, err
	}
	nb, err := get(w.db, keyNext)
	if err != nil {
		return false, err
	}
	return beU64(gb) == r.gen && beU64(nb) == r.end, nil
}

// reserveIndices advances the planchet counter by n, durably, and returns
// the reservation (its first index, first). Indices of a request that
// showed the bank something signed and was not answered are skipped, never
// reused: a reused index would mint a coin key that may already be spent.
// The indices of a withdrawal the bank refused are parked for the next
// withdrawal (parkIndices): a request that is not one (a swap, a recoup)
// skips them. Those of a request that failed before anything signed was
// sent (its first round, say) are given back (giveBack).
func (w *Wallet) reserveIndices(n int, withdrawal bool) (reservation, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.catching > 0 {
		w.caught.Wait()
	}
	if restoring, err := get(w.db, keyRestore); err != nil {
		return reservation{}, err
	} else if restoring != nil {
		return reservation{}, ErrRestoring
	}
	nb, err := get(w.db, keyNext)
	if err != nil {
		return reservation{}, err
	}
	next := beU64(nb)
	parked, err := get(w.db, keyParked)
	if err != nil {
		return reservation{}, err
	}
	r := reservation{prevNext: next, prevParked: parked}
	b := w.db.NewBatch()
	defer b.Close()
	if parked != nil {
		end := beU64(parked)
		if !withdrawal {
			next = max(next, end)
		}
		if !withdrawal || next+uint64(n) >= end {
			if err := b.Delete(keyParked, nil); err != nil {
				return reservation{}, err
			}
		}
	}
	r.first, r.end = next, next+uint64(n)
	if err := b.Set(keyNext, u64(r.end), nil); err != nil {
		return reservation{}, err
	}
	if r.gen, err = w.bumpGen(b); err != nil {
		return reservation{}, err
	}
	return r, b.Commit(pebble.Sync)
}

// giveBack undoes a reservation whose request failed before anything
// signed was sent: at most its first round, whose nonces carry no account
// and are answered alike every time. Otherwise each failure in a row
// (the bank unreachable, or rate-limiting first rounds) would skip a
// request's indices, and a dozen would leave a hole wider than RestoreGap,
// hiding every later coin from a restore. It restores the counter (and the
// parked range) as they were, only if nothing touched them since the
// reservation (its generation, bumpGen: no reservation, park, give-back,
// raise or coins taken in by a scan); otherwise the indices stay skipped.
// So it never lowers the counter below a coin the wallet holds (a
// catch-up's, taken in meanwhile) nor drops a later refusal's parking.
func (w *Wallet) giveBack(r reservation) error {
	if r.end == r.first {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok, err := w.unchanged(r); err != nil || !ok {
		return err
	}
	b := w.db.NewBatch()
	defer b.Close()
	if err := b.Set(keyNext, u64(r.prevNext), nil); err != nil {
		return err
	}
	var err error
	if r.prevParked != nil {
		err = b.Set(keyParked, r.prevParked, nil)
	} else {
		err = b.Delete(keyParked, nil)
	}
	if err != nil {
		return err
	}
	if _, err := w.bumpGen(b); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// parkIndices gives the indices of a withdrawal the bank refused outright
// (reservation r) back to the next withdrawal, if nothing touched the
// counter since r (its generation, as giveBack). Only to a
// withdrawal: the refused request showed their blinded messages and CS
// nonces with the account's signature, which is no news in another of the
// account's withdrawals (under another key the blinding differs, §3.1 of
// PROTOCOL), but would link a swap to the account. Otherwise they stay
// skipped: a hole, which restore's gap spans unless many come in a row.
func (w *Wallet) parkIndices(r reservation) error {
	if r.end == r.first {
		return nil
	}
	first, end := r.first, r.end
	w.mu.Lock()
	defer w.mu.Unlock()
	if ok, err := w.unchanged(r); err != nil || !ok {
		return err
	}
	// An earlier refusal's parked indices may reach past these (this one
	// took fewer): they stay parked.
	parked, err := get(w.db, keyParked)
	if err != nil {
		return err
	}
	if parked != nil {
		end = max(end, beU64(parked))
	}
	b := w.db.NewBatch()
	defer b.Close()
	if err := b.Set(keyNext, u64(first), nil); err != nil {
		return err
	}
	if err := b.Set(keyParked, u64(end), nil); err != nil {
		return err
	}
	if _, err := w.bumpGen(b); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// sendWithdraw sends a persisted request and stores the resulting coins. A
// definitive refusal drops the request (the bank recorded nothing); any
// other failure keeps it for Recover. The refusal of a request recovered
// from the store is recorded for Recover's report (dropRefused) and comes
// back as a *refusedEarlier once the request is dropped and its indices
// parked or skipped.
func (w *Wallet) sendWithdraw(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, pw *pendingWithdraw) ([]ecash.Coin, error) {
	req, err := ecash.DecodeWithdrawRequest(pw.Body)
	if err != nil {
		return nil, err
	}
	// A recovered request of a denomination the key set no longer lists
	// (pruned past its deposit window while the answer was lost, or a set
	// older than the request) is not sent: a bank that does not serve
	// the denomination cannot compute its debit and, the request being
	// recorded, answers "retry" (bank.ErrNotServed), for ever. It stays
	// pending (unlisted) and stops nothing else.
	// (A live request was made from ks just now.)
	if pw.recovered {
		for i, p := range req.Planchets {
			if _, err := ks.Denomination(p.Denom); err != nil {
				return nil, fmt.Errorf("wallet: withdrawal %x…, planchet %d: %w", req.Nonce[:4], i, err)
			}
		}
	}
	w.tr.RecordEntry(w.now(), ecash.TranscriptEntry{Step: "withdraw-request", Data: pw.Body, Sig: pw.Sig, Signer: w.AccountKey()})
	resp, err := bank.Withdraw(ctx, &pb.WithdrawRequest{Body: pw.Body, AccountSig: pw.Sig})
	if err != nil {
		// A request sent before (recovered), refused as dated ahead of
		// the bank's clock, may be committing all the same: a replica
		// whose clock is further on took it, and commits it after this
		// one looked the record up (twice) and found none. The refusal
		// holds only until the bank's clock reaches the request's date:
		// it stays pending, stops nothing else, and is answered from
		// the record, or taken, when sent again then.
		if pw.recovered && clockAhead(err) {
			return nil, fmt.Errorf("%w: %w", ErrClockAhead, err)
		}
		// The same for one refused as its source's lock (failed
		// authentications from this address, anyone's: a copy of the
		// request sent from there is refused so too): the lock is about
		// the source, the bank records nothing of the request, and its
		// first send may be committing or be taken from elsewhere. It
		// stays pending; the lock stops this wallet's other requests
		// naming the account too, but not its swaps and payments
		// (recover goes on to them).
		if pw.recovered && accountLocked(err) {
			return nil, &lockedPending{err}
		}
		// And for one refused as naming a denomination the bank does
		// not serve: the key set lists them all (checked above), so the
		// replica is behind the one another replica published, and the
		// first send may be committing there. It stays pending (unlisted:
		// stops nothing else), sent again when a replica serves it.
		if pw.recovered && bankUnknownDenomination(err) {
			return nil, fmt.Errorf("wallet: withdrawal %x…: this bank replica does not serve its denominations yet: %w (%v)", req.Nonce[:4], ecash.ErrUnknownDenomination, err)
		}
		if definitive(err) {
			if derr := w.dropRefused(ks, req, pw, err); derr != nil {
				return nil, derr
			}
			// An answered CS nonce is never offered again. A request
			// recovered after a crash is parked too, by the generation
			// stored with it (pendingWithdraw.res); one stored without
			// it skips its indices. Its first send may have committed:
			// only a refusal the bank makes after looking its record up
			// (funds, limits: FailedPrecondition; its age, recorded:
			// clockBehind; not the lock, kept pending above) says it did
			// not; one made before (a denomination the replica does not
			// serve, the signature) leaves its indices skipped.
			unsigned := !pw.recovered || status.Code(err) == codes.FailedPrecondition || clockBehind(err)
			if status.Code(err) != codes.AlreadyExists && pw.res != nil && unsigned {
				if perr := w.parkIndices(*pw.res); perr != nil {
					return nil, errors.Join(err, perr)
				}
			}
			if pw.recovered {
				// Recorded for Recover's report (dropRefused): the
				// request's own outcome, not the caller's.
				return nil, &refusedEarlier{err}
			}
			if clockAhead(err) {
				return nil, fmt.Errorf("%w: %w", ErrClockAhead, err)
			}
			if clockBehind(err) {
				return nil, fmt.Errorf("%w: %w", ErrClockBehind, err)
			}
			return nil, err
		}
		return nil, fmt.Errorf("%w: withdraw: %v", ErrPending, err)
	}
	recs, bad, err := w.finish(ks, &planchets{Planchets: req.Planchets, Indices: pw.Indices, Prepared: pw.Prepared, blinded: pw.blinded}, resp.BlindSignatures)
	if err != nil {
		return nil, err
	}
	if bad != nil {
		// The bank debited the account; its answer will not change. Keep
		// the coins that verify and the evidence; stop retrying.
		bad.Kind, bad.Request, bad.At = "withdraw", pw.Body, w.now()
	}
	// Its log entry is checked however good the answer was: the bank
	// debited the account and issued something either way.
	check, err := withdrawCheck(ks, req)
	if err != nil {
		return nil, err
	}
	if err := w.storeCoins(req.Nonce, ecash.HashOf(pw.Body), check, recs, bad); err != nil {
		return nil, err
	}
	coins := make([]ecash.Coin, len(recs))
	for i := range recs {
		coins[i] = recs[i].Coin
	}
	return coins, bad.err()
}

// dropRefused drops the record of a withdrawal the bank refused outright
// (err). A request recovered from the store, pending from before, leaves
// the refusal in its place (f/<nonce>, in the same batch), for Recover to
// report: the call that sent it again goes on with its own work.
func (w *Wallet) dropRefused(ks *ecash.KeySet, req *ecash.WithdrawRequest, pw *pendingWithdraw, err error) error {
	if !pw.recovered {
		return w.db.Delete(withdrawKey(req.Nonce), pebble.Sync)
	}
	r := &RefusedWithdrawal{Nonce: req.Nonce, Amount: ecash.Amount{Currency: ks.Currency}, Reason: refusalReason(err), At: w.now()}
	// Every denomination is listed: a recovered request is sent only then
	// (sendWithdraw).
	if v, verr := ecash.WithdrawAmount(req, func(id ecash.Hash) (ecash.Amount, bool) {
		d, err := ks.Denomination(id)
		return d.Value, err == nil
	}); verr == nil {
		r.Amount = v
	}
	b := w.db.NewBatch()
	defer b.Close()
	if err := b.Delete(withdrawKey(req.Nonce), nil); err != nil {
		return err
	}
	if err := b.Set(refusedKey(req.Nonce), r.encode(), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// storeCoins records a finished withdrawal's coins, and bad if its answer
// was partly bad, and its log check (for request hash ref), and drops its
// pending record, atomically. If a concurrent Recover already did, it
// changes nothing; a coin already held is kept as it is (newCoins).
func (w *Wallet) storeCoins(nonce [16]byte, ref ecash.Hash, check *logCheck, recs []coinRecord, bad *Dispute) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if raw, err := get(w.db, withdrawKey(nonce)); err != nil || raw == nil {
		return err
	}
	b := w.db.NewBatch()
	defer b.Close()
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
		if err := b.Set(disputeKey(bad.Kind, nonce[:]), bad.encode(), nil); err != nil {
			return err
		}
	}
	// Reserved indices, below the counter already: kept so (holdIndices).
	if err := w.holdIndices(b, used, false); err != nil {
		return err
	}
	if err := b.Set(logCheckKey(ref), check.encode(), nil); err != nil {
		return err
	}
	if err := b.Delete(withdrawKey(nonce), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	w.recordCoins(added)
	return nil
}

// newCoins adds to batch b the records of the coins of recs the wallet
// does not hold yet, and returns those. A coin it holds keeps its record:
// a scan (a catch-up, a restore) may have taken it in before the request
// that issued it was settled, and it may be pending or spent since;
// written fresh again, it would count in the balance until a spend is
// refused. The caller holds w.mu.
func (w *Wallet) newCoins(b *pebble.Batch, recs []coinRecord) ([]coinRecord, error) {
	var added []coinRecord
	seen := make(map[ecash.Hash]bool, len(recs)) // one id twice in recs: a reused key
	for _, rec := range recs {
		id := rec.Coin.ID()
		if seen[id] {
			continue
		}
		seen[id] = true
		key := coinKey(id)
		if old, err := get(w.db, key); err != nil {
			return nil, err
		} else if old != nil {
			continue
		}
		if err := b.Set(key, rec.encode(), nil); err != nil {
			return nil, err
		}
		added = append(added, rec)
	}
	return added, nil
}

// recordCoins records in the transcript the coins a committed batch added
// (newCoins): once each, as the wallet took them in, so that a coin held
// before is not issued twice there.
func (w *Wallet) recordCoins(recs []coinRecord) {
	for _, rec := range recs {
		w.tr.Record(w.now(), "coin", rec.Coin.Encode(), rec.Value.String())
	}
}

// Recover finishes withdrawals and swaps that were persisted but not
// completed, settles pending payments the bank can decide (paid, or unpaid and too
// late to be paid), and swaps revealed coins (Balance.Revealed) for new ones.
// A pending withdrawal the bank refuses outright is dropped and reported
// in the report, with those an earlier Withdraw dropped so (each once),
// not as Recover's error; on an error they are left for the next Recover.
// One it refuses as dated ahead of its clock stays pending (another
// replica may have taken it): a Recover once the bank's clock reaches its
// date finishes it. One it refuses for the lock of this wallet's source
// (bank.AccountLocked) stays pending too, and is Recover's error
// (ErrPending, ErrAccountLocked) once the swaps and payments, which the
// lock does not stop, are settled: a Recover once the account is unlocked
// finishes it. That error alone comes with the report (not nil), whose
// items are not reported again. One
// refused as naming a denomination the bank does not serve, which the
// wallet's key set lists (a replica behind), stays pending and stops
// nothing: a Recover at a replica that serves it finishes it.
func (w *Wallet) Recover(ctx context.Context, bank pb.BankClient) (*RecoverReport, error) {
	ahead, locked := w.recover(ctx, bank)
	if locked != nil && !errors.As(locked, new(*lockedPending)) {
		return nil, locked
	}
	refused, err := w.takeRefused()
	if err != nil {
		return nil, err
	}
	swaps, err := w.takeSwapRecoveries()
	if err != nil {
		return nil, err
	}
	rep := &RecoverReport{Refused: refused, Swaps: swaps}
	if ahead != nil {
		rep.ClockAhead = bankMessage(ahead)
	}
	// The report of what was settled is taken (each item is reported
	// once), so it comes with the lock's error, not instead of it.
	return rep, locked
}

// lockedPending is a pending withdrawal the bank refused for the lock of
// this wallet's source (bank.AccountLocked), kept pending (sendWithdraw):
// ErrPending, with the bank's refusal.
type lockedPending struct{ err error }

func (e *lockedPending) Error() string   { return fmt.Sprintf("%v: withdraw: %v", ErrPending, e.err) }
func (e *lockedPending) Unwrap() []error { return []error{ErrPending, ErrAccountLocked} }

// recover is Recover's work; ahead is the bank's refusal of a pending
// withdrawal as dated ahead of its clock (recoverWithdrawals), or nil.
// A withdrawal kept pending for the lock of this wallet's source is its
// error, once the swaps and payments, which the lock does not stop, are
// settled.
func (w *Wallet) recover(ctx context.Context, bank pb.BankClient) (ahead, err error) {
	ahead, err = w.recoverWithdrawals(ctx, bank)
	var locked error
	if errors.As(err, new(*lockedPending)) {
		locked = err
	} else if err != nil {
		return nil, err
	}
	ks, err := w.KeySet()
	if errors.Is(err, ErrNoKeys) {
		return ahead, locked // never talked to the bank: nothing can be pending
	}
	if err != nil {
		return nil, err
	}
	if err := w.recoverSwaps(ctx, bank, ks); err != nil {
		return nil, err
	}
	if err := w.reconcilePayments(ctx, bank, ks); err != nil {
		return nil, err
	}
	// Settling payments may reveal coins, and an earlier failure may have
	// left some unswapped (the bank unreachable, or a crash).
	if err := w.renewRevealed(ctx, bank, ks); err != nil {
		return nil, err
	}
	return ahead, locked
}

// unlisted reports whether a pending request's answer could not be turned
// into coins because the key set does not list one of its denominations.
// The request stays pending rather than stopping the wallet's other
// operations, which recover pending requests first: the key set may be
// older than the request (Recover read it before another call made the
// request with a newer one; a later recovery finishes it), or the
// denomination left it while the answer was lost (its deposit window
// closed: its coin would be worth nothing, and the request's inputs stay
// pending). Dropping its outputs instead would lose the coins of the first.
func unlisted(err error) bool { return errors.Is(err, ecash.ErrUnknownDenomination) }

// recoverWithdrawals sends the pending withdrawals again. ahead is the
// bank's refusal of one as dated ahead of its clock (the last, if several:
// they say the same of one clock), which leaves it pending. One refused
// for the lock of this wallet's source stays pending too, and is the
// error (a *lockedPending) once the others were sent.
func (w *Wallet) recoverWithdrawals(ctx context.Context, bank pb.BankClient) (ahead, err error) {
	keys, err := w.pendingKeys("w/")
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	var locked error
	for _, key := range keys {
		err := sendClaimed(w, key, decodePendingWithdraw, func(pw *pendingWithdraw) error {
			_, err := w.sendWithdraw(ctx, bank, ks, pw)
			return err
		})
		// A bad answer is recorded by now (ErrBadAnswer comes only after
		// the record is written), and so is an outright refusal (for
		// Recover's report; its indices parked or skipped by then), and
		// one refused for now as dated ahead of the bank's clock stays
		// pending: go on to the others, and the caller to its own work.
		// One refused for the lock of this wallet's source stays pending
		// as well: go on to the others; the error stops the caller's
		// withdrawal, not Recover's swaps and payments (recover).
		// Anything else (the bank not answering: the request's outcome
		// unknown) stops the caller.
		var refused *refusedEarlier
		if errors.Is(err, ErrClockAhead) {
			ahead = err
			continue
		}
		if errors.As(err, new(*lockedPending)) {
			locked = err
			continue
		}
		if err != nil && !errors.Is(err, ErrBadAnswer) && !unlisted(err) && !errors.As(err, &refused) {
			return nil, fmt.Errorf("wallet: recovering a withdrawal: %w", err)
		}
	}
	return ahead, locked
}

// PendingWithdrawals counts withdrawals waiting for Recover.
func (w *Wallet) PendingWithdrawals() (int, error) { return w.countPending("w/") }

// PendingSwaps counts swaps and recoups not settled yet (Recover settles
// them). One whose outputs the wallet took in already (a catch-up's scan
// found them) counts in Balance.Pending only the outputs not held yet,
// nothing if it holds them all, and still waits for Recover.
func (w *Wallet) PendingSwaps() (int, error) { return w.countPending("s/") }

func (w *Wallet) countPending(prefix string) (int, error) {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		return 0, err
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n, errors.Join(it.Error(), it.Close())
}
