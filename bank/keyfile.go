package bank

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blindbank/blindbank/ecash"
)

// Key files.
//
// DIR/keys.json holds the bank's private keys as JSON (format
// "blindbank-keys/v1"; files written before the format field existed are
// read as that format). It may be stored in clear (mode 0600) or encrypted
// under an operator passphrase in an envelope (format
// "blindbank-encrypted/v1"), a JSON object that describes itself:
//
//	{
//	  "format": "blindbank-encrypted/v1",
//	  "content": "blindbank-keys/v1",
//	  "kdf": {"name": "argon2id", "version": 19, "time": 3, "memory_kib": 65536, "threads": 4, "salt": "<base64, 16 bytes>"},
//	  "passphrase_check": "<base64, 32 bytes>",
//	  "aead": "chacha20-poly1305",
//	  "nonce": "<base64, 12 bytes>",
//	  "ciphertext": "<base64>"
//	}
//
// Argon2id (RFC 9106) stretches the passphrase and salt into 64 bytes: the
// first 32 are the ChaCha20-Poly1305 key (RFC 8439); SHA-256 of a tag and the
// last 32 is the passphrase check, which tells a wrong passphrase (the check
// differs) from a damaged or tampered file (the check matches but the
// ciphertext does not open). The additional data of the AEAD is a canonical
// encoding of every header field (content, KDF and its parameters, salt,
// check, AEAD, nonce), so no header field can be changed unnoticed. Every
// write draws a fresh salt and nonce, hence a fresh key. The master key file
// of "bankd keys new-master" uses the same envelope with content
// "blindbank-master-key/v1".

// File formats.
const (
	KeysFormat      = "blindbank-keys/v1"
	MasterKeyFormat = "blindbank-master-key/v1"
	EnvelopeFormat  = "blindbank-encrypted/v1"
)

// Errors reading and writing key files.
var (
	ErrKeysEncrypted   = errors.New("bank: the key file is encrypted and no passphrase was given")
	ErrWrongPassphrase = errors.New("bank: wrong passphrase for the key file")
	ErrKeyFileDamaged  = errors.New("bank: the encrypted key file is damaged or was tampered with")
	ErrKeySetUnsigned  = errors.New("bank: the key set is not signed by the master key yet (export it with \"bankd keys export --unsigned\", sign it offline with \"bankd keys sign\", install it with \"bankd keys import\")")
	ErrKeySetMismatch  = errors.New("bank: the signed key set is not this bank's current key set")
	ErrMasterOffline   = errors.New("bank: the master key is not in this key file (it is kept offline)")
	ErrWrongMaster     = errors.New("bank: wrong master key")
)

// KDFParams are Argon2id's cost parameters.
type KDFParams struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF is RFC 9106's second recommended setting (t=3, 64 MiB, p=4):
// about half a second on a 2020s server core.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

func (p KDFParams) String() string {
	m := fmt.Sprintf("%dKiB", p.MemoryKiB)
	if p.MemoryKiB%1024 == 0 {
		m = fmt.Sprintf("%dMiB", p.MemoryKiB>>10)
	}
	return fmt.Sprintf("argon2id t=%d m=%s p=%d", p.Time, m, p.Threads)
}

// check bounds the parameters a file may ask for: enough to be a real KDF,
// not so much that a tampered file makes us allocate gigabytes or spin.
func (p KDFParams) check() error {
	if p.Time < 1 || p.Time > 64 || p.Threads < 1 || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > 2<<20 {
		return fmt.Errorf("argon2id parameters out of range: %s (want 1 to 64 passes, 1 to 255 threads, 8 KiB per thread to 2 GiB)", p)
	}
	return nil
}

// KeyFileOptions say how a key file is protected.
type KeyFileOptions struct {
	// Passphrase encrypts the file when writing and is needed to read an
	// encrypted one. nil writes the file in clear (mode 0600).
	Passphrase []byte
	// KDF is the cost of deriving the key from Passphrase when writing;
	// zero means DefaultKDF. (Reading uses the parameters in the file.)
	KDF KDFParams
}

func (o KeyFileOptions) kdf() KDFParams {
	if o.KDF == (KDFParams{}) {
		return DefaultKDF
	}
	return o.KDF
}

// KeyFileInfo describes a key file that was read or written.
type KeyFileInfo struct {
	Created   bool   // OpenKeys generated it
	Encrypted bool   // under a passphrase
	KDF       string // e.g. "argon2id t=3 m=64MiB p=4" when encrypted
}

// keyFile is the on-disk form of Keys (JSON, mode 0600). A bank holding its
// master key stores its seed; one whose master key is offline stores the
// master public key and the installed signature (if any) instead.
type keyFile struct {
	Format    string     `json:"format,omitempty"` // KeysFormat; absent in early files
	Currency  string     `json:"currency"`
	IssuedAt  int64      `json:"issued_at"`
	Master    []byte     `json:"master_seed,omitempty"`
	MasterPub []byte     `json:"master_public,omitempty"`
	MasterSig []byte     `json:"master_signature,omitempty"`
	Signing   []byte     `json:"signing_seed"`
	HPKE      []byte     `json:"hpke_private"`
	Denoms    []denomRec `json:"denominations"`
	// Key lifecycle (absent in files from before it): when the signing key
	// became current, the retired signing keys (public halves only), and
	// the schedule "bankd keys extend" follows.
	SigningSince int64         `json:"signing_since,omitempty"`
	PastSigning  []pastSignRec `json:"past_signing_keys,omitempty"`
	Schedule     *scheduleRec  `json:"schedule,omitempty"`
}

type pastSignRec struct {
	Public     []byte `json:"public"`
	ValidFrom  int64  `json:"valid_from"`
	ValidUntil int64  `json:"valid_until"`
}

// scheduleRec is a Schedule with durations as Go duration strings ("8760h0m0s").
type scheduleRec struct {
	WithdrawPeriod  string `json:"withdraw_period"`
	Overlap         string `json:"overlap"`
	DepositLifetime string `json:"deposit_lifetime"`
}

type denomRec struct {
	Value         string   `json:"value"`
	Cipher        uint8    `json:"cipher"`
	Private       []byte   `json:"private,omitempty"`
	Public        []byte   `json:"public,omitempty"` // only when Private is left out (StripDenominationKeys)
	WithdrawStart int64    `json:"withdraw_start"`
	WithdrawEnd   int64    `json:"withdraw_end"`
	DepositEnd    int64    `json:"deposit_end"`
	Revoked       bool     `json:"revoked,omitempty"`
	Fees          *feesRec `json:"fees,omitempty"` // nil: free
}

// feesRec is a denomination's fees, each an amount in the bank's currency.
type feesRec struct {
	Withdraw string `json:"withdraw"`
	Deposit  string `json:"deposit"`
	Swap     string `json:"swap"`
	Refund   string `json:"refund"`
}

func feesRecOf(f ecash.Fees, cur string) *feesRec {
	if f.IsZero() {
		return nil
	}
	s := func(a ecash.Amount) string { return ecash.Amount{Currency: cur, Value: a.Value}.String() }
	return &feesRec{Withdraw: s(f.Withdraw), Deposit: s(f.Deposit), Swap: s(f.Swap), Refund: s(f.Refund)}
}

func (r *feesRec) fees(v ecash.Amount) (ecash.Fees, error) {
	if r == nil {
		return ecash.Fees{}, nil
	}
	var a [4]ecash.Amount
	for i, s := range []string{r.Withdraw, r.Deposit, r.Swap, r.Refund} {
		x, err := ecash.ParseAmount(s)
		if err != nil {
			return ecash.Fees{}, fmt.Errorf("fees of %s: %w", v, err)
		}
		a[i] = x
	}
	f := ecash.Fees{Withdraw: a[0], Deposit: a[1], Swap: a[2], Refund: a[3]}
	return f, f.Check(v)
}

// privateBytes is a denomination's private key as stored: nil when the key
// is held elsewhere (stripped, or signed for by a signer process).
func privateBytes(d DenomKey) []byte {
	if d.Private == nil {
		return nil
	}
	return d.Private.Bytes()
}

// publicIfStripped is the public key stored in place of a private key
// that is held elsewhere.
func publicIfStripped(d DenomKey) []byte {
	if len(privateBytes(d)) == 0 {
		return d.Key.Bytes()
	}
	return nil
}

// KeysFile is the name of the key file inside a bank's data directory.
const KeysFile = "keys.json"

// Save writes the keys to path atomically with mode 0600, in clear.
func (k *Keys) Save(path string) error { return k.SaveWith(path, KeyFileOptions{}) }

// SaveWith writes the keys to path atomically with mode 0600, encrypted
// under opts.Passphrase if it is not nil.
func (k *Keys) SaveWith(path string, opts KeyFileOptions) error {
	b, err := k.marshal()
	if err != nil {
		return err
	}
	return writeProtected(path, b, KeysFormat, opts)
}

func (k *Keys) marshal() ([]byte, error) {
	f := keyFile{
		Format: KeysFormat, Currency: k.Currency, IssuedAt: k.IssuedAt.Unix(),
		Signing: k.Signing.Seed(), HPKE: k.HPKE.Bytes(),
	}
	if k.Master != nil {
		f.Master = k.Master.Seed()
	} else {
		if len(k.MasterPub) != ed25519.PublicKeySize {
			return nil, errors.New("bank: keys have neither a master key nor a master public key")
		}
		f.MasterPub, f.MasterSig = k.MasterPub, k.MasterSig
	}
	if !k.SigningSince.IsZero() {
		f.SigningSince = k.SigningSince.Unix()
	}
	for _, p := range k.PastSigning {
		f.PastSigning = append(f.PastSigning, pastSignRec{Public: p.Pub, ValidFrom: p.ValidFrom.Unix(), ValidUntil: p.ValidUntil.Unix()})
	}
	if k.Schedule != (Schedule{}) {
		f.Schedule = &scheduleRec{k.Schedule.WithdrawPeriod.String(), k.Schedule.Overlap.String(), k.Schedule.DepositLifetime.String()}
	}
	for _, d := range k.Denoms {
		f.Denoms = append(f.Denoms, denomRec{
			Value: d.Value.String(), Cipher: uint8(d.Key.Cipher()), Private: privateBytes(d), Public: publicIfStripped(d),
			WithdrawStart: d.WithdrawStart.Unix(), WithdrawEnd: d.WithdrawEnd.Unix(), DepositEnd: d.DepositEnd.Unix(),
			Revoked: d.Revoked, Fees: feesRecOf(d.Fees, d.Value.Currency),
		})
	}
	return json.MarshalIndent(f, "", "  ")
}

// LoadKeys reads an unencrypted key file written by Save. An encrypted one
// gives ErrKeysEncrypted: use LoadKeysWith.
func LoadKeys(path string) (*Keys, error) {
	k, _, err := LoadKeysWith(path, KeyFileOptions{})
	return k, err
}

// LoadKeysWith reads a key file written by Save or SaveWith, decrypting it
// with opts.Passphrase if it is encrypted. A missing file gives an error
// matching os.ErrNotExist; an encrypted one without a passphrase
// ErrKeysEncrypted; a wrong passphrase ErrWrongPassphrase; an envelope that
// does not authenticate ErrKeyFileDamaged. An unencrypted file loads with
// or without a passphrase (info.Encrypted tells).
func LoadKeysWith(path string, opts KeyFileOptions) (*Keys, KeyFileInfo, error) {
	b, info, err := readProtected(path, KeysFormat, opts)
	if err != nil {
		return nil, info, err
	}
	k, err := parseKeys(b)
	if err != nil {
		return nil, info, fmt.Errorf("bank: key file %s: %w", path, err)
	}
	return k, info, nil
}

func parseKeys(b []byte) (*Keys, error) {
	var f keyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	if f.Format != "" && f.Format != KeysFormat {
		return nil, fmt.Errorf("unknown format %q (want %q)", f.Format, KeysFormat)
	}
	if len(f.Signing) != ed25519.SeedSize {
		return nil, errors.New("bad Ed25519 signing seed")
	}
	k := &Keys{Currency: f.Currency, IssuedAt: time.Unix(f.IssuedAt, 0), Signing: ed25519.NewKeyFromSeed(f.Signing)}
	switch {
	case f.Master != nil:
		if len(f.Master) != ed25519.SeedSize || f.MasterPub != nil || f.MasterSig != nil {
			return nil, errors.New("bad Ed25519 master seed")
		}
		k.Master = ed25519.NewKeyFromSeed(f.Master)
		k.MasterPub = k.Master.Public().(ed25519.PublicKey)
	default:
		if len(f.MasterPub) != ed25519.PublicKeySize {
			return nil, errors.New("neither a master seed nor a master public key")
		}
		if f.MasterSig != nil && len(f.MasterSig) != ed25519.SignatureSize {
			return nil, errors.New("bad master signature length")
		}
		k.MasterPub, k.MasterSig = f.MasterPub, f.MasterSig
	}
	var err error
	if k.HPKE, err = ecdh.X25519().NewPrivateKey(f.HPKE); err != nil {
		return nil, fmt.Errorf("HPKE key: %w", err)
	}
	// One key under two denominations is never made, and is refused: the
	// signer's CS nonce records are per denomination, so it could answer
	// one nonce twice, once under each, which reveals the key.
	seen := make(map[string]ecash.Amount, len(f.Denoms))
	for _, r := range f.Denoms {
		v, err := ecash.ParseAmount(r.Value)
		if err != nil {
			return nil, err
		}
		scheme, err := ecash.SchemeFor(ecash.Cipher(r.Cipher))
		if err != nil {
			return nil, err
		}
		var (
			priv ecash.DenomPrivateKey
			pub  ecash.DenomPublicKey
		)
		if len(r.Private) == 0 { // stripped: the signer process holds it
			if pub, err = scheme.ParsePublicKey(r.Public); err != nil {
				return nil, err
			}
		} else {
			if priv, err = scheme.ParsePrivateKey(r.Private); err != nil {
				return nil, err
			}
			pub = priv.Public()
		}
		if other, dup := seen[string(pub.Bytes())]; dup {
			return nil, fmt.Errorf("one %s key under two denominations (%s and %s)", pub.Cipher(), other, v)
		}
		seen[string(pub.Bytes())] = v
		fees, err := r.Fees.fees(v)
		if err != nil {
			return nil, err
		}
		k.Denoms = append(k.Denoms, DenomKey{
			Denomination: ecash.Denomination{
				ID: ecash.DenominationID(v, pub), Value: v, Key: pub,
				WithdrawStart: time.Unix(r.WithdrawStart, 0), WithdrawEnd: time.Unix(r.WithdrawEnd, 0),
				DepositEnd: time.Unix(r.DepositEnd, 0), Revoked: r.Revoked, Fees: fees,
			},
			Private: priv,
		})
	}
	k.SigningSince = k.IssuedAt
	if f.SigningSince != 0 {
		k.SigningSince = time.Unix(f.SigningSince, 0)
	}
	for _, p := range f.PastSigning {
		if len(p.Public) != ed25519.PublicKeySize {
			return nil, errors.New("bad retired signing key")
		}
		k.PastSigning = append(k.PastSigning, ecash.SigningKey{Pub: p.Public, ValidFrom: time.Unix(p.ValidFrom, 0), ValidUntil: time.Unix(p.ValidUntil, 0)})
	}
	if f.Schedule != nil {
		var s Schedule
		for _, x := range []struct {
			to  *time.Duration
			str string
		}{{&s.WithdrawPeriod, f.Schedule.WithdrawPeriod}, {&s.Overlap, f.Schedule.Overlap}, {&s.DepositLifetime, f.Schedule.DepositLifetime}} {
			if *x.to, err = time.ParseDuration(x.str); err != nil {
				return nil, fmt.Errorf("schedule: %w", err)
			}
		}
		if err := s.checkStored(); err != nil {
			return nil, err
		}
		k.Schedule = s
	}
	return k, nil
}

// masterKeyFile is the master key file of the offline ceremony: the seed
// only, and its public key as a check.
type masterKeyFile struct {
	Format    string `json:"format"` // MasterKeyFormat
	Seed      []byte `json:"master_seed"`
	MasterPub []byte `json:"master_public"`
}

// SaveMasterKey writes a master key file (the seed only) to path, which must
// not exist, with mode 0600, encrypted under opts.Passphrase if it is not nil.
func SaveMasterKey(path string, master ed25519.PrivateKey, opts KeyFileOptions) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("bank: %s exists; not replacing it", path)
	}
	b, err := json.MarshalIndent(masterKeyFile{MasterKeyFormat, master.Seed(), master.Public().(ed25519.PublicKey)}, "", "  ")
	if err != nil {
		return err
	}
	return writeProtected(path, b, MasterKeyFormat, opts)
}

// LoadMasterKey reads a master key file written by SaveMasterKey.
func LoadMasterKey(path string, opts KeyFileOptions) (ed25519.PrivateKey, KeyFileInfo, error) {
	b, info, err := readProtected(path, MasterKeyFormat, opts)
	if err != nil {
		return nil, info, err
	}
	var f masterKeyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, info, fmt.Errorf("bank: master key file %s: %w", path, err)
	}
	if f.Format != MasterKeyFormat {
		return nil, info, fmt.Errorf("bank: %s is not a master key file (format %q, want %q)", path, f.Format, MasterKeyFormat)
	}
	if len(f.Seed) != ed25519.SeedSize {
		return nil, info, fmt.Errorf("bank: master key file %s: bad Ed25519 seed", path)
	}
	master := ed25519.NewKeyFromSeed(f.Seed)
	if !bytes.Equal(master.Public().(ed25519.PublicKey), f.MasterPub) {
		return nil, info, fmt.Errorf("bank: master key file %s: the public key does not match the seed", path)
	}
	return master, info, nil
}

// envelope is an encrypted file: see the comment on the file formats above.
type envelope struct {
	Format     string    `json:"format"`  // EnvelopeFormat
	Content    string    `json:"content"` // KeysFormat or MasterKeyFormat
	KDF        kdfHeader `json:"kdf"`
	Check      []byte    `json:"passphrase_check"`
	AEAD       string    `json:"aead"`
	Nonce      []byte    `json:"nonce"`
	Ciphertext []byte    `json:"ciphertext"`
}

type kdfHeader struct {
	Name      string `json:"name"`    // "argon2id"
	Version   int    `json:"version"` // argon2.Version (19, i.e. 0x13)
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

const (
	kdfName     = "argon2id"
	aeadName    = "chacha20-poly1305"
	saltSize    = 16
	maxFileSize = 16 << 20 // key files are a few hundred KiB at most
)

// aad is the canonical encoding of every header field.
func (e *envelope) aad() []byte {
	enc := ecash.NewEncoder("key-envelope")
	enc.String(e.Format)
	enc.String(e.Content)
	enc.String(e.KDF.Name)
	enc.U32(uint32(e.KDF.Version))
	enc.U32(e.KDF.Time)
	enc.U32(e.KDF.MemoryKiB)
	enc.U8(e.KDF.Threads)
	enc.VarBytes(e.KDF.Salt)
	enc.VarBytes(e.Check)
	enc.String(e.AEAD)
	enc.VarBytes(e.Nonce)
	return enc.Bytes()
}

// deriveKey stretches the passphrase into the AEAD key and the passphrase
// check.
func deriveKey(passphrase []byte, h kdfHeader) (key, check []byte) {
	out := argon2.IDKey(passphrase, h.Salt, h.Time, h.MemoryKiB, h.Threads, 64)
	sum := sha256.Sum256(append([]byte(ecash.TagPrefix+"key-envelope/passphrase-check\x00"), out[32:]...))
	return out[:32], sum[:]
}

// seal encrypts plaintext (of format content) under passphrase.
func seal(plaintext []byte, content string, passphrase []byte, p KDFParams) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("bank: empty passphrase")
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("bank: %w", err)
	}
	e := &envelope{
		Format: EnvelopeFormat, Content: content, AEAD: aeadName,
		KDF:   kdfHeader{Name: kdfName, Version: argon2.Version, Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads, Salt: make([]byte, saltSize)},
		Nonce: make([]byte, chacha20poly1305.NonceSize),
	}
	if _, err := rand.Read(e.KDF.Salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(e.Nonce); err != nil {
		return nil, err
	}
	key, check := deriveKey(passphrase, e.KDF)
	e.Check = check
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	e.Ciphertext = aead.Seal(nil, e.Nonce, plaintext, e.aad())
	return json.MarshalIndent(e, "", "  ")
}

// open decrypts an envelope holding content.
func open(b []byte, content string, passphrase []byte) ([]byte, KeyFileInfo, error) {
	info := KeyFileInfo{Encrypted: true}
	var e envelope
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, info, fmt.Errorf("%w: %v", ErrKeyFileDamaged, err)
	}
	if e.Content != content {
		return nil, info, fmt.Errorf("bank: the encrypted file holds %q, not %q", e.Content, content)
	}
	if e.KDF.Name != kdfName || e.KDF.Version != argon2.Version || e.AEAD != aeadName {
		return nil, info, fmt.Errorf("bank: unsupported encryption: KDF %s version %d, AEAD %s (want %s version %d, %s)",
			e.KDF.Name, e.KDF.Version, e.AEAD, kdfName, argon2.Version, aeadName)
	}
	p := KDFParams{Time: e.KDF.Time, MemoryKiB: e.KDF.MemoryKiB, Threads: e.KDF.Threads}
	info.KDF = p.String()
	if err := p.check(); err != nil {
		return nil, info, fmt.Errorf("%w: %v", ErrKeyFileDamaged, err)
	}
	if len(e.KDF.Salt) < saltSize || len(e.KDF.Salt) > 64 || len(e.Nonce) != chacha20poly1305.NonceSize ||
		len(e.Check) != sha256.Size || len(e.Ciphertext) < chacha20poly1305.Overhead {
		return nil, info, fmt.Errorf("%w: bad salt, nonce, check or ciphertext length", ErrKeyFileDamaged)
	}
	if passphrase == nil {
		return nil, info, ErrKeysEncrypted
	}
	key, check := deriveKey(passphrase, e.KDF)
	if subtle.ConstantTimeCompare(check, e.Check) != 1 {
		return nil, info, ErrWrongPassphrase
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, info, err
	}
	plain, err := aead.Open(nil, e.Nonce, e.Ciphertext, e.aad())
	if err != nil {
		return nil, info, fmt.Errorf("%w: the passphrase is right but the contents do not authenticate", ErrKeyFileDamaged)
	}
	return plain, info, nil
}

// writeProtected writes a file of format content at path, mode 0600,
// atomically; encrypted if opts has a passphrase.
func writeProtected(path string, plain []byte, content string, opts KeyFileOptions) error {
	b := plain
	if opts.Passphrase != nil {
		var err error
		if b, err = seal(plain, content, opts.Passphrase, opts.kdf()); err != nil {
			return err
		}
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// OpenPrivate opens a file of secrets (a key file, a merchant key, an admin
// token) for reading, refusing one open to group or others: its secrets are
// as good as leaked, encrypted or not (a signer's key file kept from the
// bankd user, a file restored from a backup with the default mode), as ssh
// refuses such keys. A missing file's error is os.Open's.
func OpenPrivate(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
		err = fmt.Errorf("%s is open to other users (mode %04o): run chmod 600 on it", path, fi.Mode().Perm())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readProtected reads a file of format content, in clear or encrypted.
func readProtected(path, content string, opts KeyFileOptions) ([]byte, KeyFileInfo, error) {
	var info KeyFileInfo
	f, err := OpenPrivate(path)
	if err != nil {
		return nil, info, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, info, err
	}
	if len(b) > maxFileSize {
		return nil, info, fmt.Errorf("bank: %s is larger than %d bytes", path, maxFileSize)
	}
	var probe struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, info, fmt.Errorf("bank: %s: %w", path, err)
	}
	if probe.Format != EnvelopeFormat {
		return b, info, nil // in clear; the caller checks the format
	}
	plain, info, err := open(b, content, opts.Passphrase)
	if err != nil {
		return nil, info, fmt.Errorf("%w (%s)", err, path)
	}
	return plain, info, nil
}

// InspectKeyFile says whether the key file at path is encrypted, and under
// which KDF parameters, without a passphrase and without decrypting it.
func InspectKeyFile(path string) (KeyFileInfo, error) {
	_, info, err := readProtected(path, KeysFormat, KeyFileOptions{})
	if errors.Is(err, ErrKeysEncrypted) {
		err = nil
	}
	return info, err
}
