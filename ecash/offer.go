package ecash

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PaymentOffer is what a wallet needs to pay an order without asking the
// merchant for it first: the merchant's address, the signed payment request
// and the summary it hashes. It travels out of band, as a payment URI (a
// link or a QR code), and saves the wallet a round trip. Nothing in it is
// secret, and only the request and (through its hash) the summary are
// signed: a changed address at worst sends the sealed payment to someone
// who can only pass it on to the merchant the request names.
type PaymentOffer struct {
	Merchant    string // host:port of the merchant's wallet-facing service
	Request     []byte // payment-request body
	MerchantSig []byte // the merchant key's signature over Request
	Summary     string // the order summary; its SHA-256 is in Request
}

// Bounds of a payment offer's fields.
const (
	MaxSummaryLen    = 4096
	MaxMerchantAddr  = 255
	maxRequestLen    = 1024
	PaymentURIPrefix = "blindbank:pay/"
	maxOfferLen      = 4 + len(TagPrefix+"payment-offer") + 4 + MaxMerchantAddr + 4 + maxRequestLen + ed25519.SignatureSize + 4 + MaxSummaryLen
	// MaxPaymentURILen bounds a payment URI: the prefix and the unpadded
	// base64 of the largest offer.
	MaxPaymentURILen = len(PaymentURIPrefix) + (maxOfferLen*8+5)/6
)

// Encode is the offer's canonical encoding (tag "payment-offer").
func (o *PaymentOffer) Encode() []byte {
	e := NewEncoder("payment-offer")
	e.String(o.Merchant)
	e.VarBytes(o.Request)
	e.Fixed(o.MerchantSig)
	e.String(o.Summary)
	return e.Bytes()
}

// DecodePaymentOffer parses an offer's encoding and checks its address. It
// does not check the request or its signature (Verify does).
func DecodePaymentOffer(b []byte) (*PaymentOffer, error) {
	d := NewDecoder("payment-offer", b)
	o := &PaymentOffer{
		Merchant:    string(d.VarBytes(MaxMerchantAddr)),
		Request:     d.VarBytes(maxRequestLen),
		MerchantSig: d.Fixed(ed25519.SignatureSize),
		Summary:     string(d.VarBytes(MaxSummaryLen)),
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if err := CheckMerchantAddr(o.Merchant); err != nil {
		return nil, err
	}
	return o, nil
}

// Verify decodes the offer's payment request and checks what the offer
// alone can show: the merchant key in the request signed it, and the
// summary is the one it hashes. Whether the request names the wallet's
// bank, in its currency, and has not expired is for the wallet to check.
func (o *PaymentOffer) Verify() (*PaymentRequest, error) {
	pr, err := DecodePaymentRequest(o.Request)
	if err != nil {
		return nil, err
	}
	if err := VerifyBody(pr.MerchantPub, o.Request, o.MerchantSig, "payment request"); err != nil {
		return nil, err
	}
	if sha256.Sum256([]byte(o.Summary)) != pr.SummaryHash {
		return nil, fmt.Errorf("%w: summary does not match its hash in the payment request", ErrBadSignature)
	}
	if err := CheckSummary(o.Summary); err != nil {
		return nil, err
	}
	return pr, nil
}

// CheckSummary accepts an order summary: 1 to MaxSummaryLen bytes of
// displayable text (CheckText). The wallet shows the summary beside the
// amount when it asks to confirm a payment, so the merchant refuses a
// summary that could hide or rewrite what is shown, and the wallet refuses
// to pay one.
func CheckSummary(s string) error {
	if s == "" {
		return fmt.Errorf("%w: summary must be 1 to %d bytes", ErrMalformed, MaxSummaryLen)
	}
	return CheckText(s, MaxSummaryLen, "summary")
}

// CheckText accepts text a peer or an operator gives for people to read
// (summaries, memos, product ids, references, decline reasons): at most max
// bytes of valid UTF-8 without C0 or C1 control characters, line or
// paragraph separators, or format characters but ZWJ and ZWNJ (Hidden). A
// carriage return or an escape sequence could rewrite what a terminal
// shows beside it, an amount say, and a bidi override could reorder it on
// any display; refused where it is decoded, such text never reaches one.
func CheckText(s string, max int, what string) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s of %d bytes exceeds %d", ErrMalformed, what, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, what)
	}
	for i, r := range s {
		if Hidden(r) {
			return fmt.Errorf("%w: %s has control character %U at byte %d", ErrMalformed, what, r, i)
		}
	}
	return nil
}

// ShownText returns s as text that CheckText(·, max) accepts: each byte
// that is not UTF-8 and each hidden character becomes U+FFFD, and the text
// is cut at max bytes on a character boundary. It is for text stored before
// these rules: a statement carries memos the bank accepted then, and must
// still decode.
func ShownText(s string, max int) string {
	if CheckText(s, max, "") == nil {
		return s
	}
	var b strings.Builder
	for _, r := range s { // a byte that is not UTF-8 comes as utf8.RuneError
		if Hidden(r) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Hidden reports the characters a display does not show as themselves:
// controls (C0, C1), line and paragraph separators, and format characters
// (the bidirectional marks, embeddings, overrides and isolates among them,
// zero-width spaces, the byte-order mark), but for the zero-width joiner
// and non-joiner that emoji and some scripts need.
func Hidden(r rune) bool {
	if r == 0x200c || r == 0x200d {
		return false
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Cf)
}

// URI is the offer as a payment URI: "blindbank:pay/" and the unpadded
// base64url of its encoding.
func (o *PaymentOffer) URI() string {
	return PaymentURIPrefix + base64.RawURLEncoding.EncodeToString(o.Encode())
}

// ParsePaymentURI parses a payment URI (its scheme in any case, as QR
// codes' alphanumeric mode upper-cases it). Like DecodePaymentOffer, it
// checks the structure only.
func ParsePaymentURI(s string) (*PaymentOffer, error) {
	if len(s) > MaxPaymentURILen {
		return nil, fmt.Errorf("%w: payment URI of %d bytes, at most %d", ErrMalformed, len(s), MaxPaymentURILen)
	}
	if len(s) < len(PaymentURIPrefix) || !strings.EqualFold(s[:len(PaymentURIPrefix)], PaymentURIPrefix) {
		return nil, fmt.Errorf("%w: a payment URI starts with %q", ErrMalformed, PaymentURIPrefix)
	}
	payload := s[len(PaymentURIPrefix):]
	// The decoder skips line breaks: refuse any byte outside the alphabet.
	for i := 0; i < len(payload); i++ {
		if c := payload[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("%w: payment URI has byte %#x after its prefix", ErrMalformed, c)
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payment URI: %v", ErrMalformed, err)
	}
	return DecodePaymentOffer(b)
}

// CheckMerchantAddr accepts the host:port a payment URI may name: at most
// MaxMerchantAddr bytes; a host of printable ASCII other than '/', '[' and
// ']', with colons only inside brackets (an IPv6 address); and a port from
// 1 to 65535 in canonical decimal.
func CheckMerchantAddr(addr string) error {
	bad := func(why string) error { return fmt.Errorf("%w: merchant address %q: %s", ErrMalformed, addr, why) }
	if len(addr) > MaxMerchantAddr {
		return bad("too long")
	}
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return bad("no port")
	}
	host, port := addr[:i], addr[i+1:]
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	} else if strings.IndexByte(host, ':') >= 0 {
		return bad("an IPv6 host goes in brackets")
	}
	if host == "" {
		return bad("no host")
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c > '~' || c == '/' || c == '[' || c == ']' {
			return bad("the host has a space, a control character, '/', '[', ']' or a byte beyond ASCII")
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return bad("the port is not 1 to 65535")
	}
	return nil
}
