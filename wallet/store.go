package wallet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// Key layout of the wallet's Pebble store:
//
//	m/wallet-format   u32 on-disk format version (storeFormat): 1 is this
//	                  layout and every earlier one, which stores made before
//	                  the record have; a newer one is refused, unread
//	m/seed            32-byte wallet seed (coins and the account key derive from it)
//	m/account         u64 bank account id
//	m/keyset          the bank's signed key set (master key pinned on first fetch)
//	m/keyset-fetched  u64 Unix nanoseconds (the wallet's clock) it was last
//	                  fetched or confirmed; m/master the pinned master key (keys.go)
//	m/witness         the newest audit-log checkpoint seen (logcheck.go)
//	m/paid-indexed    present once receipts kept before h/ existed are indexed (pay.go)
//	m/next            u64 next planchet index
//	m/parked          u64 end of the indices from m/next that only a withdrawal
//	                  may take (a refused withdrawal's, withdraw.go parkIndices)
//	m/gen             u64 generation of m/next and m/parked, bumped by every
//	                  change to them and every scan batch of coins (bumpGen)
//	m/restoring       present while a restore has not finished: m/next is not
//	                  yet past the indices the seed used, so none is reserved
//	w/<nonce>         pending withdraw: the signed request, kept until its coins are stored
//	f/<nonce>         a pending withdraw the bank refused outright when sent
//	                  again (refused.go), until Recover reports it
//	c/<coin id>       coin record
//	s/<request hash>  pending swap or recoup (swap.go): kept until settled
//	t/<request hash>  its send record (swaprefused.go): when last sent with
//	                  its outcome unknown, the refusal that keeps it
//	                  pending; a record apart from s/, which older builds
//	                  read (and refuse trailing bytes in), so no format
//	                  change: they leave it behind, a newer build drops it
//	u/<request hash>  a recovered swap the bank refused and the wallet then
//	                  completed or ended, until Recover reports it
//	p/<payment hash>  pending payment: the sealed payment, kept until settled
//	r/<merchant, order>  the bank's receipt of a settled payment
//	h/<payment hash>  the r/ key of the receipt of that payment request
//	                  (paidRequest)
//	q/<payment hash>  the bank's receipt of a payment a restore found
//	                  refunded (its merchant and order unknown): for
//	                  CollectRefunds, as r/
//	o/<payment hash>  the bank's receipt of a payment request paid with
//	                  other coins (PaidOtherwiseError): a payment of it
//	                  again is answered from it, sending nothing
//	e/<EPOID key>     a signed payment order (checkbook.go): the signed EPO,
//	                  the reply key, the bank's receipt once known
//	g/<EPOID key>     the encrypted goods of a purchase, as delivered
//	v/<reference>     an audit-log entry due for checking (logcheck.go)
//	x/<kind>/<id>     a bank answer that did not verify, with its request
//	                  (dispute.go): a withdrawal by nonce, a swap or recoup
//	                  by request hash, a restored signature by blinded hash
var (
	keyFormat  = []byte(pebblestore.WalletFormatKey) // m/wallet-format: one kind's key (pebblestore.Format)
	keySeed    = []byte("m/seed")
	keyAccount = []byte("m/account")
	keyKeySet  = []byte("m/keyset")
	keyNext    = []byte("m/next")
	keyParked  = []byte("m/parked")
	keyGen     = []byte("m/gen")
	keyRestore = []byte("m/restoring")
	keyIndexed = []byte("m/paid-indexed")
)

func withdrawKey(nonce [16]byte) []byte { return append([]byte("w/"), nonce[:]...) }
func coinKey(id ecash.Hash) []byte      { return append([]byte("c/"), id[:]...) }
func paymentKey(h ecash.Hash) []byte    { return append([]byte("p/"), h[:]...) }

func restoredReceiptKey(h ecash.Hash) []byte { return append([]byte("q/"), h[:]...) }
func paidIndexKey(h ecash.Hash) []byte       { return append([]byte("h/"), h[:]...) }
func paidOtherKey(h ecash.Hash) []byte       { return append([]byte("o/"), h[:]...) }

func receiptKey(merchant, order string) []byte {
	e := ecash.Encoder{}
	e.String(merchant)
	e.String(order)
	return append([]byte("r/"), e.Bytes()...)
}

// Coin states. A fresh coin may also be revealed (coinRecord.Revealed).
const (
	CoinFresh   = 0 // spendable
	CoinPending = 1 // offered in a payment not yet settled
	CoinSpent   = 2
)

// coinRecord is a coin with its planchet index (its key derives from the seed).
type coinRecord struct {
	Index uint64
	Coin  ecash.Coin
	Value ecash.Amount
	State uint8
	// Payment is the payment or swap the coin is pending in; for a
	// revealed coin, the last one that showed it to the bank and did not
	// spend it: revealed coins are swapped with those of the same one only,
	// so that the swap links nothing the bank had not seen together.
	Payment ecash.Hash
	// Revealed: the bank may have opened a payment of this coin that it
	// did not take, and so seen it bound to that merchant and order. The
	// coin is still the wallet's, but pays only once swapped for new coins
	// (renewRevealed), or the bank would link that payment to the next. A
	// flag, not a state, so that it outlives a swap of the coin that the
	// bank refuses. Stored as a trailing byte only when set: records
	// written before it decode as they were.
	Revealed bool
}

func (c *coinRecord) encode() []byte {
	e := ecash.NewEncoder("wallet/coin")
	e.U64(c.Index)
	e.VarBytes(c.Coin.Encode())
	e.Amount(c.Value)
	e.U8(c.State)
	e.Fixed(c.Payment[:])
	if c.Revealed {
		e.U8(1)
	}
	return e.Bytes()
}

func decodeCoinRecord(b []byte) (*coinRecord, error) {
	d := ecash.NewDecoder("wallet/coin", b)
	c := &coinRecord{Index: d.U64()}
	coin, err := ecash.DecodeCoin(d.VarBytes(ecash.MaxFieldLen))
	if err != nil {
		return nil, err
	}
	c.Coin = coin
	c.Value = d.Amount()
	c.State = d.U8()
	copy(c.Payment[:], d.Fixed(32))
	if d.More() {
		if d.U8() != 1 {
			return nil, fmt.Errorf("%w: coin record with an unknown flag", ecash.ErrMalformed)
		}
		c.Revealed = true
	}
	return c, d.Finish()
}

// pendingWithdraw is a signed withdraw request and the planchet indices it
// covers, persisted before it is sent.
type pendingWithdraw struct {
	Body     []byte
	Sig      []byte
	Indices  []uint64
	Prepared [][]byte          // the bank's first-round answers (CS R values), nil for RSA
	blinded  []blindedPlanchet // not stored: see planchets
	// res is its indices' reservation, for parkIndices. Of it, only the
	// generation is stored (a trailing u64; the indices are Indices): a
	// request recovered after a crash is parked as the live call would
	// have, if nothing touched the counter since. Records written before
	// it have none, and their indices stay skipped.
	res *reservation
	// recovered: read back from the store, so sent before (perhaps),
	// its outcome unknown.
	recovered bool
}

func (p *pendingWithdraw) encode() []byte {
	e := ecash.NewEncoder("wallet/withdraw")
	e.VarBytes(p.Body)
	e.VarBytes(p.Sig)
	e.U32(uint32(len(p.Indices)))
	for i, idx := range p.Indices {
		e.U64(idx)
		e.VarBytes(p.Prepared[i])
	}
	if p.res != nil {
		e.U64(p.res.gen)
	}
	return e.Bytes()
}

func decodePendingWithdraw(b []byte) (*pendingWithdraw, error) {
	d := ecash.NewDecoder("wallet/withdraw", b)
	p := &pendingWithdraw{Body: d.VarBytes(ecash.MaxFieldLen), Sig: d.VarBytes(64), recovered: true}
	n := d.Count(ecash.MaxCoinsPerRequest)
	for range n {
		p.Indices = append(p.Indices, d.U64())
		prep := d.VarBytes(1024)
		if len(prep) == 0 {
			prep = nil
		}
		p.Prepared = append(p.Prepared, prep)
	}
	if d.More() {
		gen := d.U64()
		// Reserved as one run (reserveIndices): anything else is not a
		// reservation to park.
		if n := len(p.Indices); n > 0 && p.Indices[n-1]-p.Indices[0] == uint64(n-1) {
			p.res = &reservation{first: p.Indices[0], end: p.Indices[n-1] + 1, gen: gen}
		}
	}
	return p, d.Finish()
}

// pendingPayment is a sealed payment not yet settled, kept so a retry sends
// exactly the same bytes (the bank then answers with the same receipt).
type pendingPayment struct {
	Merchant string // address the payment was sent to
	OrderID  string
	Request  []byte // payment request body
	Sealed   []byte
	Coins    []ecash.Hash
}

func (p *pendingPayment) encode() []byte {
	e := ecash.NewEncoder("wallet/payment")
	e.String(p.Merchant)
	e.String(p.OrderID)
	e.VarBytes(p.Request)
	e.VarBytes(p.Sealed)
	e.U32(uint32(len(p.Coins)))
	for _, c := range p.Coins {
		e.Fixed(c[:])
	}
	return e.Bytes()
}

func decodePendingPayment(b []byte) (*pendingPayment, error) {
	d := ecash.NewDecoder("wallet/payment", b)
	p := &pendingPayment{Merchant: d.String(), OrderID: d.String(), Request: d.VarBytes(ecash.MaxFieldLen), Sealed: d.VarBytes(ecash.MaxSealedLen)}
	n := d.Count(ecash.MaxCoinsPerRequest)
	for range n {
		var h ecash.Hash
		copy(h[:], d.Fixed(32))
		p.Coins = append(p.Coins, h)
	}
	return p, d.Finish()
}

// storeFormat is the wallet store's format record. Raise its Version when
// a record changes so that this build could not read it: a build that
// knows only the older version then refuses the store (ErrStoreTooNew)
// rather than misread it. Builds before the record read every store
// without a check; nothing can stop those.
var storeFormat = pebblestore.Format{Key: keyFormat, Store: "wallet", Version: 1}

// openDB opens the wallet's store in dir, every path's way in, and checks
// its format (storeFormat) before anything else reads or writes it.
// Read-write, it creates the store if there is none and records the
// format in one that lacks it; readOnly, it opens an existing store (a
// copy whose seed a restore reads) and writes nothing, not even dir's mode.
func openDB(dir string, fs vfs.FS, readOnly bool) (*pebble.DB, error) {
	private := fs == nil && !readOnly
	if private {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	db, err := storeFormat.OpenDB(dir, pebblestore.DBOptions{FS: fs, Logger: slog.Default(), ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("wallet: open %s: %w", dir, err)
	}
	// Mode 0700: the store holds the wallet seed, which controls the
	// account and every coin. Tightened once the store is known to be a
	// wallet's: a directory refused (another kind's store, a newer
	// format) keeps its mode.
	if private {
		if err := os.Chmod(dir, 0o700); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

func get(db pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// prefixEnd returns the first key after every key with the prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	end[len(end)-1]++
	return end
}
