package bank

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
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
	// Validity windows from generation time: coins are issued for
	// WithdrawPeriod and accepted for DepositPeriod.
	WithdrawPeriod time.Duration // default one year
	DepositPeriod  time.Duration // default three years
	// MasterPub, if set, is the public half of a master key kept offline
	// (made by "bankd keys new-master"): no master key is generated, and the
	// key set must be signed elsewhere and installed with
	// Keys.InstallSignature before the bank can serve it.
	MasterPub ed25519.PublicKey
}

// ParseDenomSpecs parses "EUR:0.01/cs,EUR:0.02,EUR:1.00/rsa": amounts, each
// with an optional cipher suffix; def is the cipher of those without one.
func ParseDenomSpecs(s string, def ecash.Cipher) ([]DenomSpec, error) {
	var out []DenomSpec
	seen := map[ecash.Amount]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		amt, suffix, _ := strings.Cut(f, "/")
		spec := DenomSpec{Cipher: def}
		if suffix != "" {
			c, err := ParseCipher(suffix)
			if err != nil {
				return nil, err
			}
			spec.Cipher = c
		}
		v, err := ecash.ParseAmount(amt)
		if err != nil {
			return nil, err
		}
		if v.IsZero() {
			return nil, fmt.Errorf("%w: zero denomination", ecash.ErrBadAmount)
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
	return out
}

// DenomKey is a denomination with its private key.
type DenomKey struct {
	ecash.Denomination
	Private ecash.DenomPrivateKey
}

// Keys is the bank's private key material.
//
// The master key signs the key set and nothing else. It may live in the bank
// (Master set) or offline (Master nil): then the bank holds only MasterPub
// and MasterSig, the master's signature over KeySetBody, made elsewhere and
// installed with InstallSignature.
type Keys struct {
	Currency  string
	Master    ed25519.PrivateKey // signs the key set; nil when kept offline
	MasterPub ed25519.PublicKey  // always set; SHA-256 of it is the bank id
	MasterSig []byte             // with an offline master: its signature over KeySetBody; nil until installed
	Signing   ed25519.PrivateKey // online: receipts and proofs
	HPKE      *ecdh.PrivateKey   // sealed payments are encrypted to it
	Denoms    []DenomKey
	IssuedAt  time.Time
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
	k := &Keys{Currency: cfg.Currency, IssuedAt: now.Truncate(time.Second)}
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
		scheme, err := ecash.SchemeFor(spec.Cipher)
		if err != nil {
			return nil, err
		}
		bits := cfg.RSABits
		if spec.Cipher != ecash.CipherRSA {
			bits = 0
		}
		priv, err := scheme.GenerateKey(rnd, bits)
		if err != nil {
			return nil, err
		}
		k.Denoms = append(k.Denoms, DenomKey{
			Denomination: ecash.Denomination{
				ID: ecash.DenominationID(v, priv.Public()), Value: v, Key: priv.Public(),
				WithdrawStart: k.IssuedAt, WithdrawEnd: k.IssuedAt.Add(cfg.WithdrawPeriod),
				DepositEnd: k.IssuedAt.Add(cfg.DepositPeriod),
			},
			Private: priv,
		})
	}
	return k, nil
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
		Currency:   k.Currency,
		MasterPub:  k.masterPub(),
		SigningPub: k.Signing.Public().(ed25519.PublicKey),
		HPKEPub:    k.HPKE.PublicKey().Bytes(),
		IssuedAt:   k.IssuedAt,
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
