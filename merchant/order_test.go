package merchant

import (
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// CreateOrder refuses a summary the wallet would refuse to show (control
// characters, bidi controls, bad UTF-8), before signing or storing
// anything: the merchant review's summary faked the amount shown.
func TestCreateOrderRefusesControlSummary(t *testing.T) {
	s := newShop(t)
	price := ecash.MustParseAmount("EUR:500.00")
	for _, evil := range []string{"coffee\r\x1b[1A\x1b[2K  amount:\tEUR:0.01\n", "coffee EUR:\u202e00.005", "bad \xff", ""} {
		if _, err := s.m.CreateOrder(price, evil, time.Minute); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("summary %q: %v, want ErrMalformed", evil, err)
		}
	}
	if _, err := s.m.CreateOrder(price, "Café crème × 2", time.Minute); err != nil {
		t.Fatal(err)
	}
}
