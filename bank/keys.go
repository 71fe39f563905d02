package bank

import (
	"bytes"
	"cmp"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// DenomSpec is one denomination a new bank generates: its value and cipher.
type DenomSpec struct {
	Value  ecash.Amount
	Cipher ecash.Cipher
	Fees   ecash.Fees // per coin; zero: free
}

// KeyConfig says which keys a new bank generates. The cipher is chosen per
// denomination: RSA (RFC 9474) rests on older, standard assumptions and
// costs the bank about a millisecond of CPU per coin; CS (Clause Blind
// Schnorr) rests on newer ones (ROS hardness in the random-oracle model)
// and costs tens of microseconds, with 64-byte signatures.
type KeyConfig struct {
	Currency string
	RSABits  int            // 2048 (default) or 3072
	Values   []ecash.Amount // denomination values; default DefaultDenominations
	Cipher   ecash.Cipher   // cipher of Values; default RSA
	// Denoms, if set, lists every denomination with its own cipher and
	// replaces Values and Cipher.
	Denoms []DenomSpec
	// Validity windows of each key from its start: coins are issued for
	// WithdrawPeriod and accepted for DepositPeriod (so for DepositPeriod -
	// WithdrawPeriod after the key stops issuing: the schedule's
	// DepositLifetime).
	WithdrawPeriod time.Duration // default one year
	DepositPeriod  time.Duration // default three years
	// Overlap is how long before a key stops issuing its successor starts
	// (default WithdrawPeriod/12).
	Overlap time.Duration
	// Until, if after the generation time, makes successive keys of every
	// value ahead of time, so that one is withdrawable at every instant
	// until then (Keys.Extend); zero makes one key per value.
	Until time.Time
	// MasterPub, if set, is the public half of a master key kept offline
	// (made by "bankd keys new-master"): no master key is generated, and the
	// key set must be signed elsewhere and installed with
	// Keys.InstallSignature before the bank can serve it.
	MasterPub ed25519.PublicKey
}

// ParseDenomSpecs parses "EUR:0.01/cs,EUR:0.02,EUR:1.00/rsa/fees=0.01:0.01:0:0.01":
// amounts, each with an optional cipher and optional fees; def is the
// cipher of those without one. Fees are withdraw:deposit:swap:refund in
// units of the denomination's currency, each below its value.
func ParseDenomSpecs(s string, def ecash.Cipher) ([]DenomSpec, error) {
	var out []DenomSpec
	seen := map[ecash.Amount]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		parts := strings.Split(f, "/")
		spec := DenomSpec{Cipher: def}
		v, err := ecash.ParseAmount(parts[0])
		if err != nil {
			return nil, err
		}
		if v.IsZero() {
			return nil, fmt.Errorf("%w: zero denomination", ecash.ErrBadAmount)
		}
		for _, p := range parts[1:] {
			if fees, ok := strings.CutPrefix(p, "fees="); ok {
				if spec.Fees, err = parseFees(v, fees); err != nil {
					return nil, err
				}
				continue
			}
			if spec.Cipher, err = ParseCipher(p); err != nil {
				return nil, err
			}
		}
		if seen[v] {
			return nil, fmt.Errorf("denomination %s appears twice", v)
		}
		seen[v] = true
		spec.Value = v
		out = append(out, spec)
	}
	if len(out) == 0 {
		return nil, errors.New("no denominations")
	}
	return out, nil
}

// parseFees parses "W:D:S:R" for a denomination of value v.
func parseFees(v ecash.Amount, s string) (ecash.Fees, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 4 {
		return ecash.Fees{}, fmt.Errorf("fees of %s: %q is not withdraw:deposit:swap:refund", v, s)
	}
	var a [4]ecash.Amount
	for i, p := range parts {
		x, err := ecash.ParseAmount(v.Currency + ":" + p)
		if err != nil {
			return ecash.Fees{}, fmt.Errorf("fees of %s: %w", v, err)
		}
		a[i] = x
	}
	f := ecash.Fees{Withdraw: a[0], Deposit: a[1], Swap: a[2], Refund: a[3]}
	if f.IsZero() {
		return ecash.Fees{}, nil // free, as a key set without a fee section says
	}
	return f, f.Check(v)
}

// FeesSpec formats fees as ParseDenomSpecs reads them ("fees=W:D:S:R"), or
// "" for none.
func FeesSpec(f ecash.Fees) string {
	if f.IsZero() {
		return ""
	}
	u := func(a ecash.Amount) string { _, s, _ := strings.Cut(a.String(), ":"); return s }
	return "fees=" + u(f.Withdraw) + ":" + u(f.Deposit) + ":" + u(f.Swap) + ":" + u(f.Refund)
}

// ParseCipher parses "rsa" or "cs".
func ParseCipher(s string) (ecash.Cipher, error) {
	switch strings.ToLower(s) {
	case "rsa":
		return ecash.CipherRSA, nil
	case "cs":
		return ecash.CipherCS, nil
	}
	return 0, fmt.Errorf("%w: %q (want rsa or cs)", ecash.ErrUnknownCipher, s)
}

// DefaultDenominations are powers of two from 0.01 to 81.92 of cur.
func DefaultDenominations(cur string) []ecash.Amount {
	var vs []ecash.Amount
	for v := uint64(1); v <= 8192; v *= 2 {
		vs = append(vs, ecash.Amount{Currency: cur, Value: v})
	}
	return vs
}

func (c *KeyConfig) withDefaults() KeyConfig {
	out := *c
	if out.RSABits == 0 {
		out.RSABits = 2048
	}
	if len(out.Values) == 0 {
		out.Values = DefaultDenominations(out.Currency)
	}
	if out.Cipher == 0 {
		out.Cipher = ecash.CipherRSA
	}
	if len(out.Denoms) == 0 {
		for _, v := range out.Values {
			out.Denoms = append(out.Denoms, DenomSpec{Value: v, Cipher: out.Cipher})
		}
	}
	if out.WithdrawPeriod == 0 {
		out.WithdrawPeriod = 365 * 24 * time.Hour
	}
	if out.DepositPeriod == 0 {
		out.DepositPeriod = 3 * 365 * 24 * time.Hour
	}
	if out.Overlap == 0 {
		out.Overlap = out.WithdrawPeriod / 12
	}
	return out
}

// Schedule is how successive keys of one denomination value follow each
// other. Key n+1 starts Overlap before key n stops issuing coins, so at
// every instant at least one key of each value is withdrawable, and during
// the overlap two are (wallets take the newer); each key's coins are
// accepted for DepositLifetime after it stops issuing, long enough for a
// wallet to swap them for coins of a newer key.
//
//	key n    |---- withdraw (WithdrawPeriod) ----|---- deposit only (DepositLifetime) ----|
//	key n+1                            |-Overlap-|---- withdraw ...
type Schedule struct {
	WithdrawPeriod  time.Duration
	Overlap         time.Duration
	DepositLifetime time.Duration
}

// Check refuses a schedule that leaves gaps or makes no sense, for keys
// made from now on.
func (s Schedule) Check() error {
	if err := s.checkStored(); err != nil {
		return err
	}
	if 2*s.Overlap >= s.WithdrawPeriod {
		// Longer, two keys of a value would be live most of the time,
		// which the auditor warns of: a bank could tell wallets apart by
		// the key each was given.
		return fmt.Errorf("bank: key schedule: overlap %s must be under half the withdraw period %s", s.Overlap, s.WithdrawPeriod)
	}
	return nil
}

// checkStored is Check's rule before overlaps had to be under half the
// period: a key file saved then still loads, and `keys extend --overlap`
// can then correct its schedule.
func (s Schedule) checkStored() error {
	switch {
	case s.WithdrawPeriod < time.Second:
		return fmt.Errorf("bank: key schedule: withdraw period %s is shorter than a second", s.WithdrawPeriod)
	case s.Overlap < 0 || s.Overlap >= s.WithdrawPeriod:
		return fmt.Errorf("bank: key schedule: overlap %s must be at least 0 and shorter than the withdraw period %s", s.Overlap, s.WithdrawPeriod)
	case s.DepositLifetime < 0:
		return fmt.Errorf("bank: key schedule: negative deposit lifetime %s", s.DepositLifetime)
	}
	return nil
}

func (s Schedule) String() string {
	return fmt.Sprintf("withdraw period %s, overlap %s, deposit lifetime %s", s.WithdrawPeriod, s.Overlap, s.DepositLifetime)
}

// schedule is the key schedule a configuration asks for.
func (c *KeyConfig) schedule() Schedule {
	return Schedule{WithdrawPeriod: c.WithdrawPeriod, Overlap: c.Overlap, DepositLifetime: c.DepositPeriod - c.WithdrawPeriod}
}

// DenomKey is a denomination with its private key.
type DenomKey struct {
	ecash.Denomination
	Private ecash.DenomPrivateKey
}

// CanHoldCredit reports whether d's coins may be given refund credit and
// spend it at now: within the deposit window, revoked or not. Credit is
// the bank's own record of money it owes a spent coin's holder, which a
// revocation must not take away (a revoked coin's own value is recouped).
func (d *DenomKey) CanHoldCredit(now time.Time) error {
	live := d.Denomination
	live.Revoked = false
	return live.CanDeposit(now)
}

// Keys is the bank's private key material.
//
// The master key signs the key set and nothing else. It may live in the bank
// (Master set) or offline (Master nil): then the bank holds only MasterPub
// and MasterSig, the master's signature over KeySetBody, made elsewhere and
// installed with InstallSignature.
//
// Denoms holds every denomination key the bank honours: past keys whose
// coins are still accepted, current keys and future keys made ahead of time
// (Extend), so rotation happens by the clock alone. Prune drops the keys
// whose coins are no longer accepted. Every change to the key set (Extend,
// Prune, RotateSigning) sets IssuedAt; with an offline master it also
// drops MasterSig, and the changed key set must be signed before the bank
// can serve it.
type Keys struct {
	Currency  string
	Master    ed25519.PrivateKey // signs the key set; nil when kept offline
	MasterPub ed25519.PublicKey  // always set; SHA-256 of it is the bank id
	MasterSig []byte             // with an offline master: its signature over KeySetBody; nil until installed
	Signing   ed25519.PrivateKey // online: receipts and proofs
	HPKE      *ecdh.PrivateKey   // sealed payments are encrypted to it
	Denoms    []DenomKey
	IssuedAt  time.Time
	// SigningSince is when Signing became the bank's signing key (zero:
	// IssuedAt).
	SigningSince time.Time
	// PastSigning lists retired signing keys, newest first, with the
	// windows in which they signed: published in the key set so that what
	// they signed stays verifiable (ecash.KeySet.CheckSigner).
	PastSigning []ecash.SigningKey
	// Schedule is how Extend continues the denomination keys (zero in key
	// files from before schedules: inferred from the newest keys).
	Schedule Schedule
}

// GenerateKeys creates fresh key material.
func GenerateKeys(cfg KeyConfig, now time.Time, rnd io.Reader) (*Keys, error) {
	cfg = cfg.withDefaults()
	if !ecash.ValidCurrency(cfg.Currency) {
		return nil, fmt.Errorf("bank: invalid currency %q", cfg.Currency)
	}
	if cfg.RSABits != 2048 && cfg.RSABits != 3072 {
		return nil, fmt.Errorf("bank: RSA key size must be 2048 or 3072, not %d", cfg.RSABits)
	}
	sched := cfg.schedule()
	if err := sched.Check(); err != nil {
		return nil, err
	}
	k := &Keys{Currency: cfg.Currency, IssuedAt: now.Truncate(time.Second), Schedule: sched}
	k.SigningSince = k.IssuedAt
	var err error
	if cfg.MasterPub != nil {
		if len(cfg.MasterPub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("bank: master public key must be %d bytes, not %d", ed25519.PublicKeySize, len(cfg.MasterPub))
		}
		k.MasterPub = slices.Clone(cfg.MasterPub)
	} else {
		if k.MasterPub, k.Master, err = ed25519.GenerateKey(rnd); err != nil {
			return nil, err
		}
	}
	if _, k.Signing, err = ed25519.GenerateKey(rnd); err != nil {
		return nil, err
	}
	if k.HPKE, err = ecdh.X25519().GenerateKey(rnd); err != nil {
		return nil, err
	}
	for _, spec := range cfg.Denoms {
		v := spec.Value
		if v.Currency != cfg.Currency || v.IsZero() || v.Validate() != nil {
			return nil, fmt.Errorf("bank: bad denomination value %s", v)
		}
		d, err := newDenomKey(v, spec.Cipher, spec.Fees, cfg.RSABits, k.IssuedAt, sched, rnd)
		if err != nil {
			return nil, err
		}
		k.Denoms = append(k.Denoms, d)
	}
	if cfg.Until.After(k.IssuedAt) {
		if _, err := k.Extend(sched, cfg.Until, now, rnd); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// newDenomKey makes a key of value v whose windows start at start.
func newDenomKey(v ecash.Amount, cipher ecash.Cipher, fees ecash.Fees, rsaBits int, start time.Time, s Schedule, rnd io.Reader) (DenomKey, error) {
	if err := fees.Check(v); err != nil {
		return DenomKey{}, err
	}
	scheme, err := ecash.SchemeFor(cipher)
	if err != nil {
		return DenomKey{}, err
	}
	if cipher != ecash.CipherRSA {
		rsaBits = 0
	}
	priv, err := scheme.GenerateKey(rnd, rsaBits)
	if err != nil {
		return DenomKey{}, err
	}
	start = start.Truncate(time.Second)
	end := start.Add(s.WithdrawPeriod)
	return DenomKey{
		Denomination: ecash.Denomination{
			ID: ecash.DenominationID(v, priv.Public()), Value: v, Key: priv.Public(),
			WithdrawStart: start, WithdrawEnd: end, DepositEnd: end.Add(s.DepositLifetime), Fees: fees,
		},
		Private: priv,
	}, nil
}

// clone copies k so that its denominations can change while others use k.
func (k *Keys) clone() *Keys {
	next := *k
	next.Denoms = slices.Clone(k.Denoms)
	return &next
}

// KeySet is the public, master-signed key set. With an offline master key
// it carries the installed signature (none before one is installed: see
// Signed).
func (k *Keys) KeySet() *ecash.KeySet {
	ks := k.unsignedKeySet()
	if k.Master != nil {
		ks.Sign(k.Master)
	} else {
		ks.MasterSig = slices.Clone(k.MasterSig)
	}
	return ks
}

// masterPub is MasterPub, or the public half of Master for keys built by
// hand without it.
func (k *Keys) masterPub() ed25519.PublicKey {
	if k.MasterPub == nil && k.Master != nil {
		return k.Master.Public().(ed25519.PublicKey)
	}
	return k.MasterPub
}

func (k *Keys) unsignedKeySet() *ecash.KeySet {
	ks := &ecash.KeySet{
		Currency:    k.Currency,
		MasterPub:   k.masterPub(),
		SigningPub:  k.Signing.Public().(ed25519.PublicKey),
		HPKEPub:     k.HPKE.PublicKey().Bytes(),
		IssuedAt:    k.IssuedAt,
		PastSigning: slices.Clone(k.PastSigning),
	}
	for _, d := range k.Denoms {
		ks.Denominations = append(ks.Denominations, d.Denomination)
	}
	return ks
}

// KeySetBody is the canonical key-set encoding the master key signs
// (ecash.KeySet.Body): what "bankd keys export --unsigned" writes.
func (k *Keys) KeySetBody() []byte { return k.unsignedKeySet().Body() }

// BankID is SHA-256 of the master public key: the id wallets pin and payment
// requests name.
func (k *Keys) BankID() ecash.Hash { return ecash.HashOf(k.masterPub()) }

// Signed reports whether the bank can present a master-signed key set: it
// holds the master key, or a signature made offline was installed.
func (k *Keys) Signed() bool { return k.Master != nil || len(k.MasterSig) == ed25519.SignatureSize }

// CheckKeySet checks that the public key set is signed by the master key and
// passes the checks every wallet applies.
func (k *Keys) CheckKeySet() error {
	if !k.Signed() {
		return ErrKeySetUnsigned
	}
	_, err := ecash.DecodeKeySet(k.KeySet().Encode(), k.masterPub())
	return err
}

// InstallSignature checks a signed key set (ecash.KeySet.Encode, as
// "bankd keys sign" writes it) against the bank's master public key and its
// own keys: the signed body must be exactly KeySetBody. With an offline
// master it then keeps the signature, to serve; a bank holding the master
// key signs for itself and keeps nothing. It returns the key set.
func (k *Keys) InstallSignature(signed []byte) (*ecash.KeySet, error) {
	ks, err := ecash.DecodeKeySet(signed, nil)
	if err != nil {
		return nil, fmt.Errorf("bank: signed key set: %w", err)
	}
	if !k.masterPub().Equal(ks.MasterPub) {
		return nil, fmt.Errorf("%w: the key set is signed by master key %x (bank id %s), this bank's is %x", ErrWrongMaster, ks.MasterPub, ks.BankID(), k.masterPub())
	}
	if !bytes.Equal(ks.Body(), k.KeySetBody()) {
		return nil, ErrKeySetMismatch
	}
	if k.Master == nil {
		k.MasterSig = slices.Clone(ks.MasterSig)
	}
	return ks, nil
}

// SignKeySetBody signs an unsigned key-set body (KeySetBody, as
// "bankd keys export --unsigned" writes it) with the master key: the offline
// half of the ceremony. The body must be a well-formed key set naming this
// master key. It returns the signed key set and its encoding, which
// InstallSignature takes.
func SignKeySetBody(master ed25519.PrivateKey, body []byte) (*ecash.KeySet, []byte, error) {
	// The body starts with the currency and the master public key.
	d := ecash.NewDecoder("keyset", body)
	_ = d.String() // the currency
	named := d.Fixed(ed25519.PublicKeySize)
	if d.Err() != nil {
		return nil, nil, fmt.Errorf("bank: the key set to sign: %w", d.Err())
	}
	if pub := master.Public().(ed25519.PublicKey); !pub.Equal(ed25519.PublicKey(named)) {
		return nil, nil, fmt.Errorf("%w: the key set names master key %x (bank id %s), not this one, %x", ErrWrongMaster, named, ecash.HashOf(named), pub)
	}
	e := ecash.NewEncoder("signed-keyset")
	e.VarBytes(body)
	e.Fixed(ed25519.Sign(master, body))
	ks, err := ecash.DecodeKeySet(e.Bytes(), master.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, nil, fmt.Errorf("bank: the key set to sign: %w", err)
	}
	return ks, ks.Encode(), nil
}

// TakeMasterOffline removes the master key from k and returns its seed, for
// the operator to keep offline. k keeps the master public key and the
// master's signature over the current key set, so the bank goes on serving
// it; a changed key set must then be signed offline and installed.
func (k *Keys) TakeMasterOffline() (seed []byte, err error) {
	if k.Master == nil {
		return nil, ErrMasterOffline
	}
	k.MasterPub = k.masterPub()
	k.MasterSig = k.KeySet().MasterSig
	seed = k.Master.Seed()
	k.Master = nil
	return seed, nil
}

// ScheduleOf is k.Schedule, or for key files from before schedules one
// inferred from the newest key: its periods, and an overlap of a twelfth
// of its withdraw period.
func (k *Keys) ScheduleOf() Schedule {
	if k.Schedule != (Schedule{}) {
		return k.Schedule
	}
	var newest *DenomKey
	for i := range k.Denoms {
		if d := &k.Denoms[i]; newest == nil || d.WithdrawStart.After(newest.WithdrawStart) {
			newest = d
		}
	}
	if newest == nil {
		return Schedule{}
	}
	p := newest.WithdrawEnd.Sub(newest.WithdrawStart)
	return Schedule{WithdrawPeriod: p, Overlap: p / 12, DepositLifetime: newest.DepositEnd.Sub(newest.WithdrawEnd)}
}

// values lists the denomination values of k, smallest first.
func (k *Keys) values() []ecash.Amount {
	var vs []ecash.Amount
	for _, d := range k.Denoms {
		if !slices.Contains(vs, d.Value) {
			vs = append(vs, d.Value)
		}
	}
	slices.SortFunc(vs, func(a, b ecash.Amount) int { return cmp.Compare(a.Value, b.Value) })
	return vs
}

// newest is the key of value v that starts last.
func (k *Keys) newest(v ecash.Amount, revoked bool) *DenomKey {
	var n *DenomKey
	for i := range k.Denoms {
		if d := &k.Denoms[i]; d.Value == v && (revoked || !d.Revoked) && (n == nil || d.WithdrawStart.After(n.WithdrawStart)) {
			n = d
		}
	}
	return n
}

// nextLive is the key of value v not revoked that starts first after now,
// or nil.
func (k *Keys) nextLive(v ecash.Amount, now time.Time) *DenomKey {
	var n *DenomKey
	for i := range k.Denoms {
		if d := &k.Denoms[i]; d.Value == v && !d.Revoked && d.WithdrawStart.After(now) && (n == nil || d.WithdrawStart.Before(n.WithdrawStart)) {
			n = d
		}
	}
	return n
}

// valueDenoms are the denominations of value v.
func (k *Keys) valueDenoms(v ecash.Amount) []ecash.Denomination {
	var out []ecash.Denomination
	for _, d := range k.Denoms {
		if d.Value == v {
			out = append(out, d.Denomination)
		}
	}
	return out
}

// rsaBits is the size of an RSA denomination key (0 for other ciphers).
func rsaBits(d ecash.Denomination) int {
	if d.Key.Cipher() != ecash.CipherRSA {
		return 0
	}
	pk, err := x509.ParsePKIXPublicKey(d.Key.Bytes())
	if err != nil {
		return 0
	}
	if rk, ok := pk.(*rsa.PublicKey); ok {
		return rk.N.BitLen()
	}
	return 0
}

// changed records a change of the key set: it is issued anew at now, and
// with an offline master the old signature no longer applies. The issue
// time only moves forward: wallets keep the later-issued of two key sets,
// and a change made on a replica whose clock is behind the one that made
// the set it changes (a revocation adopted, then another made), or after
// the clock stepped back, would otherwise be issued before it, and be
// ignored by every wallet holding that one. A set issued further ahead
// than the protocol's clock skew is taken for a clock's mistake: the new
// one is issued at now (wallets refuse a set issued that far ahead).
func (k *Keys) changed(now time.Time) {
	now = now.Truncate(time.Second)
	if !k.IssuedAt.Before(now) && !k.IssuedAt.After(now.Add(ecash.MaxClockSkew)) {
		now = k.IssuedAt.Add(time.Second)
	}
	k.IssuedAt = now
	if k.Master == nil {
		k.MasterSig = nil
	}
}

func (k *Keys) sortDenoms() {
	slices.SortStableFunc(k.Denoms, func(a, b DenomKey) int {
		if c := cmp.Compare(a.Value.Value, b.Value.Value); c != 0 {
			return c
		}
		return a.WithdrawStart.Compare(b.WithdrawStart)
	})
}

// Extend generates denomination keys ahead of time: for every value, keys
// following s (the zero Schedule: k.ScheduleOf()) after the value's newest
// key, until a key of that value is withdrawable at every instant up to
// until. A new key starts Overlap before its predecessor stops issuing, or
// at now if that is later (a value whose keys all lapsed starts again
// now). Each keeps its value's cipher and RSA size. It returns the new
// keys (none if the schedule already reaches until). The key set changes
// (see Keys): save it, sign it if the master is offline, restart the bank.
// New keys keep their value's fees too.
func (k *Keys) Extend(s Schedule, until, now time.Time, rnd io.Reader) ([]DenomKey, error) {
	if s == (Schedule{}) {
		s = k.ScheduleOf()
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	now = now.Truncate(time.Second)
	var added []DenomKey
	for _, v := range k.values() {
		// The value's newest key, revoked or not, gives its cipher, fees
		// and RSA size; the schedule goes on from its newest key not
		// revoked: a revoked key issues nothing, and its successor must
		// not wait for the end of its window. With every key of the value
		// revoked, the successor starts now.
		last := k.newest(v, true).Denomination
		bits := rsaBits(last)
		tail := last
		if live := k.newest(v, false); live != nil {
			tail = live.Denomination
		} else {
			tail.WithdrawStart, tail.WithdrawEnd = now, now
		}
		// A gap now before a later key (the current one revoked after its
		// successor was made): a bridge from now until that key has run
		// for Overlap, or as long as it waits, whichever is shorter, so
		// that the later key starts in the second half of the bridge's
		// window (the auditor's rule for a successor).
		if next := k.nextLive(v, now); next != nil && coveredUntil(k.valueDenoms(v), now).IsZero() {
			d, err := newDenomKey(v, last.Key.Cipher(), last.Fees, bits, now, s, rnd)
			if err != nil {
				return nil, fmt.Errorf("bank: extending %s: %w", v, err)
			}
			wait := next.WithdrawStart.Sub(d.WithdrawStart)
			d.WithdrawEnd = next.WithdrawStart.Add(min(s.Overlap, wait))
			d.DepositEnd = d.WithdrawEnd.Add(s.DepositLifetime)
			added = append(added, d)
		}
		for tail.WithdrawEnd.Before(until) {
			// A successor starts Overlap before its predecessor's end, but
			// not before the middle of its window (the auditor's rule for a
			// successor), which a schedule changed to a longer overlap
			// than the old keys' period allows would do.
			start := tail.WithdrawEnd.Add(-s.Overlap)
			if mid := tail.WithdrawStart.Add((tail.WithdrawEnd.Sub(tail.WithdrawStart)/time.Second + 1) / 2 * time.Second); start.Before(mid) {
				start = mid
			}
			if start.Before(now) {
				start = now
			}
			d, err := newDenomKey(v, tail.Key.Cipher(), tail.Fees, bits, start, s, rnd)
			if err != nil {
				return nil, fmt.Errorf("bank: extending %s: %w", v, err)
			}
			added = append(added, d)
			tail = d.Denomination
			if len(k.Denoms)+len(added) > ecash.MaxDenominations {
				return nil, fmt.Errorf("bank: extending to %s would list more than %d denomination keys; extend less far ahead, lengthen the withdraw period or prune expired keys",
					until.UTC().Format(time.RFC3339), ecash.MaxDenominations)
			}
		}
	}
	k.Schedule = s
	if len(added) == 0 {
		return nil, nil
	}
	k.Denoms = append(k.Denoms, added...)
	k.sortDenoms()
	k.changed(now)
	return added, nil
}

// StripDenominationKeys drops the denomination private keys, for a bank
// whose signing runs in a separate process ("bankd signer"): the key file
// then holds only their public keys, and bankd refuses to start without
// its signer.
func (k *Keys) StripDenominationKeys() {
	for i := range k.Denoms {
		k.Denoms[i].Private = nil
	}
}

// HasDenominationKeys reports whether every denomination's private key
// is held (not stripped).
func (k *Keys) HasDenominationKeys() bool {
	for _, d := range k.Denoms {
		if d.Private == nil {
			return false
		}
	}
	return true
}

// ErrNoDenomination: no denomination key with that id.
var ErrNoDenomination = errors.New("bank: no denomination key with that id")

// Revoke marks a denomination revoked (its key may have leaked): the key set
// lists it as revoked, the bank issues and accepts none of its coins, and
// holders recoup them (Bank.Recoup). The key stays, to recompute what it
// signed. Like every change, it reissues the key set (see Keys).
func (k *Keys) Revoke(id ecash.Hash, now time.Time) error {
	for i := range k.Denoms {
		if k.Denoms[i].ID == id {
			if k.Denoms[i].Revoked {
				return nil
			}
			k.Denoms[i].Revoked = true
			k.changed(now)
			return nil
		}
	}
	return fmt.Errorf("%w: %x", ErrNoDenomination, id[:8])
}

// Prune drops the denomination keys whose coins are no longer accepted at
// now (DepositEnd reached) and, if signingBefore is not zero, the retired
// signing keys whose window ended before it. It returns what it dropped;
// if anything, the key set changed (see Keys). Keep the signed key sets
// published before (bankd keys prune archives the last one): auditors
// need the dropped public keys to check old transcripts.
func (k *Keys) Prune(now, signingBefore time.Time) (denoms []DenomKey, signing []ecash.SigningKey) {
	kept := k.Denoms[:0:0]
	for _, d := range k.Denoms {
		if now.Before(d.DepositEnd) {
			kept = append(kept, d)
		} else {
			denoms = append(denoms, d)
		}
	}
	var keptSigning []ecash.SigningKey
	for _, sk := range k.PastSigning {
		if !signingBefore.IsZero() && sk.ValidUntil.Before(signingBefore) {
			signing = append(signing, sk)
		} else {
			keptSigning = append(keptSigning, sk)
		}
	}
	if len(denoms)+len(signing) > 0 {
		k.Denoms, k.PastSigning = kept, keptSigning
		k.changed(now)
	}
	return denoms, signing
}

// MaxSigningGrace bounds RotateSigning's grace: long enough to restart
// every replica and, with an offline master key, to sign the changed key
// set; a mistyped 9999d would keep a retired (maybe leaked) key valid for
// new signatures for decades.
const MaxSigningGrace = 30 * 24 * time.Hour

// RotateSigning replaces the online signing key with a fresh one and lists
// the old one in the key set as retired, with the window in which it
// signed: from when it became the signing key until now + grace (0 to
// MaxSigningGrace). A bank that is running keeps signing with the old key
// until it restarts, so restart it within grace: what it signs later does
// not verify. It returns the retired key.
func (k *Keys) RotateSigning(now time.Time, grace time.Duration, rnd io.Reader) (ecash.SigningKey, error) {
	now = now.Truncate(time.Second)
	since := k.SigningSince
	if since.IsZero() {
		since = k.IssuedAt
	}
	if grace < 0 || grace > MaxSigningGrace {
		return ecash.SigningKey{}, fmt.Errorf("bank: grace %s outside 0 to %s", grace, MaxSigningGrace)
	}
	if len(k.PastSigning) >= ecash.MaxPastSigningKeys {
		return ecash.SigningKey{}, fmt.Errorf("bank: the key set lists %d retired signing keys already, the most it may; prune the oldest first", len(k.PastSigning))
	}
	if !since.Before(now) || (len(k.PastSigning) > 0 && !k.PastSigning[0].ValidFrom.Before(since)) {
		return ecash.SigningKey{}, fmt.Errorf("bank: the signing key became current at %s, not before now (%s): rotate it later",
			since.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	old := ecash.SigningKey{Pub: k.Signing.Public().(ed25519.PublicKey), ValidFrom: since, ValidUntil: now.Add(grace).Truncate(time.Second)}
	_, next, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return ecash.SigningKey{}, err
	}
	k.Signing, k.SigningSince = next, now
	k.PastSigning = append([]ecash.SigningKey{old}, k.PastSigning...)
	k.changed(now)
	return old, nil
}

// ValueStatus is where one denomination value stands in the schedule at a
// given time.
type ValueStatus struct {
	Value ecash.Amount
	// Current is the key wallets withdraw under now (the withdrawable one
	// that started last); nil if none is withdrawable.
	Current *ecash.Denomination
	// Next is the next key to start after now, of those not revoked; nil
	// if none is made yet.
	Next *ecash.Denomination
	// CoveredUntil is the end of the unbroken run of withdrawable keys
	// from now: extend before it (zero if no key is withdrawable now).
	CoveredUntil time.Time
	// Keys counts the value's keys by phase; a revoked key, which issues
	// nothing and whose coins are only recouped, counts as Revoked alone.
	Future, Withdrawable, DepositOnly, Expired, Revoked int
}

// Status says, per value, which key is current at now, which comes next,
// how far ahead keys exist, and how many keys are in each phase.
func (k *Keys) Status(now time.Time) []ValueStatus { return KeySetStatus(k.unsignedKeySet(), now) }

// KeySetStatus is Keys.Status from a public key set.
func KeySetStatus(ks *ecash.KeySet, now time.Time) []ValueStatus {
	var values []ecash.Amount
	for _, d := range ks.Denominations {
		if !slices.Contains(values, d.Value) {
			values = append(values, d.Value)
		}
	}
	slices.SortFunc(values, func(a, b ecash.Amount) int { return cmp.Compare(a.Value, b.Value) })
	var out []ValueStatus
	for _, v := range values {
		st := ValueStatus{Value: v}
		if cur, err := ks.CurrentDenomination(v, now); err == nil {
			st.Current = &cur
		}
		var mine []ecash.Denomination
		for _, d := range ks.Denominations {
			if d.Value != v {
				continue
			}
			mine = append(mine, d)
			switch {
			case d.Revoked:
				st.Revoked++
			case now.Before(d.WithdrawStart):
				st.Future++
				if st.Next == nil || d.WithdrawStart.Before(st.Next.WithdrawStart) {
					st.Next = &d
				}
			case now.Before(d.WithdrawEnd):
				st.Withdrawable++
			case now.Before(d.DepositEnd):
				st.DepositOnly++
			default:
				st.Expired++
			}
		}
		st.CoveredUntil = coveredUntil(mine, now)
		out = append(out, st)
	}
	return out
}

// coveredUntil is the end of the unbroken run of withdraw windows from now,
// of keys not revoked.
func coveredUntil(ds []ecash.Denomination, now time.Time) time.Time {
	var end time.Time
	t := now
	for {
		moved := false
		for _, d := range ds {
			if !d.Revoked && !t.Before(d.WithdrawStart) && t.Before(d.WithdrawEnd) && d.WithdrawEnd.After(end) {
				end, moved = d.WithdrawEnd, true
			}
		}
		if !moved {
			return end
		}
		t = end
	}
}

// WithdrawableUntil is how far ahead the schedule reaches: the earliest,
// over all values, of the end of the unbroken run of withdrawable keys
// from now. Extend the keys well before it; zero means some value has no
// withdrawable key now.
func (k *Keys) WithdrawableUntil(now time.Time) time.Time {
	return KeySetWithdrawableUntil(k.unsignedKeySet(), now)
}

// KeySetWithdrawableUntil is Keys.WithdrawableUntil from a public key set:
// a revoked key covers nothing, and a value whose next key starts later
// is uncovered until then.
func KeySetWithdrawableUntil(ks *ecash.KeySet, now time.Time) time.Time {
	var earliest time.Time
	for i, st := range KeySetStatus(ks, now) {
		if st.CoveredUntil.IsZero() {
			return time.Time{}
		}
		if i == 0 || st.CoveredUntil.Before(earliest) {
			earliest = st.CoveredUntil
		}
	}
	return earliest
}

// LoadOrCreateKeys loads DIR/keys.json, or generates and saves keys on first
// start. created reports which happened. It reads and writes unencrypted
// key files only; OpenKeys takes a passphrase.
func LoadOrCreateKeys(dir string, cfg KeyConfig, now time.Time) (k *Keys, created bool, err error) {
	k, info, err := OpenKeys(dir, cfg, now, KeyFileOptions{})
	return k, info.Created, err
}

// OpenKeys loads DIR/keys.json, or generates and saves keys on first start
// (encrypted if opts has a passphrase). The loaded keys must be for
// cfg.Currency (if set), and their key set must be signed by the master key
// and pass the checks every wallet applies. It never generates keys beside
// an existing ledger (DIR/ledger not empty): that would strand every coin in
// circulation. Keys for an offline master (cfg.MasterPub) are not made here:
// their key set must be signed before a bank can serve it (CreateKeys).
func OpenKeys(dir string, cfg KeyConfig, now time.Time, opts KeyFileOptions) (*Keys, KeyFileInfo, error) {
	path := filepath.Join(dir, KeysFile)
	k, info, err := LoadKeysWith(path, opts)
	if err == nil {
		if cfg.Currency != "" && cfg.Currency != k.Currency {
			return nil, info, fmt.Errorf("bank: %s holds %s keys, not %s", path, k.Currency, cfg.Currency)
		}
		// The public half must pass the checks every wallet applies.
		if err := k.CheckKeySet(); errors.Is(err, ErrKeySetUnsigned) {
			return nil, info, fmt.Errorf("%w (%s)", err, path)
		} else if err != nil {
			return nil, info, fmt.Errorf("bank: key file %s: %w", path, err)
		}
		return k, info, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, info, err
	}
	if cfg.MasterPub != nil {
		return nil, info, fmt.Errorf("bank: %s is missing; keys for an offline master key are made by \"bankd keys generate\" and signed before the bank starts", path)
	}
	k, err = CreateKeys(dir, cfg, now, opts)
	if err != nil {
		return nil, info, err
	}
	return k, KeyFileInfo{Created: true, Encrypted: opts.Passphrase != nil, KDF: opts.kdf().String()}, nil
}

// CreateKeys generates keys and writes them to DIR/keys.json (encrypted if
// opts has a passphrase). It refuses if the file exists, or if DIR/ledger
// holds a ledger: new keys beside it would strand every coin in circulation,
// so a lost or misplaced key file must be restored, not replaced.
func CreateKeys(dir string, cfg KeyConfig, now time.Time, opts KeyFileOptions) (*Keys, error) {
	path := filepath.Join(dir, KeysFile)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("bank: %s exists; not replacing it", path)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "ledger")); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("bank: %s is missing but %s holds a ledger; restore the key file instead of generating new keys", path, filepath.Join(dir, "ledger"))
	}
	k, err := GenerateKeys(cfg, now, rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := k.SaveWith(path, opts); err != nil {
		return nil, err
	}
	return k, nil
}

// WriteFileAtomic writes data to a temporary file, syncs it and renames it
// over path, so a crash leaves either the old or the new file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
