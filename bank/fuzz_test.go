package bank

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// Fuzz targets for the bank's readers of its own files and of what its
// operator hands it: the key file, the master key file, the denomination
// specs of --denoms, a key-set body to sign offline, and the signer's nonce
// record. (The encrypted envelope is FuzzOpenEnvelope's.)

// fuzzKeys are CS keys (cheap to parse, unlike RSA's), with the master key
// held and with it offline.
func fuzzKeys(f *testing.F) (held, offline *Keys) {
	cfg := KeyConfig{Currency: "EUR", Denoms: []DenomSpec{
		{Value: ecash.Amount{Currency: "EUR", Value: 100}, Cipher: ecash.CipherCS},
		{Value: ecash.Amount{Currency: "EUR", Value: 200}, Cipher: ecash.CipherCS,
			Fees: ecash.Fees{Withdraw: ecash.Amount{Currency: "EUR", Value: 1}, Deposit: ecash.Amount{Currency: "EUR", Value: 2}}},
	}}
	held, err := GenerateKeys(cfg, time.Unix(1_700_000_000, 0), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	masterPub, _, _ := ed25519.GenerateKey(rand.Reader)
	cfg.MasterPub = masterPub
	if offline, err = GenerateKeys(cfg, time.Unix(1_700_000_000, 0), rand.Reader); err != nil {
		f.Fatal(err)
	}
	return held, offline
}

// zeroFeesBare is k with every zero fee as the zero Amount: a zero fee of
// any currency is accepted (ecash.Fees.Check) and only fees' values count
// (they alone are in the key set), and a key file writes a fee in the
// denomination's currency.
func zeroFeesBare(k *Keys) *Keys {
	c := *k
	c.Denoms = slices.Clone(k.Denoms)
	for i := range c.Denoms {
		f := &c.Denoms[i].Fees
		for _, a := range []*ecash.Amount{&f.Withdraw, &f.Deposit, &f.Swap, &f.Refund} {
			if a.Value == 0 {
				*a = ecash.Amount{}
			}
		}
	}
	return &c
}

// FuzzParseKeys: a key file (in clear; what an encrypted one opens to),
// however mangled, never panics the reader, and keys it accepts save to a
// file that reads back to the same keys: nothing is read that is not kept.
func FuzzParseKeys(f *testing.F) {
	held, offline := fuzzKeys(f)
	// Keys that have lived: a denomination revoked, one whose private key
	// is held by a signer process, a retired signing key, the master's
	// signature installed.
	worn := *offline
	worn.Denoms = slices.Clone(offline.Denoms)
	worn.Denoms[0].Revoked = true
	worn.Denoms[1].Private = nil
	worn.PastSigning = []ecash.SigningKey{{Pub: held.Signing.Public().(ed25519.PublicKey),
		ValidFrom: time.Unix(1_690_000_000, 0), ValidUntil: time.Unix(1_700_000_000, 0)}}
	worn.MasterSig = bytes.Repeat([]byte{9}, ed25519.SignatureSize)
	for _, k := range []*Keys{held, offline, &worn} {
		b, err := k.marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// testdata/fuzz/FuzzParseKeys holds such a file as written today, not
	// by marshal, which a field's loss would leave out of the seed too.
	f.Add([]byte(`{"format":"blindbank-keys/v1","signing":"AAAA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseKeys(b)
		if err != nil {
			if k != nil {
				t.Fatal("keys returned with an error")
			}
			return
		}
		saved, err := k.marshal()
		if err != nil {
			t.Fatalf("accepted keys do not save: %v", err)
		}
		k2, err := parseKeys(saved)
		if err != nil {
			t.Fatalf("saved keys do not read back: %v\n%s", err, saved)
		}
		if !reflect.DeepEqual(zeroFeesBare(k), zeroFeesBare(k2)) {
			t.Fatalf("keys read back are not the keys read:\n%+v\n%+v", k, k2)
		}
		if again, _ := k2.marshal(); !bytes.Equal(again, saved) {
			t.Fatalf("keys read back save differently:\n%s\n%s", saved, again)
		}
	})
}

// FuzzLoadMasterKey: a master key file loads only as a seed whose public
// key the file names, and never panics the reader.
func FuzzLoadMasterKey(f *testing.F) {
	dir := f.TempDir()
	master := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
	seedFile := filepath.Join(dir, "seed")
	if err := SaveMasterKey(seedFile, master, KeyFileOptions{}); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(seedFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"master_public": "`), []byte(`"master_public": "A`), 1))
	f.Add([]byte(`{"format":"blindbank-encrypted/v1"}`))
	path := filepath.Join(dir, "master.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		var e envelope // keep each run cheap: no costly KDF
		if json.Unmarshal(b, &e) == nil && (e.KDF.MemoryKiB > 1024 || e.KDF.Time > 2) {
			return
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		k, _, err := LoadMasterKey(path, KeyFileOptions{})
		if err != nil {
			return
		}
		var mf masterKeyFile
		if json.Unmarshal(b, &mf) != nil || !bytes.Equal(k.Seed(), mf.Seed) || !bytes.Equal(k.Public().(ed25519.PublicKey), mf.MasterPub) {
			t.Fatalf("%q loaded as master key %x", b, k.Public())
		}
	})
}

// formatDenomSpecs writes specs as ParseDenomSpecs reads them.
func formatDenomSpecs(specs []DenomSpec) string {
	var parts []string
	for _, s := range specs {
		p := s.Value.String() + "/" + s.Cipher.String()
		if fs := FeesSpec(s.Fees); fs != "" {
			p += "/" + fs
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

// FuzzParseDenomSpecs: specs that parse are positive amounts of known
// ciphers, each once, with fees each below its value; written back in the
// canonical form they parse to the same specs.
func FuzzParseDenomSpecs(f *testing.F) {
	for _, s := range []string{
		"EUR:0.01/cs,EUR:0.02,EUR:1.00/rsa/fees=0.01:0.01:0:0.01",
		"EUR:1, EUR:2 ,", "EUR:1/CS/RSA", "EUR:1,EUR:1.00", "EUR:0", "EUR:1/fees=1:0:0:0", "EUR:1/fees=0:0:0:0",
		"EUR:1/fees=0.5:0.5", "EUR:1/dsa", "USD:1,EUR:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := ParseDenomSpecs(s, ecash.CipherRSA)
		if err != nil {
			if specs != nil {
				t.Fatal("specs returned with an error")
			}
			return
		}
		seen := map[ecash.Amount]bool{}
		for _, d := range specs {
			if d.Value.IsZero() || d.Value.Validate() != nil || seen[d.Value] ||
				(d.Cipher != ecash.CipherRSA && d.Cipher != ecash.CipherCS) || (!d.Fees.IsZero() && d.Fees.Check(d.Value) != nil) {
				t.Fatalf("%q: spec %+v accepted", s, d)
			}
			seen[d.Value] = true
		}
		canon := formatDenomSpecs(specs)
		again, err := ParseDenomSpecs(canon, ecash.CipherCS)
		if err != nil || !reflect.DeepEqual(again, specs) {
			t.Fatalf("%q parses to %+v, written as %q to %+v (%v)", s, specs, canon, again, err)
		}
	})
}

// FuzzSignKeySetBody: the offline ceremony signs only a body that is a
// well-formed key set naming the master key, and what it returns is that
// body, signed: the signed key set decodes pinned to the master key, and
// InstallSignature's check (its body is the one asked) holds.
func FuzzSignKeySetBody(f *testing.F) {
	held, offline := fuzzKeys(f)
	f.Add(held.KeySetBody())
	f.Add(offline.KeySetBody())
	body := held.KeySetBody()
	f.Add(body[:len(body)-1])
	master := held.Master
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, signed, err := SignKeySetBody(master, b)
		if err != nil {
			if ks != nil || signed != nil {
				t.Fatal("a key set returned with an error")
			}
			return
		}
		if !bytes.Equal(ks.Body(), b) || !ks.MasterPub.Equal(master.Public()) {
			t.Fatal("signed a key set that is not the body given")
		}
		again, err := ecash.DecodeKeySet(signed, master.Public().(ed25519.PublicKey))
		if err != nil || !bytes.Equal(again.Body(), b) {
			t.Fatalf("the signed key set does not decode to the body: %v", err)
		}
	})
}

// FuzzOpenNonceLog: the signer's CS nonce record, however damaged, never
// panics the signer's start, and never loses the record of an answer it
// must remember: every (denomination, nonce) recorded for a key of the
// key file that no tombstone retires stays locked to its blinded message.
// Opening again changes nothing: the first open leaves the file as it
// keeps it.
func FuzzOpenNonceLog(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	k, err := GenerateKeys(KeyConfig{Currency: "EUR", Cipher: ecash.CipherCS, WithdrawPeriod: time.Hour, DepositPeriod: 2 * time.Hour,
		Values: []ecash.Amount{{Currency: "EUR", Value: 1}, {Currency: "EUR", Value: 2}}}, now.Add(-time.Minute), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	rec := func(id ecash.Hash, nonce, blinded byte) nonceRec {
		var r nonceRec
		copy(r[:32], id[:])
		r[32], r[64] = nonce, blinded
		return r
	}
	gone := ecash.HashOf([]byte("a pruned denomination"))
	d0, d1 := k.Denoms[0].ID, k.Denoms[1].ID
	var tomb nonceRec
	copy(tomb[:32], gone[:])
	for _, recs := range []nonceRecs{
		nil,
		{markRec(k.IssuedAt), endRec(d0, k.Denoms[0].DepositEnd), rec(d0, 1, 1), rec(d0, 2, 2), rec(d1, 1, 3)},
		{rec(d0, 1, 1), rec(gone, 1, 1), endRec(gone, now.Add(time.Hour)), rec(d1, 9, 9)},
		{markRec(now.Add(time.Hour)), rec(gone, 1, 1), tomb, rec(d0, 3, 3)},
	} {
		b := recs.bytes()
		f.Add(b)
		f.Add(append(b, 1, 2, 3)) // a partial record after a crash
	}
	dir := f.TempDir()
	path := filepath.Join(dir, SignerNoncesFile)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 64*len(nonceRec{}) {
			return // a few records reach every branch; keep runs fast
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := openNonceLog(path, k, now)
		if err != nil {
			t.Fatalf("a damaged record stopped the signer: %v", err)
		}
		locks := l.locks
		l.close()
		recs := chunks(b)
		tombstoned := map[ecash.Hash]bool{}
		for _, r := range recs {
			if _, ok := r.mark(); !ok && r.tombstone() {
				tombstoned[ecash.Hash(r[:32])] = true
			}
		}
		for _, r := range recs {
			id := ecash.Hash(r[:32])
			if _, ok := r.mark(); ok || r.tombstone() || tombstoned[id] || (id != d0 && id != d1) {
				continue
			}
			if _, _, ok := r.end(); ok {
				continue
			}
			if _, ok := locks[[64]byte(r[:64])]; !ok {
				t.Fatalf("the answer of denomination %x… to nonce %x… was dropped", id[:4], r[32:40])
			}
		}
		kept, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(kept)%len(nonceRec{}) != 0 {
			t.Fatalf("a record of %d bytes left", len(kept))
		}
		l2, err := openNonceLog(path, k, now)
		if err != nil {
			t.Fatalf("the record as kept does not open: %v", err)
		}
		locks2 := l2.locks
		l2.close()
		after, _ := os.ReadFile(path)
		if !bytes.Equal(after, kept) || !reflect.DeepEqual(locks2, locks) {
			t.Fatal("opening the record as kept changed it")
		}
	})
}
