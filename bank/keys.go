package bank

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
type Keys struct {
	Currency string
	Master   ed25519.PrivateKey // signs the key set; could live offline
	Signing  ed25519.PrivateKey // online: receipts and proofs
	HPKE     *ecdh.PrivateKey   // sealed payments are encrypted to it
	Denoms   []DenomKey
	IssuedAt time.Time
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
	if _, k.Master, err = ed25519.GenerateKey(rnd); err != nil {
		return nil, err
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

// KeySet is the public, master-signed key set.
func (k *Keys) KeySet() *ecash.KeySet {
	ks := &ecash.KeySet{
		Currency:   k.Currency,
		MasterPub:  k.Master.Public().(ed25519.PublicKey),
		SigningPub: k.Signing.Public().(ed25519.PublicKey),
		HPKEPub:    k.HPKE.PublicKey().Bytes(),
		IssuedAt:   k.IssuedAt,
	}
	for _, d := range k.Denoms {
		ks.Denominations = append(ks.Denominations, d.Denomination)
	}
	ks.Sign(k.Master)
	return ks
}

// keyFile is the on-disk form of Keys (JSON, mode 0600).
type keyFile struct {
	Currency string     `json:"currency"`
	IssuedAt int64      `json:"issued_at"`
	Master   []byte     `json:"master_seed"`
	Signing  []byte     `json:"signing_seed"`
	HPKE     []byte     `json:"hpke_private"`
	Denoms   []denomRec `json:"denominations"`
}

type denomRec struct {
	Value         string `json:"value"`
	Cipher        uint8  `json:"cipher"`
	Private       []byte `json:"private"`
	WithdrawStart int64  `json:"withdraw_start"`
	WithdrawEnd   int64  `json:"withdraw_end"`
	DepositEnd    int64  `json:"deposit_end"`
}

// KeysFile is the name of the key file inside a bank's data directory.
const KeysFile = "keys.json"

// Save writes the keys to path atomically with mode 0600.
func (k *Keys) Save(path string) error {
	f := keyFile{
		Currency: k.Currency, IssuedAt: k.IssuedAt.Unix(),
		Master: k.Master.Seed(), Signing: k.Signing.Seed(), HPKE: k.HPKE.Bytes(),
	}
	for _, d := range k.Denoms {
		f.Denoms = append(f.Denoms, denomRec{
			Value: d.Value.String(), Cipher: uint8(d.Key.Cipher()), Private: d.Private.Bytes(),
			WithdrawStart: d.WithdrawStart.Unix(), WithdrawEnd: d.WithdrawEnd.Unix(), DepositEnd: d.DepositEnd.Unix(),
		})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b, 0o600)
}

// LoadKeys reads keys written by Save.
func LoadKeys(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("bank: key file %s: %w", path, err)
	}
	if len(f.Master) != ed25519.SeedSize || len(f.Signing) != ed25519.SeedSize {
		return nil, fmt.Errorf("bank: key file %s: bad Ed25519 seeds", path)
	}
	k := &Keys{Currency: f.Currency, IssuedAt: time.Unix(f.IssuedAt, 0),
		Master: ed25519.NewKeyFromSeed(f.Master), Signing: ed25519.NewKeyFromSeed(f.Signing)}
	if k.HPKE, err = ecdh.X25519().NewPrivateKey(f.HPKE); err != nil {
		return nil, fmt.Errorf("bank: key file %s: HPKE key: %w", path, err)
	}
	for _, r := range f.Denoms {
		v, err := ecash.ParseAmount(r.Value)
		if err != nil {
			return nil, err
		}
		scheme, err := ecash.SchemeFor(ecash.Cipher(r.Cipher))
		if err != nil {
			return nil, err
		}
		priv, err := scheme.ParsePrivateKey(r.Private)
		if err != nil {
			return nil, err
		}
		k.Denoms = append(k.Denoms, DenomKey{
			Denomination: ecash.Denomination{
				ID: ecash.DenominationID(v, priv.Public()), Value: v, Key: priv.Public(),
				WithdrawStart: time.Unix(r.WithdrawStart, 0), WithdrawEnd: time.Unix(r.WithdrawEnd, 0),
				DepositEnd: time.Unix(r.DepositEnd, 0),
			},
			Private: priv,
		})
	}
	return k, nil
}

// LoadOrCreateKeys loads DIR/keys.json, or generates and saves keys on first
// start. created reports which happened.
func LoadOrCreateKeys(dir string, cfg KeyConfig, now time.Time) (k *Keys, created bool, err error) {
	path := filepath.Join(dir, KeysFile)
	k, err = LoadKeys(path)
	if err == nil {
		if cfg.Currency != "" && cfg.Currency != k.Currency {
			return nil, false, fmt.Errorf("bank: %s holds %s keys, not %s", path, k.Currency, cfg.Currency)
		}
		// The public half must pass the checks every wallet applies.
		if _, err := ecash.DecodeKeySet(k.KeySet().Encode(), nil); err != nil {
			return nil, false, fmt.Errorf("bank: key file %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	// New keys beside an existing ledger would strand every coin in
	// circulation: a lost or misplaced key file must be restored, not replaced.
	if entries, err := os.ReadDir(filepath.Join(dir, "ledger")); err == nil && len(entries) > 0 {
		return nil, false, fmt.Errorf("bank: %s is missing but %s holds a ledger; restore the key file instead of generating new keys", path, filepath.Join(dir, "ledger"))
	}
	if k, err = GenerateKeys(cfg, now, rand.Reader); err != nil {
		return nil, false, err
	}
	if err := k.Save(path); err != nil {
		return nil, false, err
	}
	return k, true, nil
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
