// Package config is bankd's configuration: a JSON file in which every field
// has a safe zero value, environment variables for the common settings, and
// command-line flags. A setting is taken from, in order of precedence:
//
//  1. a flag given on the command line (--listen),
//  2. an environment variable that is set and not empty (BLINDBANK_LISTEN;
//     only data, listen, admin_listen and key_passphrase_file have one),
//  3. the config file (--config FILE), field "listen",
//  4. the built-in default.
//
// The file is strict: unknown fields, values of the wrong type and trailing
// data are errors, and every error names the field and where its value came
// from. Relative paths in the file are relative to the file's directory.
// Secrets never appear in the file, the environment or the command line:
// key_passphrase_file names a file that holds the key passphrase.
package config

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/cmd/internal/cli"
	"github.com/blindbank/blindbank/cmd/internal/node"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
)

// File is bankd's configuration file as written. Every field may be left
// out: its zero value means the default in the comment. Fields marked "new
// bank" only matter when the bank's keys are generated (first start, or
// "bankd keys generate"); later starts load the keys and ignore them, except
// that a currency given explicitly must match the keys'.
type File struct {
	// Data is the data directory: keys, ledger, TLS certificate, admin
	// token. No default: required, here or by --data or BLINDBANK_DATA.
	Data string `json:"data"`
	// Listen is the public gRPC address (default 127.0.0.1:7443).
	Listen string `json:"listen"`
	// AdminListen is the admin address (default 127.0.0.1:7444); loopback
	// only, unless AdminClientCAFile is set.
	AdminListen string `json:"admin_listen"`
	// Plaintext serves the public listener without TLS; refused unless
	// Listen is loopback (default false: TLS).
	Plaintext bool `json:"plaintext"`
	// Currency of a new bank (default EUR).
	Currency string `json:"currency"`
	// RSABits is the RSA key size of a new bank's RSA denominations: 2048
	// or 3072 (default 2048).
	RSABits int `json:"rsa_bits"`
	// Cipher of a new bank's denominations that name none: "rsa" or "cs"
	// (default rsa).
	Cipher string `json:"cipher"`
	// Denominations of a new bank, each "CUR:UNITS.CENTS" with an optional
	// "/rsa" or "/cs" (default: powers of two from 0.01 to 81.92).
	Denominations []string `json:"denominations"`
	// MasterPublicKey, hex, makes a new bank's keys for a master key kept
	// offline ("bankd keys new-master"); default: the bank makes its own.
	MasterPublicKey string `json:"master_public_key"`
	// KeyPassphraseFile names a file holding the passphrase that encrypts
	// keys.json (default none: keys.json in clear, with a warning).
	KeyPassphraseFile string `json:"key_passphrase_file"`
	// LogFormat is "text" or "json" (default text).
	LogFormat string `json:"log_format"`
	// LogLevel is "debug", "info", "warn" or "error" (default info).
	LogLevel string `json:"log_level"`
	// Store is where the ledger lives: empty for the embedded Pebble store in
	// DATA/ledger (default), or a PostgreSQL connection string (a
	// postgres:// URL or "host=… dbname=…") for a database that several
	// bankd replicas may share.
	Store string `json:"store"`
	// CacheSize is the block cache of the embedded Pebble store, as bytes
	// or with a unit: "512MiB", "2GiB" (default 192MiB, of which the
	// memtables take up to 64MiB). A store's point reads stay cheap while
	// its bloom-filter and index blocks fit beside the hot data: about 12
	// bytes a coin spent, so the default serves some 10M coins
	// (docs/OPERATIONS.md, Capacity planning). Refused with a PostgreSQL
	// store, which has its own (shared_buffers).
	CacheSize string `json:"cache_size"`
	// TLSCertFile and TLSKeyFile are the listeners' certificate and key,
	// PEM, both or neither (default: DATA/tls.crt and DATA/tls.key, made
	// self-signed if missing). bankd reloads them when they change on disk.
	TLSCertFile string `json:"tls_cert_file"`
	TLSKeyFile  string `json:"tls_key_file"`
	// ClientCAFile is a PEM file of the CA certificates that sign client
	// certificates for the public listener (default none: no client
	// certificates). Reloaded when it changes.
	ClientCAFile string `json:"client_ca_file"`
	// ClientAuth says which public calls need a client certificate from
	// ClientCAFile: "none", "merchants" (deposits and checks; wallets need
	// none) or "all" (default: "merchants" with a ClientCAFile, else "none").
	ClientAuth string `json:"client_auth"`
	// AdminClientCAFile is a PEM file of the CA certificates that sign the
	// admin clients' certificates. If set, the admin listener serves TLS and
	// refuses clients without such a certificate (the token is still
	// needed), and may listen beyond loopback (default none: plaintext on
	// loopback, token only).
	AdminClientCAFile string `json:"admin_client_ca_file"`
	// Signer is the unix socket of a "bankd signer" process holding the
	// denomination private keys, "unix:///PATH" (default none: bankd signs
	// with the keys in keys.json). bankd refuses to start if the signer's
	// denominations differ from its own.
	Signer string `json:"signer"`
	// RateLimitPerPeer is how many calls a second one peer address may
	// make on the public listener (bursts of twice that), and
	// RateLimitPerAccount how many withdrawals, payment orders and
	// statements one account may ask for a second: a number, or "off"
	// (default 500 and 100). Behind a proxy every call comes from its
	// address; a load test from one host needs them raised or off.
	RateLimitPerPeer    string `json:"rate_limit_per_peer"`
	RateLimitPerAccount string `json:"rate_limit_per_account"`
	// RateLimitRefusalsPerAccount is how many refused withdraw requests
	// a second the bank records per account (bursts of 20, or twice that
	// if more), each a synced record kept for a day: a number, or "off"
	// (default 1). A refusal over it is answered "slow down" and retried
	// by the wallet.
	RateLimitRefusalsPerAccount string `json:"rate_limit_refusals_per_account"`
	// CallsPerPeer and ConnectionsPerPeer are how many calls one peer
	// address may have in progress, and connections open, at once on the
	// public listener: a number, or "off" (default 256 each). Each call
	// holds up to 8 MiB of its request until it ends, sent whole or not.
	CallsPerPeer       string `json:"calls_per_peer"`
	ConnectionsPerPeer string `json:"connections_per_peer"`
	// RevocationPoll is how often a replica looks in the audit log for
	// denominations another replica revoked, to serve the revoked key set:
	// a duration such as "2s" (default 2s; 100ms to 1h). The store refuses
	// a revoked denomination's coins at once whatever it is; the poll only
	// bounds how long wallets may be told the old key set.
	RevocationPoll string `json:"revocation_poll"`
}

// Field names, as in the file.
var fieldNames = []string{
	"data", "listen", "admin_listen", "plaintext", "currency", "rsa_bits", "cipher",
	"denominations", "master_public_key", "key_passphrase_file", "log_format", "log_level", "store",
	"cache_size", "tls_cert_file", "tls_key_file", "client_ca_file", "client_auth", "admin_client_ca_file", "signer",
	"rate_limit_per_peer", "rate_limit_per_account", "rate_limit_refusals_per_account", "calls_per_peer", "connections_per_peer", "revocation_poll",
}

// Environment variables.
const (
	EnvData              = "BLINDBANK_DATA"
	EnvListen            = "BLINDBANK_LISTEN"
	EnvAdminListen       = "BLINDBANK_ADMIN_LISTEN"
	EnvKeyPassphraseFile = "BLINDBANK_KEY_PASSPHRASE_FILE"
	EnvStore             = "BLINDBANK_STORE"
)

// Defaults.
const (
	DefaultListen      = "127.0.0.1:7443"
	DefaultAdminListen = "127.0.0.1:7444"
	DefaultCurrency    = "EUR"
	DefaultRSABits     = 2048
	DefaultCipher      = "rsa"
	DefaultLogFormat   = "text"
	DefaultLogLevel    = "info"
)

// Values of client_auth.
const (
	ClientAuthNone      = "none"
	ClientAuthMerchants = "merchants"
	ClientAuthAll       = "all"
)

// maxFileSize bounds a config file.
const maxFileSize = 1 << 20

// Load reads and parses a config file.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes; not a config file", path, maxFileSize)
	}
	return Parse(path, b)
}

// Parse parses a config file's contents; name is used in errors.
func Parse(name string, b []byte) (*File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %s", name, describeJSONError(b, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: %s: data after the closing brace", name, position(b, dec.InputOffset()))
	}
	return &f, nil
}

// describeJSONError turns encoding/json's errors into ones naming the field
// and the line.
func describeJSONError(b []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "empty file; want a JSON object such as {\"data\": \"/var/lib/blindbank\"}"
	case errors.As(err, &syn):
		return fmt.Sprintf("%s: %s", position(b, syn.Offset), strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("%s: want a JSON object, not %s", position(b, typ.Offset), typ.Value)
		}
		return fmt.Sprintf("%s: field %q: want %s, not %s", position(b, typ.Offset), typ.Field, typeName(typ.Type.Kind().String()), typ.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return fmt.Sprintf("unknown field %s (known fields: %s)", name, strings.Join(fieldNames, ", "))
	}
	return msg
}

func typeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int":
		return "a whole number"
	case "bool":
		return "true or false"
	case "slice":
		return "a list of strings"
	}
	return kind
}

// position renders a byte offset as "line L" (encoding/json's offsets
// point just past the trouble, so a column would mislead).
func position(b []byte, off int64) string {
	off = min(max(off-1, 0), int64(len(b)))
	return fmt.Sprintf("line %d", bytes.Count(b[:off], []byte("\n"))+1)
}

// SourceKind says where a setting came from.
type SourceKind int

const (
	FromDefault SourceKind = iota
	FromFile
	FromEnv
	FromFlag
)

// Source is where a setting came from: the default, a file, an environment
// variable or a flag (Name is the path, the variable or "--flag").
type Source struct {
	Kind SourceKind
	Name string
}

func (s Source) String() string {
	switch s.Kind {
	case FromFile:
		return "file " + s.Name
	case FromEnv:
		return "env " + s.Name
	case FromFlag:
		return "flag " + s.Name
	}
	return "default"
}

// Bank is a resolved, checked configuration.
type Bank struct {
	Data              string // absolute; "" if not given anywhere
	Listen            string
	AdminListen       string
	Plaintext         bool
	Currency          string
	RSABits           int
	Cipher            ecash.Cipher
	Denominations     []bank.DenomSpec // nil: the default set
	MasterPublicKey   ed25519.PublicKey
	KeyPassphraseFile string // absolute; "" for none
	LogFormat         string
	LogLevel          string
	Store             string // "" for Pebble in Data/ledger, or a postgres:// URL
	CacheSize         int64  // Pebble's block cache in bytes; 0 for pebblestore.DefaultCacheSize
	TLSCertFile       string // absolute; "" for DATA/tls.crt
	TLSKeyFile        string // absolute; "" for DATA/tls.key
	ClientCAFile      string // absolute; "" for none
	ClientAuth        string // none, merchants or all (resolved: never "")
	AdminClientCAFile string // absolute; "" for none
	Signer            string // "unix:///PATH" of the signer process; "" for none
	RateLimits        node.RateLimits
	RevocationPoll    time.Duration // 0 for node.DefaultRevocationPoll

	sources map[string]Source
}

// TLS is the listeners' TLS configuration, as node.StartBank takes it.
func (b *Bank) TLS() node.TLSOptions {
	o := node.TLSOptions{
		CertFile: b.TLSCertFile, KeyFile: b.TLSKeyFile,
		ClientCAFile: b.ClientCAFile, AdminClientCAFile: b.AdminClientCAFile,
	}
	switch b.ClientAuth {
	case ClientAuthMerchants:
		o.ClientAuth = transport.ClientCertMethods
	case ClientAuthAll:
		o.ClientAuth = transport.ClientCertAll
	}
	return o
}

// Source says where the field (named as in the file) came from.
func (b *Bank) Source(field string) Source { return b.sources[field] }

// Given reports whether the field was set anywhere (not left to default).
func (b *Bank) Given(field string) bool { return b.sources[field].Kind != FromDefault }

// KeyConfig is the key generation the configuration asks for.
func (b *Bank) KeyConfig() bank.KeyConfig {
	return bank.KeyConfig{
		Currency: b.Currency, RSABits: b.RSABits, Cipher: b.Cipher,
		Denoms: b.Denominations, MasterPub: b.MasterPublicKey,
	}
}

// Effective is the configuration in file form, every field filled in.
func (b *Bank) Effective() File {
	f := File{
		Data: b.Data, Listen: b.Listen, AdminListen: b.AdminListen, Plaintext: b.Plaintext,
		Currency: b.Currency, RSABits: b.RSABits, Cipher: strings.ToLower(b.Cipher.String()),
		KeyPassphraseFile: b.KeyPassphraseFile, LogFormat: b.LogFormat, LogLevel: b.LogLevel,
		Store: b.Store, Denominations: []string{},
		TLSCertFile: b.TLSCertFile, TLSKeyFile: b.TLSKeyFile, ClientCAFile: b.ClientCAFile,
		ClientAuth: b.ClientAuth, AdminClientCAFile: b.AdminClientCAFile, Signer: b.Signer,
		RateLimitPerPeer:            formatRate(b.RateLimits.PerPeer, node.DefaultPerPeer),
		RateLimitPerAccount:         formatRate(b.RateLimits.PerAccount, node.DefaultPerAccount),
		RateLimitRefusalsPerAccount: formatRate(b.RateLimits.RefusalsPerAccount, node.DefaultRefusalsPerAccount),
		CallsPerPeer:                formatRate(float64(b.RateLimits.CallsPerPeer), node.DefaultCallsPerPeer),
		ConnectionsPerPeer:          formatRate(float64(b.RateLimits.ConnsPerPeer), node.DefaultConnsPerPeer),
		RevocationPoll:              cmp.Or(b.RevocationPoll, node.DefaultRevocationPoll).String(),
	}
	specs := b.Denominations
	if specs == nil {
		for _, v := range bank.DefaultDenominations(b.Currency) {
			specs = append(specs, bank.DenomSpec{Value: v, Cipher: b.Cipher})
		}
	}
	for _, d := range specs {
		spec := d.Value.String() + "/" + strings.ToLower(d.Cipher.String())
		if fees := bank.FeesSpec(d.Fees); fees != "" {
			spec += "/" + fees
		}
		f.Denominations = append(f.Denominations, spec)
	}
	if b.MasterPublicKey != nil {
		f.MasterPublicKey = hex.EncodeToString(b.MasterPublicKey)
	}
	if b.Store == "" {
		f.CacheSize = FormatSize(cmp.Or(b.CacheSize, pebblestore.DefaultCacheSize))
	}
	return f
}

// Fields lists the field names in file order.
func Fields() []string { return slices.Clone(fieldNames) }

// Flags are the command-line flags of the settings. Register them on a
// command's flag set, then pass them to Resolve with the command's IsSet.
type Flags struct {
	Config                      string
	Data                        string
	Listen                      string
	AdminListen                 string
	Plaintext                   bool
	Currency                    string
	RSABits                     int
	Cipher                      string
	Denominations               string
	MasterPublicKey             string
	KeyPassphraseFile           string
	LogFormat                   string
	LogLevel                    string
	Store                       string
	CacheSize                   string
	TLSCertFile                 string
	TLSKeyFile                  string
	ClientCAFile                string
	ClientAuth                  string
	AdminClientCAFile           string
	Signer                      string
	RateLimitPerPeer            string
	RateLimitPerAccount         string
	RateLimitRefusalsPerAccount string
	CallsPerPeer                string
	ConnectionsPerPeer          string
	RevocationPoll              string
}

// RegisterKeyFile adds --config, --data and --key-passphrase-file: what a
// command working on a bank's key file needs.
func (f *Flags) RegisterKeyFile(fs *flag.FlagSet) {
	fs.StringVar(&f.Config, "config", "", "read settings from the JSON config `FILE` (flags and environment variables override it)")
	fs.StringVar(&f.Data, "data", "", "data `DIR` of the bank (or $"+EnvData+", or data in the config file)")
	fs.StringVar(&f.Store, "store", "", "where the ledger lives: empty for Pebble in DIR/ledger, or a postgres:// `URL` shared by bankd replicas (or $"+EnvStore+")")
	fs.StringVar(&f.KeyPassphraseFile, "key-passphrase-file", "", "`FILE` holding the passphrase that encrypts DIR/keys.json (or $"+EnvKeyPassphraseFile+", or key_passphrase_file in the config file); a trailing newline is ignored")
}

// RegisterKeyGen adds the flags of a new bank's keys.
func (f *Flags) RegisterKeyGen(fs *flag.FlagSet) {
	fs.StringVar(&f.Currency, "currency", DefaultCurrency, "`CURRENCY` of a new bank (upper-case letters)")
	fs.IntVar(&f.RSABits, "rsa-bits", DefaultRSABits, "RSA key size in `BITS` of a new bank's denominations: 2048 or 3072")
	fs.StringVar(&f.Denominations, "denominations", "", "coin values of a new bank as a comma-separated `LIST`, each optionally with its cipher, e.g. EUR:0.01/cs,EUR:0.02/cs,EUR:1.00/rsa (default: powers of two from 0.01 to 81.92)")
	fs.StringVar(&f.Cipher, "cipher", DefaultCipher, "blind-signature `CIPHER` of a new bank's denominations that name none: rsa (RFC 9474; standard assumptions, about 1 ms of bank CPU to sign a coin at 2048 bits) or cs (Clause Blind Schnorr; about 39 µs a coin, 24 times cheaper, 64-byte signatures; see docs/PERFORMANCE.md)")
}

// RegisterMasterPublic adds --master-public, for generating a new bank's
// keys for an offline master key.
func (f *Flags) RegisterMasterPublic(fs *flag.FlagSet) {
	fs.StringVar(&f.MasterPublicKey, "master-public", "", "make a new bank's keys for the offline master key with this public `KEY` (hex, from 'bankd keys new-master'); its key set must be signed offline before the bank serves")
}

// RegisterServe adds every flag bankd serve takes.
func (f *Flags) RegisterServe(fs *flag.FlagSet) {
	f.RegisterKeyFile(fs)
	f.RegisterKeyGen(fs)
	fs.StringVar(&f.Listen, "listen", DefaultListen, "public gRPC `ADDR` (or $"+EnvListen+"; port 0 picks a free port)")
	fs.StringVar(&f.AdminListen, "admin-listen", DefaultAdminListen, "admin gRPC `ADDR` (or $"+EnvAdminListen+"); must be loopback")
	fs.BoolVar(&f.Plaintext, "plaintext", false, "serve the public listener without TLS (loopback only; for tests)")
	fs.StringVar(&f.LogFormat, "log-format", DefaultLogFormat, "log `FORMAT` on stderr: text or json")
	fs.StringVar(&f.LogLevel, "log-level", DefaultLogLevel, "least `LEVEL` logged: debug, info, warn or error (debug adds a line per withdrawal, deposit, swap, check, refund and recoup)")
	fs.StringVar(&f.CacheSize, "cache-size", "", "block cache of the embedded Pebble store, `SIZE` in bytes or with a unit, e.g. 512MiB or 2GiB (default 192MiB, of which the memtables take up to 64MiB; each spent coin needs about 12 bytes to keep its filters and indexes cached)")
	f.RegisterTLS(fs)
	fs.StringVar(&f.Signer, "signer", "", "sign every denomination in the 'bankd signer' process listening on this unix socket, `unix:///PATH` (default none: sign with the keys in DIR/keys.json)")
	fs.StringVar(&f.RateLimitPerPeer, "rate-limit-per-peer", "", "calls a second one peer address may make on the public listener, `N` or off (default 500; bursts of twice that): raise it behind a proxy, whose address every call carries")
	fs.StringVar(&f.RateLimitPerAccount, "rate-limit-per-account", "", "withdrawals, payment orders, statements and payment-order status queries one account may ask for a second, `N` or off (default 100)")
	fs.StringVar(&f.RateLimitRefusalsPerAccount, "rate-limit-refusals-per-account", "", "refused withdraw requests a second the bank records per account, `N` or off (default 1; bursts of 20): each is a synced record kept for a day, and one over it is answered 'slow down', which the wallet retries")
	fs.StringVar(&f.CallsPerPeer, "calls-per-peer", "", "calls one peer address may have in progress at once on the public listener, `N` or off (default 256); each holds up to 8 MiB of its request until it ends")
	fs.StringVar(&f.ConnectionsPerPeer, "connections-per-peer", "", "connections one peer address may have open at once on the public listener, `N` or off (default 256); raise both behind a proxy, whose address every call carries")
	fs.StringVar(&f.RevocationPoll, "revocation-poll", "", "how often to look in the audit log for denominations another replica revoked, a `DURATION` from 100ms to 1h (default 2s); their coins are refused at once regardless, this bounds how long wallets see the old key set")
}

// RegisterTLS adds the listeners' certificate and client-certificate flags.
func (f *Flags) RegisterTLS(fs *flag.FlagSet) {
	fs.StringVar(&f.TLSCertFile, "tls-cert", "", "the listeners' TLS certificate, PEM `FILE` (default DIR/tls.crt, self-signed, made if missing); reloaded when it changes")
	fs.StringVar(&f.TLSKeyFile, "tls-key", "", "the TLS certificate's private key, PEM `FILE` (default DIR/tls.key); reloaded when it changes")
	fs.StringVar(&f.ClientCAFile, "client-ca", "", "PEM `FILE` of the CAs that sign client certificates on the public listener (default none); reloaded when it changes")
	fs.StringVar(&f.ClientAuth, "client-auth", "", "which public calls need a client certificate from --client-ca: `MODE` none, merchants (deposits and checks; wallets need none) or all (default merchants with --client-ca, else none)")
	fs.StringVar(&f.AdminClientCAFile, "admin-client-ca", "", "PEM `FILE` of the CAs that sign admin clients' certificates: the admin listener then serves TLS, requires such a certificate besides the token, and may listen beyond loopback (default none)")
}

// Input is what Resolve combines.
type Input struct {
	File     *File  // the parsed config file, or nil
	FilePath string // its path, for errors and relative paths
	// Getenv reads the environment (os.Getenv); nil ignores it.
	Getenv func(string) string
	// Flags and IsSet: the command's flag values and which were given.
	Flags *Flags
	IsSet func(flagName string) bool
}

// FieldError is a bad setting: Field is its name in the file, Source where
// its value came from.
type FieldError struct {
	Field  string
	Source Source
	Msg    string // names the setting as its source does: --flag, VARIABLE, or field
}

func (e *FieldError) Error() string {
	if e.Source.Kind == FromFile {
		return e.Source.Name + ": " + e.Msg
	}
	return e.Msg
}

// setting describes one field: its flag and environment variable.
type setting struct {
	flag, env string
	path      bool // a file path: relative in the file means relative to it
}

var settings = map[string]setting{
	"data":                            {flag: "data", env: EnvData, path: true},
	"listen":                          {flag: "listen", env: EnvListen},
	"admin_listen":                    {flag: "admin-listen", env: EnvAdminListen},
	"plaintext":                       {flag: "plaintext"},
	"currency":                        {flag: "currency"},
	"rsa_bits":                        {flag: "rsa-bits"},
	"cipher":                          {flag: "cipher"},
	"denominations":                   {flag: "denominations"},
	"master_public_key":               {flag: "master-public"},
	"store":                           {flag: "store", env: EnvStore},
	"cache_size":                      {flag: "cache-size"},
	"key_passphrase_file":             {flag: "key-passphrase-file", env: EnvKeyPassphraseFile, path: true},
	"log_format":                      {flag: "log-format"},
	"log_level":                       {flag: "log-level"},
	"tls_cert_file":                   {flag: "tls-cert", path: true},
	"tls_key_file":                    {flag: "tls-key", path: true},
	"client_ca_file":                  {flag: "client-ca", path: true},
	"client_auth":                     {flag: "client-auth"},
	"admin_client_ca_file":            {flag: "admin-client-ca", path: true},
	"signer":                          {flag: "signer"},
	"rate_limit_per_peer":             {flag: "rate-limit-per-peer"},
	"rate_limit_per_account":          {flag: "rate-limit-per-account"},
	"rate_limit_refusals_per_account": {flag: "rate-limit-refusals-per-account"},
	"calls_per_peer":                  {flag: "calls-per-peer"},
	"connections_per_peer":            {flag: "connections-per-peer"},
	"revocation_poll":                 {flag: "revocation-poll"},
}

type resolver struct {
	in      Input
	out     *Bank
	fileDir string // relative paths in the file are relative to it
}

// name is how a message names field: as its source does.
func (r *resolver) name(field string) string {
	s := r.out.sources[field]
	switch s.Kind {
	case FromFlag:
		return s.Name
	case FromEnv:
		return "$" + s.Name
	}
	return field
}

func (r *resolver) fail(field, format string, args ...any) error {
	return &FieldError{Field: field, Source: r.out.sources[field], Msg: fmt.Sprintf(format, args...)}
}

// str resolves a string setting.
func (r *resolver) str(field, fileVal, flagVal, def string) string {
	s := settings[field]
	if r.in.IsSet != nil && r.in.IsSet(s.flag) {
		r.out.sources[field] = Source{FromFlag, "--" + s.flag}
		return flagVal
	}
	if s.env != "" && r.in.Getenv != nil {
		if v := r.in.Getenv(s.env); v != "" {
			r.out.sources[field] = Source{FromEnv, s.env}
			return v
		}
	}
	if fileVal != "" {
		r.out.sources[field] = Source{FromFile, r.in.FilePath}
		if s.path && !filepath.IsAbs(fileVal) {
			fileVal = filepath.Join(r.fileDir, fileVal)
		}
		return fileVal
	}
	r.out.sources[field] = Source{Kind: FromDefault}
	return def
}

// Resolve combines the flags, the environment, the file and the defaults
// and checks the result. Paths come out absolute.
func Resolve(in Input) (*Bank, error) {
	if in.File == nil {
		in.File = &File{}
	}
	if in.Flags == nil {
		in.Flags = &Flags{}
	}
	r := &resolver{in: in, out: &Bank{sources: map[string]Source{}}, fileDir: filepath.Dir(in.FilePath)}
	if abs, err := filepath.Abs(in.FilePath); err == nil && in.FilePath != "" {
		r.fileDir = filepath.Dir(abs)
	}
	f, fl, b := in.File, in.Flags, r.out
	isSet := func(name string) bool { return in.IsSet != nil && in.IsSet(name) }

	b.Data = r.str("data", f.Data, fl.Data, "")
	b.Listen = r.str("listen", f.Listen, fl.Listen, DefaultListen)
	b.AdminListen = r.str("admin_listen", f.AdminListen, fl.AdminListen, DefaultAdminListen)
	b.KeyPassphraseFile = r.str("key_passphrase_file", f.KeyPassphraseFile, fl.KeyPassphraseFile, "")
	b.Store = r.str("store", f.Store, fl.Store, "")
	cacheSize := r.str("cache_size", f.CacheSize, fl.CacheSize, "")
	b.Currency = r.str("currency", f.Currency, fl.Currency, DefaultCurrency)
	cipher := r.str("cipher", f.Cipher, fl.Cipher, DefaultCipher)
	master := r.str("master_public_key", f.MasterPublicKey, fl.MasterPublicKey, "")
	b.LogFormat = r.str("log_format", f.LogFormat, fl.LogFormat, DefaultLogFormat)
	b.LogLevel = r.str("log_level", f.LogLevel, fl.LogLevel, DefaultLogLevel)
	b.TLSCertFile = r.str("tls_cert_file", f.TLSCertFile, fl.TLSCertFile, "")
	b.TLSKeyFile = r.str("tls_key_file", f.TLSKeyFile, fl.TLSKeyFile, "")
	b.ClientCAFile = r.str("client_ca_file", f.ClientCAFile, fl.ClientCAFile, "")
	b.AdminClientCAFile = r.str("admin_client_ca_file", f.AdminClientCAFile, fl.AdminClientCAFile, "")
	b.ClientAuth = r.str("client_auth", f.ClientAuth, fl.ClientAuth, "")
	b.Signer = r.str("signer", f.Signer, fl.Signer, "")
	perPeer := r.str("rate_limit_per_peer", f.RateLimitPerPeer, fl.RateLimitPerPeer, "")
	perAccount := r.str("rate_limit_per_account", f.RateLimitPerAccount, fl.RateLimitPerAccount, "")
	refusalsPerAccount := r.str("rate_limit_refusals_per_account", f.RateLimitRefusalsPerAccount, fl.RateLimitRefusalsPerAccount, "")
	callsPerPeer := r.str("calls_per_peer", f.CallsPerPeer, fl.CallsPerPeer, "")
	connsPerPeer := r.str("connections_per_peer", f.ConnectionsPerPeer, fl.ConnectionsPerPeer, "")
	poll := r.str("revocation_poll", f.RevocationPoll, fl.RevocationPoll, "")
	if p, ok := strings.CutPrefix(b.Signer, "unix://"); b.Signer != "" && (!ok || !filepath.IsAbs(p)) {
		return nil, r.fail("signer", "bad %s %q: want unix:///PATH, the absolute path of the signer's socket", r.name("signer"), b.Signer)
	}
	switch {
	case isSet("plaintext"):
		b.Plaintext, b.sources["plaintext"] = fl.Plaintext, Source{FromFlag, "--plaintext"}
	case f.Plaintext:
		b.Plaintext, b.sources["plaintext"] = true, Source{FromFile, in.FilePath}
	}
	switch {
	case isSet("rsa-bits"):
		b.RSABits, b.sources["rsa_bits"] = fl.RSABits, Source{FromFlag, "--rsa-bits"}
	case f.RSABits != 0:
		b.RSABits, b.sources["rsa_bits"] = f.RSABits, Source{FromFile, in.FilePath}
	default:
		b.RSABits = DefaultRSABits
	}
	var denoms []string
	switch {
	case isSet("denominations"):
		b.sources["denominations"] = Source{FromFlag, "--denominations"}
		if fl.Denominations != "" {
			denoms = []string{fl.Denominations}
		}
	case len(f.Denominations) > 0:
		b.sources["denominations"] = Source{FromFile, in.FilePath}
		denoms = f.Denominations
	}

	for field, p := range map[string]*string{
		"data": &b.Data, "key_passphrase_file": &b.KeyPassphraseFile, "tls_cert_file": &b.TLSCertFile,
		"tls_key_file": &b.TLSKeyFile, "client_ca_file": &b.ClientCAFile, "admin_client_ca_file": &b.AdminClientCAFile,
	} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, r.fail(field, "bad %s %q: %v", r.name(field), *p, err)
		}
		*p = abs
	}
	for _, field := range []string{"listen", "admin_listen"} {
		addr := b.Listen
		if field == "admin_listen" {
			addr = b.AdminListen
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, r.fail(field, "bad %s %q: want HOST:PORT, e.g. 127.0.0.1:7443", r.name(field), addr)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, r.fail(field, "bad %s %q: the port must be a number from 0 to 65535 (0 picks a free port)", r.name(field), addr)
		}
	}
	if !transport.IsLoopback(b.AdminListen) && b.AdminClientCAFile == "" {
		return nil, r.fail("admin_listen", "bad %s %s: the admin service listens on loopback only (127.0.0.1, ::1, localhost), unless it requires client certificates (admin_client_ca_file)", r.name("admin_listen"), b.AdminListen)
	}
	if err := r.tls(); err != nil {
		return nil, err
	}
	if b.Plaintext && !transport.IsLoopback(b.Listen) {
		return nil, r.fail("plaintext", "%s is allowed only on a loopback %s address, not %s", r.name("plaintext"), r.name("listen"), b.Listen)
	}
	if cacheSize != "" {
		n, err := ParseSize(cacheSize)
		if err == nil && (n < MinCacheSize || n > MaxCacheSize) {
			err = fmt.Errorf("want %s to %s", FormatSize(MinCacheSize), FormatSize(MaxCacheSize))
		}
		if err != nil {
			return nil, r.fail("cache_size", "bad %s %q: %v", r.name("cache_size"), cacheSize, err)
		}
		if b.Store != "" {
			return nil, r.fail("cache_size", "%s sizes the embedded Pebble store's cache, and %s is PostgreSQL (size its shared_buffers instead)", r.name("cache_size"), r.name("store"))
		}
		b.CacheSize = n
	}
	var err error
	if b.RateLimits.PerPeer, err = r.rate("rate_limit_per_peer", perPeer); err != nil {
		return nil, err
	}
	if b.RateLimits.PerAccount, err = r.rate("rate_limit_per_account", perAccount); err != nil {
		return nil, err
	}
	if b.RateLimits.RefusalsPerAccount, err = r.rate("rate_limit_refusals_per_account", refusalsPerAccount); err != nil {
		return nil, err
	}
	if b.RateLimits.CallsPerPeer, err = r.count("calls_per_peer", callsPerPeer); err != nil {
		return nil, err
	}
	if b.RateLimits.ConnsPerPeer, err = r.count("connections_per_peer", connsPerPeer); err != nil {
		return nil, err
	}
	if poll != "" {
		d, err := cli.ParseDuration(poll)
		if err != nil || d < MinRevocationPoll || d > MaxRevocationPoll {
			return nil, r.fail("revocation_poll", "bad %s %q: want a duration from %s to %s, e.g. 2s", r.name("revocation_poll"), poll, MinRevocationPoll, MaxRevocationPoll)
		}
		b.RevocationPoll = d
	}
	if !ecash.ValidCurrency(b.Currency) {
		return nil, r.fail("currency", "bad %s %q: want 1 to 11 upper-case letters, e.g. EUR", r.name("currency"), b.Currency)
	}
	if b.RSABits != 2048 && b.RSABits != 3072 {
		return nil, r.fail("rsa_bits", "bad %s %d: want 2048 or 3072", r.name("rsa_bits"), b.RSABits)
	}
	c, err := bank.ParseCipher(cipher)
	if err != nil {
		return nil, r.fail("cipher", "bad %s %q: want rsa or cs", r.name("cipher"), cipher)
	}
	b.Cipher = c
	if err := r.denominations(denoms); err != nil {
		return nil, err
	}
	if master != "" {
		k, err := hex.DecodeString(strings.TrimSpace(master))
		if err != nil || len(k) != ed25519.PublicKeySize {
			return nil, r.fail("master_public_key", "bad %s %q: want an Ed25519 public key as 64 hex digits", r.name("master_public_key"), master)
		}
		b.MasterPublicKey = k
	}
	if b.LogFormat != "text" && b.LogFormat != "json" {
		return nil, r.fail("log_format", "bad %s %q: want text or json", r.name("log_format"), b.LogFormat)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(b.LogLevel)); err != nil {
		return nil, r.fail("log_level", "bad %s %q: want debug, info, warn or error", r.name("log_level"), b.LogLevel)
	}
	return b, nil
}

// Bounds of revocation_poll: each poll is one small read of the store.
const (
	MinRevocationPoll = 100 * time.Millisecond
	MaxRevocationPoll = time.Hour
)

// maxRate bounds a rate limit: beyond it, say "off".
const maxRate = 1_000_000

var decimal = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// rate parses a rate limit: "" for the default (0 in node.RateLimits), "off"
// (-1), or calls a second, 1 to maxRate, in plain decimal (ParseFloat
// alone would take "0x1p4", "1_000" or "Inf").
func (r *resolver) rate(field, v string) (float64, error) {
	switch v {
	case "":
		return 0, nil
	case "off":
		return -1, nil
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || !decimal.MatchString(v) || !(n >= 1 && n <= maxRate) {
		return 0, r.fail(field, "bad %s %q: want calls a second, 1 to %d, or off", r.name(field), v, maxRate)
	}
	return n, nil
}

// count parses a per-peer bound: "" for the default (0 in node.RateLimits),
// "off" (-1), or a whole number from 1 to maxRate.
func (r *resolver) count(field, v string) (int, error) {
	n, err := strconv.Atoi(v)
	switch {
	case v == "":
		return 0, nil
	case v == "off":
		return -1, nil
	case err != nil || !decimal.MatchString(v) || n < 1 || n > maxRate:
		return 0, r.fail(field, "bad %s %q: want a whole number, 1 to %d, or off", r.name(field), v, maxRate)
	}
	return n, nil
}

// formatRate is a rate limit (or a count) as the file spells it.
func formatRate(v, def float64) string {
	switch {
	case v < 0:
		return "off"
	case v == 0:
		v = def
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// tls checks the TLS settings and resolves client_auth.
func (r *resolver) tls() error {
	b := r.out
	if (b.TLSCertFile == "") != (b.TLSKeyFile == "") {
		field := "tls_cert_file" // the one given
		if b.TLSCertFile == "" {
			field = "tls_key_file"
		}
		return r.fail(field, "%s and %s go together: give both or neither", r.name("tls_cert_file"), r.name("tls_key_file"))
	}
	switch b.ClientAuth {
	case "":
		b.ClientAuth = ClientAuthNone
		if b.ClientCAFile != "" {
			b.ClientAuth = ClientAuthMerchants
		}
	case ClientAuthNone, ClientAuthMerchants, ClientAuthAll:
	default:
		return r.fail("client_auth", "bad %s %q: want none, merchants or all", r.name("client_auth"), b.ClientAuth)
	}
	if b.ClientAuth != ClientAuthNone && b.ClientCAFile == "" {
		return r.fail("client_auth", "%s %s needs %s: the CA that signs the client certificates", r.name("client_auth"), b.ClientAuth, r.name("client_ca_file"))
	}
	if b.ClientCAFile != "" && b.Plaintext {
		return r.fail("client_ca_file", "%s needs TLS on the public listener, and %s turns it off", r.name("client_ca_file"), r.name("plaintext"))
	}
	return nil
}

// maxDenominations bounds a new bank's denominations.
const maxDenominations = 64

func (r *resolver) denominations(items []string) error {
	b := r.out
	if items == nil {
		return nil
	}
	name := r.name("denominations")
	fromFile := b.sources["denominations"].Kind == FromFile
	seen := map[ecash.Amount]bool{}
	for i, item := range items {
		where := name
		if fromFile {
			where = fmt.Sprintf("%s[%d]", name, i)
		}
		specs, err := bank.ParseDenomSpecs(item, b.Cipher)
		if err != nil {
			return r.fail("denominations", "%s: %v", where, err)
		}
		if fromFile && len(specs) != 1 {
			return r.fail("denominations", "%s: %q: want one value per list item", where, item)
		}
		for _, d := range specs {
			if d.Value.Currency != b.Currency {
				return r.fail("denominations", "%s: %s is not in %s (the %s)", where, d.Value, b.Currency, r.name("currency"))
			}
			if seen[d.Value] {
				return r.fail("denominations", "%s: %s appears twice", where, d.Value)
			}
			seen[d.Value] = true
			b.Denominations = append(b.Denominations, d)
		}
	}
	if len(b.Denominations) == 0 {
		return r.fail("denominations", "%s: no denominations", name)
	}
	if len(b.Denominations) > maxDenominations {
		return r.fail("denominations", "%s: %d values; at most %d", name, len(b.Denominations), maxDenominations)
	}
	return nil
}

// credentialMode reports whether perm is that of a systemd credential
// (LoadCredential) the service reads: a file in $CREDENTIALS_DIRECTORY,
// which systemd keeps private to the service, that no other user may read
// but whose group bits may show the mask of the ACL that lets the
// service's user read it (0440). Both are judged where their links lead,
// and the directory must be an absolute path other than the root.
func credentialMode(path string, perm os.FileMode) bool {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if !filepath.IsAbs(dir) || perm&0o037 != 0 {
		return false
	}
	file, err1 := filepath.EvalSymlinks(path)
	base, err2 := filepath.EvalSymlinks(dir)
	if err1 != nil || err2 != nil || base == filepath.Dir(base) {
		return false
	}
	// systemd's is 0500 (0550 with an ACL): a directory others may enter
	// is no credentials directory.
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() || fi.Mode().Perm()&0o007 != 0 {
		return false
	}
	if file, err1 = filepath.Abs(file); err1 != nil {
		return false
	}
	return filepath.Dir(file) == base
}

// maxPassphrase bounds a passphrase file: a passphrase or a key file, not a
// misplaced disk image.
const maxPassphrase = 4096

// ReadPassphrase reads a key passphrase file: its contents without one
// trailing newline (\n or \r\n). It refuses an empty file, and one other
// users may read, as the key files it protects are refused
// (bank.OpenPrivate): a passphrase anyone on the host can read protects
// nothing. A systemd credential is the exception (credentialMode).
func ReadPassphrase(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key passphrase file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key passphrase file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key passphrase file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && !credentialMode(path, perm) && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("key passphrase file: %s is open to other users (mode %04o): run chmod 600 on it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPassphrase+1))
	if err != nil {
		return nil, fmt.Errorf("key passphrase file: %w", err)
	}
	if len(b) > maxPassphrase {
		return nil, fmt.Errorf("key passphrase file %s is larger than %d bytes", path, maxPassphrase)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("key passphrase file %s is empty", path)
	}
	return b, nil
}
