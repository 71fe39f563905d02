// Package wallet is the blindbank wallet library: a persistent coin store on
// Pebble, withdrawal of blind-signed coins, balance, and payment of a
// merchant's payment request with coins sealed to the bank; and the NetBill
// checkbook (checkbook.go): buying goods and writing checks paid from the
// bank account by signed payment orders, with the key to the goods
// recoverable from the bank.
//
// Crash safety: every planchet derives from the wallet seed and a counter,
// and a withdraw request is persisted (with the counter advanced) before it
// is sent. If the wallet dies mid-withdraw, Recover re-sends the same signed
// request; the bank answers a retry with the same blind signatures and debits
// once, and the wallet re-derives the blinding to finish the coins. Payments
// are persisted sealed before they are sent, so a retry sends the same bytes
// and gets the same receipt. A signed payment order is persisted with the
// encrypted goods and its reply key before it is sent, so the wallet can
// always ask the bank for the outcome and the key (CheckStatus). A bank
// that commits a withdrawal or swap and answers with signatures that do not
// verify would answer every retry the same: the wallet keeps the request and
// the answer (Disputes), closes the operation and goes on (ErrBadAnswer).
//
// Coins are fresh, pending (in a payment or swap not yet settled) or spent.
// A fresh coin may also be revealed: released by a payment the bank may
// have opened and not taken, it pays only once swapped for new coins (see
// Balance.Revealed and docs/PROTOCOL.md §4d).
//
// Connections: each method takes the bank's client to call. An app that
// keeps one connection open for everything lets the bank join its swaps
// and payment lookups to the account's withdrawals by the connection;
// Options.Anonymous gives each of those operations a connection of its
// own.
package wallet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Errors of the wallet.
var (
	ErrNoAccount = errors.New("wallet: no bank account set (wallet set-account ID)")
	ErrNoKeys    = errors.New("wallet: no key set yet; connect to the bank first")
	// ErrRestoring: a restore of this wallet did not finish, so the
	// planchet indices its seed used are not all known yet and none may be
	// reserved (it could mint a coin already spent). Run the restore again.
	ErrRestoring     = errors.New("wallet: a restore of this wallet has not finished; run it again before withdrawing, swapping or recouping")
	ErrExists        = errors.New("wallet: a wallet already exists here")
	ErrNotFound      = errors.New("wallet: no wallet here (wallet init)")
	ErrNoExactChange = errors.New("wallet: no combination of coins pays this amount exactly")
	ErrExpired       = errors.New("wallet: payment request expired")
	ErrDeclined      = errors.New("wallet: payment declined by the user")
	ErrBadRequest    = errors.New("wallet: payment request does not verify")
	ErrPending       = errors.New("wallet: the operation is recorded; retry to finish it")
	// ErrClockAhead: the bank refused a withdrawal as dated more than
	// ecash.MaxClockSkew ahead of its clock (it says by how much). Nothing
	// was debited and the request is dropped; once the clock is set
	// right, a new withdrawal goes through. (A withdrawal pending from
	// before, refused so, stays pending: see Recover.)
	ErrClockAhead = errors.New("wallet: this computer's clock is ahead of the bank's")
	// ErrClockBehind: the bank refused a new withdrawal as dated more than
	// bank.MaxWithdrawAge before its clock (or its store at the commit, as
	// past the deadline that date sets): this computer's clock is that far
	// behind. The refusal is final (recorded at the bank): nothing was
	// debited and the request is dropped.
	ErrClockBehind = errors.New("wallet: this computer's clock is behind the bank's")
	// ErrAccountLocked: the bank refused a withdrawal pending from before
	// because it locked the account for this wallet's address (repeated
	// failed authentications from there, anyone's). The withdrawal stays
	// pending (it matches ErrPending too); a Recover once the lock lifts
	// (the bank's day ends, or its operator unlocks) finishes it.
	ErrAccountLocked = errors.New("wallet: the bank locked the account for this address")
	// ErrStoreTooNew: the wallet's store was written by a newer build,
	// whose records this one could misread (a build before log-check
	// records read them as deposits'); it is left as it is. Use that
	// build or a newer one.
	ErrStoreTooNew = pebblestore.ErrStoreTooNew
)

// MaxPlanchetsPerRequest is how many coins one withdraw RPC carries.
const MaxPlanchetsPerRequest = 64

// Options configure a wallet.
type Options struct {
	Now        func() time.Time // default time.Now
	Transcript io.Writer        // if set, every protocol message is recorded (JSON lines)
	FS         vfs.FS           // for tests; default the OS file system
	// Anonymous, if set, gives each operation the bank must not tie to the
	// account a connection of its own (docs/PROTOCOL.md §4d): a swap with
	// its first round, a payment's DepositStatus, a refund's lookups. The
	// wallet closes it after the operation. Nil: every call goes on the
	// client the caller passes, which the bank can join to the account's
	// withdrawals made on it.
	Anonymous AnonymousDialer
}

// AnonymousDialer makes a new connection to the bank, sharing nothing
// with any other (no TLS session resumed), and the means to close it (nil:
// nothing to close).
type AnonymousDialer func(ctx context.Context) (pb.BankClient, io.Closer, error)

// dialError is an AnonymousDialer's failure: the operation was not sent.
type dialError struct{ err error }

func (e *dialError) Error() string {
	return "wallet: a connection of its own to the bank: " + e.err.Error()
}

func (e *dialError) Unwrap() error { return e.err }

// Wallet is a wallet open on a directory. Safe for concurrent use.
type Wallet struct {
	db *pebble.DB
	mu sync.Mutex // serialises state changes
	// catching counts the catch-ups scanning (catchUp), guarded by mu;
	// reserveIndices waits on caught until none is: a reservation taken
	// meanwhile would get indices whose coins the scan is about to take in.
	catching int
	caught   *sync.Cond
	seed     []byte
	acctKey  ed25519.PrivateKey
	now      func() time.Time
	tr       *ecash.Transcript
	// keysTried is when verifyBank last fetched the key set (Unix ns by
	// the wallet's clock), which a failure does not store.
	keysTried atomic.Int64
	// keysUnfetched is that fetch's failure when it did not get the
	// bank's key set (the bank out of reach, or the wallet's store
	// failing), nil otherwise: the checks verifyBank makes within
	// keyRefreshInterval of it, which do not fetch, report it too.
	keysUnfetched atomic.Pointer[KeySetUnfetchedError]
	// paidIndexed: the store's receipts are indexed by payment request
	// (m/paid-indexed), so a payment need not read the marker again.
	paidIndexed atomic.Bool
	anon        AnonymousDialer // Options.Anonymous

	// keySet is the stored key set decoded, with the bytes and the pin it
	// was decoded and checked against: every operation reads the key set,
	// and decoding it (the master signature, every key) costs some 50 µs a
	// denomination.
	keySet struct {
		sync.Mutex
		raw []byte
		pin ed25519.PublicKey
		ks  *ecash.KeySet
	}

	// sending holds the persisted requests being sent (withdrawals by
	// nonce, swaps and recoups by request hash), guarded by mu: one call
	// sends a request at a time, or a definitive refusal of one copy
	// (funds that arrive between two copies) could drop the pending record,
	// and with it the coins, of a copy the bank accepted.
	sending map[string]bool
	// paying holds the payment requests being paid (lockPayment), each
	// with a channel closed when its payment is sent and settled, guarded
	// by mu: a second payment of one request waits for the first.
	paying map[ecash.Hash]chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// errInFlight: another call of this wallet is sending the request; it
// stays pending until that call settles it.
var errInFlight = fmt.Errorf("%w: being sent by another call", ErrPending)

// claim marks a request as being sent, false if it already is; release
// unmarks it.
func (w *Wallet) claim(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sending[key] {
		return false
	}
	if w.sending == nil {
		w.sending = map[string]bool{}
	}
	w.sending[key] = true
	return true
}

func (w *Wallet) release(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.sending, key)
}

// pendingKeys lists the store's keys under prefix: the pending requests of
// one kind.
func (w *Wallet) pendingKeys(prefix string) ([]string, error) {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		return nil, err
	}
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Key()))
	}
	return keys, it.Close()
}

// sendClaimed sends the pending request stored under key, as Recover does:
// it claims it, reads it again (the call that held it may have settled it
// since it was listed: it is then gone, and sent again it would be answered
// to nobody) and sends it, unless another call is sending it.
func sendClaimed[T any](w *Wallet, key string, decode func([]byte) (T, error), send func(T) error) error {
	if !w.claim(key) {
		return nil // another call is sending it
	}
	defer w.release(key)
	raw, err := get(w.db, []byte(key))
	if err != nil || raw == nil {
		return err
	}
	p, err := decode(raw)
	if err != nil {
		return fmt.Errorf("wallet: corrupt pending request %q: %w", key[:2], err)
	}
	return send(p)
}

// Create makes a new wallet with a fresh seed in dir.
func Create(dir string, opts Options) (*Wallet, error) {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	return createFromSeed(dir, seed, false, opts)
}

// seedSize is a wallet seed's length in bytes.
const seedSize = 32

// createFromSeed makes a new wallet from a seed. It is not exported: a wallet
// made from an old seed (restoring) must first learn which planchet indices
// its earlier life used, or it would mint coins whose keys are already
// spent: Restore (restore.go) does that discovery, and the wallet reserves
// no index until it has finished (m/restoring, written with the seed).
func createFromSeed(dir string, seed []byte, restoring bool, opts Options) (*Wallet, error) {
	if len(seed) != seedSize {
		return nil, fmt.Errorf("%w: wallet seed must be %d bytes", ecash.ErrBadKey, seedSize)
	}
	db, err := openDB(dir, opts.FS, false)
	if err != nil {
		return nil, err
	}
	if old, err := get(db, keySeed); err != nil || old != nil {
		db.Close()
		if err == nil {
			err = ErrExists
		}
		return nil, err
	}
	b := db.NewBatch()
	err = b.Set(keySeed, seed, nil)
	if restoring {
		err = errors.Join(err, b.Set(keyRestore, []byte{1}, nil))
	}
	err = errors.Join(err, b.Commit(pebble.Sync))
	b.Close()
	if err != nil {
		db.Close()
		return nil, err
	}
	return newWallet(db, seed, opts)
}

// Open opens an existing wallet.
func Open(dir string, opts Options) (*Wallet, error) {
	db, err := openDB(dir, opts.FS, false)
	if err != nil {
		return nil, err
	}
	seed, err := get(db, keySeed)
	if err == nil && seed == nil {
		err = ErrNotFound
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return newWallet(db, seed, opts)
}

func newWallet(db *pebble.DB, seed []byte, opts Options) (*Wallet, error) {
	k, err := ecash.DeriveAccountKey(seed)
	if err != nil {
		db.Close()
		return nil, err
	}
	w := &Wallet{db: db, seed: seed, acctKey: k, now: opts.Now, anon: opts.Anonymous}
	w.caught = sync.NewCond(&w.mu)
	if w.now == nil {
		w.now = time.Now
	}
	if opts.Transcript != nil {
		w.tr = ecash.NewTranscript(opts.Transcript, "wallet")
	}
	return w, nil
}

// Close closes the store. Closing twice is harmless.
func (w *Wallet) Close() error {
	w.closeOnce.Do(func() { w.closeErr = w.db.Close() })
	return w.closeErr
}

// AccountKey is the public key the bank account must be opened with.
func (w *Wallet) AccountKey() ed25519.PublicKey { return w.acctKey.Public().(ed25519.PublicKey) }

// SetAccount records the bank account id the wallet withdraws from.
func (w *Wallet) SetAccount(id uint64) error { return w.db.Set(keyAccount, u64(id), pebble.Sync) }

// Account returns the account id, or ErrNoAccount.
func (w *Wallet) Account() (uint64, error) {
	b, err := get(w.db, keyAccount)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, ErrNoAccount
	}
	return beU64(b), nil
}

// RefreshKeys fetches the bank's key set, verifies its master signature and
// stores it (keys.go). The master key is pinned on first use: a key set
// signed by any other key is refused with ErrMasterKeyChanged. A fetched
// set older than the stored one does not replace it; the stored one is
// returned.
func (w *Wallet) RefreshKeys(ctx context.Context, bank pb.BankClient) (*ecash.KeySet, error) {
	ks, _, err := w.fetchKeys(ctx, bank)
	return ks, err
}

// keys returns the key set to use now: the stored one, fetched afresh the
// first time, when it is older than KeySetMaxAge, or when a value the bank
// still honours has no key withdrawable now. If the bank cannot be reached
// for a refresh, the stored set (verified, and still listing its keys'
// windows) is used; a key set the bank sends that fails verification is
// an error.
func (w *Wallet) keys(ctx context.Context, bank pb.BankClient) (*ecash.KeySet, error) {
	ks, err := w.KeySet()
	if errors.Is(err, ErrNoKeys) {
		return w.RefreshKeys(ctx, bank)
	}
	if err != nil || !w.keySetStale(ks, w.now()) {
		return ks, err
	}
	fresh, reached, err := w.fetchKeys(ctx, bank)
	if !reached {
		return ks, nil
	}
	return fresh, err
}

// Balance is what the wallet holds.
type Balance struct {
	Fresh ecash.Amount
	// Revealed is the part of Fresh the bank may have seen in a payment it
	// did not take: still the wallet's, it pays only once swapped for new
	// coins (Recover, RefreshCoins, or a payment's failure does that).
	Revealed ecash.Amount
	// Pending is the value of coins in payments and swaps not settled yet,
	// and the refund credit a swap not settled collects: its inputs,
	// spent before, do not turn pending. Recover settles them. A swap
	// some of whose outputs the wallet holds already (a catch-up's or a
	// restore's scan took them in before its answer came) is presumed to
	// have gone through: its inputs count as spent and its outputs held
	// count in Fresh, so it counts here only the outputs not held yet
	// (pendingSwaps). It still waits for Recover (PendingSwaps counts it).
	// The presumption is wrong for a swap the bank is about to refuse in
	// a wallet put back from a copy: the lost copy got the same planchets
	// signed (same seed, same indices), the coins held there are the lost
	// copy's, and the swap's inputs are still the wallet's. They are then
	// shown nowhere, neither here nor in Fresh, until the refusal is
	// processed (it makes them fresh again). A catch-up first settles the
	// swaps whose answer was lost (catchUp), so that can happen only to a
	// swap whose answer is still coming (another call is sending it) or
	// was lost again.
	Pending ecash.Amount
	Coins   map[string]int // fresh coins by value ("EUR:0.01"), revealed ones among them
	// Expired is the value of unspent coins worth nothing, apart from
	// Fresh: past their denomination's deposit deadline, or of a
	// denomination the wallet's key set no longer lists (its deadline
	// passed); the bank takes them neither in a payment nor in a swap
	// (RefreshCoins reports them stranded). The bank still counts them
	// outstanding. Coins of a denomination the key set lists revoked stay
	// in Fresh whatever their deadline: Recoup pays them back, and the
	// bank's recoup has no deadline.
	Expired      ecash.Amount
	ExpiredCoins int
}

// Balance sums the coins, as of the wallet's clock and key set.
func (w *Wallet) Balance() (Balance, error) {
	ks, err := w.KeySet()
	if err != nil {
		return Balance{}, err
	}
	zero := ecash.Amount{Currency: ks.Currency}
	bal := Balance{Fresh: zero, Revealed: zero, Pending: zero, Expired: zero, Coins: map[string]int{}}
	now := w.now()
	// One view of coins and swaps: a swap settling between the two reads
	// would count its credit twice, or not at all.
	snap := w.db.NewSnapshot()
	defer snap.Close()
	swaps, err := pendingSwapsIn(snap)
	if err != nil {
		return bal, err
	}
	var held map[planchetAt]bool // coins held, if a swap is pending
	if len(swaps) > 0 {
		held = map[planchetAt]bool{}
	}
	pendingIn := map[ecash.Hash]ecash.Amount{} // pending coins' value, by the payment or swap they are in
	err = eachCoinIn(snap, func(c *coinRecord) error {
		var err error
		if held != nil {
			held[planchetAt{c.Index, c.Coin.Denom}] = true
		}
		switch c.State {
		case CoinFresh:
			// A revoked coin is recouped, which has no deadline: never
			// worth nothing while the key set lists it.
			if d, derr := ks.Denomination(c.Coin.Denom); derr != nil || (!d.Revoked && !now.Before(d.DepositEnd)) {
				bal.ExpiredCoins++
				bal.Expired, err = bal.Expired.Add(c.Value)
				return err
			}
			bal.Fresh, err = bal.Fresh.Add(c.Value)
			bal.Coins[c.Value.String()]++
			if c.Revealed && err == nil {
				bal.Revealed, err = bal.Revealed.Add(c.Value)
			}
		case CoinPending:
			sum, ok := pendingIn[c.Payment]
			if !ok {
				sum = zero
			}
			pendingIn[c.Payment], err = sum.Add(c.Value)
		}
		return err
	})
	if err != nil {
		return bal, err
	}
	through, outstanding, err := pendingSwaps(swaps, ks, held)
	if err != nil {
		return bal, err
	}
	for in, v := range pendingIn {
		if through[in] {
			continue // spent by a swap that went through: its outputs count
		}
		if bal.Pending, err = bal.Pending.Add(v); err != nil {
			return bal, err
		}
	}
	bal.Pending, err = bal.Pending.Add(outstanding)
	return bal, err
}

// planchetAt is a planchet index under a denomination: it names one coin
// (its key derives from the seed and the index, PROTOCOL.md §3.1).
type planchetAt struct {
	index uint64
	denom ecash.Hash
}

// pendingSwapsIn reads the swaps (and recoups) not settled in r.
func pendingSwapsIn(r pebble.Reader) ([]*pendingSwap, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte("s/"), UpperBound: prefixEnd([]byte("s/"))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*pendingSwap
	for it.First(); it.Valid(); it.Next() {
		ps, err := decodePendingSwap(it.Value())
		if err != nil {
			return nil, fmt.Errorf("wallet: corrupt pending swap: %w", err)
		}
		out = append(out, ps)
	}
	return out, it.Error()
}

// pendingSwaps says what the swaps not settled, swaps, bring in that the
// wallet does not hold yet (held: its coins). A swap collecting refund
// credit spends nothing that counts (its inputs were spent before): it
// brings in its outputs' value (refund credit pays no swap fee). Another
// swap's inputs are pending coins, counted as such, until one of its
// outputs is held: a catch-up's or a restore's scan found it signed, and
// the swap is presumed to have gone through (through, by request hash:
// its inputs are spent; wrong for a swap the bank refuses because a lost
// copy got those planchets signed, see Balance.Pending), and it brings in
// the outputs not held yet. Either way an output held
// counts once, as the coin it is. An output of a denomination ks does not
// list is not counted: its value is unknown here.
func pendingSwaps(swaps []*pendingSwap, ks *ecash.KeySet, held map[planchetAt]bool) (through map[ecash.Hash]bool, outstanding ecash.Amount, err error) {
	through = map[ecash.Hash]bool{}
	outstanding = ecash.Amount{Currency: ks.Currency}
	for _, ps := range swaps {
		h, outputs, err := ps.request()
		if err != nil {
			return nil, outstanding, fmt.Errorf("wallet: corrupt pending swap: %w", err)
		}
		if len(ps.Indices) != len(outputs) {
			return nil, outstanding, fmt.Errorf("wallet: corrupt pending swap: %d indices for %d outputs", len(ps.Indices), len(outputs))
		}
		isHeld := func(i int) bool { return held[planchetAt{ps.Indices[i], outputs[i].Denom}] }
		taken := false
		for i := range outputs {
			taken = taken || isHeld(i)
		}
		if len(ps.Credits) == 0 && !taken {
			continue // its inputs are pending coins, counted as such
		}
		if taken {
			through[h] = true
		}
		for i, o := range outputs {
			if isHeld(i) {
				continue
			}
			if d, err := ks.Denomination(o.Denom); err == nil {
				if outstanding, err = outstanding.Add(d.Value); err != nil {
					return nil, outstanding, err
				}
			}
		}
	}
	return through, outstanding, nil
}

func (w *Wallet) eachCoin(f func(*coinRecord) error) error { return eachCoinIn(w.db, f) }

// eachCoinIn calls f on every coin record in r.
func eachCoinIn(r pebble.Reader, f func(*coinRecord) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte("c/"), UpperBound: prefixEnd([]byte("c/"))})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		c, err := decodeCoinRecord(it.Value())
		if err != nil {
			return fmt.Errorf("wallet: corrupt coin record: %w", err)
		}
		if err := f(c); err != nil {
			return err
		}
	}
	return it.Error()
}

// anonymously runs op, an operation the bank must not tie to the account,
// on a connection of its own (Options.Anonymous), closed after it; on
// bank, the caller's, when the wallet has no dialer. A dial that fails
// fails op: it is never sent on the caller's connection instead.
func (w *Wallet) anonymously(ctx context.Context, bank pb.BankClient, op func(pb.BankClient) error) error {
	if w.anon == nil {
		return op(bank)
	}
	conn, closer, err := w.anon(ctx)
	if err != nil {
		return &dialError{err}
	}
	if closer != nil {
		defer closer.Close()
	}
	return op(conn)
}

// definitive reports whether a gRPC error is a refusal (see bank.Definitive).
func definitive(err error) bool { return bank.Definitive(err) }

// alreadyIssued: the bank refused a request for a blinded message it had
// signed in another (bank.AlreadyIssued): the planchet counter is stale.
func alreadyIssued(err error) bool { return bank.AlreadyIssued(err) }

// clockAhead: the bank refused a withdraw request as dated more than
// ecash.MaxClockSkew ahead of its clock (bank.BadTimestamp), after it
// looked the request's record up and found none. That settles a request
// never sent before; one sent before may be committing at a replica
// whose clock is further on (sendWithdraw).
func clockAhead(err error) bool { return bank.BadTimestamp(err) }

// clockBehind reports whether the bank refused a withdraw request as
// dated too long before its clock (bank.TooOld), or its store at the
// commit as past the deadline that date sets (bank.TooLate): final, and
// for a request made just now, this computer's clock is behind.
func clockBehind(err error) bool { return bank.TooOld(err) || bank.TooLate(err) }

// anonymousCall is one call made anonymously (Wallet.anonymously), and
// its answer.
func anonymousCall[T any](ctx context.Context, w *Wallet, bank pb.BankClient, call func(pb.BankClient) (T, error)) (resp T, err error) {
	err = w.anonymously(ctx, bank, func(bank pb.BankClient) error {
		resp, err = call(bank)
		return err
	})
	return resp, err
}

// recoupNeedsOutputs: the bank refused a recoup without outputs, the coin
// having come from a swap (bank.RecoupNeedsOutputs).
func recoupNeedsOutputs(err error) bool { return bank.RecoupNeedsOutputs(err) }

// accountLocked: the bank refused a request from this wallet's source
// (its address) after failed authentications from there
// (bank.AccountLocked). About the source, not the request: the bank
// records nothing of a withdraw request refused so.
func accountLocked(err error) bool { return bank.AccountLocked(err) }

// bankUnknownDenomination: the bank refused a request naming a
// denomination it does not serve (bank.UnknownDenomination).
func bankUnknownDenomination(err error) bool { return bank.UnknownDenomination(err) }

// hashBytes is hashes as the bytes a request carries them in (coin ids).
func hashBytes(hs []ecash.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// blindedHashes is the hashes of ps's blinded messages, as the bank
// indexes the signatures it issued (IssuedSignatures).
func blindedHashes(ps []ecash.Planchet) [][]byte {
	out := make([][]byte, len(ps))
	for i, p := range ps {
		h := ecash.HashOf(p.Blinded)
		out[i] = h[:]
	}
	return out
}

func beU64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// CoinFees sums, over the wallet's coins ids, their values and the fee that
// fee picks from each one's denomination (the deposit fee, say), in the key
// set's currency.
func (w *Wallet) CoinFees(ids []ecash.Hash, fee func(ecash.Fees) ecash.Amount) (value, fees ecash.Amount, err error) {
	ks, err := w.KeySet()
	if err != nil {
		return value, fees, err
	}
	value, fees = ecash.Amount{Currency: ks.Currency}, ecash.Amount{Currency: ks.Currency}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		c, err := w.coin(id)
		if err != nil {
			return value, fees, err
		}
		d, err := ks.Denomination(c.Coin.Denom)
		if err != nil {
			return value, fees, err
		}
		if value, err = value.Add(d.Value); err != nil {
			return value, fees, err
		}
		if fees, err = fees.Add(ecash.Amount{Currency: ks.Currency, Value: fee(d.Fees).Value}); err != nil {
			return value, fees, err
		}
	}
	return value, fees, nil
}

// splitNet is split for what the coins pay into a deposit: denominations
// whose values less their deposit fees add up to amount, largest first.
// The smallest denomination usually charges no deposit fee (a fee must be
// below its value), which fills any gap.
func splitNet(amount ecash.Amount, ks *ecash.KeySet, now time.Time) ([]ecash.Denomination, error) {
	ds := withdrawable(amount.Currency, ks, now)
	sort.Slice(ds, func(i, j int) bool { return ds[i].Net().Value > ds[j].Net().Value })
	rest := amount.Value
	var out []ecash.Denomination
	for _, d := range ds {
		for net := d.Net().Value; net > 0 && net <= rest && len(out) < ecash.MaxCoinsPerRequest; {
			out = append(out, d)
			rest -= net
		}
	}
	if rest != 0 {
		return nil, fmt.Errorf("%w: %s cannot be paid with this bank's denominations after their deposit fees", ErrNoExactChange, amount)
	}
	return out, nil
}

// withdrawable is the current denomination of each value in currency cur.
func withdrawable(cur string, ks *ecash.KeySet, now time.Time) []ecash.Denomination {
	var ds []ecash.Denomination
	for _, d := range ks.Withdrawable(now) {
		if d.Value.Currency == cur {
			ds = append(ds, d)
		}
	}
	return ds
}

// split decomposes amount into denomination values so that many amounts can
// later be paid exactly: one coin of each small value first (while the rest
// covers it), then the remainder largest first. Each value is withdrawn
// under one key: the current one (withdrawable now, started last), so
// overlapping windows of successive keys never yield two keys of a value.
func split(amount ecash.Amount, ks *ecash.KeySet, now time.Time) ([]ecash.Denomination, error) {
	ds := withdrawable(amount.Currency, ks, now)
	sort.Slice(ds, func(i, j int) bool { return ds[i].Value.Value < ds[j].Value.Value })
	rest := amount.Value
	var out []ecash.Denomination
	for _, d := range ds {
		if d.Value.Value > rest {
			break
		}
		out = append(out, d)
		rest -= d.Value.Value
	}
	for i := len(ds) - 1; i >= 0 && rest > 0; i-- {
		for ds[i].Value.Value <= rest {
			out = append(out, ds[i])
			rest -= ds[i].Value.Value
		}
	}
	if rest != 0 {
		return nil, fmt.Errorf("%w: %s cannot be made of this bank's denominations", ErrNoExactChange, amount)
	}
	return out, nil
}
