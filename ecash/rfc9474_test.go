package ecash_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// rfc9474Vector is the RSABSSA-SHA384-PSS-Randomized vector of RFC 9474
// Appendix A, as stored in testdata/ecash/rfc9474.json (hex, no 0x).
type rfc9474Vector struct {
	Name       string `json:"name"`
	P          string `json:"p"`
	Q          string `json:"q"`
	N          string `json:"n"`
	E          string `json:"e"`
	D          string `json:"d"`
	Msg        string `json:"msg"`
	MsgPrefix  string `json:"msg_prefix"`
	InputMsg   string `json:"input_msg"`
	SLen       string `json:"sLen"`
	Salt       string `json:"salt"`
	Inv        string `json:"inv"`
	BlindedMsg string `json:"blinded_msg"`
	BlindSig   string `json:"blind_sig"`
	Sig        string `json:"sig"`
}

func loadRFC9474(tb testing.TB) *rfc9474Vector {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "ecash", "rfc9474.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var v rfc9474Vector
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatal(err)
	}
	if v.Name != "RSABSSA-SHA384-PSS-Randomized" {
		tb.Fatalf("vector %q", v.Name)
	}
	return &v
}

func hexInt(tb testing.TB, s string) *big.Int {
	tb.Helper()
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		tb.Fatalf("bad hex integer %q", s)
	}
	return n
}

// rsaKey builds the vector's RSA private key.
func (v *rfc9474Vector) rsaKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	sk := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: hexInt(tb, v.N), E: int(hexInt(tb, v.E).Int64())},
		D:         hexInt(tb, v.D),
		Primes:    []*big.Int{hexInt(tb, v.P), hexInt(tb, v.Q)},
	}
	sk.Precompute()
	if err := sk.Validate(); err != nil {
		tb.Fatal(err)
	}
	return sk
}

// denomKeys returns the vector's key as ecash denomination keys, built
// through the canonical encodings (PKIX and PKCS#8 DER).
func (v *rfc9474Vector) denomKeys(tb testing.TB) (ecash.DenomPublicKey, ecash.DenomPrivateKey) {
	tb.Helper()
	sk := v.rsaKey(tb)
	der, err := x509.MarshalPKIXPublicKey(&sk.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	pk, err := ecash.RSAScheme{}.ParsePublicKey(der)
	if err != nil {
		tb.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		tb.Fatal(err)
	}
	dsk, err := ecash.RSAScheme{}.ParsePrivateKey(p8)
	if err != nil {
		tb.Fatal(err)
	}
	return pk, dsk
}

func TestRFC9474Vector(t *testing.T) {
	t.Parallel()
	v := loadRFC9474(t)
	pk, sk := v.denomKeys(t)
	msg := mustHex(t, v.Msg)
	prefix := mustHex(t, v.MsgPrefix)
	if !bytes.Equal(append(bytes.Clone(prefix), msg...), mustHex(t, v.InputMsg)) || len(prefix) != 32 {
		t.Fatal("vector: input_msg != msg_prefix || msg")
	}
	if v.SLen != "30" || len(mustHex(t, v.Salt)) != 48 {
		t.Fatal("vector: salt length is not 48")
	}

	// Our coin signature layout is randomizer || RSA signature.
	coinSig := append(bytes.Clone(prefix), mustHex(t, v.Sig)...)
	t.Run("verify", func(t *testing.T) {
		if err := pk.Verify(msg, coinSig); err != nil {
			t.Fatal(err)
		}
		if err := sk.Public().Verify(msg, coinSig); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 31, 32, len(coinSig) - 1} {
			if err := pk.Verify(msg, flip(coinSig, i)); !errors.Is(err, ecash.ErrBadSignature) {
				t.Errorf("tampered byte %d: %v", i, err)
			}
		}
		if err := pk.Verify(flip(msg, 0), coinSig); !errors.Is(err, ecash.ErrBadSignature) {
			t.Errorf("tampered message: %v", err)
		}
	})

	t.Run("blind sign", func(t *testing.T) {
		got, err := sk.BlindSign(mustHex(t, v.BlindedMsg))
		if err != nil {
			t.Fatal(err)
		}
		if want := mustHex(t, v.BlindSig); !bytes.Equal(got, want) {
			t.Fatalf("blind_sig\n got %x\nwant %x", got, want)
		}
	})

	t.Run("blind and unblind", func(t *testing.T) {
		// Blind draws, in order, the 32-byte message randomizer, the 48-byte
		// PSS salt and the blinding factor r (a k-byte big-endian integer
		// below N). Feeding the vector's values reproduces its blinded_msg.
		n := hexInt(t, v.N)
		r := new(big.Int).ModInverse(hexInt(t, v.Inv), n)
		rnd := bytes.NewReader(append(append(bytes.Clone(prefix), mustHex(t, v.Salt)...), r.FillBytes(make([]byte, 512))...))
		blinded, st, err := pk.(interface {
			BlindReader(io.Reader, []byte) ([]byte, ecash.BlindState, error)
		}).BlindReader(rnd, msg)
		if err != nil {
			t.Fatal(err)
		}
		if want := mustHex(t, v.BlindedMsg); !bytes.Equal(blinded, want) {
			t.Fatalf("blinded_msg\n got %x\nwant %x", blinded, want)
		}
		if rnd.Len() != 0 {
			t.Fatalf("%d random bytes left unread", rnd.Len())
		}
		sig, err := st.Unblind(mustHex(t, v.BlindSig))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig, coinSig) {
			t.Fatalf("coin signature\n got %x\nwant %x", sig, coinSig)
		}
	})
}
