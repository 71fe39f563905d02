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
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// KeyConfig says which keys a new bank generates.
type KeyConfig struct {
	Currency string
	RSABits  int            // 2048 (default) or 3072
	Values   []ecash.Amount // denomination values; default DefaultDenominations
	// Validity windows from generation time: coins are issued for
	// WithdrawPeriod and accepted for DepositPeriod.
	WithdrawPeriod time.Duration // default one year
	DepositPeriod  time.Duration // default three years
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
	for _, v := range cfg.Values {
		if v.Currency != cfg.Currency || v.IsZero() || v.Validate() != nil {
			return nil, fmt.Errorf("bank: bad denomination value %s", v)
		}
		priv, err := ecash.RSAScheme{}.GenerateKey(rnd, cfg.RSABits)
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
