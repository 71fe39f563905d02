package config

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
)

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"unknown field", `{"data": "/x", "listen_addr": "1"}`, `cfg.json: unknown field "listen_addr" (known fields: data, listen, admin_listen,`},
		{"wrong type", "{\n  \"rsa_bits\": \"2048\"\n}", `cfg.json: line 2: field "rsa_bits": want a whole number, not string`},
		{"wrong type bool", `{"plaintext": "yes"}`, `field "plaintext": want true or false, not string`},
		{"wrong type list", `{"denominations": "EUR:1.00"}`, `field "denominations": want a list of strings, not string`},
		{"syntax", "{\n  \"data\": \"/x\",\n}", `cfg.json: line 3: invalid character '}' looking for beginning of object key string`},
		{"trailing", `{"data": "/x"} {"data": "/y"}`, `cfg.json: line 1: data after the closing brace`},
		{"not an object", `["data"]`, `want a JSON object, not array`},
		{"empty", ``, `cfg.json: empty file`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("cfg.json", []byte(c.in))
			if err == nil {
				t.Fatal("parsed")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
		})
	}
}

// TestZeroValues: an empty file is valid and means the defaults, and every
// default is the safe choice.
func TestZeroValues(t *testing.T) {
	f, err := Parse("cfg.json", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Resolve(Input{File: f, FilePath: "cfg.json"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Data != "" || b.Listen != DefaultListen || b.AdminListen != DefaultAdminListen || b.Plaintext ||
		b.Currency != "EUR" || b.RSABits != 2048 || b.Cipher != ecash.CipherRSA || b.Denominations != nil ||
		b.MasterPublicKey != nil || b.KeyPassphraseFile != "" || b.LogFormat != "text" || b.LogLevel != "info" {
		t.Fatalf("zero file resolved to %+v", b)
	}
	for _, field := range Fields() {
		if b.Given(field) {
			t.Errorf("%s reported as given", field)
		}
	}
	// The effective configuration is itself a valid file meaning the same.
	eff := b.Effective()
	raw, _ := json.Marshal(eff)
	f2, err := Parse("eff.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Resolve(Input{File: f2, FilePath: "eff.json"})
	if err != nil {
		t.Fatal(err)
	}
	if got := b2.Effective(); !equalJSON(got, eff) {
		t.Fatalf("effective config does not round-trip:\n%+v\n%+v", got, eff)
	}
	if len(eff.Denominations) != 14 || eff.Denominations[0] != "EUR:0.01/rsa" {
		t.Errorf("default denominations %v", eff.Denominations)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// resolve parses file (in dir/bankd.json), sets env and parses args as
// bankd serve's flags.
func resolve(t *testing.T, file string, env map[string]string, args ...string) (*Bank, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bankd.json")
	var f *File
	if file != "" {
		var err error
		if f, err = Parse(path, []byte(file)); err != nil {
			t.Fatal(err)
		}
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var fl Flags
	fl.RegisterServe(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return Resolve(Input{
		File: f, FilePath: path,
		Getenv: func(k string) string { return env[k] },
		Flags:  &fl, IsSet: func(n string) bool { return set[n] },
	})
}

func TestPrecedence(t *testing.T) {
	file := `{"data": "bank", "listen": "127.0.0.1:1001", "admin_listen": "127.0.0.1:2001",
	          "key_passphrase_file": "/etc/pass", "currency": "USD", "log_level": "warn"}`
	env := map[string]string{EnvListen: "127.0.0.1:1002", EnvKeyPassphraseFile: "/run/pass", EnvAdminListen: ""}

	b, err := resolve(t, file, env, "--listen", "127.0.0.1:1003", "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	check := func(field, got, want string, kind SourceKind) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
		if k := b.Source(field).Kind; k != kind {
			t.Errorf("%s from %v, want kind %d", field, b.Source(field), kind)
		}
	}
	check("listen", b.Listen, "127.0.0.1:1003", FromFlag)                   // flag > env > file
	check("key_passphrase_file", b.KeyPassphraseFile, "/run/pass", FromEnv) // env > file
	check("admin_listen", b.AdminListen, "127.0.0.1:2001", FromFile)        // empty env is unset
	check("currency", b.Currency, "USD", FromFile)
	check("log_level", b.LogLevel, "warn", FromFile)
	check("log_format", b.LogFormat, "json", FromFlag)
	check("cipher", b.Cipher.String(), "rsa", FromDefault)
	// A relative path in the file is relative to the file.
	if b.Data != filepath.Join(filepath.Dir(b.Source("data").Name), "bank") || !filepath.IsAbs(b.Data) {
		t.Errorf("data = %q (file %s)", b.Data, b.Source("data").Name)
	}
	if s := b.Source("listen").String(); s != "flag --listen" {
		t.Errorf("source %q", s)
	}

	// A flag given with the default value still wins over the file.
	b, err = resolve(t, `{"listen": "127.0.0.1:1001", "plaintext": true}`, nil, "--listen", DefaultListen, "--plaintext=false")
	if err != nil {
		t.Fatal(err)
	}
	if b.Listen != DefaultListen || b.Plaintext {
		t.Errorf("listen %q plaintext %v", b.Listen, b.Plaintext)
	}
	// Env data is relative to the working directory.
	wd, _ := os.Getwd()
	b, err = resolve(t, `{"data": "/srv/bank"}`, map[string]string{EnvData: "here"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Data != filepath.Join(wd, "here") {
		t.Errorf("data = %q", b.Data)
	}
	// Key generation settings.
	b, err = resolve(t, `{"currency": "CHF", "cipher": "cs", "rsa_bits": 3072, "denominations": ["CHF:0.50", "CHF:1.00/rsa"],
		"master_public_key": "`+strings.Repeat("ab", 32)+`"}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc := b.KeyConfig()
	if kc.Currency != "CHF" || kc.RSABits != 3072 || len(kc.Denoms) != 2 || kc.Denoms[0].Cipher != ecash.CipherCS ||
		kc.Denoms[1].Cipher != ecash.CipherRSA || len(kc.MasterPub) != 32 {
		t.Errorf("key config %+v", kc)
	}
}

// TestTLSSettings: the certificate and client CA paths resolve like the
// other paths, client_auth defaults by whether a client CA is given, an
// admin listener off loopback is allowed with admin client certificates,
// and the result maps onto the node's TLS options.
func TestTLSSettings(t *testing.T) {
	b, err := resolve(t, `{}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.ClientAuth != ClientAuthNone || b.TLS() != (node.TLSOptions{}) {
		t.Fatalf("defaults: %q %+v", b.ClientAuth, b.TLS())
	}
	b, err = resolve(t, `{"tls_cert_file": "pki/bank.crt", "tls_key_file": "/etc/pki/bank.key", "client_ca_file": "merchants.pem",
		"admin_client_ca_file": "admins.pem", "admin_listen": "10.0.0.1:7444"}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(b.Source("tls_cert_file").Name)
	want := node.TLSOptions{
		CertFile: filepath.Join(dir, "pki/bank.crt"), KeyFile: "/etc/pki/bank.key", ClientCAFile: filepath.Join(dir, "merchants.pem"),
		ClientAuth: transport.ClientCertMethods, AdminClientCAFile: filepath.Join(dir, "admins.pem"),
	}
	if b.TLS() != want || b.ClientAuth != ClientAuthMerchants || b.Given("client_auth") {
		t.Fatalf("resolved %q %+v\nwant %+v", b.ClientAuth, b.TLS(), want)
	}
	b, err = resolve(t, `{"client_ca_file": "ca.pem", "client_auth": "merchants"}`, nil, "--client-auth", "all", "--client-ca", "other.pem")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if b.TLS().ClientAuth != transport.ClientCertAll || b.ClientCAFile != filepath.Join(wd, "other.pem") || b.Source("client_auth").Name != "--client-auth" {
		t.Fatalf("flags over the file: %+v", b.TLS())
	}
	// The effective configuration round-trips with the TLS fields.
	if b2 := reresolve(t, b); b2.TLS() != b.TLS() {
		t.Fatalf("the effective configuration resolved to %+v, want the same", b2.TLS())
	}
}

func TestValidation(t *testing.T) {
	cases := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string // the whole message, FILE standing for the file's path
		// field that must be named
		field string
	}{
		{"rsa bits from file", `{"rsa_bits": 1024}`, nil, nil, `FILE: bad rsa_bits 1024: want 2048 or 3072`, "rsa_bits"},
		{"rsa bits from flag", `{"rsa_bits": 3072}`, nil, []string{"--rsa-bits", "1024"}, `bad --rsa-bits 1024: want 2048 or 3072`, "rsa_bits"},
		{"currency", `{"currency": "eur"}`, nil, nil, `FILE: bad currency "eur": want 1 to 11 upper-case letters, e.g. EUR`, "currency"},
		{"cipher", `{"cipher": "ecdsa"}`, nil, nil, `FILE: bad cipher "ecdsa": want rsa or cs`, "cipher"},
		{"listen from env", ``, map[string]string{EnvListen: "7443"}, nil, `bad $BLINDBANK_LISTEN "7443": want HOST:PORT, e.g. 127.0.0.1:7443`, "listen"},
		{"listen port out of range", ``, nil, []string{"--listen", "127.0.0.1:99999"}, `bad --listen "127.0.0.1:99999": the port must be a number from 0 to 65535 (0 picks a free port)`, "listen"},
		{"admin port not a number", `{"admin_listen": "127.0.0.1:x"}`, nil, nil, `FILE: bad admin_listen "127.0.0.1:x": the port must be a number from 0 to 65535 (0 picks a free port)`, "admin_listen"},
		{"admin not loopback", `{"admin_listen": "0.0.0.0:7444"}`, nil, nil, `FILE: bad admin_listen 0.0.0.0:7444: the admin service listens on loopback only (127.0.0.1, ::1, localhost), unless it requires client certificates (admin_client_ca_file)`, "admin_listen"},
		{"admin from env", ``, map[string]string{EnvAdminListen: "10.0.0.1:7444"}, nil, `bad $BLINDBANK_ADMIN_LISTEN 10.0.0.1:7444: the admin service listens on loopback only (127.0.0.1, ::1, localhost), unless it requires client certificates (admin_client_ca_file)`, "admin_listen"},
		{"plaintext off loopback", `{"listen": "0.0.0.0:7443", "plaintext": true}`, nil, nil, `FILE: plaintext is allowed only on a loopback listen address, not 0.0.0.0:7443`, "plaintext"},
		{"plaintext flag, listen env", ``, map[string]string{EnvListen: "0.0.0.0:7443"}, []string{"--plaintext"}, `--plaintext is allowed only on a loopback $BLINDBANK_LISTEN address, not 0.0.0.0:7443`, "plaintext"},
		{"denomination currency", `{"denominations": ["EUR:1.00", "USD:2.00"]}`, nil, nil, `FILE: denominations[1]: USD:2.00 is not in EUR (the currency)`, "denominations"},
		{"denomination flag", ``, nil, []string{"--denominations", "EUR:1.00,USD:2.00"}, `--denominations: USD:2.00 is not in EUR (the currency)`, "denominations"},
		{"denomination amount", `{"denominations": ["EUR:1.234"]}`, nil, nil, `FILE: denominations[0]: ecash: invalid amount: "EUR:1.234": want CUR:12.50`, "denominations"},
		{"denomination cipher", `{"denominations": ["EUR:1.00/dsa"]}`, nil, nil, `FILE: denominations[0]: ecash: unknown cipher: "dsa" (want rsa or cs)`, "denominations"},
		{"denomination twice", `{"denominations": ["EUR:1.00", "EUR:1.00/cs"]}`, nil, nil, `FILE: denominations[1]: EUR:1.00 appears twice`, "denominations"},
		{"two in one item", `{"denominations": ["EUR:1.00,EUR:2.00"]}`, nil, nil, `FILE: denominations[0]: "EUR:1.00,EUR:2.00": want one value per list item`, "denominations"},
		{"master key", `{"master_public_key": "abcd"}`, nil, nil, `FILE: bad master_public_key "abcd": want an Ed25519 public key as 64 hex digits`, "master_public_key"},
		{"log format", `{"log_format": "xml"}`, nil, nil, `FILE: bad log_format "xml": want text or json`, "log_format"},
		{"log level", `{"log_level": "loud"}`, nil, nil, `FILE: bad log_level "loud": want debug, info, warn or error`, "log_level"},
		{"cert without key", `{"tls_cert_file": "bank.crt"}`, nil, nil, `FILE: tls_cert_file and tls_key_file go together: give both or neither`, "tls_cert_file"},
		{"key flag without cert", ``, nil, []string{"--tls-key", "k.pem"}, `tls_cert_file and --tls-key go together: give both or neither`, "tls_key_file"},
		{"client auth", `{"client_auth": "some", "client_ca_file": "ca.pem"}`, nil, nil, `FILE: bad client_auth "some": want none, merchants or all`, "client_auth"},
		{"client auth without CA", ``, nil, []string{"--client-auth", "all"}, `--client-auth all needs client_ca_file: the CA that signs the client certificates`, "client_auth"},
		{"client CA in plaintext", `{"client_ca_file": "ca.pem", "plaintext": true}`, nil, nil, `FILE: client_ca_file needs TLS on the public listener, and plaintext turns it off`, "client_ca_file"},
		{"signer scheme", `{"signer": "/run/bankd-signer.sock"}`, nil, nil, `FILE: bad signer "/run/bankd-signer.sock": want unix:///PATH, the absolute path of the signer's socket`, "signer"},
		{"signer relative", ``, nil, []string{"--signer", "unix:signer.sock"}, `bad --signer "unix:signer.sock": want unix:///PATH, the absolute path of the signer's socket`, "signer"},
		{"rate limit zero", `{"rate_limit_per_peer": "0"}`, nil, nil, `FILE: bad rate_limit_per_peer "0": want calls a second, 1 to 1000000, or off`, "rate_limit_per_peer"},
		{"rate limit word", ``, nil, []string{"--rate-limit-per-account", "none"}, `bad --rate-limit-per-account "none": want calls a second, 1 to 1000000, or off`, "rate_limit_per_account"},
		{"rate limit NaN", `{"rate_limit_per_account": "NaN"}`, nil, nil, `FILE: bad rate_limit_per_account "NaN": want calls a second, 1 to 1000000, or off`, "rate_limit_per_account"},
		{"rate limit hex", `{"rate_limit_per_peer": "0x1p4"}`, nil, nil, `FILE: bad rate_limit_per_peer "0x1p4": want calls a second, 1 to 1000000, or off`, "rate_limit_per_peer"},
		{"rate limit underscores", ``, nil, []string{"--rate-limit-per-peer", "1_000"}, `bad --rate-limit-per-peer "1_000": want calls a second, 1 to 1000000, or off`, "rate_limit_per_peer"},
		{"rate limit huge", `{"rate_limit_per_peer": "1000001"}`, nil, nil, `FILE: bad rate_limit_per_peer "1000001": want calls a second, 1 to 1000000, or off`, "rate_limit_per_peer"},
		{"calls per peer fraction", `{"calls_per_peer": "1.5"}`, nil, nil, `FILE: bad calls_per_peer "1.5": want a whole number, 1 to 1000000, or off`, "calls_per_peer"},
		{"connections per peer zero", ``, nil, []string{"--connections-per-peer", "0"}, `bad --connections-per-peer "0": want a whole number, 1 to 1000000, or off`, "connections_per_peer"},
		{"revocation poll short", `{"revocation_poll": "10ms"}`, nil, nil, `FILE: bad revocation_poll "10ms": want a duration from 100ms to 1h0m0s, e.g. 2s`, "revocation_poll"},
		{"revocation poll unit", ``, nil, []string{"--revocation-poll", "2"}, `bad --revocation-poll "2": want a duration from 100ms to 1h0m0s, e.g. 2s`, "revocation_poll"},
		{"revocation poll long", `{"revocation_poll": "2h"}`, nil, nil, `FILE: bad revocation_poll "2h": want a duration from 100ms to 1h0m0s, e.g. 2s`, "revocation_poll"},
		{"cache size unit", `{"cache_size": "2GB/s"}`, nil, nil, `FILE: bad cache_size "2GB/s": unknown unit "GB/s": want B, KiB, MiB, GiB, TiB, KB, MB, GB or TB`, "cache_size"},
		{"cache size number", ``, nil, []string{"--cache-size", "-1"}, `bad --cache-size "-1": want a whole number of bytes with an optional unit, e.g. 512MiB or 2GiB`, "cache_size"},
		{"cache size small", `{"cache_size": "1MiB"}`, nil, nil, `FILE: bad cache_size "1MiB": want 96MiB to 1TiB`, "cache_size"},
		{"cache size overflow", `{"cache_size": "9999999999TiB"}`, nil, nil, `FILE: bad cache_size "9999999999TiB": number out of range`, "cache_size"},
		{"cache size with postgres", `{"cache_size": "1GiB", "store": "postgres://db/bank"}`, nil, nil, `FILE: cache_size sizes the embedded Pebble store's cache, and store is PostgreSQL (size its shared_buffers instead)`, "cache_size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolve(t, c.file, c.env, c.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("%v is not a *FieldError", err)
			}
			if fe.Field != c.field {
				t.Errorf("field %q, want %q", fe.Field, c.field)
			}
			msg := err.Error()
			if fe.Source.Kind == FromFile {
				msg = strings.Replace(msg, fe.Source.Name, "FILE", 1)
			}
			if msg != c.want {
				t.Errorf("error\n %s\nwant\n %s", msg, c.want)
			}
		})
	}
}

// TestSigner: the signer socket comes from the file or --signer, the flag
// winning, and round-trips through the effective configuration.
func TestSigner(t *testing.T) {
	b, err := resolve(t, `{}`, nil)
	if err != nil || b.Signer != "" || b.Given("signer") {
		t.Fatalf("default signer %q, %v", b.Signer, err)
	}
	b, err = resolve(t, `{"signer": "unix:///run/a.sock"}`, nil, "--signer", "unix:///run/b.sock")
	if err != nil || b.Signer != "unix:///run/b.sock" || b.Source("signer").Name != "--signer" {
		t.Fatalf("signer %q from %v, %v", b.Signer, b.Source("signer"), err)
	}
	if b2 := reresolve(t, b); b2.Signer != b.Signer {
		t.Fatalf("the effective configuration resolved to %q, want the same", b2.Signer)
	}
}

func TestReadPassphrase(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	for in, want := range map[string]string{"pw\n": "pw", "pw\r\n": "pw", "pw": "pw", "pw\n\n": "pw\n", " pw ": " pw "} {
		got, err := ReadPassphrase(write("p", in, 0o600))
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ReadPassphrase(write("empty", "\n", 0o600)); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty file: %v", err)
	}
	// Readable by the group or by anyone: refused, as the key files are.
	for _, mode := range []os.FileMode{0o640, 0o604} {
		if pass, err := ReadPassphrase(write("open", "pw", mode)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("a passphrase file of mode %04o: %q, %v; want refused", mode, pass, err)
		}
	}
	// A systemd credential the service reads through an ACL shows 0440: in
	// $CREDENTIALS_DIRECTORY (private to the service) it is read, elsewhere
	// refused, and one others may read is refused there too.
	creds := filepath.Join(dir, "credentials")
	if err := os.Mkdir(creds, 0o500|0o200); err != nil {
		t.Fatal(err)
	}
	cred := filepath.Join(creds, "passphrase")
	if err := os.WriteFile(cred, []byte("pw\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	os.Chmod(cred, 0o440)
	if _, err := ReadPassphrase(cred); err == nil {
		t.Error("a 0440 passphrase file read with no credentials directory set")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if pass, err := ReadPassphrase(cred); err != nil || string(pass) != "pw" {
		t.Errorf("a systemd credential of mode 0440: %q, %v", pass, err)
	}
	if _, err := ReadPassphrase(write("group", "pw", 0o440)); err == nil {
		t.Error("a 0440 passphrase file outside the credentials directory read")
	}
	// A link in the directory to a 0440 file elsewhere, and a directory
	// that is the root or relative, do not make a credential.
	outside := write("outside", "pw", 0o440)
	link := filepath.Join(creds, "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPassphrase(link); err == nil {
		t.Error("a link in the credentials directory to a 0440 file outside it read")
	}
	for _, d := range []string{"/", "."} {
		t.Setenv("CREDENTIALS_DIRECTORY", d)
		if _, err := ReadPassphrase(outside); err == nil {
			t.Errorf("CREDENTIALS_DIRECTORY=%s made a 0440 file a credential", d)
		}
	}
	// Nor does a directory others may enter (/etc/bankd, say).
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o755)
	inShared := filepath.Join(shared, "passphrase")
	if err := os.WriteFile(inShared, []byte("pw"), 0o440); err != nil {
		t.Fatal(err)
	}
	os.Chmod(inShared, 0o440)
	t.Setenv("CREDENTIALS_DIRECTORY", shared)
	if _, err := ReadPassphrase(inShared); err == nil {
		t.Error("a 0440 file in a directory others may enter, named CREDENTIALS_DIRECTORY, read")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	os.Chmod(cred, 0o444)
	if _, err := ReadPassphrase(cred); err == nil {
		t.Error("a credential others may read was read")
	}
	if _, err := ReadPassphrase(dir); err == nil {
		t.Error("a directory was read as a passphrase")
	}
	if _, err := ReadPassphrase(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzParse: a config file never panics the parser or the resolver, and a
// file that parses and resolves prints as one that resolves the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"data": "x", "listen": "127.0.0.1:0", "plaintext": true, "denominations": ["EUR:1.00/cs"]}`))
	f.Add([]byte(`{"rsa_bits": 3072, "cipher": "cs", "currency": "CHF", "master_public_key": "` + strings.Repeat("0", 64) + `"}`))
	f.Add([]byte("{\n\"rsa_bits\": \"x\"\n}"))
	f.Add([]byte(`{"cache_size": "8388609"}`))
	f.Add([]byte(`{"cache_size": "1 GB", "store": ""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz.json", b)
		if err != nil {
			return
		}
		cfg, err := Resolve(Input{File: file, FilePath: "/etc/fuzz.json"})
		if err != nil {
			return
		}
		raw, _ := json.Marshal(cfg.Effective())
		again, err := Parse("eff.json", raw)
		if err != nil {
			t.Fatalf("effective config does not parse: %v\n%s", err, raw)
		}
		cfg2, err := Resolve(Input{File: again, FilePath: "/etc/eff.json"})
		if err != nil {
			t.Fatalf("effective config does not resolve: %v\n%s", err, raw)
		}
		if !equalJSON(cfg.Effective(), cfg2.Effective()) {
			t.Fatalf("effective config changed:\n%s", raw)
		}
	})
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"1000000", 1000000}, {"512MiB", 512 << 20}, {"2 GiB", 2 << 30}, {"2gib", 2 << 30},
		{"64KB", 64000}, {"1TB", 1e12}, {"1tib", 1 << 40}, {" 8MiB ", 8 << 20}, {"7b", 7},
	} {
		if got, err := ParseSize(c.in); err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "MiB", "1.5GiB", "-1", "1 2", "1MiBs", "99999999999999999999", "9999999TiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
	for _, n := range []int64{1, 1000, 1 << 10, 3 << 20, 128 << 20, 5 << 30, 1 << 40, 1<<20 + 1} {
		if got, err := ParseSize(FormatSize(n)); err != nil || got != n {
			t.Errorf("FormatSize(%d) = %q, read back as %d, %v", n, FormatSize(n), got, err)
		}
	}
}

// TestCacheSize: the Pebble cache comes from the file or --cache-size, 0
// (the store's default) when not given, and the effective configuration
// states the size in use, except over PostgreSQL, where there is none.
func TestCacheSize(t *testing.T) {
	b, err := resolve(t, `{}`, nil)
	if err != nil || b.CacheSize != 0 || b.Given("cache_size") || b.Effective().CacheSize != "192MiB" {
		t.Fatalf("default: %d (effective %q), %v", b.CacheSize, b.Effective().CacheSize, err)
	}
	b, err = resolve(t, `{"cache_size": "1GiB"}`, nil, "--cache-size", "2GiB")
	if err != nil || b.CacheSize != 2<<30 || b.Source("cache_size").Name != "--cache-size" {
		t.Fatalf("cache size %d from %v, %v", b.CacheSize, b.Source("cache_size"), err)
	}
	if b2 := reresolve(t, b); b2.CacheSize != b.CacheSize {
		t.Fatalf("the effective configuration resolved to %d, want the same", b2.CacheSize)
	}
	b, err = resolve(t, `{"store": "postgres://db/bank"}`, nil)
	if err != nil || b.Effective().CacheSize != "" {
		t.Fatalf("postgres: effective cache size %q, %v", b.Effective().CacheSize, err)
	}
}

// TestRateLimits: the limits come from the file or the flags, "off" turns
// one off (a negative limit for the node), unset leaves the node's default
// (zero), and the effective configuration states the numbers in force.
func TestRateLimits(t *testing.T) {
	b, err := resolve(t, `{}`, nil)
	if err != nil || b.RateLimits != (node.RateLimits{}) {
		t.Fatalf("default: %+v, %v", b.RateLimits, err)
	}
	if e := b.Effective(); e.RateLimitPerPeer != "500" || e.RateLimitPerAccount != "100" || e.RateLimitRefusalsPerAccount != "1" || e.CallsPerPeer != "256" || e.ConnectionsPerPeer != "256" {
		t.Fatalf("effective defaults %q %q %q %q %q", e.RateLimitPerPeer, e.RateLimitPerAccount, e.RateLimitRefusalsPerAccount, e.CallsPerPeer, e.ConnectionsPerPeer)
	}
	b, err = resolve(t, `{"rate_limit_per_peer": "2000", "rate_limit_per_account": "50", "rate_limit_refusals_per_account": "off", "calls_per_peer": "1024", "connections_per_peer": "off"}`, nil, "--rate-limit-per-peer", "off", "--calls-per-peer", "64", "--rate-limit-refusals-per-account", "5")
	if err != nil || b.RateLimits != (node.RateLimits{PerPeer: -1, PerAccount: 50, RefusalsPerAccount: 5, CallsPerPeer: 64, ConnsPerPeer: -1}) || b.Source("rate_limit_per_peer").Name != "--rate-limit-per-peer" {
		t.Fatalf("%+v from %v, %v", b.RateLimits, b.Source("rate_limit_per_peer"), err)
	}
	if b2 := reresolve(t, b); b2.RateLimits != b.RateLimits {
		t.Fatalf("the effective configuration resolved to %+v, want the same", b2.RateLimits)
	}
}

// TestRevocationPoll: the poll comes from the file or the flag, unset
// leaves the node's default (zero), and the effective configuration states
// the interval in force, which resolves back to itself.
func TestRevocationPoll(t *testing.T) {
	b, err := resolve(t, `{}`, nil)
	if err != nil || b.RevocationPoll != 0 || b.Effective().RevocationPoll != node.DefaultRevocationPoll.String() {
		t.Fatalf("default: %v (effective %q), %v", b.RevocationPoll, b.Effective().RevocationPoll, err)
	}
	b, err = resolve(t, `{"revocation_poll": "30s"}`, nil)
	if err != nil || b.RevocationPoll != 30*time.Second || b.Source("revocation_poll").Kind != FromFile {
		t.Fatalf("file: %v from %v, %v", b.RevocationPoll, b.Source("revocation_poll"), err)
	}
	b, err = resolve(t, `{"revocation_poll": "30s"}`, nil, "--revocation-poll", "500ms")
	if err != nil || b.RevocationPoll != 500*time.Millisecond || b.Source("revocation_poll").Name != "--revocation-poll" {
		t.Fatalf("flag: %v from %v, %v", b.RevocationPoll, b.Source("revocation_poll"), err)
	}
	if b2 := reresolve(t, b); b2.RevocationPoll != b.RevocationPoll {
		t.Fatalf("the effective configuration resolved to %v, want the same", b2.RevocationPoll)
	}
}

// reresolve resolves b's effective configuration as a file: it must give
// b back.
func reresolve(t *testing.T, b *Bank) *Bank {
	t.Helper()
	raw, _ := json.Marshal(b.Effective())
	f, err := Parse("eff.json", raw)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Resolve(Input{File: f, FilePath: "eff.json"})
	if err != nil {
		t.Fatalf("effective %s: %v", raw, err)
	}
	return b2
}

// docs/OPERATIONS.md's configuration table has a row for every field of
// the file, and its environment column names every variable.
func TestOperationsDocTable(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 6 || !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, f := range strings.Split(cells[1], ",") {
			rows[strings.Trim(strings.TrimSpace(f), "`")] = line
		}
	}
	for _, f := range fieldNames {
		row, ok := rows[f]
		if !ok {
			t.Errorf("docs/OPERATIONS.md's config table has no row for %q", f)
			continue
		}
		if s, ok := settings[f]; ok && s.env != "" && !strings.Contains(row, s.env) {
			t.Errorf("the row for %q does not name %s", f, s.env)
		}
	}
}
