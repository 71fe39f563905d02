// Package merchant is the blindbank merchant. For e-cash it creates signed
// payment requests for orders, accepts sealed payments from wallets,
// deposits them at the bank, verifies the bank's receipt and marks the order
// paid; it never sees the coins: they are sealed to the bank. As a NetBill
// till (till.go) it sells the files of a catalogue (catalogue.go) for
// electronic checks: signed quotes, goods encrypted under a one-time key,
// payment orders endorsed and forwarded to the bank, receipts verified and
// handed back, and status queries to the bank; it never holds anything that
// opens a payment order's private part.
package merchant

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Errors of the merchant.
var (
	ErrNoOrder = errors.New("merchant: no such order")
	ErrNotInit = errors.New("merchant: no merchant key here (merchantd init)")
	// ErrStoreTooNew: the order store was written by a newer build,
	// whose records this one could misread; it is left as it is. Run
	// that build or a newer one (docs/OPERATIONS.md, "Merchants").
	ErrStoreTooNew = pebblestore.ErrStoreTooNew
	// ErrPaymentPending: the bank refused a payment the wallet sent
	// again (the same sealed bytes), after an earlier send whose outcome
	// the merchant did not learn; that one may still be committing, so
	// nothing is settled yet. Not a refusal (the wallet keeps its coins
	// pending): the merchant asks the bank until it knows (Reconcile),
	// and the wallet asks again, or asks the bank.
	ErrPaymentPending = errors.New("merchant: the bank refused this send of the payment, but an earlier send of it may still be committing: the payment is pending; ask again later, or ask the bank for its status")
)

// KeyFile holds the merchant's Ed25519 seed (hex) in its data directory.
const KeyFile = "merchant.key"

// StoreDir is the merchant's order store (Pebble) in its data directory,
// which Open and the offline key-set commands (ReadKeySet, DropKeySet)
// open.
const StoreDir = "orders"

// DefaultOrderTTL is how long a payment request stays payable.
const DefaultOrderTTL = 15 * time.Minute

// payTimeout bounds a payment's bank calls and store writes, which do not
// end with the wallet's call (Pay).
const payTimeout = 30 * time.Second

// cacheSize is the order store's block cache: every payment looks its order
// up twice, and Pebble's default 8 MB no longer holds the index and filter
// blocks of a store of some million orders.
const cacheSize = 64 << 20

// Init creates the merchant key in dir and returns its public key. It
// refuses to overwrite an existing key.
func Init(dir string) (ed25519.PublicKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, KeyFile)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("merchant: %s exists; refusing to replace the merchant key", path)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := bank.WriteFileAtomic(path, []byte(hex.EncodeToString(priv.Seed())+"\n"), 0o600); err != nil {
		return nil, err
	}
	return pub, nil
}

// LoadKey reads the merchant key from dir, refusing a key file other users
// may read (it signs payment requests and refunds).
func LoadKey(dir string) (ed25519.PrivateKey, error) {
	f, err := bank.OpenPrivate(filepath.Join(dir, KeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotInit
	}
	if err != nil {
		return nil, fmt.Errorf("merchant key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileLen+1)) // a hex seed and a newline
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFileLen { // not what Init wrote, whatever its first 1024 bytes say
		return nil, fmt.Errorf("merchant: %s is larger than %d bytes, not a hex Ed25519 seed", KeyFile, maxKeyFileLen)
	}
	seed, err := hex.DecodeString(string(trimSpace(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("merchant: %s is not a hex Ed25519 seed", KeyFile)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// maxKeyFileLen bounds the key file: a hex seed with room for line ends.
const maxKeyFileLen = 1024

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Config wires a merchant.
type Config struct {
	Dir        string
	Account    uint64            // the merchant's account at the bank
	Bank       pb.BankClient     // the bank's public service
	AuditLog   pb.AuditLogClient // the bank's audit log; nil: VerifyLog is unavailable
	Now        func() time.Time
	Log        *slog.Logger
	Transcript io.Writer
	FS         vfs.FS // for tests
	// BankMaster is the bank's master public key, if the operator has it
	// from the bank: the merchant then refuses a bank that presents
	// another. Without it, the merchant pins the key the bank presents at
	// the first Open. Either way a later Open refuses a bank whose key set
	// another master key signs.
	BankMaster ed25519.PublicKey
	// Catalogue is the directory holding catalogue.json and the product
	// files the till sells (LoadCatalogue); empty: the till sells no goods
	// (it still deposits checks).
	Catalogue string
}

// Merchant is an open merchant. Safe for concurrent use.
type Merchant struct {
	db      *pebble.DB
	key     ed25519.PrivateKey
	account uint64
	bank    pb.BankClient
	logc    pb.AuditLogClient
	now     func() time.Time
	log     *slog.Logger
	tr      *ecash.Transcript
	cat     *Catalogue // nil: no goods for sale
	orders  *orderCache
	public  atomic.Pointer[string] // the address payment URIs name; nil: none

	master    ed25519.PublicKey            // the bank's master key (keys.go)
	currency  string                       // the key set's held at Open
	keys      atomic.Pointer[ecash.KeySet] // the bank's key set
	refreshMu sync.Mutex                   // one key set fetch at a time (refreshKeys)
	refreshed time.Time                    // the last fetch; guarded by refreshMu

	serialMu    sync.Mutex // guards nextSerial, serialLimit
	nextSerial  uint64
	serialLimit uint64
	saleMu      sync.Mutex // serialises changes to sale records
	// refundMu serialises refunds, numbered per order; apart from saleMu,
	// since a refund waits for the bank, which endorsements must not.
	refundMu sync.Mutex
	// sending counts Pay's sends in flight of each sealed payment (by
	// its attempt key), so that a refusal of one drops the mark only if
	// no other send of the same bytes overlapped it (dropAlone).
	sendMu  sync.Mutex
	sending map[string]*sends

	// Close waits for every call that uses the store (begin) before it
	// closes it: a handler gRPC has not finished, or Pay's deposit that
	// outlives its caller, must not write to a closed store (a panic).
	// lifeMu guards closing, after which calls are refused.
	lifeMu   sync.Mutex
	closing  bool
	inflight sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// ErrClosed: the merchant is closed (or closing).
var ErrClosed = errors.New("merchant: closed")

// begin counts a call Close must wait for; the caller calls
// m.inflight.Done when it ends. ErrClosed once Close has begun.
func (m *Merchant) begin() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closing {
		return ErrClosed
	}
	m.inflight.Add(1)
	return nil
}

// Open loads the key and the order store, and fetches and verifies the bank's
// key set (keys.go).
func Open(ctx context.Context, cfg Config) (*Merchant, error) {
	key, err := LoadKey(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.BankMaster != nil {
		if err := ecash.CheckEd25519Key(cfg.BankMaster); err != nil {
			return nil, fmt.Errorf("merchant: the configured bank master key: %w", err)
		}
	}
	var cat *Catalogue
	if cfg.Catalogue != "" {
		if cat, err = LoadCatalogue(cfg.Catalogue); err != nil {
			return nil, err
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	db, err := openDB(filepath.Join(cfg.Dir, StoreDir), pebblestore.DBOptions{FS: cfg.FS, CacheSize: cacheSize, Logger: cfg.Log})
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now // before openKeys, which dates the key set served
	}
	m := &Merchant{db: db, key: key, account: cfg.Account, bank: cfg.Bank, logc: cfg.AuditLog, now: cfg.Now, log: cfg.Log, cat: cat, orders: newOrderCache()}
	if err := m.loadSerials(); err != nil {
		db.Close()
		return nil, err
	}
	if err := m.openKeys(ctx, cfg.BankMaster); err != nil {
		db.Close()
		return nil, err
	}
	for _, p := range cat.Products() {
		if p.Price.Currency != m.currency {
			db.Close()
			return nil, fmt.Errorf("%w: product %q is priced in %s, the bank holds %s", ErrCatalogue, p.ID, p.Price.Currency, m.currency)
		}
	}
	if cfg.Transcript != nil {
		m.tr = ecash.NewTranscript(cfg.Transcript, "merchant")
	}
	if err := m.markEndorsed(); err != nil {
		db.Close()
		return nil, err
	}
	if err := m.reopen(); err != nil {
		db.Close()
		return nil, err
	}
	return m, nil
}

// Close waits for the calls in progress that use the store (a Pay keeps
// going up to payTimeout after its caller gave up; a till call, for its
// bank call), refuses new ones with ErrClosed, and closes the order store,
// marking it closed cleanly (reconcile.go). Closing twice is harmless.
func (m *Merchant) Close() error {
	m.closeOnce.Do(func() {
		m.lifeMu.Lock()
		m.closing = true
		m.lifeMu.Unlock()
		m.inflight.Wait()
		m.closeErr = errors.Join(m.db.Set(keyClosed, nil, pebble.Sync), m.db.Close())
	})
	return m.closeErr
}

// PublicKey is the merchant's signing key.
func (m *Merchant) PublicKey() ed25519.PublicKey { return m.key.Public().(ed25519.PublicKey) }

// Order is an order and its payment state.
type Order struct {
	ID        string
	Summary   string
	Request   []byte // payment request body
	Sig       []byte // merchant signature on Request
	Amount    ecash.Amount
	CreatedAt time.Time // Request's, as Amount and ExpiresAt
	ExpiresAt time.Time
	Receipt   []byte // the bank's signed receipt once paid
}

// SetPublicAddr sets the host:port wallets reach the merchant's public
// service at, which payment URIs name. Without one, orders have no URI.
func (m *Merchant) SetPublicAddr(addr string) error {
	if err := ecash.CheckMerchantAddr(addr); err != nil {
		return fmt.Errorf("merchant: public address: %w", err)
	}
	m.public.Store(&addr)
	return nil
}

// PaymentURI is the order as a payment URI, or "" if the merchant has no
// public address (SetPublicAddr).
func (m *Merchant) PaymentURI(o *Order) string {
	addr := m.public.Load()
	if addr == nil {
		return ""
	}
	return (&ecash.PaymentOffer{Merchant: *addr, Request: o.Request, MerchantSig: o.Sig, Summary: o.Summary}).URI()
}

// Status is "paid", "expired" or "unpaid".
func (o *Order) Status(now time.Time) string {
	switch {
	case o.Receipt != nil:
		return "paid"
	case !now.Before(o.ExpiresAt):
		return "expired"
	}
	return "unpaid"
}

// payable reports whether the bank may still take a payment of o at t,
// by the merchant's clock: not past ExpiresAt + 2*MaxClockSkew (the
// bank's grace, and the clocks' difference).
func (o *Order) payable(t time.Time) bool {
	return !t.After(o.ExpiresAt.Add(2 * ecash.MaxClockSkew))
}

func (o *Order) encode() []byte {
	e := ecash.NewEncoder("merchant/order")
	e.String(o.ID)
	e.VarBytes([]byte(o.Summary))
	e.VarBytes(o.Request)
	e.VarBytes(o.Sig)
	e.VarBytes(o.Receipt)
	return e.Bytes()
}

func decodeOrder(b []byte) (*Order, error) {
	d := ecash.NewDecoder("merchant/order", b)
	o := &Order{ID: d.String(), Summary: string(d.VarBytes(MaxSummaryLen)), Request: d.VarBytes(ecash.MaxFieldLen), Sig: d.VarBytes(64), Receipt: d.VarBytes(ecash.MaxFieldLen)}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if len(o.Receipt) == 0 {
		o.Receipt = nil
	}
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		return nil, err
	}
	o.Amount, o.CreatedAt, o.ExpiresAt = pr.Amount, pr.CreatedAt, pr.ExpiresAt
	return o, nil
}

// MaxSummaryLen bounds an order summary, so that any order fits in a
// payment URI.
const MaxSummaryLen = ecash.MaxSummaryLen

// CreateOrder creates and signs a payment request for amount.
func (m *Merchant) CreateOrder(amount ecash.Amount, summary string, ttl time.Duration) (*Order, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	if amount.Currency != m.currency {
		return nil, fmt.Errorf("%w: the bank holds %s", ecash.ErrCurrencyMismatch, m.currency)
	}
	if amount.IsZero() || amount.Validate() != nil {
		return nil, fmt.Errorf("%w: %s", ecash.ErrBadAmount, amount)
	}
	if err := ecash.CheckSummary(summary); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultOrderTTL
	}
	if ttl > ecash.MaxPaymentLifetime {
		return nil, fmt.Errorf("%w: an order lives at most %s", ecash.ErrMalformed, ecash.MaxPaymentLifetime)
	}
	var rnd [10]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	now := m.now()
	pr := &ecash.PaymentRequest{
		BankID: ecash.HashOf(m.master), MerchantAccount: m.account, MerchantPub: m.PublicKey(),
		OrderID: "ord-" + hex.EncodeToString(rnd[:]), Amount: amount, SummaryHash: sha256.Sum256([]byte(summary)),
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	body := pr.Body()
	o := &Order{ID: pr.OrderID, Summary: summary, Request: body, Sig: ecash.SignBody(m.key, body), Amount: amount, CreatedAt: pr.CreatedAt, ExpiresAt: pr.ExpiresAt}
	if err := m.db.Set(orderKey(o.ID), o.encode(), pebble.Sync); err != nil {
		return nil, err
	}
	m.orders.put(o)
	m.tr.RecordEntry(now, ecash.TranscriptEntry{Step: "payment-request", Data: body, Sig: o.Sig, Signer: m.PublicKey(), Note: summary})
	m.log.Debug("order created", "order", o.ID, "amount", amount.String())
	return o, nil
}

func orderKey(id string) []byte { return append([]byte("o/"), id...) }

// has reports whether the store holds key.
func (m *Merchant) has(key []byte) (bool, error) {
	_, closer, err := m.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

// get returns a copy of the value stored at key, nil if there is none.
func (m *Merchant) get(key []byte) ([]byte, error) {
	v, closer, err := m.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// Order loads an order. The caller may change the Order's fields, but not
// the bytes they hold: those may be shared with the merchant's cache.
func (m *Merchant) Order(id string) (*Order, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	return m.order(id)
}

// order is Order, for a caller that has begun.
func (m *Merchant) order(id string) (*Order, error) {
	if len(id) == 0 || len(id) > ecash.MaxOrderIDLen {
		return nil, ErrNoOrder
	}
	if o, ok := m.orders.get(id); ok {
		return o, nil
	}
	seen := m.orders.mark()
	v, closer, err := m.db.Get(orderKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNoOrder
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	o, err := decodeOrder(v)
	if err != nil {
		return nil, err
	}
	m.orders.putRead(o, seen)
	return o, nil
}

// Pay deposits a wallet's sealed payment for an order at the bank, verifies
// the receipt, and records the order paid before answering. It always asks
// the bank, even for an expired order: the bank answers a retry of an
// accepted payment with its receipt and alone decides whether a new one is
// too late, so the merchant's refusal can never strand a paid-for order. No
// lock is needed: the bank makes this idempotent (the same sealed payment
// gets the same receipt, other coins for a paid request are refused), so
// concurrent calls for one order store the same receipt.
//
// The wallet learns of a payment from the bank if the merchant does not
// answer, and does not come back; so once the deposit is sent, the
// merchant makes sure it learns the outcome itself. The bank call and the
// store write run detached from the caller's cancellation; a failure that
// leaves the outcome open is followed by a DepositStatus query; and a
// mark of the deposit in flight, left until the order is recorded paid or
// the bank refuses the deposit, has Reconcile settle it after a crash or a
// lost answer (reconcile.go). A refusal of bytes marked before this call
// (the wallet's retry), or of bytes another call sent meanwhile, does not
// remove the mark: that send may still be committing (ErrPaymentPending).
// Nor, but for a refusal of what the bytes are, does one while the order
// has Open's mark (reconcile.go): the last run may have sent them and lost
// their mark. A double spend's refusal does, and reaches the wallet with
// its proof: no send of bytes spending a coin another payment spent can
// commit.
func (m *Merchant) Pay(ctx context.Context, orderID string, sealed []byte) ([]byte, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	defer m.inflight.Done()
	o, err := m.order(orderID)
	if err != nil {
		return nil, err
	}
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), payTimeout)
	defer cancel()
	m.tr.Record(m.now(), "sealed-payment", sealed, orderID)
	var mark []byte     // nil: the order is paid already, nothing can be in flight
	resent := false     // the mark was there: these bytes may have been sent before
	afterCrash := false // the order's own mark is there (Open's): any bytes may have been
	var att *sends      // this call's count of the sends of these bytes in flight
	if o.Receipt == nil {
		// Not synced: a process crash keeps it, and the synced write that
		// records the order paid deletes it (payments are measured by
		// their syncs). Open marks the orders again after a power loss.
		mark = attemptKey(orderID, sealed)
		att = m.sendBegin(mark)
		defer m.sendEnd(mark, att)
		if resent, err = m.has(mark); err != nil {
			return nil, err
		}
		// The order's own mark is Open's after a run that did not close
		// cleanly: a send of these bytes in that run may have lost its
		// mark (written without a sync) and still be committing.
		if afterCrash, err = m.has(orderMarkKey(orderID)); err != nil {
			return nil, err
		}
		if err := m.db.Set(mark, nil, pebble.NoSync); err != nil {
			return nil, err
		}
	}
	resp, err := m.bank.Deposit(ctx, &pb.DepositRequest{PaymentRequest: o.Request, MerchantSig: o.Sig, SealedPayment: sealed})
	refused := bank.Definitive(err) // these coins moved nothing
	switch {
	case status.Code(err) == codes.AlreadyExists:
		// bank.ErrPaymentConflict: the order is paid, with other coins.
		// Record that payment now; the wallet gets the refusal of its own.
		if _, serr := m.settleDeposit(ctx, orderID); serr != nil {
			m.log.Warn("order paid with other coins; asking the bank for the receipt failed", "order", orderID, "err", serr)
			refused = false // the mark stays for Reconcile
		}
	case err != nil && !refused:
		// The bank may have committed before the answer was lost. (The
		// receipt it has may be another wallet's for the same order; the
		// wallet checks the coins.)
		h := pr.Hash()
		if st, serr := m.bank.DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: h[:]}); serr == nil {
			resp, err = st, nil
		}
	}
	if err == nil {
		err = m.recordPaid(ctx, o, pr, resp.Receipt) // deletes the marks
	}
	// A refusal of these bytes ends this attempt (a conflict is no such
	// case: the order is paid with other coins, its marks gone).
	ended := err != nil && refused && mark != nil && status.Code(err) != codes.AlreadyExists
	switch {
	case ended && bank.DoubleSpent(err):
		// A coin is spent by another payment, which the bank decided
		// atomically with finding none of this one: no send of these
		// bytes, earlier or overlapping, can commit. The attempt ends,
		// and the wallet gets the refusal with its proof, not "pending".
		m.endAttempt(mark, true)
	case ended && (resent || (afterCrash && !refusedForItsBytes(err)) || !m.dropAlone(mark, att)):
		// The bank looked the payment up once, found none, and refused
		// (say, expired by its clock); but an earlier send of these bytes,
		// whose outcome was lost, or one overlapping this one (the
		// wallet's retry while this send was on its way), may still be
		// committing at a replica or in the bank's pipeline. Its mark
		// stays for Reconcile, which asks until the bank can take no
		// payment of the order, and the wallet is told to ask again, not
		// that nothing was paid.
		m.log.Warn("deposit refused, but an earlier send of it may still be committing: kept for Reconcile", "order", orderID, "err", err)
		if !afterCrash { // Open's mark, synced, covers the order after a power loss
			m.endAttempt(mark, false)
		}
		return nil, fmt.Errorf("%w (the bank said: %s)", ErrPaymentPending, status.Convert(err).Message())
	}
	if err != nil {
		m.log.Warn("deposit refused or unanswered", "order", orderID, "err", err)
		if mark != nil && !ended { // (an ended one's mark is settled above)
			m.endAttempt(mark, refused)
		}
		return nil, err
	}
	m.tr.Record(m.now(), "deposit-receipt", resp.Receipt, orderID)
	return resp.Receipt, nil
}

// refusedForItsBytes reports whether the bank refused a deposit for what
// its bytes are (malformed, a signature that does not verify, coins that
// do not add up, another bank's or currency's): whenever and wherever they
// were sent before, they were refused the same way, and nothing of them
// can be committing. Any other refusal (expired, a denomination the
// replica does not know, one from a bank that sends no reason) may be of
// a later send only.
func refusedForItsBytes(err error) bool {
	switch bank.Reason(err) {
	case "MALFORMED", "BAD_SIGNATURE", "BAD_KEY", "BAD_AMOUNT", "AMOUNT_OVERFLOW", "AMOUNT_UNDERFLOW",
		"AMOUNT_MISMATCH", "CURRENCY_MISMATCH", "WRONG_CURRENCY", "WRONG_BANK", "DUPLICATE_COIN", "UNKNOWN_CIPHER":
		return true
	}
	return false
}

// sends counts the sends of one sealed payment in flight; overlapped: two
// or more were at some time. Guarded by Merchant.sendMu.
type sends struct {
	n          int
	overlapped bool
}

// sendBegin counts a send of the sealed payment of attempt key mark, before
// Pay looks for its mark: a send that begins while another is in flight
// overlaps it (and finds its mark).
func (m *Merchant) sendBegin(mark []byte) *sends {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	if m.sending == nil {
		m.sending = make(map[string]*sends)
	}
	s := m.sending[string(mark)]
	if s == nil {
		s = &sends{}
		m.sending[string(mark)] = s
	}
	if s.n++; s.n > 1 {
		s.overlapped = true
	}
	return s
}

// sendEnd uncounts a send that sendBegin counted.
func (m *Merchant) sendEnd(mark []byte, s *sends) {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	if s.n--; s.n == 0 {
		delete(m.sending, string(mark))
	}
}

// dropAlone deletes the mark of a first send the bank refused, and reports
// so, unless another send of the same bytes overlapped it: that one may
// still commit. Under sendMu, so that a send beginning after it finds the
// mark gone only if this one dropped it alone: it is then a first send,
// this one's refusal having moved nothing.
func (m *Merchant) dropAlone(mark []byte, s *sends) bool {
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	if s.overlapped {
		return false
	}
	m.endAttempt(mark, true)
	return true
}

// endAttempt settles the mark of a deposit not recorded paid. A refusal
// ends the attempt: its mark goes (other attempts' stay). An unknown
// outcome keeps it, synced now so that it survives a power loss too: off
// the hot path, and the wallet may never come back.
func (m *Merchant) endAttempt(mark []byte, refused bool) {
	var err error
	if refused {
		err = m.db.Delete(mark, pebble.NoSync)
	} else {
		err = m.db.Set(mark, nil, pebble.Sync)
	}
	if err != nil {
		m.log.Error("deposit in flight: writing its mark", "err", err)
	}
}

// recordPaid verifies the bank's deposit receipt for order o and, unless
// o is paid already, records it paid and deletes its deposit marks, in
// one synced batch. Every payment the merchant records goes through here.
func (m *Merchant) recordPaid(ctx context.Context, o *Order, pr *ecash.PaymentRequest, raw []byte) error {
	rcpt, err := ecash.DecodeDepositReceipt(raw)
	if err == nil {
		err = m.verifyBank(ctx, func(ks *ecash.KeySet) error { return rcpt.Verify(ks, pr) })
	}
	if err != nil {
		// The bank has committed: a receipt that does not verify is no
		// refusal, and the mark stays for Reconcile to ask again.
		m.log.Error("bank deposit receipt does not verify", "order", o.ID, "err", err)
		return fmt.Errorf("%w: deposit receipt: %v", ErrBadBankAnswer, err)
	}
	if o.Receipt != nil {
		return nil
	}
	o.Receipt = raw
	b := m.db.NewBatch()
	defer b.Close()
	if err := errors.Join(b.Set(orderKey(o.ID), o.encode(), nil), m.dropMarks(b, o.ID)); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	m.orders.put(o)
	m.log.Debug("order paid", "order", o.ID, "amount", o.Amount.String())
	return nil
}
