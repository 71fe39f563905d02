package auditcmd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// maxKeySetFile bounds a key set file: 256 denominations of RSA-4096 keys
// fit well below it.
const maxKeySetFile = 4 << 20

// KeySets is what transcripts are checked against: one or more signed key
// sets of one bank (one master key, one currency). Older key sets verify
// coins of denominations a newer one no longer lists.
type KeySets struct {
	sets []*ecash.KeySet
	raw  [][]byte
}

// NewKeySets checks that the key sets (already verified) belong to one bank.
func NewKeySets(sets ...*ecash.KeySet) (*KeySets, error) {
	if len(sets) == 0 {
		return nil, errors.New("no key set")
	}
	k := &KeySets{}
	for _, ks := range sets {
		if err := k.add(ks, ks.Encode()); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *KeySets) add(ks *ecash.KeySet, raw []byte) error {
	if len(k.sets) > 0 {
		first := k.sets[0]
		if !first.MasterPub.Equal(ks.MasterPub) {
			return fmt.Errorf("key sets of two banks: master keys %x… and %x…", first.MasterPub[:8], ks.MasterPub[:8])
		}
		if first.Currency != ks.Currency {
			return fmt.Errorf("key sets in two currencies: %s and %s", first.Currency, ks.Currency)
		}
		for _, have := range k.raw {
			if bytes.Equal(have, raw) {
				return nil // the same key set twice
			}
		}
	}
	k.sets = append(k.sets, ks)
	k.raw = append(k.raw, raw)
	return nil
}

// BankID is the bank's id: SHA-256 of its master key.
func (k *KeySets) BankID() ecash.Hash { return k.sets[0].BankID() }

// Currency is the bank's currency.
func (k *KeySets) Currency() string { return k.sets[0].Currency }

// MasterPub is the bank's master key.
func (k *KeySets) MasterPub() ed25519.PublicKey { return k.sets[0].MasterPub }

// Sets are the key sets, in the order given.
func (k *KeySets) Sets() []*ecash.KeySet { return k.sets }

// Denomination finds a denomination by id in any of the key sets.
func (k *KeySets) Denomination(id ecash.Hash) (ecash.Denomination, error) {
	for _, ks := range k.sets {
		if d, err := ks.Denomination(id); err == nil {
			return d, nil
		}
	}
	return ecash.Denomination{}, fmt.Errorf("%w: denomination %x… is in no key set given", ecash.ErrUnknownDenomination, id[:8])
}

// verify runs check against each key set until one accepts; it returns the
// first key set's error if none does.
func (k *KeySets) verify(check func(*ecash.KeySet) error) error {
	var first error
	for _, ks := range k.sets {
		err := check(ks)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// bankSigned checks a signature of the bank over body, on an object the
// bank dated at: pub must be a signing key of one of the key sets at that
// time (the current one, or a retired one within its window:
// ecash.KeySet.CheckSigner), and the signature must verify under it. So a
// transcript stays verifiable after the bank rotates its signing key.
func (k *KeySets) bankSigned(pub ed25519.PublicKey, at time.Time, body, sig []byte, what string) error {
	if err := k.verify(func(ks *ecash.KeySet) error { return ks.CheckSigner(pub, at) }); err != nil {
		return err
	}
	return ecash.VerifyBody(pub, body, sig, what)
}

// parseKeySet reads a signed key set: its raw bytes ('bankd keys export',
// 'audit keys', GetKeys), or the same bytes in hex.
func parseKeySet(b []byte, pin ed25519.PublicKey) (*ecash.KeySet, []byte, error) {
	ks, err := ecash.DecodeKeySet(b, pin)
	if err == nil {
		return ks, b, nil
	}
	if h, herr := hex.DecodeString(strings.Join(strings.Fields(string(b)), "")); herr == nil && len(h) > 0 {
		if ks, herr := ecash.DecodeKeySet(h, pin); herr == nil {
			return ks, h, nil
		}
	}
	return nil, nil, err
}

// keyFlags are how a command gets the bank's key sets: files, the bank
// itself, or both, optionally pinned to a master key.
type keyFlags struct {
	files  []string
	bank   string
	tls    cli.TLSFlags
	master string
}

type fileList struct{ files *[]string }

func (f fileList) String() string {
	if f.files == nil {
		return ""
	}
	return strings.Join(*f.files, ",")
}

func (f fileList) Set(s string) error {
	*f.files = append(*f.files, s)
	return nil
}

func (kf *keyFlags) register(fs *flag.FlagSet) {
	fs.Var(fileList{&kf.files}, "keys", "the bank's signed key set in `FILE` ('bankd keys export' or 'audit keys' writes it; raw bytes or hex); repeat for older key sets")
	fs.StringVar(&kf.bank, "bank", "", "fetch the key set from the bank at `ADDR` (GetKeys)")
	fs.StringVar(&kf.master, "master", "", "accept only key sets signed by this bank master `KEY` (hex, as 'wallet init --json' prints bank_master_key)")
	kf.tls.What = "bank"
	kf.tls.Register(fs)
}

// load gets the key sets the flags name.
func (kf *keyFlags) load(ctx context.Context) (*KeySets, error) {
	if len(kf.files) == 0 && kf.bank == "" {
		return nil, cli.Usagef("give the bank's key set: --keys FILE or --bank ADDR")
	}
	var pin ed25519.PublicKey
	if kf.master != "" {
		b, err := hex.DecodeString(strings.TrimSpace(kf.master))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, cli.Usagef("bad --master %q: want the 64 hex digits of an Ed25519 key", kf.master)
		}
		pin = b
	}
	k := &KeySets{}
	if kf.bank != "" {
		raw, err := fetchKeySet(ctx, kf.bank, &kf.tls)
		if err != nil {
			return nil, err
		}
		ks, err := ecash.DecodeKeySet(raw, pin)
		if err != nil {
			return nil, fmt.Errorf("the key set of the bank at %s: %w", kf.bank, err)
		}
		if err := k.add(ks, raw); err != nil {
			return nil, err
		}
	} else if kf.tls.Given() {
		return nil, cli.Usagef("--ca, --pin and --plaintext go with --bank ADDR")
	}
	for _, f := range kf.files {
		b, err := readFile(f, maxKeySetFile)
		if err != nil {
			return nil, fmt.Errorf("--keys: %w", err)
		}
		ks, raw, err := parseKeySet(b, pin)
		if err != nil {
			return nil, fmt.Errorf("--keys %s: not a signed key set: %w", f, err)
		}
		if err := k.add(ks, raw); err != nil {
			return nil, fmt.Errorf("--keys %s: %w", f, err)
		}
	}
	return k, nil
}

// fetchTimeout bounds the key fetch.
const fetchTimeout = 30 * time.Second

// fetchKeySet asks the bank at addr for its signed key set.
func fetchKeySet(ctx context.Context, addr string, tf *cli.TLSFlags) ([]byte, error) {
	if err := cli.CheckAddr("bank", addr); err != nil {
		return nil, err
	}
	tcfg, err := tf.Config(addr)
	if err != nil {
		return nil, err
	}
	conn, err := transport.Dial(addr, tcfg, tf.CertHint())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	resp, err := pb.NewBankClient(conn).GetKeys(ctx, &pb.GetKeysRequest{})
	if err != nil {
		return nil, fmt.Errorf("fetching the key set from %s: %w", addr, err)
	}
	return resp.SignedKeyset, nil
}

// readFile reads at most limit bytes of a file ("-": standard input).
func readFile(name string, limit int64) ([]byte, error) {
	if name == "-" {
		return cli.ReadLimited(os.Stdin, name, limit)
	}
	return cli.ReadFileLimited(name, limit)
}
