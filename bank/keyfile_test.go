package bank

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// cheapKDF keeps the tests fast; the format records whatever was used.
var cheapKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func testKeys(t *testing.T, master ed25519.PublicKey) *Keys {
	t.Helper()
	k, err := GenerateKeys(KeyConfig{
		Currency: "EUR", MasterPub: master,
		Denoms: []DenomSpec{{Value: ecash.Amount{Currency: "EUR", Value: 100}, Cipher: ecash.CipherCS},
			{Value: ecash.Amount{Currency: "EUR", Value: 200}, Cipher: ecash.CipherCS}},
	}, time.Unix(1_700_000_000, 0), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sameKeys(t *testing.T, a, b *Keys) {
	t.Helper()
	if !bytes.Equal(a.KeySet().Encode(), b.KeySet().Encode()) {
		t.Fatal("key sets differ after a round trip")
	}
	if !bytes.Equal(a.Signing, b.Signing) || !bytes.Equal(a.HPKE.Bytes(), b.HPKE.Bytes()) || !bytes.Equal(a.Master, b.Master) {
		t.Fatal("private keys differ after a round trip")
	}
	for i := range a.Denoms {
		if !bytes.Equal(a.Denoms[i].Private.Bytes(), b.Denoms[i].Private.Bytes()) {
			t.Fatalf("denomination %d differs after a round trip", i)
		}
	}
}

func TestKeyFileEncryptedRoundTrip(t *testing.T) {
	k := testKeys(t, nil)
	path := filepath.Join(t.TempDir(), KeysFile)
	opts := KeyFileOptions{Passphrase: []byte("correct horse battery staple"), KDF: cheapKDF}
	if err := k.SaveWith(path, opts); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	for _, secret := range [][]byte{k.Master.Seed(), k.Signing.Seed(), k.HPKE.Bytes()} {
		if bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(secret))) || bytes.Contains(raw, secret) {
			t.Fatal("a private key appears in the encrypted file")
		}
	}
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	if env["format"] != EnvelopeFormat || env["content"] != KeysFormat || env["aead"] != "chacha20-poly1305" {
		t.Fatalf("envelope header: %v", env)
	}
	kdf := env["kdf"].(map[string]any)
	if kdf["name"] != "argon2id" || kdf["time"] != 1.0 || kdf["memory_kib"] != 64.0 || kdf["threads"] != 1.0 {
		t.Fatalf("kdf header: %v", kdf)
	}

	got, info, err := LoadKeysWith(path, KeyFileOptions{Passphrase: opts.Passphrase})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Encrypted || info.KDF != "argon2id t=1 m=64KiB p=1" {
		t.Errorf("info = %+v", info)
	}
	sameKeys(t, k, got)

	// Every write uses a fresh salt and nonce.
	if err := k.SaveWith(path, opts); err != nil {
		t.Fatal(err)
	}
	raw2, _ := os.ReadFile(path)
	if bytes.Equal(raw, raw2) {
		t.Fatal("two encryptions of the same keys are identical")
	}
}

func TestKeyFileNeedsPassphrase(t *testing.T) {
	k := testKeys(t, nil)
	path := filepath.Join(t.TempDir(), KeysFile)
	if err := k.SaveWith(path, KeyFileOptions{Passphrase: []byte("pw"), KDF: cheapKDF}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path); !errors.Is(err, ErrKeysEncrypted) {
		t.Fatalf("LoadKeys of an encrypted file: %v, want ErrKeysEncrypted", err)
	}
	_, _, err := LoadKeysWith(path, KeyFileOptions{Passphrase: []byte("wrong")})
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v, want ErrWrongPassphrase", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if err := k.SaveWith(path, KeyFileOptions{Passphrase: []byte{}, KDF: cheapKDF}); err == nil {
		t.Fatal("an empty passphrase was accepted")
	}
}

// TestKeyFileTampered changes each part of the envelope: none may load, and
// none may load as a different key set.
func TestKeyFileTampered(t *testing.T) {
	k := testKeys(t, nil)
	dir := t.TempDir()
	path := filepath.Join(dir, KeysFile)
	pass := []byte("pw")
	if err := k.SaveWith(path, KeyFileOptions{Passphrase: pass, KDF: cheapKDF}); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(path)
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 1; return b }
	cases := []struct {
		name   string
		edit   func(e *envelope)
		want   error  // sentinel, or nil to only require failure
		substr string // in the message
	}{
		{"ciphertext", func(e *envelope) { e.Ciphertext = flip(e.Ciphertext) }, ErrKeyFileDamaged, "do not authenticate"},
		{"truncated ciphertext", func(e *envelope) { e.Ciphertext = e.Ciphertext[:len(e.Ciphertext)-1] }, ErrKeyFileDamaged, ""},
		{"nonce", func(e *envelope) { e.Nonce = flip(e.Nonce) }, ErrKeyFileDamaged, ""},
		{"salt", func(e *envelope) { e.KDF.Salt = flip(e.KDF.Salt) }, ErrWrongPassphrase, ""},
		{"kdf time", func(e *envelope) { e.KDF.Time++ }, ErrWrongPassphrase, ""},
		{"check", func(e *envelope) { e.Check = flip(e.Check) }, ErrWrongPassphrase, ""},
		{"huge memory", func(e *envelope) { e.KDF.MemoryKiB = 1 << 30 }, ErrKeyFileDamaged, "out of range"},
		{"kdf name", func(e *envelope) { e.KDF.Name = "scrypt" }, nil, "unsupported encryption"},
		{"aead", func(e *envelope) { e.AEAD = "aes-256-gcm" }, nil, "unsupported encryption"},
		{"content", func(e *envelope) { e.Content = MasterKeyFormat }, nil, "holds"},
		{"short nonce", func(e *envelope) { e.Nonce = e.Nonce[:8] }, ErrKeyFileDamaged, "length"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e envelope
			if err := json.Unmarshal(orig, &e); err != nil {
				t.Fatal(err)
			}
			c.edit(&e)
			b, _ := json.Marshal(&e)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadKeysWith(path, KeyFileOptions{Passphrase: pass})
			if err == nil {
				t.Fatal("a tampered key file loaded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.substr) {
				t.Errorf("error %q does not contain %q", err, c.substr)
			}
		})
	}
	t.Run("unknown field", func(t *testing.T) {
		b := bytes.Replace(orig, []byte(`"aead"`), []byte(`"extra": 1, "aead"`), 1)
		os.WriteFile(path, b, 0o600)
		if _, _, err := LoadKeysWith(path, KeyFileOptions{Passphrase: pass}); !errors.Is(err, ErrKeyFileDamaged) {
			t.Fatalf("error %v, want ErrKeyFileDamaged", err)
		}
	})
	t.Run("not json", func(t *testing.T) {
		os.WriteFile(path, orig[:len(orig)/2], 0o600)
		if _, _, err := LoadKeysWith(path, KeyFileOptions{Passphrase: pass}); err == nil {
			t.Fatal("half a file loaded")
		}
	})
}

// TestKeyFileUnencrypted: a clear file (and one from before the format
// field) loads with or without a passphrase, says so, and converts in place.
func TestKeyFileUnencrypted(t *testing.T) {
	k := testKeys(t, nil)
	path := filepath.Join(t.TempDir(), KeysFile)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	// An early file had no format field.
	raw, _ := os.ReadFile(path)
	var m map[string]any
	json.Unmarshal(raw, &m)
	if m["format"] != KeysFormat {
		t.Fatalf("format = %v", m["format"])
	}
	delete(m, "format")
	raw, _ = json.Marshal(m)
	os.WriteFile(path, raw, 0o600)

	for _, pass := range [][]byte{nil, []byte("pw")} {
		got, info, err := LoadKeysWith(path, KeyFileOptions{Passphrase: pass})
		if err != nil {
			t.Fatal(err)
		}
		if info.Encrypted {
			t.Error("a clear file reported as encrypted")
		}
		sameKeys(t, k, got)
	}
	// Convert: load in clear, save encrypted.
	got, _ := LoadKeys(path)
	if err := got.SaveWith(path, KeyFileOptions{Passphrase: []byte("pw"), KDF: cheapKDF}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path); !errors.Is(err, ErrKeysEncrypted) {
		t.Fatalf("after conversion: %v", err)
	}
	again, info, err := LoadKeysWith(path, KeyFileOptions{Passphrase: []byte("pw")})
	if err != nil || !info.Encrypted {
		t.Fatal(err, info)
	}
	sameKeys(t, k, again)

	// A clear file of another format is refused.
	os.WriteFile(path, []byte(`{"format": "blindbank-keys/v9"}`), 0o600)
	if _, err := LoadKeys(path); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Fatalf("v9 file: %v", err)
	}
}

// TestOfflineMaster runs the ceremony: keys made for an offline master key
// cannot serve until the key set body is signed elsewhere and installed.
func TestOfflineMaster(t *testing.T) {
	dir := t.TempDir()
	mpub, master, _ := ed25519.GenerateKey(rand.Reader)
	masterFile := filepath.Join(dir, "master.key")
	mopts := KeyFileOptions{Passphrase: []byte("offline"), KDF: cheapKDF}
	if err := SaveMasterKey(masterFile, master, mopts); err != nil {
		t.Fatal(err)
	}
	if err := SaveMasterKey(masterFile, master, mopts); err == nil {
		t.Fatal("SaveMasterKey replaced an existing file")
	}
	if _, _, err := LoadMasterKey(masterFile, KeyFileOptions{Passphrase: []byte("nope")}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("master key, wrong passphrase: %v", err)
	}

	cfg := KeyConfig{Currency: "EUR", MasterPub: mpub, Denoms: []DenomSpec{{Value: ecash.Amount{Currency: "EUR", Value: 100}, Cipher: ecash.CipherCS}}}
	opts := KeyFileOptions{Passphrase: []byte("online"), KDF: cheapKDF}
	if _, _, err := OpenKeys(dir, cfg, time.Now(), opts); err == nil {
		t.Fatal("OpenKeys generated keys for an offline master")
	}
	k, err := CreateKeys(dir, cfg, time.Now(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if k.Master != nil || k.Signed() {
		t.Fatal("new keys for an offline master hold a master key or a signature")
	}
	if _, _, err := OpenKeys(dir, KeyConfig{}, time.Now(), opts); !errors.Is(err, ErrKeySetUnsigned) {
		t.Fatalf("serving an unsigned key set: %v", err)
	}
	if _, err := CreateKeys(dir, cfg, time.Now(), opts); err == nil {
		t.Fatal("CreateKeys replaced a key file")
	}

	// The ceremony: export the body, sign it offline, import.
	body := k.KeySetBody()
	m, _, err := LoadMasterKey(masterFile, mopts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := SignKeySetBody(m, body[:len(body)-1]); err == nil {
		t.Fatal("signed a truncated body")
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, _, err := SignKeySetBody(other, body); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("signing a key set naming another master key: %v", err)
	}
	_, signed, err := SignKeySetBody(m, body)
	if err != nil {
		t.Fatal(err)
	}

	// A signature by another master key, or over another body, is refused.
	bad := ecash.NewEncoder("signed-keyset")
	bad.VarBytes(body)
	bad.Fixed(ed25519.Sign(other, body))
	if _, err := k.InstallSignature(bad.Bytes()); err == nil {
		t.Fatal("a signature by another master key was installed")
	}
	k2 := testKeys(t, mpub)
	otherBody := k2.KeySetBody()
	wrong := ecash.NewEncoder("signed-keyset")
	wrong.VarBytes(otherBody)
	wrong.Fixed(ed25519.Sign(m, otherBody))
	if _, err := k.InstallSignature(wrong.Bytes()); !errors.Is(err, ErrKeySetMismatch) {
		t.Fatalf("another key set's signature: %v", err)
	}
	// Another bank's key set, properly signed by its own master key.
	k3 := testKeys(t, nil)
	_, signed3, err := SignKeySetBody(k3.Master, k3.KeySetBody())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.InstallSignature(signed3); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("another bank's key set: %v", err)
	}
	if k.Signed() {
		t.Fatal("a refused signature was kept")
	}

	if _, err := k.InstallSignature(signed); err != nil {
		t.Fatal(err)
	}
	if err := k.SaveWith(filepath.Join(dir, KeysFile), opts); err != nil {
		t.Fatal(err)
	}
	served, info, err := OpenKeys(dir, KeyConfig{Currency: "EUR"}, time.Now(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if served.Master != nil || !info.Encrypted {
		t.Fatal("the served keys hold the master key, or are not encrypted")
	}
	ks, err := ecash.DecodeKeySet(served.KeySet().Encode(), mpub)
	if err != nil {
		t.Fatal(err)
	}
	if ks.BankID() != served.BankID() {
		t.Fatal("bank id")
	}
}

// TestTakeMasterOffline: a bank that made its own master key hands it out
// and goes on serving the same key set.
func TestTakeMasterOffline(t *testing.T) {
	k := testKeys(t, nil)
	before := k.KeySet().Encode()
	seed, err := k.TakeMasterOffline()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.TakeMasterOffline(); !errors.Is(err, ErrMasterOffline) {
		t.Fatalf("second time: %v", err)
	}
	path := filepath.Join(t.TempDir(), KeysFile)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte(`"master_seed"`)) {
		t.Fatal("the key file still holds the master seed")
	}
	got, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.CheckKeySet(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.KeySet().Encode(), before) {
		t.Fatal("the key set changed")
	}
	// The seed signs the same key set again (Ed25519 is deterministic), and
	// installing that signature is accepted.
	_, signed, err := SignKeySetBody(ed25519.NewKeyFromSeed(seed), got.KeySetBody())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signed, before) {
		t.Fatal("the offline signature differs")
	}
	if _, err := got.InstallSignature(signed); err != nil {
		t.Fatal(err)
	}
}

// FuzzOpenEnvelope: an encrypted key file never panics the reader, and one
// that opens under the passphrase was made with it (nothing else
// authenticates).
func FuzzOpenEnvelope(f *testing.F) {
	pass := []byte("pw")
	good, err := seal([]byte(`{"format":"blindbank-keys/v1"}`), KeysFormat, pass, cheapKDF)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"format":"blindbank-encrypted/v1"}`))
	f.Add([]byte(`{"format":"blindbank-encrypted/v1","content":"blindbank-keys/v1","kdf":{"name":"argon2id","version":19,"time":1,"memory_kib":2097152,"threads":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Keep each run cheap: costs the file may ask for are bounded by
		// KDFParams.check, but up to 2 GiB is too much per fuzz input.
		var e envelope
		if json.Unmarshal(b, &e) == nil && (e.KDF.MemoryKiB > 1024 || e.KDF.Time > 2) {
			return
		}
		plain, _, err := open(b, KeysFormat, pass)
		if err == nil && string(plain) != `{"format":"blindbank-keys/v1"}` {
			t.Fatalf("opened to %q", plain)
		}
	})
}

// TestOpenKeys: the first start with a passphrase writes the keys
// encrypted; later starts need it; a clear file loads with or without one
// and says so (bankd warns).
func TestOpenKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := KeyConfig{Currency: "EUR", Denoms: []DenomSpec{{Value: ecash.Amount{Currency: "EUR", Value: 100}, Cipher: ecash.CipherCS}}}
	opts := KeyFileOptions{Passphrase: []byte("pw"), KDF: cheapKDF}
	k, info, err := OpenKeys(dir, cfg, time.Now(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Created || !info.Encrypted {
		t.Fatalf("info %+v", info)
	}
	if _, _, err := OpenKeys(dir, cfg, time.Now(), KeyFileOptions{}); !errors.Is(err, ErrKeysEncrypted) {
		t.Fatalf("without the passphrase: %v", err)
	}
	if _, _, err := OpenKeys(dir, KeyConfig{Currency: "USD"}, time.Now(), opts); err == nil || !strings.Contains(err.Error(), "holds EUR keys, not USD") {
		t.Fatalf("another currency: %v", err)
	}
	again, info, err := OpenKeys(dir, cfg, time.Now(), opts)
	if err != nil || info.Created || !info.Encrypted {
		t.Fatal(err, info)
	}
	sameKeys(t, k, again)
	if got, err := InspectKeyFile(filepath.Join(dir, KeysFile)); err != nil || !got.Encrypted || got.KDF != cheapKDF.String() {
		t.Fatalf("InspectKeyFile: %+v, %v", got, err)
	}

	// A clear file.
	clear := t.TempDir()
	if _, created, err := LoadOrCreateKeys(clear, cfg, time.Now()); err != nil || !created {
		t.Fatal(err)
	}
	if _, info, err := OpenKeys(clear, cfg, time.Now(), opts); err != nil || info.Encrypted {
		t.Fatal(err, info)
	}
	// Keys never replace a lost key file beside a ledger.
	os.Remove(filepath.Join(clear, KeysFile))
	os.MkdirAll(filepath.Join(clear, "ledger"), 0o700)
	os.WriteFile(filepath.Join(clear, "ledger", "000001.log"), []byte("x"), 0o600)
	if _, _, err := OpenKeys(clear, cfg, time.Now(), opts); err == nil || !strings.Contains(err.Error(), "restore the key file") {
		t.Fatalf("keys beside a ledger: %v", err)
	}
}

// TestKeyFileOldScheduleLoads: a key file saved when an overlap had only to
// be shorter than the period (now: under half of it) still loads, so that
// the bank starts and `keys extend --overlap` can correct it; keys are not
// made on it.
func TestKeyFileOldScheduleLoads(t *testing.T) {
	k := testKeys(t, nil)
	day := 24 * time.Hour
	k.Schedule = Schedule{WithdrawPeriod: 60 * day, Overlap: 40 * day, DepositLifetime: 60 * day}
	path := filepath.Join(t.TempDir(), KeysFile)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeys(path)
	if err != nil {
		t.Fatalf("a key file with an old rule's schedule: %v", err)
	}
	if got.Schedule != k.Schedule {
		t.Fatalf("schedule %+v, want %+v", got.Schedule, k.Schedule)
	}
	if _, err := got.Extend(Schedule{}, time.Now().Add(400*day), time.Now(), rand.Reader); err == nil || !strings.Contains(err.Error(), "half") {
		t.Fatalf("extending on it: %v, want refused", err)
	}
}

// A key file other users can read is refused, encrypted or not, with the
// remedy; private again, it loads.
func TestKeyFileOpenToOthers(t *testing.T) {
	k := testKeys(t, nil)
	path := filepath.Join(t.TempDir(), KeysFile)
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o602} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeys(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: LoadKeys = %v, want a refusal", mode, err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path); err != nil {
		t.Fatalf("mode 0600: %v", err)
	}
}
