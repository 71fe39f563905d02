package merchant

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// Fuzz targets for the merchant's readers of what lies on its disk: the
// order store's records, the catalogue and the key file.

type merchantCodec struct {
	name   string
	decode func([]byte) (any, error)
	encode func(any) []byte
}

var merchantCodecs = []merchantCodec{
	{"order", func(b []byte) (any, error) { return decodeOrder(b) }, func(v any) []byte { return v.(*Order).encode() }},
	{"refund", func(b []byte) (any, error) { return decodeRefundRecord(b) }, func(v any) []byte { return v.(*refundRecord).encode() }},
	{"sale", func(b []byte) (any, error) { return decodeSale(b) }, func(v any) []byte { return v.(*sale).encode() }},
}

// merchantRecords are valid records of each type (by index in
// merchantCodecs), as the merchant writes them.
func merchantRecords() [][][]byte {
	at := time.UnixMilli(1_700_000_000_123)
	pr := &ecash.PaymentRequest{BankID: ecash.HashOf([]byte("bank")), MerchantAccount: 1001,
		MerchantPub: bytes.Repeat([]byte{1}, ed25519.PublicKeySize), OrderID: "order-1",
		Amount: ecash.MustParseAmount("EUR:1.50"), SummaryHash: ecash.HashOf([]byte("a sweet")),
		CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	order := &Order{ID: "order-1", Summary: "a sweet", Request: pr.Body(), Sig: bytes.Repeat([]byte{2}, 64)}
	paid := *order
	paid.Receipt = []byte("receipt")
	id := echeck.NewEPOID(1001, at, 42)
	goods := &sale{Kind: echeck.KindGoods, EPOID: id, ProductID: "song", Price: ecash.MustParseAmount("EUR:0.15"),
		Quote: []byte("quote"), Key: [32]byte{3}, GoodsHash: ecash.HashOf([]byte("goods")), KeyCommit: ecash.HashOf([]byte("k")),
		Delivered: at.UTC(), EPO: []byte("epo"), Endorsement: []byte("endorsement"), Receipt: []byte("receipt")}
	check := &sale{Kind: echeck.KindCheck, EPOID: id, ProductID: "invoice 7", Price: ecash.MustParseAmount("EUR:3.00"), Delivered: at.UTC()}
	return [][][]byte{
		{order.encode(), paid.encode()},
		{(&refundRecord{Request: []byte("request")}).encode(), (&refundRecord{Request: []byte("request"), Receipt: []byte("receipt")}).encode()},
		{goods.encode(), check.encode()},
	}
}

// FuzzDecodeMerchantRecord: no panic; a failure wraps ecash.ErrMalformed
// (or ErrBadAmount, for an order's request); a record that decodes
// re-encodes to exactly its bytes, and decodes again to the same record.
func FuzzDecodeMerchantRecord(f *testing.F) {
	for i, recs := range merchantRecords() {
		for _, r := range recs {
			f.Add(uint8(i), r)
			f.Add(uint8(i), r[:len(r)-1])
			f.Add(uint8(i), append(bytes.Clone(r), 0))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		c := merchantCodecs[int(which)%len(merchantCodecs)]
		v, err := c.decode(b)
		if err != nil {
			if !errors.Is(err, ecash.ErrMalformed) && !errors.Is(err, ecash.ErrBadAmount) {
				t.Fatalf("%s: error %v wraps no ecash sentinel", c.name, err)
			}
			return
		}
		again := c.encode(v)
		if !bytes.Equal(again, b) {
			t.Fatalf("%s: non-canonical: %x re-encodes to %x", c.name, b, again)
		}
		v2, err := c.decode(again)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("%s: decodes to %+v, its re-encoding to %+v (%v)", c.name, v, v2, err)
		}
	})
}

// FuzzLoadCatalogue: a catalogue.json, however mangled, loads only into
// products that pass the documented checks, each a file inside the
// catalogue directory (never one reached through "..", an absolute path
// or a symbolic link out of it), and nothing else than ErrCatalogue is
// returned.
func FuzzLoadCatalogue(f *testing.F) {
	base := f.TempDir()
	dir := filepath.Join(base, "shop")
	for name, data := range map[string]string{"song.mp3": "la la la", "sub/book.txt": "once upon", "../secret": "key"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			f.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(base, "secret"), filepath.Join(dir, "out")); err != nil {
		f.Skip("no symbolic links here:", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"products":[{"id":"song","file":"song.mp3","price":"EUR:0.15","description":"a song"},` +
		`{"id":"book.v2","file":"sub/book.txt","price":"EUR:2.00"}]}`)
	f.Add(`{"products":[{"id":"x","file":"../secret","price":"EUR:1.00"}]}`)
	f.Add(`{"products":[{"id":"x","file":"out","price":"EUR:1.00"}]}`)
	f.Add(`{"products":[{"id":"x","file":"` + filepath.Join(base, "secret") + `","price":"EUR:1.00"}]}`)
	f.Add(`{"products":[{"id":"x","file":"song.mp3","price":"EUR:0"}]}`)
	f.Add(`{"products":[{"id":"x","file":"song.mp3","price":"EUR:1","prise":"0"}]}`)
	f.Add(`{"products":[]} {}`)
	f.Fuzz(func(t *testing.T, js string) {
		if err := os.WriteFile(filepath.Join(dir, CatalogueFile), []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadCatalogue(dir)
		if err != nil {
			if c != nil || !errors.Is(err, ErrCatalogue) {
				t.Fatalf("%v, %v", c, err)
			}
			return
		}
		ps := c.Products()
		if len(ps) > MaxProducts {
			t.Fatalf("%d products", len(ps))
		}
		for _, p := range ps {
			if checkProductID(p.ID) != nil || len(p.Description) > MaxDescriptionLen || !utf8.ValidString(p.Description) ||
				p.Price.IsZero() || p.Price.Validate() != nil {
				t.Fatalf("product %+v accepted", p)
			}
			real, err := filepath.EvalSymlinks(p.Path)
			if err != nil {
				t.Fatal(err)
			}
			if rel, err := filepath.Rel(realDir, real); err != nil || !filepath.IsLocal(rel) {
				t.Fatalf("product %q is %s, outside %s", p.ID, real, realDir)
			}
		}
	})
}

// FuzzLoadKey: the key file loads only as the hex of an Ed25519 seed, with
// at most trailing line ends and spaces, and the key is that seed's.
func FuzzLoadKey(f *testing.F) {
	dir := f.TempDir()
	seed := bytes.Repeat([]byte{0x5a}, ed25519.SeedSize)
	f.Add([]byte(hex.EncodeToString(seed) + "\n"))
	f.Add([]byte(strings.ToUpper(hex.EncodeToString(seed)) + "\r\n"))
	f.Add([]byte(hex.EncodeToString(seed[:31])))
	f.Add([]byte(" " + hex.EncodeToString(seed)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, KeyFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := LoadKey(dir)
		if err != nil {
			return
		}
		s := strings.TrimRight(string(b), "\r\n ")
		want, herr := hex.DecodeString(s)
		if herr != nil || len(want) != ed25519.SeedSize || !bytes.Equal(k.Seed(), want) || len(b) > 1024 {
			t.Fatalf("%q loaded as the key of seed %x", b, k.Seed())
		}
	})
}
