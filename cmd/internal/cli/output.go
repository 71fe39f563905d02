package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
)

// Print writes a command's result: v as indented JSON with --json, else
// whatever text writes.
func (inv *Invocation) Print(v any, text func(w io.Writer)) error {
	if inv.JSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(inv.Stdout, "%s\n", escapeHiddenJSON(b))
		return err
	}
	text(inv.Stdout)
	return nil
}

// escapeHiddenJSON writes, as \u escapes, what encoding/json leaves as it
// is but a terminal would act on rather than show: DEL, the C1 controls
// (U+009B is an escape sequence's start on some terminals), and the format
// characters (bidi overrides and isolates, which reorder what follows):
// the same runes escapeHidden escapes in text; and bytes that are not
// UTF-8, which a json.RawMessage keeps, as U+FFFD (as json.Marshal writes
// them). The JSON means the same to a decoder; a user reading it on a
// terminal sees what is there. All of these occur only inside strings:
// JSON's syntax is ASCII.
func escapeHiddenJSON(b []byte) []byte {
	if utf8.Valid(b) && bytes.IndexFunc(b, hiddenInJSON) < 0 {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n == 1:
			// Not UTF-8: json.Marshal replaces such bytes, but a
			// json.RawMessage keeps them (a lone 0x9b is a C1 escape).
			out = append(out, `\ufffd`...)
		case hiddenInJSON(r):
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
		default:
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}

// hiddenInJSON reports whether r is hidden (ecash.Hidden) and not escaped
// by encoding/json already (C0 controls, U+2028 and U+2029 are).
func hiddenInJSON(r rune) bool {
	return r >= 0x7f && r != 0x2028 && r != 0x2029 && ecash.Hidden(r)
}

// Table is a text table with aligned columns.
type Table struct{ tw *tabwriter.Writer }

// NewTable starts a table on w.
func NewTable(w io.Writer) *Table {
	return &Table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

// Row adds a row. A cell's control bytes are escaped (escapeHidden):
// tables show memos, references and reasons that peers wrote, and a tab or
// newline in one would break the table as well.
func (t *Table) Row(cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, escapeHidden(fmt.Sprint(c)))
	}
	fmt.Fprint(t.tw, "\n")
}

// Flush writes the table out.
func (t *Table) Flush() { t.tw.Flush() }

// Shown is text from a peer (an order summary, a product description) as
// it is safe to print on a terminal: unchanged if it is valid UTF-8 of
// printable characters and spaces, else Go-quoted, so that no control
// character, escape sequence or bidi override reaches the terminal, and
// the quotes show the text is unusual.
func Shown(s string) string {
	if plain(s) {
		return s
	}
	return strconv.Quote(s)
}

// plain reports whether s is UTF-8 that shows as itself: the rule by which
// the protocol refuses a peer's text (ecash.Hidden), so that what passes it
// (an emoji's zero-width joiner, a no-break space) is shown as it is.
func plain(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, ecash.Hidden) < 0
}

// escapeHidden writes what a terminal would act on rather than show
// (escape sequences and other controls, format characters, bytes that are
// not UTF-8) as Go escapes: an error's text can carry a peer's words, a
// merchant's or a bank's.
func escapeHidden(s string) string {
	if plain(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !ecash.Hidden(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// ParseAmount parses "CUR:12.50" with a message a user can act on.
func ParseAmount(s string) (ecash.Amount, error) {
	a, err := ecash.ParseAmount(s)
	switch {
	case errors.Is(err, ecash.ErrOverflow):
		return ecash.Amount{}, fmt.Errorf("amount %q is too large", s)
	case err != nil:
		return ecash.Amount{}, fmt.Errorf("bad amount %q: want CURRENCY:UNITS.CENTS with at most two decimals, e.g. EUR:12.50", s)
	}
	return a, nil
}

// ParsePositiveAmount is ParseAmount refusing zero.
func ParsePositiveAmount(s string) (ecash.Amount, error) {
	a, err := ParseAmount(s)
	if err == nil && a.IsZero() {
		err = fmt.Errorf("bad amount %q: must be more than zero", s)
	}
	return a, err
}

// ParseID parses an account id (a positive integer).
func ParseID(what, s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("bad %s %q: want a positive whole number", what, s)
	}
	return id, nil
}

// CheckAddr checks that addr is HOST:PORT.
func CheckAddr(flagName, addr string) error {
	if addr == "" {
		return Usagef("--%s ADDR is required", flagName)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("bad --%s %q: want HOST:PORT, e.g. 127.0.0.1:7443", flagName, addr)
	}
	return nil
}

// CheckListen checks a daemon's listen addresses before any slow work:
// the admin listener must be loopback, and so must a plaintext one.
func CheckListen(listen, adminListen string, plaintext bool) error {
	if !transport.IsLoopback(adminListen) {
		return fmt.Errorf("bad --admin-listen %s: the admin service listens on loopback only (127.0.0.1, ::1, localhost)", adminListen)
	}
	if plaintext && !transport.IsLoopback(listen) {
		return fmt.Errorf("--plaintext is allowed only on a loopback --listen address, not %s", listen)
	}
	return nil
}

// FormatTime renders a time for people: local, to the second.
func FormatTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

// Until renders how long until t, coarsely ("in 14m59s", "3m ago").
func Until(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d < 0 {
		return (-d).String() + " ago"
	}
	return "in " + d.String()
}

// Plural is "1 coin", "2 coins": n and word, with an s unless n is 1.
func Plural(n int, word string) string { return PluralOf(n, word, word+"s") }

// PluralOf is Plural for a word whose plural is not word+"s": "1 entry",
// "2 entries".
func PluralOf(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
