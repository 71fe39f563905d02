package ecash_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

func testOffer(t *testing.T, summary string) *ecash.PaymentOffer {
	w := newWorld(t)
	req := cloneRequest(w.req)
	req.SummaryHash = sha256.Sum256([]byte(summary))
	body := req.Body()
	return &ecash.PaymentOffer{Merchant: "[::1]:7543", Request: body, MerchantSig: ecash.SignBody(w.merchant, body), Summary: summary}
}

func TestPaymentURI(t *testing.T) {
	t.Parallel()
	o := testOffer(t, "2 x coffee")
	uri := o.URI()
	if !strings.HasPrefix(uri, "blindbank:pay/") || strings.ContainsAny(uri[len("blindbank:pay/"):], "/+=") {
		t.Fatalf("URI %q", uri)
	}
	for _, s := range []string{uri, "BLINDBANK:PAY/" + uri[len("blindbank:pay/"):]} {
		got, err := ecash.ParsePaymentURI(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Encode(), o.Encode()) {
			t.Fatal("parsed offer differs")
		}
		pr, err := got.Verify()
		if err != nil || pr.OrderID == "" {
			t.Fatalf("Verify: %v, %v", pr, err)
		}
	}
	for name, s := range map[string]string{
		"other scheme":     "taler://pay/" + uri[len("blindbank:pay/"):],
		"no prefix":        uri[len("blindbank:"):],
		"padding":          uri + "=",
		"standard base64":  strings.NewReplacer("-", "+", "_", "/").Replace(uri),
		"truncated":        uri[:len(uri)-3],
		"trailing newline": uri + "\n",
		"inner newline":    uri[:30] + "\r\n" + uri[30:],
		"too long":         ecash.PaymentURIPrefix + strings.Repeat("A", ecash.MaxPaymentURILen),
	} {
		if got, err := ecash.ParsePaymentURI(s); got != nil || !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("%s: %v, %v", name, got, err)
		}
	}
	// The largest offer the bounds allow fits in MaxPaymentURILen.
	big := testOffer(t, strings.Repeat("x", ecash.MaxSummaryLen))
	big.Merchant = strings.Repeat("a", ecash.MaxMerchantAddr-5) + ":7543"
	big.Request = append(big.Request, make([]byte, 1024-len(big.Request))...)
	if u := big.URI(); len(u) != ecash.MaxPaymentURILen {
		t.Fatalf("largest URI %d bytes, bound %d", len(u), ecash.MaxPaymentURILen)
	} else if _, err := ecash.ParsePaymentURI(u); err != nil {
		t.Fatal(err)
	}
}

func TestPaymentOfferVerify(t *testing.T) {
	t.Parallel()
	o := testOffer(t, "2 x coffee")
	o.Summary = "20 x coffee"
	if _, err := o.Verify(); !errors.Is(err, ecash.ErrBadSignature) {
		t.Fatalf("other summary: %v", err)
	}
	o = testOffer(t, "2 x coffee")
	o.MerchantSig = flip(o.MerchantSig, 3)
	if _, err := o.Verify(); !errors.Is(err, ecash.ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	o = testOffer(t, "2 x coffee")
	o.Request = o.Request[:len(o.Request)-1]
	if _, err := o.Verify(); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("truncated request: %v", err)
	}
}

// TestCheckSummary: a summary that could make the wallet's confirmation
// show something else than the merchant signed (a carriage return and
// escape sequences rewriting the amount line, a bidi override reversing
// it) is refused, by Verify too, since the wallet pays through it.
func TestCheckSummary(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"2 x coffee", "Café crème, 2 × 1,50 €", "קפה", "茶 🍵", "family 👨\u200d👩\u200d👧", "می\u200cخواهم", strings.Repeat("x", ecash.MaxSummaryLen)} {
		if err := ecash.CheckSummary(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
		if _, err := testOffer(t, ok).Verify(); err != nil {
			t.Errorf("offer with %q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", strings.Repeat("x", ecash.MaxSummaryLen+1),
		"coffee\r\x1b[1A\x1b[2K  amount:\tEUR:0.01\n", "a\tb", "two\nlines", "nul\x00", "del\x7f", "csi\u009b2K", "nel\u0085",
		"bad utf-8 \xff", "surrogate \xed\xa0\x80",
		"EUR:\u202e00.005", "\u202a", "\u202d", "\u2066x\u2069", "\u2067", "\u2068", "lrm\u200e", "rlm\u200f", "alm\u061c",
		"line\u2028separator", "para\u2029graph", "zero\u200bwidth", "bom\ufeff", "word\u2060joiner", "anchor\ufff9", "soft\u00adhyphen",
	} {
		if err := ecash.CheckSummary(bad); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
		if bad == "" || len(bad) > ecash.MaxSummaryLen {
			continue
		}
		if _, err := testOffer(t, bad).Verify(); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("offer with %q verified (%v)", bad, err)
		}
	}
}

// TestShownText: text stored before the rules is made acceptable to
// CheckText: hidden characters and bytes that are not UTF-8 replaced, cut
// on a character boundary; acceptable text is returned as it is.
func TestShownText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"Café 👨\u200d👩\u200d👧", 64, "Café 👨\u200d👩\u200d👧"},
		{"a\rb\x1b[2K", 64, "a\uFFFDb\uFFFD[2K"},
		{"bad \xff\xfe", 64, "bad \uFFFD\uFFFD"},
		{"EUR:\u202e00.01", 64, "EUR:\uFFFD00.01"},
		{"ééé", 5, "éé"},
		{"ab\n", 4, "ab"}, // U+FFFD is 3 bytes: cut rather than exceed
	} {
		got := ecash.ShownText(c.in, c.max)
		if got != c.want || ecash.CheckText(got, c.max, "text") != nil {
			t.Errorf("ShownText(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}

func TestCheckMerchantAddr(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"shop.example:7543", "127.0.0.1:1", "[::1]:65535", "localhost:7543"} {
		if err := ecash.CheckMerchantAddr(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "shop.example", ":7543", "shop.example:", "shop.example:0", "shop.example:65536", "shop.example:07543",
		"shop.example:+75", "shop example:7543", "::1:7543", "[]:7543", "[::1]]:7543", "[[::1]:7543", "shop/x:7543", "shöp.example:7543", "shop\n.example:7543",
		strings.Repeat("a", ecash.MaxMerchantAddr) + ":1",
	} {
		if err := ecash.CheckMerchantAddr(bad); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}

// TestPaymentURIDocumented: docs/PROTOCOL.md shows the vector's URI (its
// lines joined) and the bound MaxPaymentURILen.
func TestPaymentURIDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var file vectorFile
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(doc), "\n", "")
	found := false
	for _, v := range file.Vectors {
		if uri := v.Fields["uri"]; uri != "" {
			found = true
			if !strings.Contains(joined, uri) {
				t.Errorf("PROTOCOL.md lacks the URI of vector %q", v.Name)
			}
		}
	}
	if !found {
		t.Fatal("no payment URI among the vectors")
	}
	if want := fmt.Sprintf("`MaxPaymentURILen` (%d,%03d)", ecash.MaxPaymentURILen/1000, ecash.MaxPaymentURILen%1000); !strings.Contains(string(doc), want) {
		t.Errorf("PROTOCOL.md does not give %s", want)
	}
}
