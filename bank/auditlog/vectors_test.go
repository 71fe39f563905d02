package auditlog_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var update = flag.Bool("update", false, "regenerate testdata/auditlog/*.json")

var (
	entriesPath = filepath.Join("..", "..", "testdata", "auditlog", "entries.json")
	logPath     = filepath.Join("..", "..", "testdata", "auditlog", "log.json")
)

// entriesFile is testdata/auditlog/entries.json: one positive vector per
// fixture entry (fields as text, encoding and record hash in hex), then
// negative vectors whose encoding must not decode.
type entriesFile struct {
	Comment  []string         `json:"comment"`
	Entries  []entryVector    `json:"entries"`
	Negative []negativeVector `json:"negative"`
}

type entryVector struct {
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Index      int64             `json:"index"`
	TimeMs     int64             `json:"time_ms"`
	Fields     map[string]string `json:"fields"`
	Encoding   string            `json:"encoding"`
	RecordHash string            `json:"record_hash"`
}

// negativeVector names the failure: "malformed" (wraps ecash.ErrMalformed
// only) or "invalid" (wraps ecash.ErrMalformed and auditlog.ErrInvalidEntry).
type negativeVector struct {
	Name     string `json:"name"`
	Encoding string `json:"encoding"`
	Error    string `json:"error"`
}

// logFile is testdata/auditlog/log.json: the fixture's entries as a log.
type logFile struct {
	Comment     []string            `json:"comment"`
	Origin      string              `json:"origin"`
	SigningSeed string              `json:"signing_seed"`
	VerifierKey string              `json:"verifier_key"`
	TreeHashes  []string            `json:"tree_hashes"` // root of the first i entries, i = 0..N
	Checkpoints map[string]string   `json:"checkpoints"` // size -> signed note
	Inclusion   []inclusionVector   `json:"inclusion"`
	Consistency []consistencyVector `json:"consistency"`
}

type inclusionVector struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

type consistencyVector struct {
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof []string `json:"proof"`
}

func hexes(hs []tlog.Hash) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

// raw builds an encoding field by field, independently of the package's
// encoder, for the negative vectors.
type raw struct{ e *ecash.Encoder }

func newRaw(kind string, index uint64, ms int64) raw {
	r := raw{ecash.NewEncoder("auditlog/" + kind)}
	r.e.U64(index)
	r.e.I64(ms)
	return r
}

func (r raw) bytes() []byte { return r.e.Bytes() }

func negativeVectors(f *fixture, enc [][]byte) []negativeVector {
	ms := f.entries[0].Time.UnixMilli()
	var out []negativeVector
	add := func(name, errName string, b []byte) {
		out = append(out, negativeVector{Name: name, Encoding: hex.EncodeToString(b), Error: errName})
	}
	wd := enc[4] // the withdraw entry
	add("trailing byte", "malformed", append(bytes.Clone(wd), 0))
	add("truncated", "malformed", wd[:len(wd)-1])
	add("empty", "malformed", nil)
	unknown := newRaw("mint", 0, ms)
	unknown.e.U64(1)
	add("unknown kind", "malformed", unknown.bytes())
	wrongPrefix := ecash.NewEncoder("ledger/credit")
	wrongPrefix.Fixed(enc[3][4+len(ecash.TagPrefix+"auditlog/credit"):])
	add("other tag prefix", "malformed", wrongPrefix.Bytes())
	bigIndex := bytes.Clone(enc[3])
	binary.BigEndian.PutUint64(bigIndex[4+len(ecash.TagPrefix+"auditlog/credit"):], 1<<63)
	add("index beyond 2^63-1", "malformed", bigIndex)
	negTime := bytes.Clone(enc[3])
	binary.BigEndian.PutUint64(negTime[4+len(ecash.TagPrefix+"auditlog/credit")+8:], 1<<64-1)
	add("time before 1970", "malformed", negTime)

	acct := func(flag uint8, key []byte) []byte {
		r := newRaw("account-opened", 1, ms)
		r.e.U64(customer)
		r.e.U8(flag)
		r.e.Fixed(key)
		return r.bytes()
	}
	custPub := []byte(f.entries[1].Op.(auditlog.AccountOpened).Key)
	add("merchant flag 2", "invalid", acct(2, custPub))
	identity := make([]byte, 32)
	identity[0] = 1
	add("account key is the identity point", "invalid", acct(0, identity))

	credit := func(amount ecash.Amount) []byte {
		r := newRaw("credit", 3, ms)
		r.e.U64(customer)
		r.e.Amount(amount)
		r.e.Fixed(make([]byte, 32))
		return r.bytes()
	}
	add("zero credit", "invalid", credit(eur(0)))
	add("lower-case currency", "malformed", credit(ecash.Amount{Currency: "eur", Value: 1}))
	add("value above 2^53-1", "malformed", credit(eur(ecash.MaxValue+1)))

	withdraw := func(amount ecash.Amount, issued ...auditlog.DenomCount) []byte {
		r := newRaw("withdraw", 4, ms)
		r.e.U64(customer)
		r.e.Amount(amount)
		r.e.Fixed(make([]byte, 32)) // request hash
		r.e.Fixed(make([]byte, 64)) // account signature
		r.e.U32(uint32(len(issued)))
		for _, d := range issued {
			r.e.Fixed(d.Denom[:])
			r.e.Amount(d.Value)
			r.e.U32(d.Count)
		}
		return r.bytes()
	}
	lo, hi := f.d2, f.d5
	if bytes.Compare(lo.ID[:], hi.ID[:]) > 0 {
		lo, hi = hi, lo
	}
	dc := func(d ecash.Denomination, n uint32) auditlog.DenomCount {
		return auditlog.DenomCount{Denom: d.ID, Value: d.Value, Count: n}
	}
	add("withdraw total differs from the coins", "invalid", withdraw(eur(lo.Value.Value+hi.Value.Value+1), dc(lo, 1), dc(hi, 1)))
	add("withdraw denominations out of order", "invalid", withdraw(eur(lo.Value.Value+hi.Value.Value), dc(hi, 1), dc(lo, 1)))
	add("withdraw denomination repeated", "invalid", withdraw(eur(400), dc(f.d2, 1), dc(f.d2, 1)))
	add("withdraw count zero", "invalid", withdraw(eur(lo.Value.Value), dc(lo, 1), dc(hi, 0)))
	add("withdraw of nothing", "invalid", withdraw(eur(100)))
	add("withdraw of 1025 coins", "invalid", withdraw(eur(1025*100), dc(f.d1, 1025)))
	add("withdraw count claims 2^32-1 denominations", "malformed", func() []byte {
		b := withdraw(eur(200), dc(f.d2, 1))
		i := len(b) - (32 + 4 + 3 + 8 + 4) - 4
		binary.BigEndian.PutUint32(b[i:], 1<<32-1)
		return b
	}())

	deposit := func(amount ecash.Amount, coins ...auditlog.SpentCoin) []byte {
		r := newRaw("deposit", 5, ms)
		r.e.U64(merchant)
		r.e.Amount(amount)
		r.e.Fixed(make([]byte, 32))
		r.e.U32(uint32(len(coins)))
		for _, c := range coins {
			r.e.Fixed(c.ID[:])
			r.e.Fixed(c.Denom[:])
			r.e.Amount(c.Value)
			r.e.Fixed(c.PermissionHash[:])
		}
		return r.bytes()
	}
	dep := f.entries[5].Op.(auditlog.Deposit)
	add("deposit coins out of order", "invalid", deposit(dep.Amount, dep.Coins[1], dep.Coins[0]))
	add("deposit coin repeated", "invalid", deposit(eur(400), dep.Coins[0], dep.Coins[0]))
	usd := dep.Coins[0]
	usd.Value = ecash.Amount{Currency: "USD", Value: usd.Value.Value}
	add("deposit in two currencies", "invalid", deposit(eur(usd.Value.Value+dep.Coins[1].Value.Value), usd, dep.Coins[1]))

	swap := f.entries[6].Op.(auditlog.Swap)
	r := newRaw("swap", 6, ms)
	r.e.Fixed(swap.RequestHash[:])
	r.e.Amount(eur(200))
	r.e.Amount(eur(300))
	r.e.U32(uint32(len(swap.Spent)))
	for _, c := range swap.Spent {
		r.e.Fixed(c.ID[:])
		r.e.Fixed(c.Denom[:])
		r.e.Amount(c.Value)
		r.e.Fixed(c.PermissionHash[:])
	}
	r.e.U32(1)
	r.e.Fixed(f.d1.ID[:])
	r.e.Amount(f.d1.Value)
	r.e.U32(3)
	add("swap issues more than it spends", "invalid", r.bytes())
	add("swap with an empty credits list", "invalid", append(bytes.Clone(enc[6]), 0, 0, 0, 0))

	check := func(epoid string, outcome uint8) []byte {
		r := newRaw("check", 8, ms)
		r.e.String(epoid)
		r.e.Fixed(make([]byte, 32)) // EPO hash
		r.e.Fixed(make([]byte, 32)) // parts hash
		r.e.Fixed(make([]byte, 64)) // customer signature
		r.e.U64(customer)
		r.e.U64(merchant)
		r.e.Amount(eur(350))
		r.e.U8(outcome)
		return r.bytes()
	}
	add("check outcome 7", "invalid", check("1001-1-1", 7))
	add("check outcome 0", "invalid", check("1001-1-1", 0))
	add("EPOID with a space", "invalid", check("1001 1-1", 1))
	add("EPOID empty", "invalid", check("", 1))
	add("EPOID of 129 bytes", "invalid", check(strings.Repeat("1", 129), 1))

	ks := newRaw("keyset", 0, ms)
	ks.e.VarBytes(ecash.NewEncoder("keyset").Bytes())
	add("keyset entry holding an unsigned tag", "invalid", ks.bytes())

	// The retired kind revocation, as it was specified: a revocation is a
	// master-signed key set, never an entry under the log's key alone.
	rev := newRaw("revocation", 12, ms)
	rev.e.U32(1)
	rev.e.Fixed(f.d1.ID[:])
	add("revocation entry (retired kind)", "malformed", rev.bytes())
	return out
}

func buildEntriesFile(t *testing.T, f *fixture) entriesFile {
	enc := f.encodings(t)
	file := entriesFile{Comment: []string{
		"blindbank audit log entries (docs/AUDITLOG.md), generated by bank/auditlog/vectors_test.go (go test ./bank/auditlog -run TestVectors -update).",
		"entries: the fixture history, one entry of every kind; fields are the decoded values as text, hashes and keys in lower-case hex, amounts as CUR:units.cents.",
		"encoding: the canonical entry bytes; record_hash: RFC 6962 leaf hash SHA-256(0x00 || encoding).",
		"negative: encodings every decoder must refuse; error 'malformed' = ecash.ErrMalformed, 'invalid' = ecash.ErrMalformed and auditlog.ErrInvalidEntry.",
	}}
	for i, e := range f.entries {
		rh := auditlog.RecordHash(enc[i])
		file.Entries = append(file.Entries, entryVector{
			Name: f.names[i], Kind: e.Kind().String(), Index: e.Index, TimeMs: e.Time.UnixMilli(),
			Fields: describe(&f.entries[i]), Encoding: hex.EncodeToString(enc[i]), RecordHash: hex.EncodeToString(rh[:]),
		})
	}
	file.Negative = negativeVectors(f, enc)
	return file
}

func buildLogFile(t *testing.T, f *fixture) logFile {
	m := f.memLog(t)
	n := m.Size()
	vkey, err := auditlog.VerifierKey(f.origin, f.signing.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := auditlog.NewSigner(f.origin, f.signing)
	if err != nil {
		t.Fatal(err)
	}
	file := logFile{
		Comment: []string{
			"The entries of entries.json as one log, generated by bank/auditlog/vectors_test.go.",
			"tree_hashes[i]: RFC 6962 root of entries 0..i-1 (base64 in checkpoints, hex here).",
			"checkpoints: C2SP signed notes, signed with the Ed25519 key whose seed is signing_seed, under the note key name = origin;",
			"each body's keyset line names the newest key set entry below its size (index, base64 SHA-256 of the entry's signed key set).",
			"inclusion: RFC 6962 audit paths (golang.org/x/mod/sumdb/tlog RecordProof order); consistency: tlog TreeProof order.",
		},
		Origin: f.origin, SigningSeed: hex.EncodeToString(f.signing.Seed()), VerifierKey: vkey,
		Checkpoints: map[string]string{},
	}
	for size := int64(0); size <= n; size++ {
		h, err := auditlog.TreeHash(size, m)
		if err != nil {
			t.Fatal(err)
		}
		file.TreeHashes = append(file.TreeHashes, hex.EncodeToString(h[:]))
	}
	for _, size := range []int64{7, n} {
		root, _ := auditlog.TreeHash(size, m)
		ks, ok, err := m.NewestKeySet(size)
		if err != nil || !ok {
			t.Fatalf("no key set below %d: %v", size, err)
		}
		signed, err := auditlog.SignCheckpoint(auditlog.Checkpoint{Origin: f.origin, Size: size, Root: root, KeySet: ks, HasKeySet: true}, signer)
		if err != nil {
			t.Fatal(err)
		}
		file.Checkpoints[strconv.FormatInt(size, 10)] = string(signed)
	}
	for _, size := range []int64{7, n} {
		for i := range size {
			p, err := auditlog.ProveInclusion(i, size, m)
			if err != nil {
				t.Fatal(err)
			}
			file.Inclusion = append(file.Inclusion, inclusionVector{Index: i, Size: size, Proof: hexes(p)})
		}
	}
	for old := int64(1); old <= n; old++ {
		p, err := auditlog.ProveConsistency(old, n, m)
		if err != nil {
			t.Fatal(err)
		}
		file.Consistency = append(file.Consistency, consistencyVector{Old: old, New: n, Proof: hexes(p)})
	}
	return file
}

func writeOrCompare(t *testing.T, path string, v any) []byte {
	t.Helper()
	want, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return want
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code produces (regenerate with -update and review the diff)", path)
	}
	return got
}

// TestVectors regenerates the vectors in memory, compares them with the
// files, and then checks the files independently: every positive vector
// decodes to its fields and re-encodes to its bytes, every negative vector
// fails as named, and the log vectors verify.
func TestVectors(t *testing.T) {
	f := newFixture(t)
	raw := writeOrCompare(t, entriesPath, buildEntriesFile(t, f))
	var ef entriesFile
	if err := json.Unmarshal(raw, &ef); err != nil {
		t.Fatal(err)
	}
	var encodings [][]byte
	for _, v := range ef.Entries {
		b, err := hex.DecodeString(v.Encoding)
		if err != nil {
			t.Fatal(err)
		}
		encodings = append(encodings, b)
	}
	for i, v := range ef.Entries {
		b := encodings[i]
		t.Run("entry/"+v.Name, func(t *testing.T) {
			e, err := auditlog.DecodeEntry(b)
			if err != nil {
				t.Fatal(err)
			}
			if e.Index != v.Index || e.Time.UnixMilli() != v.TimeMs || e.Kind().String() != v.Kind {
				t.Errorf("decoded index %d time %d kind %s", e.Index, e.Time.UnixMilli(), e.Kind())
			}
			if got := describe(e); !reflect.DeepEqual(got, v.Fields) {
				t.Errorf("fields\n got %v\nwant %v", got, v.Fields)
			}
			if i < len(f.entries) && !reflect.DeepEqual(*e, f.entries[i]) {
				t.Errorf("decoded %+v\nwant %+v", *e, f.entries[i])
			}
			again, err := e.Encode()
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("re-encoding: %v, equal %v", err, bytes.Equal(again, b))
			}
			if rh := auditlog.RecordHash(b); hex.EncodeToString(rh[:]) != v.RecordHash {
				t.Errorf("record hash %x, want %s", rh, v.RecordHash)
			}
		})
	}
	for _, v := range ef.Negative {
		t.Run("negative/"+v.Name, func(t *testing.T) {
			b, err := hex.DecodeString(v.Encoding)
			if err != nil {
				t.Fatal(err)
			}
			e, err := auditlog.DecodeEntry(b)
			if e != nil || err == nil {
				t.Fatalf("decoded %+v, %v", e, err)
			}
			if !errors.Is(err, ecash.ErrMalformed) {
				t.Errorf("error %v does not wrap ecash.ErrMalformed", err)
			}
			if got := errors.Is(err, auditlog.ErrInvalidEntry); got != (v.Error == "invalid") {
				t.Errorf("error %v: wraps ErrInvalidEntry = %v, vector says %q", err, got, v.Error)
			}
		})
	}

	raw = writeOrCompare(t, logPath, buildLogFile(t, f))
	var lf logFile
	if err := json.Unmarshal(raw, &lf); err != nil {
		t.Fatal(err)
	}
	checkLogVectors(t, lf, encodings)
}

func checkLogVectors(t *testing.T, lf logFile, encodings [][]byte) {
	t.Helper()
	v, err := note.NewVerifier(lf.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	a := auditlog.NewAppender(0, nil)
	for i, b := range encodings {
		if got, _ := a.TreeHash(); hex.EncodeToString(got[:]) != lf.TreeHashes[i] {
			t.Errorf("tree hash of %d entries %x, want %s", i, got, lf.TreeHashes[i])
		}
		if _, err := a.AppendEncoded(b); err != nil {
			t.Fatal(err)
		}
	}
	cps := map[int64]auditlog.Checkpoint{}
	for size, signed := range lf.Checkpoints {
		cp, err := auditlog.OpenCheckpoint([]byte(signed), lf.Origin, v)
		if err != nil {
			t.Fatalf("checkpoint %s: %v", size, err)
		}
		if strconv.FormatInt(cp.Size, 10) != size || hex.EncodeToString(cp.Root[:]) != lf.TreeHashes[cp.Size] {
			t.Errorf("checkpoint %s: %+v", size, cp)
		}
		cps[cp.Size] = cp
		if err := auditlog.RequireKeySet(cp); err != nil {
			t.Errorf("checkpoint %s: %v", size, err)
		}
		var newest auditlog.KeySetLine
		for i, b := range encodings[:cp.Size] {
			if e, err := auditlog.DecodeEntry(b); err == nil && e.Kind() == auditlog.KindKeySet {
				newest = auditlog.KeySetLine{Index: int64(i), Hash: sha256.Sum256(e.Op.(auditlog.KeySet).Signed)}
			}
		}
		if cp.KeySet != newest {
			t.Errorf("checkpoint %s: keyset line %+v, the newest key set is %+v", size, cp.KeySet, newest)
		}
		if cp.Size == int64(len(encodings)) {
			if err := auditlog.VerifyLog(cp, encodings); err != nil {
				t.Errorf("VerifyLog: %v", err)
			}
		}
	}
	for _, iv := range lf.Inclusion {
		if _, err := auditlog.VerifyInclusion(cps[iv.Size], iv.Index, encodings[iv.Index], unhexes(t, iv.Proof)); err != nil {
			t.Errorf("inclusion of %d in %d: %v", iv.Index, iv.Size, err)
		}
	}
	for _, cv := range lf.Consistency {
		var old auditlog.Checkpoint
		old.Origin, old.Size = lf.Origin, cv.Old
		root, _ := hex.DecodeString(lf.TreeHashes[cv.Old])
		copy(old.Root[:], root)
		if err := auditlog.VerifyConsistency(old, cps[cv.New], tlog.TreeProof(unhexes(t, cv.Proof))); err != nil {
			t.Errorf("consistency %d -> %d: %v", cv.Old, cv.New, err)
		}
	}
}

func unhexes(t *testing.T, ss []string) []tlog.Hash {
	t.Helper()
	out := []tlog.Hash{}
	for _, s := range ss {
		h, err := hex.DecodeString(s)
		if err != nil || len(h) != tlog.HashSize {
			t.Fatalf("bad hash %q", s)
		}
		out = append(out, tlog.Hash(h))
	}
	return out
}

// TestDocExample keeps docs/AUDITLOG.md's worked example in step with the
// vectors: the withdraw entry's bytes and leaf hash, and the signed
// checkpoint it shows.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "AUDITLOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	ef := buildEntriesFile(t, f)
	lf := buildLogFile(t, f)
	w := ef.Entries[4]
	if w.Kind != "withdraw" {
		t.Fatalf("entry 4 is a %s", w.Kind)
	}
	last := lf.Checkpoints[strconv.Itoa(len(f.entries))]
	if last == "" {
		t.Fatalf("no vector checkpoint of the whole %d-entry log", len(f.entries))
	}
	for _, s := range []string{w.Encoding, w.RecordHash, last, ef.Entries[5].RecordHash[:8]} {
		if !bytes.Contains(doc, []byte(s)) {
			t.Errorf("docs/AUDITLOG.md lacks %.60q…", s)
		}
	}
}
