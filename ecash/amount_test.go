package ecash_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

func TestParseAmount(t *testing.T) {
	for _, tc := range []struct {
		in    string
		cur   string
		value uint64
		canon string
	}{
		{"EUR:0", "EUR", 0, "EUR:0.00"},
		{"EUR:1", "EUR", 100, "EUR:1.00"},
		{"EUR:1.5", "EUR", 150, "EUR:1.50"},
		{"EUR:12.50", "EUR", 1250, "EUR:12.50"},
		{"EUR:0.01", "EUR", 1, "EUR:0.01"},
		{"EUR:007.05", "EUR", 705, "EUR:7.05"},
		{"A:1", "A", 100, "A:1.00"},
		{"ABCDEFGHIJK:1", "ABCDEFGHIJK", 100, "ABCDEFGHIJK:1.00"},
		{"EUR:90071992547409.91", "EUR", ecash.MaxValue, "EUR:90071992547409.91"},
	} {
		a, err := ecash.ParseAmount(tc.in)
		if err != nil {
			t.Errorf("ParseAmount(%q): %v", tc.in, err)
			continue
		}
		if a.Currency != tc.cur || a.Value != tc.value {
			t.Errorf("ParseAmount(%q) = %+v, want %s %d", tc.in, a, tc.cur, tc.value)
		}
		if got := a.String(); got != tc.canon {
			t.Errorf("String() = %q, want %q", got, tc.canon)
		}
		b, err := ecash.ParseAmount(a.String())
		if err != nil || b != a {
			t.Errorf("round trip of %q: %+v, %v", tc.in, b, err)
		}
		if err := a.Validate(); err != nil {
			t.Errorf("Validate(%v): %v", a, err)
		}
	}
}

func TestParseAmountRejects(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", ecash.ErrBadAmount},
		{"EUR", ecash.ErrBadAmount},
		{"EUR:", ecash.ErrBadAmount},
		{":1", ecash.ErrBadAmount},
		{"EUR:1.234", ecash.ErrBadAmount},
		{"EUR:1.", ecash.ErrBadAmount},
		{"EUR:.5", ecash.ErrBadAmount},
		{"eur:1", ecash.ErrBadAmount},
		{"Eur:1", ecash.ErrBadAmount},
		{"EU1:1", ecash.ErrBadAmount},
		{"ABCDEFGHIJKL:1", ecash.ErrBadAmount},
		{"EUR:-1", ecash.ErrBadAmount},
		{"EUR:+1", ecash.ErrBadAmount},
		{"EUR:1e3", ecash.ErrBadAmount},
		{"EUR: 1", ecash.ErrBadAmount},
		{"EUR:1 ", ecash.ErrBadAmount},
		{"EUR:1,50", ecash.ErrBadAmount},
		{"EUR:1.5.0", ecash.ErrBadAmount},
		{"EUR:1:2", ecash.ErrBadAmount},
		{"EUR:0x10", ecash.ErrBadAmount},
		{"EUR:1.-1", ecash.ErrBadAmount},
		{"EUR:١", ecash.ErrBadAmount},                // Arabic-Indic digit one
		{"EUR:12345678901234567", ecash.ErrOverflow}, // well-formed, too many digits
		{"EUR:99999999999999999999", ecash.ErrOverflow},
		{"EUR:99999999999999999999.99", ecash.ErrOverflow},
		{"EUR:0000000000000000001", ecash.ErrBadAmount}, // over 16 digits, but not large
		{"EUR:99999999999999999999.999", ecash.ErrBadAmount},
		{"EUR:99999999999999999999x", ecash.ErrBadAmount},
		{"EUR:90071992547409.92", ecash.ErrOverflow},
		{"EUR:90071992547410", ecash.ErrOverflow},
		{"EUR:9999999999999999", ecash.ErrOverflow},
	} {
		a, err := ecash.ParseAmount(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParseAmount(%q) error %v, want %v", tc.in, err, tc.want)
		}
		if a != (ecash.Amount{}) {
			t.Errorf("ParseAmount(%q) returned partial value %+v", tc.in, a)
		}
	}
}

func TestMustParseAmountPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParseAmount of garbage did not panic")
		}
	}()
	ecash.MustParseAmount("EUR:1.234")
}

func TestAmountValidate(t *testing.T) {
	for _, tc := range []struct {
		a    ecash.Amount
		want error
	}{
		{ecash.Amount{Currency: "EUR", Value: ecash.MaxValue}, nil},
		{ecash.Amount{Currency: "EUR", Value: ecash.MaxValue + 1}, ecash.ErrOverflow},
		{ecash.Amount{Currency: "", Value: 1}, ecash.ErrBadAmount},
		{ecash.Amount{Currency: "eur", Value: 1}, ecash.ErrBadAmount},
	} {
		err := tc.a.Validate()
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Validate(%+v) = %v, want %v", tc.a, err, tc.want)
		}
	}
}

func TestAmountArithmetic(t *testing.T) {
	a := ecash.MustParseAmount("EUR:10.50")
	b := ecash.MustParseAmount("EUR:0.75")
	usd := ecash.MustParseAmount("USD:1")
	max := ecash.Amount{Currency: "EUR", Value: ecash.MaxValue}
	one := ecash.Amount{Currency: "EUR", Value: 1}

	if s, err := a.Add(b); err != nil || s != ecash.MustParseAmount("EUR:11.25") {
		t.Errorf("Add = %v, %v", s, err)
	}
	if s, err := a.Sub(b); err != nil || s != ecash.MustParseAmount("EUR:9.75") {
		t.Errorf("Sub = %v, %v", s, err)
	}
	if s, err := a.Sub(a); err != nil || !s.IsZero() || s.Currency != "EUR" {
		t.Errorf("a-a = %v, %v", s, err)
	}
	if s, err := max.Add(ecash.Amount{Currency: "EUR"}); err != nil || s != max {
		t.Errorf("max+0 = %v, %v", s, err)
	}
	for _, tc := range []struct {
		name string
		f    func() (ecash.Amount, error)
		want error
	}{
		{"add mismatch", func() (ecash.Amount, error) { return a.Add(usd) }, ecash.ErrCurrencyMismatch},
		{"sub mismatch", func() (ecash.Amount, error) { return a.Sub(usd) }, ecash.ErrCurrencyMismatch},
		{"add overflow", func() (ecash.Amount, error) { return max.Add(one) }, ecash.ErrOverflow},
		{"add huge", func() (ecash.Amount, error) {
			return ecash.Amount{Currency: "EUR", Value: 1 << 63}.Add(ecash.Amount{Currency: "EUR", Value: 1 << 63})
		}, ecash.ErrOverflow},
		{"add invalid operand", func() (ecash.Amount, error) {
			return ecash.Amount{Currency: "EUR", Value: ecash.MaxValue + 1}.Add(ecash.Amount{Currency: "EUR"})
		}, ecash.ErrOverflow},
		{"sub underflow", func() (ecash.Amount, error) { return b.Sub(a) }, ecash.ErrUnderflow},
		{"sum overflow", func() (ecash.Amount, error) { return ecash.Sum("EUR", max, one) }, ecash.ErrOverflow},
		{"sum mismatch", func() (ecash.Amount, error) { return ecash.Sum("EUR", a, usd) }, ecash.ErrCurrencyMismatch},
	} {
		got, err := tc.f()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
		if got != (ecash.Amount{}) {
			t.Errorf("%s: partial result %+v", tc.name, got)
		}
	}

	if s, err := ecash.Sum("EUR", a, b, b); err != nil || s != ecash.MustParseAmount("EUR:12") {
		t.Errorf("Sum = %v, %v", s, err)
	}
	if s, err := ecash.Sum("EUR"); err != nil || s != (ecash.Amount{Currency: "EUR"}) {
		t.Errorf("empty Sum = %v, %v", s, err)
	}

	for _, tc := range []struct {
		x, y ecash.Amount
		want int
	}{{a, b, 1}, {b, a, -1}, {a, a, 0}} {
		if c, err := tc.x.Cmp(tc.y); err != nil || c != tc.want {
			t.Errorf("Cmp(%v, %v) = %d, %v", tc.x, tc.y, c, err)
		}
	}
	if _, err := a.Cmp(usd); !errors.Is(err, ecash.ErrCurrencyMismatch) {
		t.Errorf("Cmp mismatch: %v", err)
	}
}

func TestAmountEncoding(t *testing.T) {
	a := ecash.MustParseAmount("EUR:12.50")
	var e ecash.Encoder
	e.Amount(a)
	want := []byte{0, 0, 0, 3, 'E', 'U', 'R', 0, 0, 0, 0, 0, 0, 0x04, 0xe2}
	if !bytes.Equal(e.Bytes(), want) {
		t.Fatalf("encoding %x, want %x", e.Bytes(), want)
	}
	// Amounts are validated on decode.
	for _, tc := range []struct {
		name string
		a    ecash.Amount
		ok   bool
	}{
		{"valid", a, true},
		{"max", ecash.Amount{Currency: "EUR", Value: ecash.MaxValue}, true},
		{"above max", ecash.Amount{Currency: "EUR", Value: ecash.MaxValue + 1}, false},
		{"lower case", ecash.Amount{Currency: "eur", Value: 1}, false},
		{"empty currency", ecash.Amount{Value: 1}, false},
		{"long currency", ecash.Amount{Currency: "ABCDEFGHIJKL", Value: 1}, false},
	} {
		e := ecash.NewEncoder("test")
		e.Amount(tc.a)
		d := ecash.NewDecoder("test", e.Bytes())
		got := d.Amount()
		err := d.Finish()
		if tc.ok && (err != nil || got != tc.a) {
			t.Errorf("%s: decoded %+v, %v", tc.name, got, err)
		}
		if !tc.ok && (!errors.Is(err, ecash.ErrMalformed) || got != (ecash.Amount{})) {
			t.Errorf("%s: decoded %+v, %v; want ErrMalformed and zero", tc.name, got, err)
		}
	}
}
