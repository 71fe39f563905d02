package ecash

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// FractionDigits is the number of decimal places of every currency: amounts
// are integer counts of 1/100 of the currency unit ("cents").
const FractionDigits = 2

// MaxValue bounds every amount (and every sum of amounts) so totals can be
// held exactly in int64 ledgers and in float64 JSON consumers.
const MaxValue = 1<<53 - 1

var (
	ErrCurrencyMismatch = errors.New("ecash: currency mismatch")
	ErrOverflow         = errors.New("ecash: amount overflow")
	ErrUnderflow        = errors.New("ecash: insufficient amount")
	ErrBadAmount        = errors.New("ecash: invalid amount")
)

// Amount is a non-negative quantity of one currency, in minor units.
type Amount struct {
	Currency string // 1 to 11 upper-case ASCII letters, e.g. "EUR"
	Value    uint64 // minor units (1/100), at most MaxValue
}

// ValidCurrency reports whether c is a well-formed currency code.
func ValidCurrency(c string) bool {
	if len(c) < 1 || len(c) > 11 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

// Validate checks the currency code and the value bound.
func (a Amount) Validate() error {
	if !ValidCurrency(a.Currency) {
		return fmt.Errorf("%w: currency %q", ErrBadAmount, a.Currency)
	}
	if a.Value > MaxValue {
		return fmt.Errorf("%w: value exceeds maximum", ErrOverflow)
	}
	return nil
}

// ParseAmount parses "CUR:units[.frac]" with at most two fraction digits.
func ParseAmount(s string) (Amount, error) {
	cur, num, ok := strings.Cut(s, ":")
	if !ok || !ValidCurrency(cur) {
		return Amount{}, fmt.Errorf("%w: %q: want CUR:12.50", ErrBadAmount, s)
	}
	units, frac, hasFrac := strings.Cut(num, ".")
	if units == "" || (hasFrac && (frac == "" || len(frac) > FractionDigits)) {
		return Amount{}, fmt.Errorf("%w: %q: want CUR:12.50", ErrBadAmount, s)
	}
	for len(frac) < FractionDigits {
		frac += "0"
	}
	if !digits(units) || !digits(frac) {
		return Amount{}, fmt.Errorf("%w: %q: want CUR:12.50", ErrBadAmount, s)
	}
	// At most 16 integer digits (MaxValue has 14). More significant digits
	// than that is a well-formed amount too large, not a malformed one.
	if len(units) > 16 {
		if len(strings.TrimLeft(units, "0")) > 16 {
			return Amount{}, fmt.Errorf("%w: %q", ErrOverflow, s)
		}
		return Amount{}, fmt.Errorf("%w: %q: want CUR:12.50", ErrBadAmount, s)
	}
	u, err := strconv.ParseUint(units, 10, 64)
	if err != nil {
		return Amount{}, fmt.Errorf("%w: %q", ErrBadAmount, s)
	}
	f, _ := strconv.ParseUint(frac, 10, 64)
	if u > MaxValue/100 {
		return Amount{}, fmt.Errorf("%w: %q", ErrOverflow, s)
	}
	a := Amount{Currency: cur, Value: u*100 + f}
	if a.Value > MaxValue {
		return Amount{}, fmt.Errorf("%w: %q", ErrOverflow, s)
	}
	return a, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MustParseAmount is ParseAmount for constants in tests and examples.
func MustParseAmount(s string) Amount {
	a, err := ParseAmount(s)
	if err != nil {
		panic(err)
	}
	return a
}

// String formats the amount canonically, always with two fraction digits.
func (a Amount) String() string {
	return fmt.Sprintf("%s:%d.%02d", a.Currency, a.Value/100, a.Value%100)
}

// IsZero reports whether the value is zero.
func (a Amount) IsZero() bool { return a.Value == 0 }

// Add returns a+b, refusing mixed currencies and results above MaxValue.
func (a Amount) Add(b Amount) (Amount, error) {
	if a.Currency != b.Currency {
		return Amount{}, fmt.Errorf("%w: %s and %s", ErrCurrencyMismatch, a.Currency, b.Currency)
	}
	if a.Value > MaxValue || b.Value > MaxValue || a.Value+b.Value > MaxValue {
		return Amount{}, ErrOverflow
	}
	return Amount{Currency: a.Currency, Value: a.Value + b.Value}, nil
}

// Sub returns a-b, refusing mixed currencies and negative results.
func (a Amount) Sub(b Amount) (Amount, error) {
	if a.Currency != b.Currency {
		return Amount{}, fmt.Errorf("%w: %s and %s", ErrCurrencyMismatch, a.Currency, b.Currency)
	}
	if b.Value > a.Value {
		return Amount{}, fmt.Errorf("%w: %s < %s", ErrUnderflow, a, b)
	}
	return Amount{Currency: a.Currency, Value: a.Value - b.Value}, nil
}

// Cmp compares two amounts of one currency: -1, 0 or +1.
func (a Amount) Cmp(b Amount) (int, error) {
	if a.Currency != b.Currency {
		return 0, fmt.Errorf("%w: %s and %s", ErrCurrencyMismatch, a.Currency, b.Currency)
	}
	switch {
	case a.Value < b.Value:
		return -1, nil
	case a.Value > b.Value:
		return 1, nil
	}
	return 0, nil
}

// Sum adds amounts of currency cur.
func Sum(cur string, as ...Amount) (Amount, error) {
	total := Amount{Currency: cur}
	for _, a := range as {
		var err error
		if total, err = total.Add(a); err != nil {
			return Amount{}, err
		}
	}
	return total, nil
}
